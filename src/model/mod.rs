//! The scoring model: what revops write in TOML, compiled into a validated,
//! immutable form the engine can evaluate quickly.
//!
//! `Model::compile` is the only way to get a `Model`: it parses the text,
//! checks everything, reports every problem at once with its location and,
//! on success, returns a model whose fields are private and never change.
//! Property names, event types, attributes and lists are resolved to small
//! integer slots here, once, so scoring never looks a name up.
//!
//! This module does no IO: callers read the file and pass its text.

mod compile;
pub(crate) mod diagnostics;
mod pattern;
mod raw;

use rustc_hash::FxHashMap as HashMap;

use regex::Regex;

pub use diagnostics::{ConfigError, ConfigErrors};
pub(crate) use pattern::Pattern;

use crate::grade::{Grade, GradeStep};
use crate::record::Record;

/// A validated scoring model.
#[derive(Debug)]
pub struct Model {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    /// Decimal places kept in fit, engagement and total.
    pub(crate) precision: u32,
    pub(crate) summary_max_chars: usize,
    pub(crate) summary_items: usize,
    pub(crate) schema: Schema,
    pub(crate) scores: Vec<Score>,
    /// Every event filter any part of the model uses; rules and conditions
    /// refer to them by index so one pass over a record's events feeds all.
    pub(crate) matchers: Vec<EventMatcher>,
    /// For each event type slot, the matchers interested in it (typed ones
    /// and the `any` ones), laid out contiguously for the event pass; the
    /// last list is for types the model names nowhere.
    pub(crate) hot_by_type: Vec<Vec<HotMatcher>>,
    /// The distinct decay settings; `HotMatcher::decay` indexes them.
    pub(crate) decays: Vec<Decay>,
    /// Matchers for `event = "any"`.
    pub(crate) any_type_matchers: Vec<u32>,
    /// Every distinct attribute pattern, with the attribute slot it reads;
    /// matchers refer to them by index so each is tested once per event.
    pub(crate) patterns: Vec<AttrPattern>,
    /// Property checks that do not depend on `now`, by `Cond::Static` index.
    pub(crate) static_checks: Vec<(u32, PropCheck)>,
    /// For each property slot, the indices of its `static_checks`.
    pub(crate) static_by_slot: Vec<Vec<u32>>,
    /// For each attribute slot, the patterns that read it.
    pub(crate) patterns_by_slot: Vec<Vec<u32>>,
    /// For each event type slot (and last, for unnamed types), the attribute
    /// slots some matcher of that type tests: one bit per slot, all bits
    /// from slot 63 on.
    pub(crate) attr_slots_by_type: Vec<u64>,
    pub(crate) profiles: Vec<Profile>,
    pub(crate) disqualifiers: Vec<Disqualifier>,
    pub(crate) lifecycle: Option<Lifecycle>,
    pub(crate) cases: Vec<TestCase>,
    /// Some contact rule, grading criterion or stage reads `company_score`:
    /// people are scored again once their company is.
    pub(crate) reads_company_score: bool,
    /// A hash of the model file's text: a changed model is rescored.
    pub(crate) source_hash: u64,
    /// What the model allows but probably does not mean, located.
    pub(crate) warnings: Vec<ConfigError>,
    /// Event types that are not standard names, each where first named: a
    /// warning unless a connection feeds them.
    pub(crate) unknown_types: Vec<(String, ConfigError)>,
}

/// The event types leadscored's connectors know a source for without an
/// `[events]` entry (the HubSpot and Pardot defaults, together).
pub const STANDARD_EVENT_TYPES: &[&str] = &[
    "page_view",
    "email_open",
    "email_click",
    "email_unsubscribe",
    "form_submission",
    "form_error",
    "cta_click",
    "ad_click",
    "content_download",
    "webinar",
    "meeting",
];

impl Model {
    /// A fingerprint of the model file's text (FNV-1a, stable across
    /// builds): the sync rescores every stored record when it changes.
    pub fn fingerprint(&self) -> u64 {
        self.source_hash
    }

