//! Rules: property, per-unit and event criteria, the event matchers and
//! attribute patterns they share, and the warnings about them.

use super::*;

impl Compiler<'_> {
    pub(super) fn rule(
        &mut self,
        clause: RawClause,
        span: &Range<usize>,
        ctx: &GroupCtx<'_>,
        rule_names: &mut HashMap<String, Range<usize>>,
    ) -> Option<(Rule, Bound)> {
        let role = match ctx.part {
            Some(Part::Fit) => Role::FitRule,
            _ => Role::EngagementRule,
        };
        self.check_role_keys(&clause, span, role);
        let name = match &clause.name {
            Some(n) => {
                if !self.unique(rule_names, n, "rule") {
                    return None;
                }
                n.get_ref().trim().to_owned()
            }
            None => {
                self.d.error(
                    span,
                    "rule has no `name`: every rule needs one for explanations",
                );
                return None;
            }
        };
        let group = ctx.index as u16;
        if let Some(per_unit) = &clause.points_per_unit {
            let Some(property) = &clause.property else {
                self.d.error(
                    &per_unit.span(),
                    "`points_per_unit` needs a numeric `property` to count",
                );
                return None;
            };
            if clause.points.is_some() {
                self.d.error(
                    &per_unit.span(),
                    "give either `points` or `points_per_unit`, not both",
                );
            }
            let stray = condition_keys(&clause)
                .into_iter()
                .find(|(k, _)| *k != "property");
            if let Some((key, at)) = stray {
                self.d.error(
                    &at.unwrap_or(span.clone()),
                    format!("`{key}` cannot be combined with `points_per_unit`"),
                );
            }
            let slot = self.prop_slot(property);
            self.schema.props[slot as usize].needs_number = true;
            let per_unit_value = *per_unit.get_ref();
            let max_points = clause.max_points.as_ref().map(|m| *m.get_ref());
            if let Some(m) = &clause.max_points
                && m.get_ref().signum() != per_unit_value.signum()
                && *m.get_ref() != 0.0
            {
                self.d.error(
                    &m.span(),
                    "`max_points` must have the same sign as `points_per_unit`",
                );
            }
            let bound = match max_points {
                Some(m) if m >= 0.0 => Bound {
                    max: Some(m),
                    min: Some(0.0),
                },
                Some(m) => Bound {
                    max: Some(0.0),
                    min: Some(m),
                },
                None => Bound {
                    max: None,
                    min: None,
                },
            };
            let kind = RuleKind::PerUnit {
                slot,
                per_unit: per_unit_value,
                max_points,
            };
            return Some((
                Rule {
                    name,
                    group,
                    points: per_unit_value,
                    kind,
                },
                bound,
            ));
        }
        if let Some(m) = &clause.max_points {
            self.d.error(&m.span(), "`max_points` goes with `points_per_unit`; per-occurrence rules use `max_occurrences`");
        }
        let Some(points_spanned) = &clause.points else {
            self.d
                .error(span, format!("rule \"{name}\" has no `points`"));
            return None;
        };
        let points = *points_spanned.get_ref();
        if !points.is_finite() {
            self.d
                .error(&points_spanned.span(), "`points` must be a finite number");
            return None;
        }
        if let Some(event) = &clause.event {
            if self.company_props {
                self.d.error(&event.span(), "a company score has no events of its own: read its people's engagement with people_sum, people_max, people_avg or people_count");
                return None;
            }
            if role == Role::FitRule {
                self.d.error(&event.span(), "event rules belong in an engagement group: fit is about who a person is, not what they did");
                return None;
            }
            let (kind, bound) = self.event_rule(&clause, span, ctx, points)?;
            return Some((
                Rule {
                    name,
                    group,
                    points,
                    kind,
                },
                bound,
            ));
        }
        for (key, value) in [
            ("once", clause.once.as_ref().map(Spanned::span)),
            (
                "max_occurrences",
                clause.max_occurrences.as_ref().map(Spanned::span),
            ),
        ] {
            if let (Some(at), Role::EngagementRule) = (value, role) {
                self.d.error(&at, format!("`{key}` applies to event rules"));
            }
        }
        let cond = self.cond(&clause, span, ctx.scope)?;
        Some((
            Rule {
                name,
                group,
                points,
                kind: RuleKind::Condition(cond),
            },
            Bound::single(points),
        ))
    }

    pub(super) fn event_rule(
        &mut self,
        clause: &RawClause,
        span: &Range<usize>,
        ctx: &GroupCtx<'_>,
        points: f64,
    ) -> Option<(RuleKind, Bound)> {
        let own_window = match &clause.within_days {
            Some(w) => {
                if ctx.decay.is_some() {
                    self.d.error(&w.span(), "this rule's group has `decay`: a group cannot have both decay and a time window (as in HubSpot)");
                }
                self.days(w, "within_days")
            }
            None => None,
        };
        let window_ms = own_window.or(ctx.window_ms);
        let absent = clause.absent.as_ref().is_some_and(|a| *a.get_ref());
        let once = clause.once.as_ref().is_some_and(|o| *o.get_ref());
        let counted = clause.min_count.is_some() || clause.max_count.is_some();
        let exclusive: Vec<(&str, Range<usize>)> = [
            (
                "absent",
                clause
                    .absent
                    .as_ref()
                    .filter(|a| *a.get_ref())
                    .map(Spanned::span),
            ),
            (
                "once",
                clause
                    .once
                    .as_ref()
                    .filter(|o| *o.get_ref())
                    .map(Spanned::span),
            ),
            ("min_count", clause.min_count.as_ref().map(Spanned::span)),
            ("max_count", clause.max_count.as_ref().map(Spanned::span)),
            (
                "max_occurrences",
                clause.max_occurrences.as_ref().map(Spanned::span),
            ),
        ]
        .into_iter()
        .filter_map(|(k, s)| s.map(|s| (k, s)))
        .collect();
        let modes = [absent, once, counted, clause.max_occurrences.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if modes > 1 {
            let names: Vec<&str> = exclusive.iter().map(|(k, _)| *k).collect();
            self.d.error(&exclusive[1].1, format!(
                "choose one way to count: `absent`, `once`, `min_count`/`max_count` or `max_occurrences` (got {})",
                names.join(", ")
            ));
            return None;
        }
        let mode = if absent {
            if window_ms.is_none() {
                let at = clause.absent.as_ref().map_or(span.clone(), Spanned::span);
                self.d.error(&at, "`absent` needs a time window: add `within_days` (\"no email open in the last 60 days\")");
                return None;
            }
            EventMode::Absent
        } else if once {
            EventMode::Once
        } else if counted {
            let (min, max) = self.count_range(clause, 1)?;
            EventMode::Threshold { min, max }
        } else {
            EventMode::Each
        };
        let take = match &clause.max_occurrences {
            Some(m) if *m.get_ref() >= 1 => (*m.get_ref()).min(u32::MAX as i64) as u32,
            Some(m) => {
                self.d.error(
                    &m.span(),
                    format!("`max_occurrences` must be at least 1, got {}", m.get_ref()),
                );
                return None;
            }
            None => u32::MAX,
        };
        let nth = match mode {
            EventMode::Threshold { min, .. } => min.max(1),
            _ => 1,
        };
        let each_points = if mode == EventMode::Each { points } else { 0.0 };
        let matcher = self.matcher(clause, window_ms, ctx.decay, each_points, take, nth)?;
        let bound = match mode {
            EventMode::Each if take == u32::MAX => {
                if points >= 0.0 {
                    Bound {
                        max: None,
                        min: Some(0.0),
                    }
                } else {
                    Bound {
                        max: Some(0.0),
                        min: None,
                    }
                }
            }
            EventMode::Each => Bound::single(points * f64::from(take)),
            _ => Bound::single(points),
        };
        Some((RuleKind::Events { matcher, mode }, bound))
    }

    pub(super) fn count_range(
        &mut self,
        clause: &RawClause,
        default_min: i64,
    ) -> Option<(u32, u32)> {
        let min = clause
            .min_count
            .as_ref()
            .map_or(default_min, |m| *m.get_ref());
        let max = clause
            .max_count
            .as_ref()
            .map_or(u32::MAX as i64, |m| *m.get_ref());
        if let Some(m) = &clause.min_count
            && *m.get_ref() < 1
        {
            self.d.error(
                &m.span(),
                "`min_count` must be at least 1: for \"never\" use `absent = true`",
            );
            return None;
        }
        if let Some(m) = &clause.max_count
            && (max < min || max < 0)
        {
            self.d.error(
                &m.span(),
                format!("`max_count` {max} is below `min_count` {min}: the rule could never match"),
            );
            return None;
        }
        Some((
            min.clamp(0, u32::MAX as i64) as u32,
            max.clamp(0, u32::MAX as i64) as u32,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn matcher(
        &mut self,
        clause: &RawClause,
        window_ms: Option<i64>,
        decay: Option<Decay>,
        points: f64,
        take: u32,
        nth: u32,
    ) -> Option<u32> {
        let event = clause.event.as_ref()?;
        let type_name = event.get_ref().trim();
        if type_name.is_empty() {
            self.d.error(
                &event.span(),
                "event type is empty: name one (page_view, email_open, …) or \"any\"",
            );
            return None;
        }
        let kind = if type_name.eq_ignore_ascii_case("any") {
            None
        } else {
            if !crate::model::STANDARD_EVENT_TYPES.contains(&type_name) {
                let (_, warning) = self.d.locate(&event.span(), unknown_event_type(type_name));
                self.unknown_types.push((type_name.to_owned(), warning));
            }
            Some(self.event_type(type_name))
        };
        let mut filters = Vec::new();
        let shorthand = [
            ("url", &clause.url),
            ("campaign", &clause.campaign),
            ("form_id", &clause.form_id),
            ("asset", &clause.asset),
        ];
        let mut ok = true;
        for (attr, pattern) in shorthand {
            if let Some(p) = pattern {
                ok &= self.filter(attr, p.get_ref(), &p.span(), &mut filters);
            }
        }
        if let Some(attrs) = &clause.attributes {
            for (attr, pattern) in attrs.get_ref() {
                ok &= self.filter(attr, pattern, &attrs.span(), &mut filters);
            }
        }
        if !ok {
            return None;
        }
        let required = filters
            .iter()
            .fold(0u128, |mask, &p| mask | 1u128.checked_shl(p).unwrap_or(0));
        let matcher = EventMatcher {
            kind,
            required,
            window_ms,
            points,
            decay,
            take,
            nth,
        };
        // Rules and conditions that wrote the same filter share one tally.
        if let Some(existing) = self.matchers.iter().position(|m| *m == matcher) {
            return Some(existing as u32);
        }
        self.matchers.push(matcher);

        Some(self.matchers.len() as u32 - 1)
    }

    pub(super) fn filter(
        &mut self,
        attr: &str,
        pattern: &str,
        span: &Range<usize>,
        filters: &mut Vec<u32>,
    ) -> bool {
        match Pattern::glob(pattern) {
            Ok(p) => {
                if url_like(attr) && !pattern.contains(['*', '?']) {
                    self.d.warn(
                        span,
                        format!(
                            "`{attr} = {pattern:?}` has no wildcard, so it matches only that exact {attr}: write \"*{}*\" to match it anywhere in the {attr}",
                            pattern.trim_matches('/')
                        ),
                    );
                }
                let slot = self.attr_slot(attr);
                let index = match self
                    .patterns
                    .iter()
                    .position(|q| q.slot == slot && q.pattern == p)
                {
                    Some(existing) => existing,
                    None if self.patterns.len() >= MAX_PATTERNS => {
                        self.d.error(span, format!("the model uses more than {MAX_PATTERNS} distinct event attribute patterns: share patterns between rules"));
                        return false;
                    }
                    None => {
                        self.patterns.push(AttrPattern {
                            slot,
                            pattern: p,
                            glob: pattern.to_owned(),
                        });
                        self.patterns.len() - 1
                    }
                };
                filters.push(index as u32);
                true
            }
            Err(e) => {
                self.d
                    .error(span, format!("bad pattern {pattern:?} for `{attr}`: {e}"));
                false
            }
        }
    }
}
