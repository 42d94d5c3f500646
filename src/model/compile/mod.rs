//! From TOML text to a validated `Model`, collecting every problem.
//!
//! The document is parsed once into a spanned tree; each table that can be
//! wrong on its own (a score, a group, a rule, a profile, a stage, a test)
//! is decoded separately, so one bad rule does not hide the next one's
//! problem. Semantic checks (references, ranges, exclusive options) run on
//! the decoded values, each error pointing at the value it is about; what is
//! allowed but probably not meant (caps no rule reaches, a non-standard
//! event type, a URL pattern without a wildcard) is a located warning.
//!
//! This module holds the entry point, the shared state and the name slots;
//! each submodule compiles one kind of table: `scores` (scores, groups,
//! decay), `rules`, `conditions`, `grading` (disqualifiers and profiles),
//! `lifecycle`, and `cases` (embedded tests).

mod cases;
mod conditions;
mod grading;
mod lifecycle;
mod rules;
mod scores;

use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize as _;
use serde::de::{DeserializeOwned, DeserializeSeed};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diagnostics::{ConfigError, ConfigErrors, Diagnostics};
use super::raw::{
    RawClause, RawDecay, RawExpect, RawGroup, RawHeader, RawLifecycle, RawProfile, RawScalar,
    RawScore, RawTest,
};
use super::{
    Agg, AttrPattern, Cond, Decay, Disqualifier, EventMatcher, EventMode, Expectation,
    GradeCriterion, Group, HotMatcher, Lifecycle, Matrix, Model, NumRange, Object, Part, Pattern,
    Profile, PropCheck, PropSlot, PropTest, Rule, RuleKind, Schema, Scope, Score, TestCase, TextOp,
    Tier,
};
use crate::grade::{Grade, GradeStep};
use crate::record::{RecordSeed, parse_time};

const DAY_MS: f64 = 86_400_000.0;
/// Events are matched against at most this many attribute patterns.
const MAX_PATTERNS: usize = 128;
/// Events carry one bit per matcher of their type (`Event::hits`).
const MAX_FILTERS_PER_TYPE: usize = 64;
const TOP_LEVEL: &str = "model, score, grading, lifecycle, disqualifier, test";

type Value<'i> = Spanned<DeValue<'i>>;

