//! From TOML text to a validated `Model`, collecting every problem.
//!
//! The document is parsed once into a spanned tree; each table that can be
//! wrong on its own (a score, a group, a rule, a profile, a stage, a test)
//! is decoded separately, so one bad rule does not hide the next one's
//! problem. Semantic checks (references, ranges, exclusive options, caps
//! that can never be reached) run on the decoded values, each error pointing
//! at the value it is about.

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
    AttrPattern, Cond, Decay, Disqualifier, EventMatcher, EventMode, Expectation, GradeCriterion,
    Group, HotMatcher, Lifecycle, Matrix, Model, NumRange, Part, Pattern, Profile, PropCheck,
    PropSlot, PropTest, Rule, RuleKind, Schema, Scope, Score, TestCase, TextOp, Tier,
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
    let mut scores: Vec<Score> = Vec::new();
    let mut score_names: HashMap<String, Range<usize>> = HashMap::new();
    for value in score_values {
        if let Some(score) = c.score(value, &mut score_names) {
            scores.push(score);
        }
    }

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
        patterns_by_slot,
        attr_slots_by_type,
        profiles,
        disqualifiers,
        lifecycle,
        cases: Vec::new(),
        source_hash: 0,
        warnings: Vec::new(),
        unknown_types,
    };
    let cases = test_values
        .into_iter()
        .filter_map(|v| test_case(&mut d, &model, v))
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
    let best = super::STANDARD_EVENT_TYPES
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
            super::STANDARD_EVENT_TYPES.join(", ")
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
}

