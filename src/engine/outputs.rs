//! What a scorecard writes back: the values a connection maps to CRM
//! properties (`contact.total`, `contact.tier`, `grade`, ...), rendered as
//! the text CRMs store, and the property type and options each needs.
//!
//! Pure: the same model and scorecard always give the same text, so the
//! sync can compare it with what the CRM holds and write only changes.

use super::Scorecard;
use super::explain::{matrix_label, num, stage_name, summary_line};
use crate::grade::Grade;
use crate::model::Model;

/// One value of a scorecard that can be written to a CRM property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputValue {
    Total(usize),
    Fit(usize),
    Engagement(usize),
    Tier(usize),
    /// The fit × engagement cell, `A1` … `C3`.
    Matrix(usize),
    Stage(usize),
    /// The one-line explanation.
    Summary(usize),
    Grade,
}

/// The kind of CRM property an output needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    Number,
    /// A fixed set of options (see [`OutputValue::options`]).
    Choice,
    Text,
}

impl OutputValue {
    /// Parses `grade` or `<score>.<total|fit|engagement|tier|matrix|stage|summary>`
    /// against a model.
    pub fn parse(model: &Model, text: &str) -> Result<OutputValue, String> {
        if text == "grade" {
            return if model.profiles.is_empty() {
                Err("`grade`: the model has no [[grading]] profile".to_owned())
            } else {
                Ok(OutputValue::Grade)
            };
        }
        let Some((score, part)) = text.rsplit_once('.') else {
            return Err(format!(
                "`{text}`: expected `grade` or `<score>.<part>` such as `{}.total`",
                model.score_names().next().unwrap_or("contact")
            ));
        };
        let Some(index) = model.scores.iter().position(|s| s.name == score) else {
            let names: Vec<&str> = model.score_names().collect();
            return Err(format!(
                "`{text}`: the model has no score `{score}` (it has {})",
                names.join(", ")
            ));
        };
        let spec = &model.scores[index];
        let value = match part {
            "total" => OutputValue::Total(index),
            "fit" => OutputValue::Fit(index),
            "engagement" => OutputValue::Engagement(index),
            "tier" if !spec.tiers.is_empty() => OutputValue::Tier(index),
            "matrix" if spec.matrix.is_some() => OutputValue::Matrix(index),
            "stage" if !spec.stages.is_empty() => OutputValue::Stage(index),
            "summary" => OutputValue::Summary(index),
            "tier" | "matrix" | "stage" => {
                return Err(format!("`{text}`: score `{score}` has no {part}s"));
            }
            other => {
                return Err(format!(
                    "`{text}`: unknown part `{other}`; expected total, fit, engagement, tier, matrix, stage or summary"
                ));
            }
        };
        Ok(value)
    }

    /// The score this value is of (none for the grade).
    pub fn score(self) -> Option<usize> {
        match self {
            OutputValue::Total(i)
            | OutputValue::Fit(i)
            | OutputValue::Engagement(i)
            | OutputValue::Tier(i)
            | OutputValue::Matrix(i)
            | OutputValue::Stage(i)
            | OutputValue::Summary(i) => Some(i),
            OutputValue::Grade => None,
        }
    }

    pub fn kind(self) -> OutputKind {
        match self {
            OutputValue::Total(_) | OutputValue::Fit(_) | OutputValue::Engagement(_) => {
                OutputKind::Number
            }
            OutputValue::Tier(_)
            | OutputValue::Matrix(_)
            | OutputValue::Stage(_)
            | OutputValue::Grade => OutputKind::Choice,
            OutputValue::Summary(_) => OutputKind::Text,
        }
    }

    /// Every value a choice output can take, in order (before value maps).
    pub fn options(self, model: &Model) -> Vec<String> {
        match self {
            OutputValue::Tier(i) => model.scores[i]
                .tiers
                .iter()
                .map(|t| t.label.clone())
                .collect(),
            OutputValue::Matrix(_) => ["A1", "A2", "A3", "B1", "B2", "B3", "C1", "C2", "C3"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            OutputValue::Stage(_) => model
                .lifecycle
                .as_ref()
                .map(|l| l.stages.clone())
                .unwrap_or_default(),
            OutputValue::Grade => Grade::ladder().map(|g| g.as_str().to_owned()).collect(),
            _ => Vec::new(),
        }
    }

    /// The value as CRM text; `None` when the scorecard has none (no tier
    /// matched, no stage reached), which clears the property.
    pub fn render(self, model: &Model, card: &Scorecard) -> Option<String> {
        let result = |i: usize| card.scores.get(i);
        match self {
            OutputValue::Total(i) => result(i).map(|r| num(r.total)),
            OutputValue::Fit(i) => result(i).map(|r| num(r.fit)),
            OutputValue::Engagement(i) => result(i).map(|r| num(r.engagement)),
            OutputValue::Tier(i) => {
                let tier = result(i)?.tier?;
                model.scores[i]
                    .tiers
                    .get(usize::from(tier))
                    .map(|t| t.label.clone())
            }
            OutputValue::Matrix(i) => result(i)?.matrix.map(matrix_label),
            OutputValue::Stage(i) => stage_name(model, result(i)?).map(str::to_owned),
            OutputValue::Summary(i) => Some(summary_line(model, card, i)),
            OutputValue::Grade => card.grade.map(|g| g.as_str().to_owned()),
        }
    }
}