pub(super) fn compile(file: &str, source: &str) -> Result<Model, ConfigErrors> {
    let mut c = Compiler {
        d: Diagnostics::new(file, source),
        schema: Schema::default(),
        matchers: Vec::new(),
        patterns: Vec::new(),
        static_checks: Vec::new(),
        unknown_types: Vec::new(),
        company_props: false,
        company_scores: Vec::new(),
        reads_company_score: false,
    };
    let (root, syntax_errors) = DeTable::parse_recoverable(source);
    for error in &syntax_errors {
        c.d.toml(error, &(0..0));
    }
    if !syntax_errors.is_empty() {
        return Err(finish_err(c.d));
    }
    let root_span = root.span();
    let mut root = root.into_inner();

    let header = match root.remove("model") {
        Some(v) => c.decode::<RawHeader>(v).unwrap_or_default(),
        None => RawHeader::default(),
    };
    let score_values = c.take_array(&mut root, "score", "[[score]]", &root_span);
    let grading_values = c.take_array(&mut root, "grading", "[[grading]]", &root_span);
    let lifecycle_value = root.remove("lifecycle");
    let disqualifier_values =
        c.take_array(&mut root, "disqualifier", "[[disqualifier]]", &root_span);
    let test_values = c.take_array(&mut root, "test", "[[test]]", &root_span);
    for (key, _) in root.iter() {
        c.d.error(
            &key.span(),
            format!(
                "unknown section `{}`, expected one of {TOP_LEVEL}",
                key.get_ref()
            ),
        );
    }

    let precision = c.bounded_int(header.precision.as_ref(), 0, 0, 6, "precision") as u32;
    let summary_max_chars = c.bounded_int(
        header.summary_max_chars.as_ref(),
        255,
        20,
        65_536,
        "summary_max_chars",
    ) as usize;
    let summary_items =
        c.bounded_int(header.summary_items.as_ref(), 3, 1, 50, "summary_items") as usize;

    if score_values.is_empty() {
        c.d.error(
            &(0..0),
            "the model has no [[score]]: define at least one score",
        );
    }
    // Contact scores first, then company scores, whose roll-ups read the
    // contact scores' results, rules and stages: indexes follow that order.
    let (company_values, contact_values): (Vec<Value<'_>>, Vec<Value<'_>>) = score_values
        .into_iter()
        .partition(|v| peek_str(v, "object").and_then(object_named) == Some(Object::Company));
    c.company_scores = company_values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            Some((
                contact_values.len() + i,
                peek_str(v, "name")?.trim().to_owned(),
            ))
        })
        .collect();
    let stage_names: Vec<String> = lifecycle_value
        .as_ref()
        .and_then(|l| match l.get_ref().get("stage")?.get_ref() {
            DeValue::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|s| peek_str(s, "name").map(|n| n.trim().to_owned()))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default();
    let mut scores: Vec<Score> = Vec::new();
    let mut score_names: HashMap<String, Range<usize>> = HashMap::new();
    for value in contact_values {
        if let Some(score) = c.score(value, &mut score_names, CondScope::Record) {
            scores.push(score);
        }
    }
    let mut company = Vec::new();
    for value in company_values {
        let scope = CondScope::Company {
            people: &scores,
            stages: &stage_names,
        };
        if let Some(score) = c.score(value, &mut score_names, scope) {
            company.push(score);
        }
    }
    scores.extend(company);

    let disqualifiers = disqualifier_values
        .into_iter()
        .filter_map(|v| c.disqualifier(v))
        .collect();
    let profiles = c.profiles(grading_values);
    let lifecycle = lifecycle_value.and_then(|v| c.lifecycle(v, &mut scores));

    let (hot_by_type, decays) = hot_lists(&c.matchers, c.schema.event_types.len());
    for (kind, list) in hot_by_type.iter().enumerate() {
        if list.len() > MAX_FILTERS_PER_TYPE {
            let name = c
                .schema
                .event_types
                .get(kind)
                .map_or("events of other types", String::as_str);
            c.d.error(&(0..0), format!(
                "the model filters `{name}` events in {} different ways (time window, attributes); at most {MAX_FILTERS_PER_TYPE} are supported",
                list.len()
            ));
        }
    }
    let any_type_matchers: Vec<u32> = (0..c.matchers.len() as u32)
        .filter(|&i| c.matchers[i as usize].kind.is_none())
        .collect();
    if c.d.has_errors() {
        // Test cases need a sound model to be read against; report them after a fix.
        return Err(finish_err(c.d));
    }
    let Compiler {
        mut d,
        schema,
        matchers,
        patterns,
        static_checks,
        mut unknown_types,
        reads_company_score,
        ..
    } = c;
    let mut seen = std::collections::HashSet::new();
    unknown_types.retain(|(name, _)| seen.insert(name.clone()));
    let attr_slots_by_type: Vec<u64> = hot_by_type
        .iter()
        .map(|list| {
            list.iter().fold(0u64, |mask, hot| {
                (0..patterns.len())
                    .filter(|p| hot.required & (1u128 << p) != 0)
                    .fold(mask, |mask, p| {
                        mask | 1u64
                            .checked_shl(u32::from(patterns[p].slot))
                            .unwrap_or(u64::MAX)
                    })
            })
        })
        .collect();
    let mut static_by_slot = vec![Vec::new(); schema.props.len()];
    for (index, (slot, _)) in static_checks.iter().enumerate() {
        static_by_slot[*slot as usize].push(index as u32);
    }
    let mut patterns_by_slot = vec![Vec::new(); schema.attrs.len()];
    for (index, p) in patterns.iter().enumerate() {
        patterns_by_slot[usize::from(p.slot)].push(index as u32);
    }
    let mut model = Model {
        name: header.name.unwrap_or_else(|| "unnamed model".to_owned()),
        description: header.description,
        precision,
        summary_max_chars,
        summary_items,
        schema,
        scores,
        matchers,
        hot_by_type,
        decays,
        any_type_matchers,
        patterns,
        static_checks,
        static_by_slot,
        patterns_by_slot,
        attr_slots_by_type,
        profiles,
        disqualifiers,
        lifecycle,
        cases: Vec::new(),
        reads_company_score,
        source_hash: 0,
        warnings: Vec::new(),
        unknown_types,
    };
    let cases = test_values
        .into_iter()
        .filter_map(|v| cases::test_case(&mut d, &model, v))
        .collect();
    model.cases = cases;
    model.warnings = d.finish()?;
    Ok(model)
}