    /// Where the model first reads an input (`jobtitle`,
    /// `company.industry`), with `message` filled in: for warnings about
    /// inputs found outside the model file (the CRM has no such property).
    pub fn locate_input(&self, input: &str, message: String) -> Option<ConfigError> {
        let (scope, name) = match input.strip_prefix("company.") {
            Some(rest) => (Scope::Company, rest),
            None => (Scope::Contact, input),
        };
        let slot = self.schema.prop_slot(scope, name)?;
        let mut at = self.schema.props[slot as usize].at.clone();
        at.message = message;
        Some(at)
    }

    /// What `check-config` warns about: allowed, probably not meant, in
    /// file order. `fed` says which event types a connection has a source
    /// for (none without one).
    pub fn warnings(&self, fed: &dyn Fn(&str) -> bool) -> Vec<ConfigError> {
        let mut out: Vec<ConfigError> = self
            .unknown_types
            .iter()
            .filter(|(name, _)| !fed(name))
            .map(|(_, w)| w.clone())
            .chain(self.warnings.iter().cloned())
            .collect();
        out.sort_by_key(|w| (w.line, w.column));
        out
    }

    /// Parses and validates a model file. `file` is only used in messages.
    pub fn compile(file: &str, source: &str) -> Result<Model, ConfigErrors> {
        let mut model = compile::compile(file, source)?;
        model.source_hash = fnv1a(source.as_bytes());
        Ok(model)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Whether the model scores companies (`object = "company"`).
    pub fn has_company_scores(&self) -> bool {
        self.scores.iter().any(|s| s.object == Object::Company)
    }

    /// What score `index` is about.
    pub fn score_object(&self, index: usize) -> Object {
        self.scores.get(index).map_or(Object::Contact, |s| s.object)
    }

    /// Whether a contact rule, grading criterion or stage reads its
    /// company's score (people are scored again once their company is).
    pub fn reads_company_score(&self) -> bool {
        self.reads_company_score
    }

    /// Score names in file order.
    pub fn score_names(&self) -> impl Iterator<Item = &str> {
        self.scores.iter().map(|s| s.name.as_str())
    }

    /// The embedded test cases, in file order.
    pub fn cases(&self) -> &[TestCase] {
        &self.cases
    }

    /// The CRM properties the model reads, as `name` or `company.name`:
    /// exactly what a connector has to fetch.
    pub fn properties(&self) -> impl Iterator<Item = String> + '_ {
        self.schema.props.iter().map(PropSlot::display_name)
    }

    /// What reads each property and list (`company.numemployees`,
    /// `list "Webinar"`): the names of the rules, grading criteria and
    /// disqualifiers, so a missing CRM field can be reported with what it
    /// silences.
    pub fn readers(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        let mut note = |cond: &Cond, reader: &str| {
            let mut found = Vec::new();
            self.cond_inputs(cond, &mut found);
            for input in found {
                let readers = out.entry(input).or_default();
                if !readers.iter().any(|r| r == reader) {
                    readers.push(reader.to_owned());
                }
            }
        };
        for score in &self.scores {
            for rule in &score.rules {
                let reader = format!("rule \"{}\"", rule.name);
                match &rule.kind {
                    RuleKind::Condition(cond) => note(cond, &reader),
                    RuleKind::PerUnit { slot, .. } => note(
                        &Cond::Prop {
                            slot: *slot,
                            check: PropCheck::Value(Vec::new()),
                        },
                        &reader,
                    ),
                    RuleKind::Events { .. } => {}
                }
            }
        }
        for profile in &self.profiles {
            if let Some(when) = &profile.when {
                note(when, &format!("grading profile \"{}\"", profile.name));
            }
            for criterion in &profile.criteria {
                note(
                    &criterion.cond,
                    &format!("grading criterion \"{}\"", criterion.name),
                );
            }
        }
        for disqualifier in &self.disqualifiers {
            note(
                &disqualifier.cond,
                &format!("disqualifier \"{}\"", disqualifier.name),
            );
        }
        out
    }

    /// The properties and lists a condition reads, by display name.
    fn cond_inputs(&self, cond: &Cond, out: &mut Vec<String>) {
        let slot = match cond {
            Cond::Prop { slot, .. } => Some(*slot),
            Cond::Static(bit) => self.static_checks.get(*bit as usize).map(|(s, _)| *s),
            Cond::List(list) => {
                if let Some(name) = self.schema.lists.get(*list as usize) {
                    out.push(format!("list \"{name}\""));
                }
                None
            }
            Cond::All(all) | Cond::Any(all) => {
                for c in all {
                    self.cond_inputs(c, out);
                }
                None
            }
            _ => None,
        };
        if let Some(prop) = slot.and_then(|s| self.schema.props.get(s as usize)) {
            out.push(prop.display_name());
        }
    }

