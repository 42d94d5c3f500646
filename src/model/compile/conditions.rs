//! Conditions: what a rule, a disqualifier, a grading criterion or a
//! lifecycle stage tests, and which keys belong where.

use super::*;

impl Compiler<'_> {
    /// Checks that a clause carries only the naming/points keys its role allows.
    pub(super) fn check_role_keys(&mut self, clause: &RawClause, span: &Range<usize>, role: Role) {
        let allowed: &[&str] = match role {
            Role::FitRule => &["name", "points", "points_per_unit", "max_points"],
            Role::EngagementRule => &[
                "name",
                "points",
                "once",
                "max_occurrences",
                "points_per_unit",
                "max_points",
            ],
            Role::GradeCriterion => &["name", "on_match", "on_miss"],
            Role::Disqualifier => &["name", "effect"],
            Role::Condition => &[],
        };
        let role_name = match role {
            Role::FitRule => "a fit rule",
            Role::EngagementRule => "an engagement rule",
            Role::GradeCriterion => "a grading criterion",
            Role::Disqualifier => "a disqualifier",
            Role::Condition => "a condition",
        };
        for (key, at) in role_keys(clause) {
            if !allowed.contains(&key) {
                let hint = match key {
                    "on_match" | "on_miss" => " (it belongs to [[grading.criterion]])",
                    "effect" => " (it belongs to [[disqualifier]])",
                    "once" | "max_occurrences" => {
                        " (it applies to event rules in engagement groups)"
                    }
                    "points" | "points_per_unit" | "max_points" => {
                        " (points belong to [[score.group.rule]])"
                    }
                    _ => "",
                };
                self.d.error(
                    &at.unwrap_or(span.clone()),
                    format!("`{key}` is not allowed in {role_name}{hint}"),
                );
            }
        }
    }

    /// Compiles the condition part of a clause (its subject and operators).
    pub(super) fn cond(
        &mut self,
        c: &RawClause,
        span: &Range<usize>,
        scope: CondScope<'_>,
    ) -> Option<Cond> {
        let composite = c.all.is_some() || c.any.is_some() || c.not.is_some();
        let grade = c.grade_at_least.is_some() || c.grade_at_most.is_some();
        let rollup = c.people_sum.is_some() || c.people_max.is_some() || c.people_avg.is_some();
        let score_subject = (c.score.is_some() || c.part.is_some())
            && c.tier.is_none()
            && c.rule.is_none()
            && !rollup
            && c.company_score.is_none();
        let subjects: Vec<&str> = [
            ("property", c.property.is_some()),
            ("event", c.event.is_some()),
            ("list", c.list.is_some()),
            ("score", score_subject),
            ("grade_at_least/grade_at_most", grade),
            ("tier", c.tier.is_some()),
            ("rule", c.rule.is_some()),
            ("stage", c.stage.is_some()),
            ("disqualified", c.disqualified.is_some()),
            ("company_score", c.company_score.is_some()),
            ("people_sum/people_max/people_avg", rollup),
            ("people_count", c.people_count.is_some()),
            ("roles", c.roles.is_some()),
            ("all/any/not", composite),
        ]
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(k, _)| k)
        .collect();
        match subjects.as_slice() {
            [] => {
                self.d.error(span, "a condition needs one subject: property, event, list, score, grade_at_least, tier, rule, stage, disqualified, company_score, a roll-up (people_sum, people_max, people_avg, people_count, roles), or all/any/not");
                return None;
            }
            [_] => {}
            [first, second, ..] => {
                self.d.error(span, format!(
                    "a condition has one subject but this one names both `{first}` and `{second}`: split it into conditions under `all = [...]`"
                ));
                return None;
            }
        }
        let derived = matches!(
            subjects[0],
            "score" | "grade_at_least/grade_at_most" | "tier" | "rule" | "stage" | "disqualified"
        );
        match (subjects[0], scope) {
            (
                "people_sum/people_max/people_avg" | "people_count" | "roles",
                CondScope::Company { people, stages },
            ) => return self.rollup_cond(c, span, subjects[0], people, stages),
            ("people_sum/people_max/people_avg" | "people_count" | "roles", _) => {
                self.d.error(span, format!(
                    "`{}` is a roll-up over a company's people: it belongs in a company score (`object = \"company\"`)",
                    subjects[0].split('/').next().unwrap_or("people_sum")
                ));
                return None;
            }
            ("company_score", CondScope::Record | CondScope::Stage { .. }) => {
                return self.company_score_cond(c, span);
            }
            ("company_score", _) => {
                self.d.error(span, "`company_score` is read by a contact's rules and stages (the company it belongs to); a company score reads its people with roll-ups");
                return None;
            }
            ("event" | "list", CondScope::Company { .. }) => {
                self.d.error(span, format!(
                    "a company score reads the company's properties and its people through roll-ups, not `{}`: count people with `people_count = {{ {} = ... }}`",
                    subjects[0], subjects[0]
                ));
                return None;
            }
            (_, CondScope::Company { .. }) if derived => {
                self.d.error(span, format!(
                    "`{}` reads a person's scorecard: in a company score, count such people with `people_count = {{ ... }}`",
                    subjects[0].split('/').next().unwrap_or("score")
                ));
                return None;
            }
            _ => {}
        }
        let (score, stage, scores, stages, person) = match scope {
            CondScope::Stage {
                score,
                stage,
                scores,
                stages,
            } => (score, stage, scores, stages, false),
            CondScope::Person { scores, stages } => (0, usize::MAX, scores, stages, true),
            _ => {
                if derived {
                    self.d.error(span, format!(
                    "`{}` can only be used in [[lifecycle.stage]] conditions: here only properties, events and lists are known",
                    subjects[0].split('/').next().unwrap_or("score")
                ));
                    return None;
                }
                return self.record_cond(c, span, subjects[0], scope);
            }
        };
        let allowed_ops: &[&str] = match subjects[0] {
            "score" => &[
                "score", "part", "gt", "gte", "lt", "lte", "between", "equals",
            ],
            "tier" | "rule" => &["score"],
            _ => &[],
        };
        if derived {
            self.check_ops(c, span, subjects[0], allowed_ops);
        }
        let score_index = |this: &mut Self, name: &Option<Spanned<String>>| -> Option<usize> {
            match name {
                None => Some(score),
                Some(n) => {
                    let found = scores
                        .iter()
                        .position(|s| s.name.eq_ignore_ascii_case(n.get_ref().trim()));
                    if found.is_none() {
                        this.d.error(
                            &n.span(),
                            format!(
                                "unknown score \"{}\": known scores are {}",
                                n.get_ref(),
                                names(scores.iter().map(|s| s.name.as_str()))
                            ),
                        );
                    }
                    found
                }
            }
        };
        match subjects[0] {
            "score" => {
                let index = score_index(self, &c.score)?;
                let part = match &c.part {
                    Some(p) => self.part(p, true)?,
                    None => Part::Total,
                };
                let range = self.score_range(c, span, "a score")?;
                Some(Cond::Score {
                    score: index as u16,
                    part,
                    range,
                })
            }
            "grade_at_least/grade_at_most" => {
                let min = self.grade(c.grade_at_least.as_ref())?;
                let max = self.grade(c.grade_at_most.as_ref())?;
                if let (Some(lo), Some(hi)) = (min, max)
                    && lo > hi
                {
                    self.d.error(span, format!("grade_at_least {lo} is above grade_at_most {hi}: the condition could never hold"));
                }
                Some(Cond::Grade { min, max })
            }
            "tier" => {
                let index = score_index(self, &c.score)?;
                let tier = c.tier.as_ref()?;
                let labels = tier.get_ref().clone().into_vec();
                let mut tiers = Vec::new();
                for label in labels {
                    match scores[index]
                        .tiers
                        .iter()
                        .position(|t| t.label.eq_ignore_ascii_case(label.trim()))
                    {
                        Some(t) => tiers.push(t as u16),
                        None => self.d.error(
                            &tier.span(),
                            format!(
                                "score \"{}\" has no tier \"{label}\": its tiers are {}",
                                scores[index].name,
                                names(scores[index].tiers.iter().map(|t| t.label.as_str()))
                            ),
                        ),
                    }
                }
                Some(Cond::Tier {
                    score: index as u16,
                    tiers,
                })
            }
            "rule" => {
                let index = score_index(self, &c.score)?;
                let rule = c.rule.as_ref()?;
                match scores[index]
                    .rules
                    .iter()
                    .position(|r| r.name.eq_ignore_ascii_case(rule.get_ref().trim()))
                {
                    Some(r) => Some(Cond::Fired {
                        score: index as u16,
                        rule: r as u16,
                    }),
                    None => {
                        self.d.error(
                            &rule.span(),
                            format!(
                                "score \"{}\" has no rule \"{}\"",
                                scores[index].name,
                                rule.get_ref()
                            ),
                        );
                        None
                    }
                }
            }
            "disqualified" => Some(Cond::Disqualified(*c.disqualified.as_ref()?.get_ref())),
            "stage" => {
                let wanted = c.stage.as_ref()?;
                match stages
                    .iter()
                    .position(|s| s.eq_ignore_ascii_case(wanted.get_ref().trim()))
                {
                    Some(s) if person => Some(Cond::PersonStage(s as u16)),
                    Some(s) if s < stage => Some(Cond::Stage(s as u16)),
                    Some(_) => {
                        self.d.error(&wanted.span(), format!(
                            "stage \"{}\" can only refer to earlier stages, and \"{}\" is not earlier",
                            stages[stage], wanted.get_ref()
                        ));
                        None
                    }
                    None => {
                        self.d.error(
                            &wanted.span(),
                            format!(
                                "unknown stage \"{}\": stages are {}",
                                wanted.get_ref(),
                                names(stages.iter().map(String::as_str))
                            ),
                        );
                        None
                    }
                }
            }
            _ => self.record_cond(c, span, subjects[0], scope),
        }
    }

    /// Conditions on the record itself: property, event, list, and composites.
    pub(super) fn record_cond(
        &mut self,
        c: &RawClause,
        span: &Range<usize>,
        subject: &str,
        scope: CondScope<'_>,
    ) -> Option<Cond> {
        match subject {
            "property" => {
                self.check_ops(c, span, "property", PROPERTY_OPS);
                self.property_cond(c, span)
            }
            "event" => {
                self.check_ops(c, span, "event", EVENT_OPS);
                let absent = c.absent.as_ref().is_some_and(|a| *a.get_ref());
                let window_ms = match &c.within_days {
                    Some(w) => Some(self.days(w, "within_days")?),
                    None => None,
                };
                let (min, max) = if absent {
                    if let Some(m) = c.min_count.as_ref().or(c.max_count.as_ref()) {
                        self.d.error(
                            &m.span(),
                            "`absent` cannot be combined with `min_count`/`max_count`",
                        );
                        return None;
                    }
                    if window_ms.is_none() {
                        self.d
                            .error(span, "`absent` needs a time window: add `within_days`");
                        return None;
                    }
                    (0, 0)
                } else {
                    self.count_range(c, 1)?
                };
                let matcher = self.matcher(c, window_ms, None, 0.0, u32::MAX, 1)?;
                Some(Cond::Events { matcher, min, max })
            }
            "list" => {
                self.check_ops(c, span, "list", &[]);
                let list = c.list.as_ref()?;
                Some(Cond::List(self.list_slot(list.get_ref())))
            }
            _ => {
                self.check_ops(c, span, "all/any/not", &[]);
                let mut parts = Vec::new();
                let join_all: fn(Vec<Cond>) -> Cond = Cond::All;
                let join_any: fn(Vec<Cond>) -> Cond = Cond::Any;
                for (word, items, join) in [("all", &c.all, join_all), ("any", &c.any, join_any)] {
                    let Some(items) = items else { continue };
                    let inner: Vec<Cond> =
                        items.iter().filter_map(|i| self.nested(i, scope)).collect();
                    if inner.len() != items.len() {
                        return None;
                    }
                    if items.is_empty() {
                        self.d.error(
                            span,
                            format!("`{word}` is empty: list at least one condition"),
                        );
                    }
                    parts.push(join(inner));
                }
                if let Some(item) = &c.not {
                    parts.push(Cond::Not(Box::new(self.nested(item, scope)?)));
                }
                Some(if parts.len() == 1 {
                    parts.pop()?
                } else {
                    Cond::All(parts)
                })
            }
        }
    }

    pub(super) fn nested(
        &mut self,
        item: &Spanned<RawClause>,
        scope: CondScope<'_>,
    ) -> Option<Cond> {
        let span = item.span();
        self.check_role_keys(item.get_ref(), &span, Role::Condition);
        self.cond(item.get_ref(), &span, scope)
    }

    /// Reports operator keys that make no sense for the clause's subject.
    pub(super) fn check_ops(
        &mut self,
        c: &RawClause,
        span: &Range<usize>,
        subject: &str,
        allowed: &[&str],
    ) {
        for (key, at) in condition_keys(c) {
            let is_subject_key = matches!(
                (subject, key),
                ("property", "property")
                    | ("event", "event")
                    | ("list", "list")
                    | ("score", "score")
                    | ("score", "part")
                    | ("tier", "tier")
                    | ("rule", "rule")
                    | ("stage", "stage")
                    | ("disqualified", "disqualified")
                    | ("company_score", "company_score")
                    | ("people_count", "people_count")
                    | ("roles", "roles")
                    | (
                        "people_sum/people_max/people_avg",
                        "people_sum" | "people_max" | "people_avg"
                    )
                    | (
                        "grade_at_least/grade_at_most",
                        "grade_at_least" | "grade_at_most"
                    )
                    | ("all/any/not", "all" | "any" | "not")
            );
            if !is_subject_key && !allowed.contains(&key) {
                let hint = match subject {
                    "event" => {
                        "; events are filtered with url, campaign, form_id, asset, attributes, within_days, min_count, max_count, absent"
                    }
                    "property" => {
                        "; properties are tested with equals, one_of, contains, starts_with, ends_with, regex, gt, gte, lt, lte, between, is_set, before, after, within_days, older_than_days"
                    }
                    _ => "",
                };
                self.d.error(
                    &at.unwrap_or(span.clone()),
                    format!(
                        "`{key}` does not apply to a `{}` condition{hint}",
                        subject.split('/').next().unwrap_or(subject)
                    ),
                );
            }
        }
    }

    pub(super) fn property_cond(&mut self, c: &RawClause, span: &Range<usize>) -> Option<Cond> {
        let property = c.property.as_ref()?;
        let slot = self.prop_slot(property);
        if let Some(set) = &c.is_set {
            let others = condition_keys(c)
                .into_iter()
                .filter(|(k, _)| !matches!(*k, "property" | "is_set"))
                .count();
            if others > 0 {
                self.d.error(
                    &set.span(),
                    "`is_set` stands alone: other operators already require a value",
                );
                return None;
            }
            return Some(self.prop_check(slot, PropCheck::IsSet(*set.get_ref())));
        }
        let case_sensitive = c.case_sensitive.unwrap_or(false);
        let folded = !case_sensitive;
        let mut tests = Vec::new();
        let mut text_ops = 0;
        let text = |this: &mut Self,
                    op: TextOp,
                    needles: Vec<String>,
                    at: Range<usize>,
                    tests: &mut Vec<PropTest>| {
            if needles.is_empty() || needles.iter().any(|n| n.is_empty()) {
                this.d.error(
                    &at,
                    "text to compare with is empty: to test for a value use `is_set = true`",
                );
                return;
            }
            let needles = needles
                .into_iter()
                .map(|n| if folded { n.to_lowercase() } else { n }.into_boxed_str())
                .collect();
            tests.push(PropTest::Text {
                op,
                needles,
                folded,
            });
        };
        if let Some(eq) = &c.equals {
            match eq.get_ref() {
                RawScalar::Text(t) => {
                    text_ops += 1;
                    text(self, TextOp::Equals, vec![t.clone()], eq.span(), &mut tests)
                }
                RawScalar::Int(i) => tests.push(PropTest::NumberEquals(*i as f64)),
                RawScalar::Float(f) => tests.push(PropTest::NumberEquals(*f)),
                RawScalar::Bool(b) => tests.push(PropTest::Bool(*b)),
            }
        }
        if let Some(list) = &c.one_of {
            text_ops += 1;
            let needles = list.get_ref().iter().map(scalar_text).collect();
            text(self, TextOp::Equals, needles, list.span(), &mut tests);
        }
        for (op, value) in [
            (TextOp::Contains, &c.contains),
            (TextOp::StartsWith, &c.starts_with),
            (TextOp::EndsWith, &c.ends_with),
        ] {
            if let Some(v) = value {
                text_ops += 1;
                text(
                    self,
                    op,
                    v.get_ref().clone().into_vec(),
                    v.span(),
                    &mut tests,
                );
            }
        }
        if let Some(pattern) = &c.regex {
            text_ops += 1;
            match regex::RegexBuilder::new(pattern.get_ref())
                .case_insensitive(!case_sensitive)
                .size_limit(1 << 20)
                .build()
            {
                Ok(regex) => tests.push(PropTest::Regex(regex)),
                Err(e) => {
                    let detail = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .to_owned();
                    self.d.error(
                        &pattern.span(),
                        format!(
                            "bad regex {:?}: {}",
                            pattern.get_ref(),
                            detail.trim_start_matches("error: ")
                        ),
                    );
                }
            }
        }
        if c.case_sensitive.is_some() && text_ops == 0 {
            self.d.error(span, "`case_sensitive` applies to equals, one_of, contains, starts_with, ends_with and regex");
        }
        let range = self.num_range(c, span)?;
        let numeric = range != NumRange::default()
            || tests.iter().any(|t| matches!(t, PropTest::NumberEquals(_)));
        if range != NumRange::default() {
            tests.push(PropTest::Number(range));
        }
        let after = self.date(c.after.as_ref());
        let before = self.date(c.before.as_ref());
        if let (Some(a), Some(b)) = (after, before)
            && a > b
        {
            self.d.error(
                span,
                "`after` is later than `before`: the condition could never hold",
            );
        }
        let mut dated = false;
        if after.is_some() || before.is_some() {
            tests.push(PropTest::DateAbsolute { after, before });
            dated = true;
        }
        if let Some(w) = &c.within_days {
            tests.push(PropTest::DateWithin(self.days(w, "within_days")?));
            dated = true;
        }
        if let Some(w) = &c.older_than_days {
            tests.push(PropTest::DateOlderThan(self.days(w, "older_than_days")?));
            dated = true;
        }
        if tests.is_empty() {
            let has_operator = condition_keys(c)
                .iter()
                .any(|(k, _)| PROPERTY_OPS.contains(k) || EVENT_OPS.contains(k));
            if !has_operator {
                self.d.error(span, format!(
                    "property \"{}\" needs an operator: equals, one_of, contains, starts_with, ends_with, regex, gt, gte, lt, lte, between, is_set, before, after, within_days or older_than_days",
                    property.get_ref()
                ));
            }
            return None;
        }
        let spec = &mut self.schema.props[slot as usize];
        spec.needs_folded |= folded && text_ops > 0;
        spec.needs_number |= numeric;
        spec.needs_time |= dated;
        Some(self.prop_check(slot, PropCheck::Value(tests)))
    }

    /// A property condition: precomputed per record unless it reads `now`.
    pub(super) fn prop_check(&mut self, slot: u32, check: PropCheck) -> Cond {
        let reads_now = matches!(&check, PropCheck::Value(tests)
            if tests.iter().any(|t| matches!(t, PropTest::DateWithin(_) | PropTest::DateOlderThan(_))));
        if reads_now {
            return Cond::Prop { slot, check };
        }
        self.static_checks.push((slot, check));
        Cond::Static(self.static_checks.len() as u32 - 1)
    }

    pub(super) fn num_range(&mut self, c: &RawClause, span: &Range<usize>) -> Option<NumRange> {
        let mut range = NumRange::default();
        if let Some(v) = &c.gt {
            range.lo = Some((*v.get_ref(), false));
        }
        if let Some(v) = &c.gte {
            if range.lo.is_some() {
                self.d.error(&v.span(), "give `gt` or `gte`, not both");
            }
            range.lo = Some((*v.get_ref(), true));
        }
        if let Some(v) = &c.lt {
            range.hi = Some((*v.get_ref(), false));
        }
        if let Some(v) = &c.lte {
            if range.hi.is_some() {
                self.d.error(&v.span(), "give `lt` or `lte`, not both");
            }
            range.hi = Some((*v.get_ref(), true));
        }
        if let Some(b) = &c.between {
            if range != NumRange::default() {
                self.d.error(
                    &b.span(),
                    "`between` cannot be combined with gt, gte, lt or lte",
                );
                return None;
            }
            match b.get_ref().as_slice() {
                [lo, hi] if lo <= hi => {
                    range = NumRange {
                        lo: Some((*lo, true)),
                        hi: Some((*hi, true)),
                    }
                }
                _ => {
                    self.d.error(
                        &b.span(),
                        "`between` takes two numbers, lowest first, e.g. between = [10, 50]",
                    );
                    return None;
                }
            }
        }
        if let (Some((lo, lo_inc)), Some((hi, hi_inc))) = (range.lo, range.hi)
            && (lo > hi || (lo == hi && !(lo_inc && hi_inc)))
        {
            self.d.error(
                span,
                format!("the range {lo} … {hi} is empty: the condition could never hold"),
            );
            return None;
        }
        Some(range)
    }

    pub(super) fn date(&mut self, value: Option<&Spanned<String>>) -> Option<i64> {
        let value = value?;
        let parsed = parse_time(value.get_ref());
        if parsed.is_none() {
            self.d.error(
                &value.span(),
                format!(
                    "{:?} is not a date: write 2026-01-31 or 2026-01-31T12:00:00Z",
                    value.get_ref()
                ),
            );
        }
        parsed
    }

    pub(super) fn grade(&mut self, value: Option<&Spanned<String>>) -> Option<Option<Grade>> {
        let Some(value) = value else {
            return Some(None);
        };
        match Grade::parse(value.get_ref()) {
            Some(g) => Some(Some(g)),
            None => {
                self.d.error(&value.span(), format!("unknown grade \"{}\": grades run F, D-, D, D+, C-, C, C+, B-, B, B+, A-, A, A+", value.get_ref()));
                None
            }
        }
    }

    pub(super) fn step(&mut self, value: Option<&Spanned<String>>) -> Option<Option<GradeStep>> {
        let Some(value) = value else {
            return Some(None);
        };
        match GradeStep::parse(value.get_ref()) {
            Some(s) => Some(Some(s)),
            None => {
                self.d.error(
                    &value.span(),
                    format!(
                        "unknown grade step \"{}\": expected {}",
                        value.get_ref(),
                        GradeStep::ACCEPTED
                    ),
                );
                None
            }
        }
    }
}