/// A sum of points without float noise (21.51, not 21.509999999999998).
fn tidy(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Attributes that hold a URL or a path, where a pattern without a
/// wildcard is almost always a mistake.
fn url_like(attr: &str) -> bool {
    let attr = attr.to_ascii_lowercase();
    attr.contains("url")
        || attr.contains("page")
        || attr.contains("path")
        || attr.contains("referrer")
        || attr.contains("referer")
}

/// "event type `email_clik` is not a standard one: did you mean …".
fn unknown_event_type(name: &str) -> String {
    let best = crate::model::STANDARD_EVENT_TYPES
        .iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), *c))
        .filter(|(distance, c)| *distance <= 2.max(c.len() / 4))
        .min();
    match best {
        Some((_, standard)) => format!(
            "event type `{name}` is not a standard one: did you mean `{standard}`? (a custom type needs a source under the connection's [events])"
        ),
        None => format!(
            "event type `{name}` is not a standard one ({}): the connection must name its source under [events]",
            crate::model::STANDARD_EVENT_TYPES.join(", ")
        ),
    }
}

fn finish_err(d: Diagnostics<'_>) -> ConfigErrors {
    match d.finish() {
        Err(errors) => errors,
        Ok(_) => ConfigErrors(Vec::new()),
    }
}

/// Per event type, the packed matchers the event pass walks: those of that
/// type, then those for any type. The last list serves unnamed types.
fn hot_lists(matchers: &[EventMatcher], types: usize) -> (Vec<Vec<HotMatcher>>, Vec<Decay>) {
    let mut decays: Vec<Decay> = Vec::new();
    let hot: Vec<HotMatcher> = matchers
        .iter()
        .enumerate()
        .map(|(index, m)| {
            let decay = m.decay.map_or(u32::MAX, |d| {
                match decays.iter().position(|known| *known == d) {
                    Some(i) => i as u32,
                    None => {
                        decays.push(d);
                        decays.len() as u32 - 1
                    }
                }
            });
            // An occurrence decayed to nothing is forgotten: it no longer
            // counts, as if outside a window.
            let forgotten = m.decay.and_then(Decay::zero_at).map_or(i64::MAX, |z| z - 1);
            HotMatcher {
                required: m.required,
                window_ms: m.window_ms.unwrap_or(i64::MAX).min(forgotten),
                points: m.points,
                index: index as u32,
                take: m.take,
                nth: m.nth,
                decay,
            }
        })
        .collect();
    let lists = (0..=types as u32)
        .map(|kind| {
            let typed = matchers
                .iter()
                .zip(&hot)
                .filter(|(m, _)| m.kind == Some(kind))
                .map(|(_, h)| *h);
            let any = matchers
                .iter()
                .zip(&hot)
                .filter(|(m, _)| m.kind.is_none())
                .map(|(_, h)| *h);
            typed.chain(any).collect()
        })
        .collect();
    (lists, decays)
}

/// What a clause is used as; decides which keys it may carry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    FitRule,
    EngagementRule,
    GradeCriterion,
    Disqualifier,
    /// A condition inside `all`/`any`/`not`, a profile's `when`, a stage.
    Condition,
}

