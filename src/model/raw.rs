//! The model file as written: serde structs that mirror the TOML one to one,
//! with `deny_unknown_fields` so a typo is an error, and spans on every value
//! that validation may have to point at.
//!
//! Nothing here is checked beyond its TOML type; `compile` turns these into
//! the validated model. These types never leave the `model` module.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `[model]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeader {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Decimal places kept in fit, engagement and total.
    pub precision: Option<Spanned<i64>>,
    /// Longest one-line summary, in characters.
    pub summary_max_chars: Option<Spanned<i64>>,
    /// How many criteria the one-line summary names at most.
    pub summary_items: Option<Spanned<i64>>,
}

/// `[[score]]`, without its `[[score.group]]` array.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScore {
    pub name: Spanned<String>,
    /// `"contact"` (the default) or `"company"`.
    pub object: Option<Spanned<String>>,
    pub label: Option<String>,
    pub cap: Option<Spanned<f64>>,
    pub floor: Option<Spanned<f64>>,
    pub tier_on: Option<Spanned<String>>,
    #[serde(default)]
    pub tiers: Vec<Spanned<RawTier>>,
    pub matrix: Option<Spanned<RawMatrix>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTier {
    pub label: Spanned<String>,
    pub min: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatrix {
    /// Lower bounds of the A and B fit rows, e.g. `[60, 30]`.
    pub fit: Spanned<Vec<f64>>,
    /// Lower bounds of the 1 and 2 engagement columns.
    pub engagement: Spanned<Vec<f64>>,
}

/// `[[score.group]]`, without its `[[score.group.rule]]` array.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    pub name: Spanned<String>,
    pub part: Spanned<String>,
    pub max: Option<Spanned<f64>>,
    pub min: Option<Spanned<f64>>,
    pub decay: Option<Spanned<RawDecay>>,
    pub window_days: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDecay {
    pub percent: Option<Spanned<f64>>,
    pub every_days: Option<Spanned<f64>>,
    pub half_life_days: Option<Spanned<f64>>,
    /// `"linear"` (HubSpot: X % of the original points per period) or
    /// `"compound"` (X % of what is left per period).
    pub mode: Option<Spanned<String>>,
}

/// A scalar as TOML can write it; CRM values compare as text or number.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawScalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// One string or a list of them (`contains = "vp"` or `contains = ["vp", "head of"]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Everything a criterion, a condition, a grading criterion, a disqualifier
/// or a lifecycle stage can say. Which keys are allowed where is decided by
/// validation, so the messages can say why a key does not belong.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClause {
    // --- naming and points (criteria) ---
    pub name: Option<Spanned<String>>,
    pub points: Option<Spanned<f64>>,
    pub once: Option<Spanned<bool>>,
    pub max_occurrences: Option<Spanned<i64>>,
    pub points_per_unit: Option<Spanned<f64>>,
    pub max_points: Option<Spanned<f64>>,
    // --- grading criteria ---
    pub on_match: Option<Spanned<String>>,
    pub on_miss: Option<Spanned<String>>,
    // --- disqualifiers ---
    pub effect: Option<Spanned<String>>,
    // --- subjects: exactly one per clause ---
    pub property: Option<Spanned<String>>,
    pub event: Option<Spanned<String>>,
    pub list: Option<Spanned<String>>,
    pub score: Option<Spanned<String>>,
    pub grade_at_least: Option<Spanned<String>>,
    pub grade_at_most: Option<Spanned<String>>,
    pub tier: Option<Spanned<OneOrMany>>,
    pub rule: Option<Spanned<String>>,
    pub stage: Option<Spanned<String>>,
    /// Whether a disqualifier matched (stage conditions only).
    pub disqualified: Option<Spanned<bool>>,
    /// A contact's company's score (contact scores and stages).
    pub company_score: Option<Spanned<String>>,
    // --- roll-ups over a company's people (company scores only) ---
    pub people_sum: Option<Spanned<String>>,
    pub people_max: Option<Spanned<String>>,
    pub people_avg: Option<Spanned<String>>,
    pub people_count: Option<Box<Spanned<RawClause>>>,
    /// Contact rule names: distinct people must cover each.
    pub roles: Option<Spanned<Vec<String>>>,
    pub all: Option<Vec<Spanned<RawClause>>>,
    pub any: Option<Vec<Spanned<RawClause>>>,
    pub not: Option<Box<Spanned<RawClause>>>,
    // --- property and score operators ---
    pub equals: Option<Spanned<RawScalar>>,
    pub one_of: Option<Spanned<Vec<RawScalar>>>,
    pub contains: Option<Spanned<OneOrMany>>,
    pub starts_with: Option<Spanned<OneOrMany>>,
    pub ends_with: Option<Spanned<OneOrMany>>,
    pub regex: Option<Spanned<String>>,
    pub case_sensitive: Option<bool>,
    pub gt: Option<Spanned<f64>>,
    pub gte: Option<Spanned<f64>>,
    pub lt: Option<Spanned<f64>>,
    pub lte: Option<Spanned<f64>>,
    pub between: Option<Spanned<Vec<f64>>>,
    pub is_set: Option<Spanned<bool>>,
    pub before: Option<Spanned<String>>,
    pub after: Option<Spanned<String>>,
    pub older_than_days: Option<Spanned<f64>>,
    /// For a date property: the date lies in the last N days. For an event:
    /// only events of the last N days count (a time window).
    pub within_days: Option<Spanned<f64>>,
    /// Which part of a score a score condition reads: total, fit, engagement.
    pub part: Option<Spanned<String>>,
    // --- event filters and counts ---
    pub url: Option<Spanned<String>>,
    pub campaign: Option<Spanned<String>>,
    pub form_id: Option<Spanned<String>>,
    pub asset: Option<Spanned<String>>,
    pub attributes: Option<Spanned<BTreeMap<String, String>>>,
    pub min_count: Option<Spanned<i64>>,
    pub max_count: Option<Spanned<i64>>,
    pub absent: Option<Spanned<bool>>,
}

/// `[[grading]]`, without its `[[grading.criterion]]` array.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfile {
    pub name: Spanned<String>,
    pub start: Option<Spanned<String>>,
    pub when: Option<Spanned<RawClause>>,
}

/// `[lifecycle]`, without its `[[lifecycle.stage]]` array.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLifecycle {
    /// The record property holding the stage the record is in now.
    pub current_property: Option<Spanned<String>>,
    #[serde(default)]
    pub allow_downgrade: bool,
    /// The stage a disqualified record gets (a ladder stage, or a stage of
    /// its own such as "Disqualified"); the first stage when absent.
    pub disqualified_stage: Option<Spanned<String>>,
    /// Scores that get a stage; all of them when absent.
    pub scores: Option<Vec<Spanned<String>>>,
}

/// `[[test]]`, without its `record` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTest {
    pub name: Spanned<String>,
    pub now: Spanned<toml::Value>,
    #[serde(default)]
    pub expect: BTreeMap<String, Spanned<RawExpect>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExpect {
    /// In a company case, the person a contact score's expectation is about.
    pub person: Option<Spanned<String>>,
    pub fit: Option<f64>,
    pub engagement: Option<f64>,
    pub total: Option<f64>,
    pub grade: Option<Spanned<String>>,
    pub tier: Option<String>,
    pub matrix: Option<String>,
    pub stage: Option<String>,
    pub disqualified: Option<bool>,
}
