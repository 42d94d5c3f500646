//! Disqualifiers and grading profiles: `[[disqualifier]]`, `[[grading]]`
//! and `[[grading.criterion]]`.

use super::*;

impl Compiler<'_> {
    pub(super) fn disqualifier(&mut self, value: Value<'_>) -> Option<Disqualifier> {
        let span = value.span();
        let clause: RawClause = self.decode(value)?;
        self.check_role_keys(&clause, &span, Role::Disqualifier);
        let Some(name) = &clause.name else {
            self.d.error(&span, "disqualifier has no `name`");
            return None;
        };
        let (zero_score, grade_f) = match clause
            .effect
            .as_ref()
            .map(|e| (e.get_ref().as_str(), e.span()))
        {
            None | Some(("zero_and_grade_f", _)) => (true, true),
            Some(("zero", _)) => (true, false),
            Some(("grade_f", _)) => (false, true),
            Some((other, at)) => {
                self.d.error(&at, format!("unknown effect \"{other}\", expected \"zero\", \"grade_f\" or \"zero_and_grade_f\""));
                return None;
            }
        };
        let cond = self.cond(&clause, &span, CondScope::Record)?;
        Some(Disqualifier {
            name: name.get_ref().trim().to_owned(),
            cond,
            zero_score,
            grade_f,
        })
    }

    pub(super) fn profiles(&mut self, values: Vec<Value<'_>>) -> Vec<Profile> {
        let mut profiles: Vec<Profile> = Vec::new();
        let mut names = HashMap::new();
        let mut fallback: Option<String> = None;
        for value in values {
            let span = value.span();
            let (rest, criteria_values) = self.split(value, "criterion", "[[grading.criterion]]");
            let raw: Option<RawProfile> = self.decode(rest);
            let mut criteria = Vec::new();
            let mut criterion_names = HashMap::new();
            for cv in criteria_values {
                let cspan = cv.span();
                let Some(clause) = self.decode::<RawClause>(cv) else {
                    continue;
                };
                self.check_role_keys(&clause, &cspan, Role::GradeCriterion);
                let Some(name) = &clause.name else {
                    self.d.error(&cspan, "grading criterion has no `name`");
                    continue;
                };
                self.unique(&mut criterion_names, name, "grading criterion");
                let on_match = self.step(clause.on_match.as_ref());
                let on_miss = self.step(clause.on_miss.as_ref());
                let cond = self.cond(&clause, &cspan, CondScope::Record);
                let (Some(on_match), Some(on_miss), Some(cond)) = (on_match, on_miss, cond) else {
                    continue;
                };
                if on_match.is_none() && on_miss.is_none() {
                    self.d.error(&cspan, format!("grading criterion \"{}\" moves nothing: add `on_match` and/or `on_miss`", name.get_ref()));
                    continue;
                }
                criteria.push(GradeCriterion {
                    name: name.get_ref().trim().to_owned(),
                    cond,
                    on_match,
                    on_miss,
                });
            }
            let Some(raw) = raw else { continue };
            self.unique(&mut names, &raw.name, "grading profile");
            let start = match self.grade(raw.start.as_ref()) {
                Some(g) => g.unwrap_or(Grade::D),
                None => continue,
            };
            if let Some(previous) = &fallback {
                self.d.error(&span, format!(
                    "grading profile \"{}\" can never be chosen: profile \"{previous}\" has no `when` and comes first (put the catch-all profile last)",
                    raw.name.get_ref()
                ));
            }
            let when = match &raw.when {
                Some(w) => {
                    let wspan = w.span();
                    self.check_role_keys(w.get_ref(), &wspan, Role::Condition);
                    match self.cond(w.get_ref(), &wspan, CondScope::Record) {
                        Some(c) => Some(c),
                        None => continue,
                    }
                }
                None => {
                    fallback = Some(raw.name.get_ref().clone());
                    None
                }
            };
            profiles.push(Profile {
                name: raw.name.get_ref().trim().to_owned(),
                start,
                when,
                criteria,
            });
        }
        profiles
    }
}