/// Where a condition is evaluated; decides what it may refer to.
#[derive(Clone, Copy)]
enum CondScope<'s> {
    /// Only the record itself: properties, events, lists.
    Record,
    /// A lifecycle stage of one score: also scores, grades, tiers, rules, earlier stages.
    Stage {
        score: usize,
        stage: usize,
        scores: &'s [Score],
        stages: &'s [String],
    },
    /// A company score's rule: the company's properties and roll-ups over
    /// its people, who are scored by the contact scores `people`.
    Company {
        people: &'s [Score],
        stages: &'s [String],
    },
    /// One person inside a roll-up (`people_count`, `roles`): the person's
    /// record, and their contact scores, grade, tiers, rules and stage.
    Person {
        scores: &'s [Score],
        stages: &'s [String],
    },
}

struct Compiler<'a> {
    d: Diagnostics<'a>,
    schema: Schema,
    matchers: Vec<EventMatcher>,
    patterns: Vec<AttrPattern>,
    static_checks: Vec<(u32, PropCheck)>,
    /// Event types that are not standard, with where each is first named.
    unknown_types: Vec<(String, ConfigError)>,
    /// While a company score compiles: a bare property name is the company's.
    company_props: bool,
    /// Company score names, by their index in the model (after every
    /// contact score): `company_score` conditions read them.
    company_scores: Vec<(usize, String)>,
    /// Some condition reads `company_score`.
    reads_company_score: bool,
}

