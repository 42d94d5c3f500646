//! Scores, their groups, decay and windows: `[[score]]` and
//! `[[score.group]]`, with the caps each can reach.

use super::*;

impl Compiler<'_> {
    pub(super) fn score(
        &mut self,
        value: Value<'_>,
        names: &mut HashMap<String, Range<usize>>,
        scope: CondScope<'_>,
    ) -> Option<Score> {
        let span = value.span();
        let (rest, group_values) = self.split(value, "group", "[[score.group]]");
        let raw: Option<RawScore> = self.decode(rest);
        let object = match raw.as_ref().and_then(|r| r.object.as_ref()) {
            None => Object::Contact,
            Some(o) => match object_named(o.get_ref()) {
                Some(object) => object,
                None => {
                    self.d.error(&o.span(), format!(
                        "unknown object \"{}\": a score is about a \"contact\" (the default) or a \"company\"",
                        o.get_ref()
                    ));
                    Object::Contact
                }
            },
        };
        // In a company score, a bare property name is the company's.
        self.company_props = object == Object::Company;
        let mut groups = Vec::new();
        let mut rules = Vec::new();
        let mut group_names = HashMap::new();
        let mut rule_names = HashMap::new();
        let mut bounds = Vec::new();
        if group_values.is_empty() {
            self.d.error(
                &span,
                "score has no [[score.group]]: add at least one group of rules",
            );
        }
        for group_value in group_values {
            if let Some((group, rule_list, bound)) = self.group(
                group_value,
                groups.len(),
                &mut group_names,
                &mut rule_names,
                scope,
            ) {
                groups.push(group);
                rules.extend(rule_list);
                bounds.push(bound);
            }
        }
        self.company_props = false;
        let raw = raw?;
        if !self.unique(names, &raw.name, "score") {
            return None;
        }
        let name = raw.name.get_ref().trim().to_owned();
        let cap = raw.cap.as_ref().map_or(100.0, |c| *c.get_ref());
        if let Some(c) = &raw.cap {
            if *c.get_ref() <= 0.0 {
                self.d.error(
                    &c.span(),
                    format!("score cap must be above 0, got {}", c.get_ref()),
                );
            } else if bounds.iter().all(|b: &Bound| b.max.is_some()) && !bounds.is_empty() {
                let reachable: f64 = bounds.iter().filter_map(|b| b.max).sum();
                if reachable < cap {
                    self.d.warn(&c.span(), format!(
                        "score cap {cap} can never be reached: its groups give at most {} together (fine as a cap for rules to come)",
                        tidy(reachable)
                    ));
                }
            }
        }
        let floor = raw.floor.as_ref().map(|f| *f.get_ref());
        if let (Some(f), Some(fs)) = (floor, &raw.floor)
            && f >= cap
        {
            self.d.error(
                &fs.span(),
                format!("score floor {f} must be below its cap {cap}"),
            );
        }
        let tier_on = match &raw.tier_on {
            None => Part::Total,
            Some(p) => self.part(p, true).unwrap_or(Part::Total),
        };
        let mut tiers: Vec<Tier> = Vec::new();
        let mut tier_labels = HashMap::new();
        for tier in &raw.tiers {
            let tier = tier.get_ref();
            self.unique(&mut tier_labels, &tier.label, "tier");
            if let Some(previous) = tiers.last()
                && *tier.min.get_ref() <= previous.min
            {
                self.d.error(&tier.min.span(), format!(
                        "tier \"{}\" min {} must be above the previous tier's min {}: list tiers from lowest to highest",
                        tier.label.get_ref(), tier.min.get_ref(), previous.min
                    ));
            }
            tiers.push(Tier {
                label: tier.label.get_ref().trim().to_owned(),
                min: *tier.min.get_ref(),
            });
        }
        let matrix = raw.matrix.as_ref().and_then(|m| {
            let fit = self.matrix_axis(&m.get_ref().fit, "fit");
            let engagement = self.matrix_axis(&m.get_ref().engagement, "engagement");
            Some(Matrix {
                fit: fit?,
                engagement: engagement?,
            })
        });
        Some(Score {
            label: raw.label.unwrap_or_else(|| name.clone()),
            name,
            object,
            cap,
            floor,
            groups,
            rules,
            tiers,
            tier_on,
            matrix,
            stages: Vec::new(),
        })
    }

    pub(super) fn matrix_axis(&mut self, axis: &Spanned<Vec<f64>>, what: &str) -> Option<[f64; 2]> {
        match axis.get_ref().as_slice() {
            [high, mid] if high > mid => Some([*high, *mid]),
            _ => {
                self.d.error(
                    &axis.span(),
                    format!(
                        "matrix `{what}` must be two lower bounds, highest first, e.g. [60, 30]"
                    ),
                );
                None
            }
        }
    }

    pub(super) fn part(&mut self, text: &Spanned<String>, allow_total: bool) -> Option<Part> {
        match text.get_ref().as_str() {
            "fit" => Some(Part::Fit),
            "engagement" => Some(Part::Engagement),
            "total" if allow_total => Some(Part::Total),
            other => {
                let expected = if allow_total {
                    "\"total\", \"fit\" or \"engagement\""
                } else {
                    "\"fit\" or \"engagement\""
                };
                self.d.error(
                    &text.span(),
                    format!("unknown part \"{other}\", expected {expected}"),
                );
                None
            }
        }
    }

    pub(super) fn group(
        &mut self,
        value: Value<'_>,
        index: usize,
        group_names: &mut HashMap<String, Range<usize>>,
        rule_names: &mut HashMap<String, Range<usize>>,
        scope: CondScope<'_>,
    ) -> Option<(Group, Vec<Rule>, Bound)> {
        let span = value.span();
        let (rest, rule_values) = self.split(value, "rule", "[[score.group.rule]]");
        let raw: Option<RawGroup> = self.decode(rest);
        let part = raw.as_ref().and_then(|r| self.part(&r.part, false));
        let decay = raw
            .as_ref()
            .and_then(|r| r.decay.as_ref())
            .and_then(|d| self.decay(d, part));
        if let (Some(raw), Some(_)) = (&raw, decay)
            && let Some(w) = &raw.window_days
        {
            self.d.error(&w.span(), "a group cannot have both `decay` and a time window (as in HubSpot): remove `decay` or `window_days`");
        }
        let window_ms = raw
            .as_ref()
            .and_then(|r| r.window_days.as_ref())
            .and_then(|w| self.days(w, "window_days"));
        if rule_values.is_empty() {
            self.d.error(
                &span,
                "group has no [[score.group.rule]]: add at least one rule",
            );
        }
        let mut rules = Vec::new();
        let mut bound = Bound {
            max: Some(0.0),
            min: Some(0.0),
        };
        let wanted = rule_values.len();
        let mut rule_spans = Vec::new();
        for rule_value in rule_values {
            let clause_span = rule_value.span();
            let Some(clause) = self.decode::<RawClause>(rule_value) else {
                continue;
            };
            let ctx = GroupCtx {
                index,
                part,
                decay,
                window_ms,
                scope,
            };
            if let Some((rule, rule_bound)) = self.rule(clause, &clause_span, &ctx, rule_names) {
                bound.add(rule_bound);
                rule_spans.push((clause_span, rule_bound));
                rules.push(rule);
            }
        }
        // Reachability means something only when every rule compiled.
        if rules.len() < wanted {
            bound = Bound {
                max: None,
                min: None,
            };
        }
        let raw = raw?;
        let part = part?;
        self.unique(group_names, &raw.name, "group");
        let max = raw.max.as_ref().map(|m| *m.get_ref());
        let min = raw.min.as_ref().map(|m| *m.get_ref());
        if let (Some(lo), Some(hi), Some(span)) = (min, max, raw.min.as_ref())
            && lo > hi
        {
            self.d.error(
                &span.span(),
                format!("group min {lo} is above its max {hi}"),
            );
        }
        if let (Some(m), Some(reachable)) = (&raw.max, bound.max)
            && *m.get_ref() > reachable
        {
            self.d.warn(&m.span(), format!(
                    "group max {} can never be reached: its rules give at most {} together (fine as a cap for rules to come)",
                    m.get_ref(),
                    tidy(reachable)
                ));
        }
        if let (Some(m), Some(reachable)) = (&raw.min, bound.min)
            && *m.get_ref() < reachable
        {
            self.d.warn(
                &m.span(),
                format!(
                    "group min {} can never be reached: its rules take away at most {} together",
                    m.get_ref(),
                    tidy(-reachable)
                ),
            );
        }
        for ((span, rule_bound), rule) in rule_spans.iter().zip(&rules) {
            let gives = rule_bound.max.is_none_or(|m| m > 0.0);
            let takes = rule_bound.min.is_none_or(|m| m < 0.0);
            // A cap at 0 hides a rule only when no rule of the other sign
            // can make room for it.
            let hidden_up = !gives || (max.is_some_and(|m| m <= 0.0) && bound.min == Some(0.0));
            let hidden_down = !takes || (min.is_some_and(|m| m >= 0.0) && bound.max == Some(0.0));
            if (gives || takes) && hidden_up && hidden_down {
                let cap = if gives { "max" } else { "min" };
                self.d.warn(
                    span,
                    format!(
                        "rule \"{}\" can never change the score: the group's {cap} takes back whatever it gives",
                        rule.name
                    ),
                );
            } else if !gives && !takes {
                self.d
                    .warn(span, format!("rule \"{}\" gives 0 points", rule.name));
            }
        }
        let group_bound = Bound {
            max: match (bound.max, max) {
                (Some(b), Some(m)) => Some(b.min(m)),
                (None, m) => m,
                (b, None) => b,
            },
            min: bound.min,
        };
        Some((
            Group {
                name: raw.name.get_ref().trim().to_owned(),
                part,
                max,
                min,
            },
            rules,
            group_bound,
        ))
    }

    pub(super) fn decay(&mut self, raw: &Spanned<RawDecay>, part: Option<Part>) -> Option<Decay> {
        let span = raw.span();
        let raw = raw.get_ref();
        if part == Some(Part::Fit) {
            self.d.error(&span, "decay applies to engagement groups: fit describes who a person is, which does not age");
            return None;
        }
        let compound = match &raw.mode {
            None => false,
            Some(m) => {
                match m.get_ref().as_str() {
                    "linear" => false,
                    "compound" => true,
                    other => {
                        self.d.error(&m.span(), format!("unknown decay mode \"{other}\", expected \"linear\" or \"compound\""));
                        false
                    }
                }
            }
        };
        match (&raw.percent, &raw.every_days, &raw.half_life_days) {
            (Some(percent), Some(every), None) => {
                let p = *percent.get_ref();
                let percent_ok = p > 0.0 && p <= 100.0;
                if !percent_ok {
                    self.d.error(
                        &percent.span(),
                        format!("decay percent must be above 0 and at most 100, got {p}"),
                    );
                }
                let period_ms = self.days(every, "every_days")?;
                Some(Decay::Stepped {
                    fraction: p / 100.0,
                    period_ms,
                    per_ms: 1.0 / period_ms as f64,
                    compound,
                })
                .filter(|_| percent_ok)
            }
            (None, None, Some(half_life)) => {
                if raw.mode.is_some() {
                    self.d.error(
                        &span,
                        "`mode` applies to `percent`/`every_days` decay, not to `half_life_days`",
                    );
                }
                Some(Decay::HalfLife {
                    half_life_ms: self.days(half_life, "half_life_days")? as f64,
                })
            }
            _ => {
                self.d.error(&span, "decay is written as { percent = 50, every_days = 180 } or { half_life_days = 90 }");
                None
            }
        }
    }

    pub(super) fn days(&mut self, value: &Spanned<f64>, what: &str) -> Option<i64> {
        let days = *value.get_ref();
        if days > 0.0 && days <= 36_500.0 {
            Some((days * DAY_MS).round() as i64)
        } else {
            self.d.error(
                &value.span(),
                format!("`{what}` must be a number of days above 0, got {days}"),
            );
            None
        }
    }
}