    /// The list names the model's `list` conditions read.
    pub fn list_names(&self) -> impl Iterator<Item = &str> {
        self.schema.lists.iter().map(String::as_str)
    }

    /// Event types the model reads (`any` means every type).
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.schema.event_types.iter().map(String::as_str)
    }

    /// The attribute slots worth reading for events of this type slot.
    pub(crate) fn attr_slots_wanted(&self, kind: u32) -> u64 {
        let list = if kind == crate::record::OTHER_TYPE {
            self.attr_slots_by_type.len().saturating_sub(1)
        } else {
            kind as usize
        };
        self.attr_slots_by_type
            .get(list)
            .copied()
            .unwrap_or(u64::MAX)
    }

    /// How far back events of `event_type` can still change a score: the
    /// longest window of any rule or condition reading them, or the age at
    /// which their decay reaches zero. `None` when some reader has neither
    /// (it counts all history); `Some(0)` when nothing reads the type.
    pub fn event_horizon(&self, event_type: &str) -> Option<i64> {
        let slot = self.schema.type_index.get(event_type).copied();
        let mut horizon: i64 = 0;
        for matcher in &self.matchers {
            let reads = match matcher.kind {
                None => true,
                Some(kind) => Some(kind) == slot,
            };
            if !reads {
                continue;
            }
            let reach = match (matcher.window_ms, matcher.decay.and_then(Decay::zero_at)) {
                (Some(window), _) => window,
                (None, Some(zero)) => zero,
                (None, None) => return None,
            };
            horizon = horizon.max(reach);
        }
        Some(horizon)
    }

    /// Whether any rule or condition looks at events of every type.
    pub fn reads_all_events(&self) -> bool {
        !self.any_type_matchers.is_empty()
    }

    /// A one-paragraph-per-score description for `check-config`.
    pub fn summary(&self) -> String {
        let mut out = format!("model \"{}\"", self.name);
        for score in &self.scores {
            let fit = score.groups.iter().filter(|g| g.part == Part::Fit).count();
            let engagement = score.groups.len() - fit;
            out.push_str(&format!(
                "\n  score \"{}\"{}: {} rules in {} fit and {} engagement groups, cap {}{}, tiers [{}]{}",
                score.name,
                if score.object == Object::Company { " (companies)" } else { "" },
                score.rules.len(),
                fit,
                engagement,
                score.cap,
                score.floor.map(|f| format!(", floor {f}")).unwrap_or_default(),
                score.tiers.iter().map(|t| format!("{} ≥ {}", t.label, t.min)).collect::<Vec<_>>().join(", "),
                if score.matrix.is_some() { ", fit × engagement matrix" } else { "" },
            ));
        }
        if !self.profiles.is_empty() {
            let criteria: usize = self.profiles.iter().map(|p| p.criteria.len()).sum();
            out.push_str(&format!(
                "\n  grading: {} profile{} with {} criteria",
                self.profiles.len(),
                if self.profiles.len() == 1 { "" } else { "s" },
                criteria
            ));
        }
        if let Some(lifecycle) = &self.lifecycle {
            let ladder = self
                .scores
                .iter()
                .map(|s| s.stages.len())
                .max()
                .unwrap_or(0);
            let (ladder, off) = lifecycle
                .stages
                .split_at(ladder.clamp(1, lifecycle.stages.len()));
            out.push_str(&format!("\n  lifecycle: {}", ladder.join(" → ")));
            let disqualified = usize::from(lifecycle.disqualified_stage);
            let name = off
                .first()
                .or_else(|| lifecycle.stages.get(disqualified))
                .map_or("", String::as_str);
            out.push_str(&format!("; disqualified records: {name}"));
        }
        if !self.disqualifiers.is_empty() {
            out.push_str(&format!("\n  disqualifiers: {}", self.disqualifiers.len()));
        }
        out.push_str(&format!(
            "\n  reads {} properties and {} event types",
            self.schema.props.len(),
            self.schema.event_types.len()
        ));
        out
    }
}