impl Compiler<'_> {
    fn decode<T: DeserializeOwned>(&mut self, value: Value<'_>) -> Option<T> {
        self.d.decode(value)
    }

    /// Removes `key` from a table and returns its elements, which must be tables.
    fn take_array<'i>(
        &mut self,
        table: &mut DeTable<'i>,
        key: &str,
        written: &str,
        table_span: &Range<usize>,
    ) -> Vec<Value<'i>> {
        let Some(value) = table.remove(key) else {
            return Vec::new();
        };
        let span = value.span();
        match value.into_inner() {
            DeValue::Array(items) => {
                let items: Vec<Value<'i>> = items.into_iter().collect();
                let mut tables = Vec::with_capacity(items.len());
                for item in items {
                    if item.get_ref().is_table() {
                        tables.push(item);
                    } else {
                        self.d.error(
                            &item.span(),
                            format!("`{key}` entries must be tables, written as {written}"),
                        );
                    }
                }
                tables
            }
            _ => {
                let at = if span.is_empty() {
                    table_span.clone()
                } else {
                    span
                };
                self.d.error(
                    &at,
                    format!("`{key}` must be an array of tables, written as {written}"),
                );
                Vec::new()
            }
        }
    }

    /// Splits a table value into itself without `key`, and `key`'s entries.
    fn split<'i>(
        &mut self,
        value: Value<'i>,
        key: &str,
        written: &str,
    ) -> (Value<'i>, Vec<Value<'i>>) {
        let span = value.span();
        match value.into_inner() {
            DeValue::Table(mut table) => {
                let items = self.take_array(&mut table, key, written, &span);
                (Spanned::new(span, DeValue::Table(table)), items)
            }
            other => (Spanned::new(span, other), Vec::new()),
        }
    }

    fn bounded_int(
        &mut self,
        value: Option<&Spanned<i64>>,
        default: i64,
        lo: i64,
        hi: i64,
        what: &str,
    ) -> i64 {
        match value {
            None => default,
            Some(v) if (lo..=hi).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                self.d.error(
                    &v.span(),
                    format!(
                        "`{what}` must be between {lo} and {hi}, got {}",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    fn unique(
        &mut self,
        seen: &mut HashMap<String, Range<usize>>,
        name: &Spanned<String>,
        what: &str,
    ) -> bool {
        let key = name.get_ref().trim().to_lowercase();
        if key.is_empty() {
            self.d.error(&name.span(), format!("{what} name is empty"));
            return false;
        }
        if seen.contains_key(&key) {
            self.d.error(
                &name.span(),
                format!(
                    "duplicate {what} name \"{}\": names must be unique",
                    name.get_ref()
                ),
            );
            return false;
        }
        seen.insert(key, name.span());
        true
    }
}

impl Compiler<'_> {
    // ------------------------------------------------------------------ slots

    pub(super) fn prop_slot(&mut self, path: &Spanned<String>) -> u32 {
        let text = path.get_ref().trim();
        let (scope, name) = match text.strip_prefix("company.") {
            Some(rest) => (Scope::Company, rest),
            None if self.company_props => (Scope::Company, text),
            None => (Scope::Contact, text),
        };
        if name.is_empty() {
            self.d.error(&path.span(), "property name is empty");
        }
        if let Some(slot) = self.schema.prop_slot(scope, name) {
            return slot;
        }
        let slot = self.schema.props.len() as u32;
        self.schema.props.push(PropSlot {
            scope,
            name: name.to_owned(),
            needs_folded: false,
            needs_number: false,
            needs_time: false,
            at: self.d.locate(&path.span(), String::new()).1,
        });
        let index = match scope {
            Scope::Contact => &mut self.schema.contact_props,
            Scope::Company => &mut self.schema.company_props,
        };
        index.insert(name.into(), slot);
        slot
    }

    pub(super) fn attr_slot(&mut self, name: &str) -> u16 {
        intern(&mut self.schema.attrs, &mut self.schema.attr_index, name)
    }

    pub(super) fn event_type(&mut self, name: &str) -> u32 {
        intern(
            &mut self.schema.event_types,
            &mut self.schema.type_index,
            name,
        )
    }

    /// Lists are named case-insensitively, as CRMs name them.
    pub(super) fn list_slot(&mut self, name: &str) -> u32 {
        let folded = name.trim().to_lowercase();
        intern(&mut self.schema.lists, &mut self.schema.list_index, &folded)
    }
}

/// The slot of `name` in `names`, added at the end the first time. Slots
/// are small integers by construction: a model names far fewer than
/// `u16::MAX` attributes, event types or lists (saturating, never
/// wrapping, if one ever did).
fn intern<T: Copy + TryFrom<usize> + From<u16>>(
    names: &mut Vec<String>,
    index: &mut rustc_hash::FxHashMap<Box<str>, T>,
    name: &str,
) -> T {
    if let Some(slot) = index.get(name) {
        return *slot;
    }
    let slot = T::try_from(names.len()).unwrap_or(T::from(u16::MAX));
    names.push(name.to_owned());
    index.insert(name.into(), slot);
    slot
}

fn names<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.map(|n| format!("\"{n}\"")).collect();
    if quoted.is_empty() {
        "none".to_owned()
    } else {
        quoted.join(", ")
    }
}

fn scalar_text(value: &RawScalar) -> String {
    match value {
        RawScalar::Bool(b) => b.to_string(),
        RawScalar::Int(i) => i.to_string(),
        RawScalar::Float(f) => f.to_string(),
        RawScalar::Text(t) => t.clone(),
    }
}

fn span_of<T>(value: &Option<Spanned<T>>) -> Option<Option<Range<usize>>> {
    value.as_ref().map(|v| Some(v.span()))
}

/// What a group, its rules, or a score can add at most and take away at
/// most; `None` where it is unbounded.
#[derive(Clone, Copy, Debug)]
struct Bound {
    max: Option<f64>,
    min: Option<f64>,
}

impl Bound {
    fn single(points: f64) -> Bound {
        Bound {
            max: Some(points.max(0.0)),
            min: Some(points.min(0.0)),
        }
    }

    fn add(&mut self, other: Bound) {
        self.max = self.max.zip(other.max).map(|(a, b)| a + b);
        self.min = self.min.zip(other.min).map(|(a, b)| a + b);
    }
}

struct GroupCtx<'s> {
    index: usize,
    part: Option<Part>,
    decay: Option<Decay>,
    window_ms: Option<i64>,
    /// What the group's rules may read (the record, or a company and its people).
    scope: CondScope<'s>,
}