struct Compiler<'a> {
    d: Diagnostics<'a>,
    schema: Schema,
    matchers: Vec<EventMatcher>,
    patterns: Vec<AttrPattern>,
    static_checks: Vec<(u32, PropCheck)>,
    /// Event types that are not standard, with where each is first named.
    unknown_types: Vec<(String, ConfigError)>,
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

    // ----------------------------------------------------------------- scores

    fn score(
        &mut self,
        value: Value<'_>,
        names: &mut HashMap<String, Range<usize>>,
    ) -> Option<Score> {
        let span = value.span();
        let (rest, group_values) = self.split(value, "group", "[[score.group]]");
        let raw: Option<RawScore> = self.decode(rest);
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
            if let Some((group, rule_list, bound)) =
                self.group(group_value, groups.len(), &mut group_names, &mut rule_names)
            {
                groups.push(group);
                rules.extend(rule_list);
                bounds.push(bound);
            }
        }
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

    fn matrix_axis(&mut self, axis: &Spanned<Vec<f64>>, what: &str) -> Option<[f64; 2]> {
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

    fn part(&mut self, text: &Spanned<String>, allow_total: bool) -> Option<Part> {
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

    fn group(
        &mut self,
        value: Value<'_>,
        index: usize,
        group_names: &mut HashMap<String, Range<usize>>,
        rule_names: &mut HashMap<String, Range<usize>>,
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

    fn decay(&mut self, raw: &Spanned<RawDecay>, part: Option<Part>) -> Option<Decay> {
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

    fn days(&mut self, value: &Spanned<f64>, what: &str) -> Option<i64> {
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

    // ------------------------------------------------------------------ rules

    fn rule(
        &mut self,
        clause: RawClause,
        span: &Range<usize>,
        ctx: &GroupCtx,
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
        let cond = self.cond(&clause, span, CondScope::Record)?;
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

    fn event_rule(
        &mut self,
        clause: &RawClause,
        span: &Range<usize>,
        ctx: &GroupCtx,
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

    fn count_range(&mut self, clause: &RawClause, default_min: i64) -> Option<(u32, u32)> {
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
    fn matcher(
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
            if !super::STANDARD_EVENT_TYPES.contains(&type_name) {
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

    fn filter(
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

    // ------------------------------------------------------------- conditions

    /// Checks that a clause carries only the naming/points keys its role allows.
    fn check_role_keys(&mut self, clause: &RawClause, span: &Range<usize>, role: Role) {
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
    fn cond(&mut self, c: &RawClause, span: &Range<usize>, scope: CondScope<'_>) -> Option<Cond> {
        let composite = c.all.is_some() || c.any.is_some() || c.not.is_some();
        let grade = c.grade_at_least.is_some() || c.grade_at_most.is_some();
        let score_subject =
            (c.score.is_some() || c.part.is_some()) && c.tier.is_none() && c.rule.is_none();
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
            ("all/any/not", composite),
        ]
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(k, _)| k)
        .collect();
        match subjects.as_slice() {
            [] => {
                self.d.error(span, "a condition needs one subject: property, event, list, score, grade_at_least, tier, rule, stage, disqualified, or all/any/not");
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
        let CondScope::Stage {
            score,
            stage,
            scores,
            stages,
        } = scope
        else {
            if derived {
                self.d.error(span, format!(
                    "`{}` can only be used in [[lifecycle.stage]] conditions: here only properties, events and lists are known",
                    subjects[0].split('/').next().unwrap_or("score")
                ));
                return None;
            }
            return self.record_cond(c, span, subjects[0], scope);
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
                let mut range = self.num_range(c, span)?;
                if let Some(eq) = &c.equals {
                    match eq.get_ref() {
                        RawScalar::Int(i) => {
                            range = NumRange {
                                lo: Some((*i as f64, true)),
                                hi: Some((*i as f64, true)),
                            }
                        }
                        RawScalar::Float(f) => {
                            range = NumRange {
                                lo: Some((*f, true)),
                                hi: Some((*f, true)),
                            }
                        }
                        _ => {
                            self.d
                                .error(&eq.span(), "a score is compared with a number");
                            return None;
                        }
                    }
                }
                if range == NumRange::default() {
                    self.d.error(
                        span,
                        "a score condition needs a comparison: gt, gte, lt, lte, between or equals",
                    );
                    return None;
                }
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
    fn record_cond(
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
                if let Some(items) = &c.all {
                    let inner: Vec<Cond> =
                        items.iter().filter_map(|i| self.nested(i, scope)).collect();
                    if inner.len() != items.len() {
                        return None;
                    }
                    if items.is_empty() {
                        self.d
                            .error(span, "`all` is empty: list at least one condition");
                    }
                    parts.push(Cond::All(inner));
                }
                if let Some(items) = &c.any {
                    let inner: Vec<Cond> =
                        items.iter().filter_map(|i| self.nested(i, scope)).collect();
                    if inner.len() != items.len() {
                        return None;
                    }
                    if items.is_empty() {
                        self.d
                            .error(span, "`any` is empty: list at least one condition");
                    }
                    parts.push(Cond::Any(inner));
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

    fn nested(&mut self, item: &Spanned<RawClause>, scope: CondScope<'_>) -> Option<Cond> {
        let span = item.span();
        self.check_role_keys(item.get_ref(), &span, Role::Condition);
        self.cond(item.get_ref(), &span, scope)
    }

    /// Reports operator keys that make no sense for the clause's subject.
    fn check_ops(&mut self, c: &RawClause, span: &Range<usize>, subject: &str, allowed: &[&str]) {
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

    fn property_cond(&mut self, c: &RawClause, span: &Range<usize>) -> Option<Cond> {
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
    fn prop_check(&mut self, slot: u32, check: PropCheck) -> Cond {
        let reads_now = matches!(&check, PropCheck::Value(tests)
            if tests.iter().any(|t| matches!(t, PropTest::DateWithin(_) | PropTest::DateOlderThan(_))));
        if reads_now {
            return Cond::Prop { slot, check };
        }
        self.static_checks.push((slot, check));
        Cond::Static(self.static_checks.len() as u32 - 1)
    }

    fn num_range(&mut self, c: &RawClause, span: &Range<usize>) -> Option<NumRange> {
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

    fn date(&mut self, value: Option<&Spanned<String>>) -> Option<i64> {
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

    fn grade(&mut self, value: Option<&Spanned<String>>) -> Option<Option<Grade>> {
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

    fn step(&mut self, value: Option<&Spanned<String>>) -> Option<Option<GradeStep>> {
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

    // ------------------------------------------------------------------ slots

    fn prop_slot(&mut self, path: &Spanned<String>) -> u32 {
        let text = path.get_ref().trim();
        let (scope, name) = match text.strip_prefix("company.") {
            Some(rest) => (Scope::Company, rest),
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

    fn attr_slot(&mut self, name: &str) -> u16 {
        if let Some(slot) = self.schema.attr_index.get(name) {
            return *slot;
        }
        let slot = self.schema.attrs.len() as u16;
        self.schema.attrs.push(name.to_owned());
        self.schema.attr_index.insert(name.into(), slot);
        slot
    }

    fn event_type(&mut self, name: &str) -> u32 {
        if let Some(slot) = self.schema.type_index.get(name) {
            return *slot;
        }
        let slot = self.schema.event_types.len() as u32;
        self.schema.event_types.push(name.to_owned());
        self.schema.type_index.insert(name.into(), slot);
        slot
    }

    fn list_slot(&mut self, name: &str) -> u32 {
        let folded = name.trim().to_lowercase();
        if let Some(slot) = self.schema.list_index.get(folded.as_str()) {
            return *slot;
        }
        let slot = self.schema.lists.len() as u32;
        self.schema.lists.push(folded.clone());
        self.schema.list_index.insert(folded.into(), slot);
        slot
    }

    // ---------------------------------------------- grading, lifecycle, rest

    fn disqualifier(&mut self, value: Value<'_>) -> Option<Disqualifier> {
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

    fn profiles(&mut self, values: Vec<Value<'_>>) -> Vec<Profile> {
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

    fn lifecycle(&mut self, value: Value<'_>, scores: &mut [Score]) -> Option<Lifecycle> {
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
            None => (0..scores.len()).collect(),
            Some(list) => list
                .iter()
                .filter_map(|n| {
                    let found = scores
                        .iter()
                        .position(|s| s.name.eq_ignore_ascii_case(n.get_ref().trim()));
                    if found.is_none() {
                        self.d
                            .error(&n.span(), format!("unknown score \"{}\"", n.get_ref()));
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

struct GroupCtx {
    index: usize,
    part: Option<Part>,
    decay: Option<Decay>,
    window_ms: Option<i64>,
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

fn test_case(d: &mut Diagnostics<'_>, model: &Model, value: Value<'_>) -> Option<TestCase> {
    let span = value.span();
    let (rest, record_value) = match value.into_inner() {
        DeValue::Table(mut table) => {
            let record = table.remove("record");
            (Spanned::new(span.clone(), DeValue::Table(table)), record)
        }
        other => (Spanned::new(span.clone(), other), None),
    };
    let raw = match RawTest::deserialize(ValueDeserializer::from(rest)) {
        Ok(raw) => Some(raw),
        Err(e) => {
            d.toml(&e, &span);
            None
        }
    };
    let record = match record_value {
        None => {
            d.error(
                &span,
                "test has no `record` table: add [test.record] with id, properties and events",
            );
            None
        }
        Some(v) => {
            let rspan = v.span();
            match (RecordSeed { model }).deserialize(ValueDeserializer::from(v)) {
                Ok(r) => Some(r),
                Err(e) => {
                    d.toml(&e, &rspan);
                    None
                }
            }
        }
    };
    let raw = raw?;
    let now_text = match raw.now.get_ref() {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(dt) => dt.to_string(),
        _ => String::new(),
    };
    let now = match now_text.parse::<jiff::Timestamp>() {
        Ok(now) => Some(now),
        Err(_) => {
            d.error(
                &raw.now.span(),
                "test `now` must be an RFC 3339 timestamp, e.g. \"2026-06-01T00:00:00Z\"",
            );
            None
        }
    };
    let mut expectations = Vec::new();
    if raw.expect.is_empty() {
        d.error(&span, format!("test \"{}\" expects nothing: add [test.expect.<score>] with total, grade, tier or stage", raw.name.get_ref()));
    }
    for (score, expect) in raw.expect {
        let espan = expect.span();
        let expect: RawExpect = expect.into_inner();
        let Some(known) = model
            .scores
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&score))
        else {
            d.error(
                &espan,
                format!(
                    "test expects unknown score \"{score}\": known scores are {}",
                    names(model.score_names())
                ),
            );
            continue;
        };
        let grade = match &expect.grade {
            None => None,
            Some(g) => match Grade::parse(g.get_ref()) {
                Some(g) => Some(g),
                None => {
                    d.error(&g.span(), format!("unknown grade \"{}\"", g.get_ref()));
                    continue;
                }
            },
        };
        expectations.push(Expectation {
            score: known.name.clone(),
            fit: expect.fit,
            engagement: expect.engagement,
            total: expect.total,
            grade,
            tier: expect.tier,
            matrix: expect.matrix,
            stage: expect.stage,
            disqualified: expect.disqualified,
        });
    }
    Some(TestCase {
        name: raw.name.into_inner(),
        now: now?,
        record: record?,
        expectations,
    })
}