/// One distinct attribute pattern: the attribute it reads, the compiled
/// matcher, and the glob as written (for explanations).
#[derive(Debug)]
pub(crate) struct AttrPattern {
    pub slot: u16,
    pub pattern: Pattern,
    pub glob: String,
}

/// Fit (who they are) or engagement (what they did).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Fit,
    Engagement,
    Total,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Fit => "fit",
            Part::Engagement => "engagement",
            Part::Total => "total",
        }
    }
}

/// Whose property: the contact's own, or its company's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Contact,
    Company,
}

/// Every name the model reads, resolved to a slot.
#[derive(Debug, Default)]
pub(crate) struct Schema {
    pub props: Vec<PropSlot>,
    pub contact_props: HashMap<Box<str>, u32>,
    pub company_props: HashMap<Box<str>, u32>,
    pub attrs: Vec<String>,
    pub attr_index: HashMap<Box<str>, u16>,
    pub event_types: Vec<String>,
    pub type_index: HashMap<Box<str>, u32>,
    /// List names, case-folded.
    pub lists: Vec<String>,
    pub list_index: HashMap<Box<str>, u32>,
}

impl Schema {
    pub(crate) fn prop_slot(&self, scope: Scope, name: &str) -> Option<u32> {
        match scope {
            Scope::Contact => self.contact_props.get(name).copied(),
            Scope::Company => self.company_props.get(name).copied(),
        }
    }
}

/// How the model reads one property, so records convert it once.
#[derive(Debug)]
pub(crate) struct PropSlot {
    pub scope: Scope,
    pub name: String,
    /// Some criterion compares it case-insensitively.
    pub needs_folded: bool,
    pub needs_number: bool,
    pub needs_time: bool,
    /// Where the model first reads it (message empty).
    pub at: ConfigError,
}

impl PropSlot {
    pub(crate) fn display_name(&self) -> String {
        match self.scope {
            Scope::Contact => self.name.clone(),
            Scope::Company => format!("company.{}", self.name),
        }
    }
}

/// What a score is about: a person, or a company and its people.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Object {
    #[default]
    Contact,
    Company,
}

impl Object {
    pub fn as_str(self) -> &'static str {
        match self {
            Object::Contact => "contact",
            Object::Company => "company",
        }
    }
}

/// How a roll-up folds its people's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Agg {
    Sum,
    Max,
    Avg,
}