/// `"contact"` or `"company"`, as `[[score]] object` names them.
fn object_named(text: &str) -> Option<Object> {
    match text.trim().to_ascii_lowercase().as_str() {
        "contact" => Some(Object::Contact),
        "company" => Some(Object::Company),
        _ => None,
    }
}

/// A string key of a table value, read before the table is decoded.
fn peek_str<'v>(value: &'v Value<'_>, key: &str) -> Option<&'v str> {
    value.get_ref().get(key).and_then(|v| v.get_ref().as_str())
}

/// The naming and points keys a clause carries.
fn role_keys(c: &RawClause) -> Vec<(&'static str, Option<Range<usize>>)> {
    [
        ("name", span_of(&c.name)),
        ("points", span_of(&c.points)),
        ("once", span_of(&c.once)),
        ("max_occurrences", span_of(&c.max_occurrences)),
        ("points_per_unit", span_of(&c.points_per_unit)),
        ("max_points", span_of(&c.max_points)),
        ("on_match", span_of(&c.on_match)),
        ("on_miss", span_of(&c.on_miss)),
        ("effect", span_of(&c.effect)),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.map(|s| (k, s)))
    .collect()
}

/// The subject and operator keys a clause carries.
fn condition_keys(c: &RawClause) -> Vec<(&'static str, Option<Range<usize>>)> {
    let present = |b: bool| if b { Some(None) } else { None };
    [
        ("property", span_of(&c.property)),
        ("event", span_of(&c.event)),
        ("list", span_of(&c.list)),
        ("score", span_of(&c.score)),
        ("grade_at_least", span_of(&c.grade_at_least)),
        ("grade_at_most", span_of(&c.grade_at_most)),
        ("tier", span_of(&c.tier)),
        ("rule", span_of(&c.rule)),
        ("stage", span_of(&c.stage)),
        ("disqualified", span_of(&c.disqualified)),
        ("company_score", span_of(&c.company_score)),
        ("people_sum", span_of(&c.people_sum)),
        ("people_max", span_of(&c.people_max)),
        ("people_avg", span_of(&c.people_avg)),
        (
            "people_count",
            c.people_count.as_ref().map(|n| Some(n.span())),
        ),
        ("roles", span_of(&c.roles)),
        ("all", present(c.all.is_some())),
        ("any", present(c.any.is_some())),
        ("not", c.not.as_ref().map(|n| Some(n.span()))),
        ("equals", span_of(&c.equals)),
        ("one_of", span_of(&c.one_of)),
        ("contains", span_of(&c.contains)),
        ("starts_with", span_of(&c.starts_with)),
        ("ends_with", span_of(&c.ends_with)),
        ("regex", span_of(&c.regex)),
        ("case_sensitive", present(c.case_sensitive.is_some())),
        ("gt", span_of(&c.gt)),
        ("gte", span_of(&c.gte)),
        ("lt", span_of(&c.lt)),
        ("lte", span_of(&c.lte)),
        ("between", span_of(&c.between)),
        ("is_set", span_of(&c.is_set)),
        ("before", span_of(&c.before)),
        ("after", span_of(&c.after)),
        ("older_than_days", span_of(&c.older_than_days)),
        ("within_days", span_of(&c.within_days)),
        ("part", span_of(&c.part)),
        ("url", span_of(&c.url)),
        ("campaign", span_of(&c.campaign)),
        ("form_id", span_of(&c.form_id)),
        ("asset", span_of(&c.asset)),
        ("attributes", span_of(&c.attributes)),
        ("min_count", span_of(&c.min_count)),
        ("max_count", span_of(&c.max_count)),
        ("absent", span_of(&c.absent)),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.map(|s| (k, s)))
    .collect()
}
