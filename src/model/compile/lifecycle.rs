//! The lifecycle ladder: `[lifecycle]` and `[[lifecycle.stage]]`, and the
//! stage disqualified records get.

use super::*;

impl Compiler<'_> {
    pub(super) fn lifecycle(
        &mut self,
        value: Value<'_>,
        scores: &mut [Score],
    ) -> Option<Lifecycle> {
        let span = value.span();
        let (rest, stage_values) = self.split(value, "stage", "[[lifecycle.stage]]");
        let raw: RawLifecycle = self.decode(rest)?;
        let mut stage_names: Vec<String> = Vec::new();
        let mut seen = HashMap::new();
        let mut clauses = Vec::new();
        for sv in stage_values {
            let sspan = sv.span();
            let Some(clause) = self.decode::<RawClause>(sv) else {
                continue;
            };
            let Some(name) = &clause.name else {
                self.d.error(&sspan, "stage has no `name`");
                continue;
            };
            self.unique(&mut seen, name, "stage");
            stage_names.push(name.get_ref().trim().to_owned());
            clauses.push((clause, sspan));
        }
        if stage_names.len() > 32 {
            self.d.error(
                &span,
                format!(
                    "[lifecycle] has {} stages: at most 32 are supported",
                    stage_names.len()
                ),
            );
            return None;
        }
        if stage_names.is_empty() {
            self.d.error(&span, "[lifecycle] has no [[lifecycle.stage]]: list stages from lowest (e.g. Lead) to highest (e.g. SQL)");
            return None;
        }
        let staged: Vec<usize> = match &raw.scores {
            None => (0..scores.len())
                .filter(|&s| scores[s].object == Object::Contact)
                .collect(),
            Some(list) => list
                .iter()
                .filter_map(|n| {
                    let found = scores
                        .iter()
                        .position(|s| s.name.eq_ignore_ascii_case(n.get_ref().trim()));
                    match found {
                        None => self
                            .d
                            .error(&n.span(), format!("unknown score \"{}\"", n.get_ref())),
                        Some(s) if scores[s].object == Object::Company => {
                            self.d.error(&n.span(), format!(
                                "score \"{}\" is a company score: lifecycle stages are a person's (a contact's stage may read `company_score`)",
                                n.get_ref()
                            ));
                            return None;
                        }
                        Some(_) => {}
                    }
                    found
                })
                .collect(),
        };
        let mut compiled: Vec<Vec<Option<Cond>>> = (0..scores.len()).map(|_| Vec::new()).collect();
        for &score in &staged {
            for (stage, (clause, sspan)) in clauses.iter().enumerate() {
                let has_condition = !condition_keys(clause).is_empty();
                for (key, at) in role_keys(clause) {
                    if key != "name" {
                        self.d.error(
                            &at.unwrap_or(sspan.clone()),
                            format!("`{key}` is not allowed in a stage"),
                        );
                    }
                }
                if !has_condition {
                    if stage > 0 {
                        self.d.error(sspan, format!(
                            "stage \"{}\" has no conditions, so every record would reach it: only the first stage may have none",
                            stage_names[stage]
                        ));
                    }
                    compiled[score].push(None);
                    continue;
                }
                let scope = CondScope::Stage {
                    score,
                    stage,
                    scores,
                    stages: &stage_names,
                };
                let cond = self.cond(clause, sspan, scope);
                compiled[score].push(cond);
            }
        }
        for (score, stages) in compiled.into_iter().enumerate() {
            scores[score].stages = stages;
        }
        let current_slot = raw.current_property.as_ref().map(|p| {
            let slot = self.prop_slot(p);
            self.schema.props[slot as usize].needs_folded = true;
            slot
        });
        let disqualified_stage = match &raw.disqualified_stage {
            None => 0,
            Some(name) => {
                let wanted = name.get_ref().trim();
                match stage_names
                    .iter()
                    .position(|s| s.eq_ignore_ascii_case(wanted))
                {
                    Some(index) => index,
                    None if wanted.is_empty() => {
                        self.d.error(
                            &name.span(),
                            "disqualified_stage needs a stage name (a ladder stage, or one of its own such as \"Disqualified\")",
                        );
                        0
                    }
                    None => {
                        stage_names.push(wanted.to_owned());
                        stage_names.len() - 1
                    }
                }
            }
        };
        Some(Lifecycle {
            stages: stage_names,
            current_slot,
            allow_downgrade: raw.allow_downgrade,
            disqualified_stage: disqualified_stage as u16,
        })
    }
}