const PROPERTY_OPS: &[&str] = &[
    "equals",
    "one_of",
    "contains",
    "starts_with",
    "ends_with",
    "regex",
    "case_sensitive",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "is_set",
    "before",
    "after",
    "within_days",
    "older_than_days",
];
const EVENT_OPS: &[&str] = &[
    "url",
    "campaign",
    "form_id",
    "asset",
    "attributes",
    "within_days",
    "min_count",
    "max_count",
    "absent",
];

impl Compiler<'_> {
    /// The comparison of a score-like number (`gt`, `gte`, `lt`, `lte`,
    /// `between`, `equals`); `what` names the subject in the message.
    fn score_range(&mut self, c: &RawClause, span: &Range<usize>, what: &str) -> Option<NumRange> {
        let mut range = self.num_range(c, span)?;
        if let Some(eq) = &c.equals {
            let value = match eq.get_ref() {
                RawScalar::Int(i) => *i as f64,
                RawScalar::Float(f) => *f,
                _ => {
                    self.d
                        .error(&eq.span(), format!("{what} is compared with a number"));
                    return None;
                }
            };
            range = NumRange {
                lo: Some((value, true)),
                hi: Some((value, true)),
            };
        }
        if range == NumRange::default() {
            self.d.error(
                span,
                format!("{what} condition needs a comparison: gt, gte, lt, lte, between or equals"),
            );
            return None;
        }
        Some(range)
    }

    /// `{ company_score = "account", part = "fit", gte = 60 }`: the
    /// contact's company's score, known once the company is scored.
    fn company_score_cond(&mut self, c: &RawClause, span: &Range<usize>) -> Option<Cond> {
        self.check_ops(
            c,
            span,
            "company_score",
            &["part", "gt", "gte", "lt", "lte", "between", "equals"],
        );
        let name = c.company_score.as_ref()?;
        let wanted = name.get_ref().trim();
        let Some(index) = self
            .company_scores
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(wanted))
            .map(|(i, _)| *i)
        else {
            let close = self
                .company_scores
                .iter()
                .map(|(_, n)| {
                    (
                        strsim::damerau_levenshtein(&n.to_lowercase(), &wanted.to_lowercase()),
                        n,
                    )
                })
                .filter(|(d, n)| *d <= 2.max(n.len() / 4))
                .min();
            let message = match close {
                Some((_, n)) => {
                    format!("unknown company score \"{wanted}\": did you mean \"{n}\"?")
                }
                None => format!(
                    "unknown company score \"{wanted}\": company scores (`object = \"company\"`) are {}",
                    names(self.company_scores.iter().map(|(_, n)| n.as_str()))
                ),
            };
            self.d.error(&name.span(), message);
            return None;
        };
        let part = match &c.part {
            Some(p) => self.part(p, true)?,
            None => Part::Total,
        };
        let range = self.score_range(c, span, "a company score")?;
        self.reads_company_score = true;
        Some(Cond::CompanyScore {
            score: index as u16,
            part,
            range,
        })
    }

    /// Roll-ups over a company's people: `people_sum`/`people_max`/
    /// `people_avg` of a contact score, `people_count` of people meeting a
    /// condition, `roles` that distinct people cover.
    fn rollup_cond(
        &mut self,
        c: &RawClause,
        span: &Range<usize>,
        subject: &str,
        people: &[Score],
        stages: &[String],
    ) -> Option<Cond> {
        let find_score = |this: &mut Self, name: &Spanned<String>| -> Option<usize> {
            let wanted = name.get_ref().trim();
            let found = people
                .iter()
                .position(|s| s.name.eq_ignore_ascii_case(wanted));
            if found.is_none() {
                this.d.error(
                    &name.span(),
                    format!(
                        "unknown contact score \"{wanted}\": roll-ups read contact scores, which are {}",
                        names(people.iter().map(|s| s.name.as_str()))
                    ),
                );
            }
            found
        };
        match subject {
            "people_count" => {
                self.check_ops(
                    c,
                    span,
                    subject,
                    &["gt", "gte", "lt", "lte", "between", "equals"],
                );
                let inner = c.people_count.as_ref()?;
                let ispan = inner.span();
                self.check_role_keys(inner.get_ref(), &ispan, Role::Condition);
                // Inside, properties are the person's again.
                let company_props = std::mem::replace(&mut self.company_props, false);
                let cond = self.cond(
                    inner.get_ref(),
                    &ispan,
                    CondScope::Person {
                        scores: people,
                        stages,
                    },
                );
                self.company_props = company_props;
                let cond = cond?;
                let range = if condition_keys(c).len() > 1 {
                    self.score_range(c, span, "a people count")?
                } else {
                    // "Some person who ..." by default.
                    NumRange {
                        lo: Some((1.0, true)),
                        hi: None,
                    }
                };
                Some(Cond::PeopleCount {
                    cond: Box::new(cond),
                    range,
                })
            }
            "roles" => {
                self.check_ops(c, span, subject, &[]);
                let roles = c.roles.as_ref()?;
                if roles.get_ref().is_empty() || roles.get_ref().len() > 16 {
                    self.d.error(
                        &roles.span(),
                        "`roles` lists 1 to 16 contact rule names, one per role of the buying group",
                    );
                    return None;
                }
                let mut conds = Vec::new();
                for role in roles.get_ref() {
                    let wanted = role.trim();
                    let found = people.iter().enumerate().find_map(|(s, score)| {
                        score
                            .rules
                            .iter()
                            .position(|r| r.name.eq_ignore_ascii_case(wanted))
                            .map(|r| (s, r))
                    });
                    match found {
                        Some((score, rule)) => conds.push(Cond::Fired {
                            score: score as u16,
                            rule: rule as u16,
                        }),
                        None => {
                            let all = people
                                .iter()
                                .flat_map(|s| s.rules.iter().map(|r| r.name.as_str()));
                            let hint = all
                                .map(|n| (strsim::damerau_levenshtein(&n.to_lowercase(), &wanted.to_lowercase()), n))
                                .filter(|(d, n)| *d <= 2.max(n.len() / 4))
                                .min()
                                .map(|(_, n)| format!(": did you mean \"{n}\"?"))
                                .unwrap_or_else(|| ": a role is the name of a contact rule that marks it (e.g. a job-title rule)".to_owned());
                            self.d
                                .error(&roles.span(), format!("unknown role \"{wanted}\"{hint}"));
                        }
                    }
                }
                (conds.len() == roles.get_ref().len()).then_some(Cond::Roles(conds))
            }
            _ => {
                self.check_ops(
                    c,
                    span,
                    "people_sum/people_max/people_avg",
                    &["part", "gt", "gte", "lt", "lte", "between", "equals"],
                );
                let (agg, name) = match (&c.people_sum, &c.people_max, &c.people_avg) {
                    (Some(n), None, None) => (Agg::Sum, n),
                    (None, Some(n), None) => (Agg::Max, n),
                    (None, None, Some(n)) => (Agg::Avg, n),
                    _ => {
                        self.d.error(span, "a roll-up takes one of people_sum, people_max and people_avg: split it into conditions under `all = [...]`");
                        return None;
                    }
                };
                let score = find_score(self, name)?;
                let part = match &c.part {
                    Some(p) => self.part(p, true)?,
                    None => Part::Total,
                };
                let range = self.score_range(c, span, "a roll-up")?;
                Some(Cond::Rollup {
                    agg,
                    score: score as u16,
                    part,
                    range,
                })
            }
        }
    }
}