impl Agg {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Agg::Sum => "sum",
            Agg::Max => "highest",
            Agg::Avg => "average",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Score {
    pub name: String,
    /// Contact scores are scored per person; company scores per company,
    /// from its properties and roll-ups over its people.
    pub object: Object,
    pub label: String,
    pub cap: f64,
    pub floor: Option<f64>,
    pub groups: Vec<Group>,
    pub rules: Vec<Rule>,
    /// Ascending by `min`.
    pub tiers: Vec<Tier>,
    pub tier_on: Part,
    pub matrix: Option<Matrix>,
    /// One condition per lifecycle stage (None: always qualifies); empty
    /// when this score gets no stage.
    pub stages: Vec<Option<Cond>>,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub name: String,
    pub part: Part,
    pub max: Option<f64>,
    pub min: Option<f64>,
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub name: String,
    pub group: u16,
    pub points: f64,
    pub kind: RuleKind,
}

#[derive(Debug)]
pub(crate) enum RuleKind {
    /// Points once when the condition holds.
    Condition(Cond),
    /// Points for each unit of a numeric property, bounded.
    PerUnit {
        slot: u32,
        per_unit: f64,
        max_points: Option<f64>,
    },
    /// Points from events.
    Events { matcher: u32, mode: EventMode },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventMode {
    /// Points per occurrence, newest first, up to the matcher's `take`.
    Each,
    /// Points once if at least one occurrence.
    Once,
    /// Points once when the count lies in `min..=max`.
    Threshold { min: u32, max: u32 },
    /// Points once when there is no occurrence in the window.
    Absent,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Decay {
    /// Lose `fraction` every `period_ms`; `compound` takes it from what is left.
    Stepped {
        fraction: f64,
        period_ms: i64,
        /// `1 / period_ms`, so the per-event path multiplies instead of dividing.
        per_ms: f64,
        compound: bool,
    },
    /// Halve every `half_life_ms`, continuously.
    HalfLife { half_life_ms: f64 },
}

impl Decay {
    /// The age from which an event gives nothing any more, when its decay
    /// reaches zero (linear steps); halving and compound steps never do.
    pub(crate) fn zero_at(self) -> Option<i64> {
        match self {
            Decay::Stepped {
                fraction,
                period_ms,
                compound: false,
                ..
            } if fraction > 0.0 => Some(((1.0 / fraction).ceil() as i64).saturating_mul(period_ms)),
            _ => None,
        }
    }

    /// The share of its points an event of age `age_ms` still gives.
    pub(crate) fn factor(self, age_ms: i64) -> f64 {
        match self {
            Decay::Stepped { .. } => self.stepped_factor(self.steps(age_ms).unwrap_or(0)),
            Decay::HalfLife { half_life_ms } => (-(age_ms.max(0) as f64) / half_life_ms).exp2(),
        }
    }

    /// For stepped decay, the whole periods an event of age `age_ms` has
    /// aged: events with the same steps get the same factor, so the event
    /// pass computes it once for a run of them. None for halving.
    pub(crate) fn steps(self, age_ms: i64) -> Option<i64> {
        let Decay::Stepped {
            period_ms, per_ms, ..
        } = self
        else {
            return None;
        };
        let age_ms = age_ms.max(0);
        // A float estimate of age / period, corrected to the exact whole
        // number of periods so boundaries fall where they should.
        let mut whole = (age_ms as f64 * per_ms) as i64;
        if whole.saturating_mul(period_ms) > age_ms {
            whole -= 1;
        } else if (whole + 1).saturating_mul(period_ms) <= age_ms {
            whole += 1;
        }
        Some(whole)
    }

    /// The factor after `whole` periods of stepped decay (1 for halving).
    pub(crate) fn stepped_factor(self, whole: i64) -> f64 {
        match self {
            Decay::Stepped {
                fraction, compound, ..
            } => {
                let periods = whole as f64;
                if compound {
                    (1.0 - fraction).powf(periods)
                } else {
                    (1.0 - fraction * periods).max(0.0)
                }
            }
            Decay::HalfLife { .. } => 1.0,
        }
    }
}

/// What the event pass needs of a matcher, packed together.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HotMatcher {
    pub required: u128,
    /// `i64::MAX` when there is no window.
    pub window_ms: i64,
    pub points: f64,
    /// Index into `Model::matchers` and the tallies.
    pub index: u32,
    pub take: u32,
    pub nth: u32,
    /// Index into `Model::decays`, or `u32::MAX` for none.
    pub decay: u32,
}

/// One filter over events, shared by every rule and condition that wrote
/// the same thing.
#[derive(Debug, PartialEq)]
pub(crate) struct EventMatcher {
    /// Event type slot; None for any type.
    pub kind: Option<u32>,
    /// Bits of `Model::patterns` that must all match (see `Event::matched`).
    pub required: u128,
    pub window_ms: Option<i64>,
    /// Points per occurrence (Each mode) with decay; 0 for pure conditions.
    pub points: f64,
    pub decay: Option<Decay>,
    /// How many of the newest occurrences give points (Each mode).
    pub take: u32,
    /// The occurrence whose time is remembered (threshold rules decay by
    /// the time the threshold was reached).
    pub nth: u32,
}

#[derive(Debug)]
pub(crate) struct Tier {
    pub label: String,
    pub min: f64,
}

/// HubSpot-style fit × engagement label: fit row A/B/C, engagement column 1/2/3.
#[derive(Debug)]
pub(crate) struct Matrix {
    pub fit: [f64; 2],
    pub engagement: [f64; 2],
}

#[derive(Debug)]
pub(crate) enum Cond {
    /// A property test that depends on `now` (a relative date window).
    Prop {
        slot: u32,
        check: PropCheck,
    },
    /// A property test that does not depend on `now`: evaluated once while
    /// the record is read (`Record::static_bits`), a bit test when scoring.
    Static(u32),
    Events {
        matcher: u32,
        min: u32,
        max: u32,
    },
    List(u32),
    /// Whether a disqualifier matched (stage conditions only).
    Disqualified(bool),
    Score {
        score: u16,
        part: Part,
        range: NumRange,
    },
    Grade {
        min: Option<Grade>,
        max: Option<Grade>,
    },
    Tier {
        score: u16,
        tiers: Vec<u16>,
    },
    Fired {
        score: u16,
        rule: u16,
    },
    Stage(u16),
    /// A company score only: the sum, highest or average of one part of a
    /// contact score over the company's people.
    Rollup {
        agg: Agg,
        score: u16,
        part: Part,
        range: NumRange,
    },
    /// A company score only: how many of its people meet a condition on
    /// the person (evaluated on the person's record and scorecard).
    PeopleCount {
        cond: Box<Cond>,
        range: NumRange,
    },
    /// A company score only: distinct people cover every role (each a
    /// person condition; one person covers one role).
    Roles(Vec<Cond>),
    /// A contact's company's score (known once the company is scored).
    CompanyScore {
        score: u16,
        part: Part,
        range: NumRange,
    },
    /// Inside a person condition: the person's stage is this one.
    PersonStage(u16),
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

/// Tests on one property. All listed tests must hold for the same value.
#[derive(Debug)]
pub(crate) enum PropCheck {
    IsSet(bool),
    Value(Vec<PropTest>),
}

#[derive(Debug)]
pub(crate) enum PropTest {
    /// Compares folded text when `folded`, else the text as sent.
    Text {
        op: TextOp,
        needles: Vec<Box<str>>,
        folded: bool,
    },
    Regex(Regex),
    Number(NumRange),
    NumberEquals(f64),
    Bool(bool),
    /// Epoch milliseconds, inclusive bounds.
    DateAbsolute {
        after: Option<i64>,
        before: Option<i64>,
    },
    /// The date lies in the last `ms` (and not in the future).
    DateWithin(i64),
    /// The date is older than `ms`.
    DateOlderThan(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextOp {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
}

/// A numeric interval; each bound optional and inclusive or not.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct NumRange {
    pub lo: Option<(f64, bool)>,
    pub hi: Option<(f64, bool)>,
}

impl NumRange {
    pub(crate) fn contains(&self, value: f64) -> bool {
        let lo_ok = match self.lo {
            None => true,
            Some((lo, true)) => value >= lo,
            Some((lo, false)) => value > lo,
        };
        let hi_ok = match self.hi {
            None => true,
            Some((hi, true)) => value <= hi,
            Some((hi, false)) => value < hi,
        };
        lo_ok && hi_ok
    }
}

#[derive(Debug)]
pub(crate) struct Profile {
    pub name: String,
    pub start: Grade,
    pub when: Option<Cond>,
    pub criteria: Vec<GradeCriterion>,
}

#[derive(Debug)]
pub(crate) struct GradeCriterion {
    pub name: String,
    pub cond: Cond,
    pub on_match: Option<GradeStep>,
    pub on_miss: Option<GradeStep>,
}

#[derive(Debug)]
pub(crate) struct Disqualifier {
    pub name: String,
    pub cond: Cond,
    pub zero_score: bool,
    pub grade_f: bool,
}

#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// The ladder, lowest first, then (when it is not on the ladder) the
    /// stage disqualified records get.
    pub stages: Vec<String>,
    pub current_slot: Option<u32>,
    pub allow_downgrade: bool,
    /// The stage a disqualified record gets, whatever its conditions and
    /// current stage say.
    pub disqualified_stage: u16,
}

/// A case embedded in the model file: a record, a moment, what to expect.
#[derive(Debug)]
pub struct TestCase {
    pub name: String,
    pub now: jiff::Timestamp,
    pub record: Record,
    /// A company case: the record is the company, with these people.
    pub company: bool,
    pub people: Vec<Record>,
    pub expectations: Vec<Expectation>,
}

/// What one score of a test case must come out as; absent fields are not checked.
#[derive(Debug)]
pub struct Expectation {
    pub score: String,
    /// In a company case, the person a contact score is checked on.
    pub person: Option<String>,
    pub fit: Option<f64>,
    pub engagement: Option<f64>,
    pub total: Option<f64>,
    pub grade: Option<Grade>,
    pub tier: Option<String>,
    pub matrix: Option<String>,
    pub stage: Option<String>,
    pub disqualified: Option<bool>,
}

/// FNV-1a, 64 bits: a small stable hash for fingerprints (not for security).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
