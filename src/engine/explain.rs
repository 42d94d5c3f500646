//! Turning a scorecard into words: the JSON scorecard line, the one-line
//! summary for a CRM text property, and the explanation for a person.
//!
//! Rendering is separate from scoring so the hot path never formats text.

use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use super::{Adjustment, Problem, ScoreResult, Scorecard};
use crate::model::{Cond, Model, NumRange, Part, PropCheck, PropTest, RuleKind, TextOp};
use crate::record::Record;

/// A number as people write it: `30`, `-2.5`.
pub(crate) fn num(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        let text = format!("{value:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Signed, with a real minus sign: `+30`, `−20`.
fn signed(value: f64) -> String {
    if value < 0.0 {
        format!("\u{2212}{}", num(-value))
    } else {
        format!("+{}", num(value))
    }
}

struct Points(f64);

impl Serialize for Points {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0.abs() < 9.0e15 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

/// The one-line summary of a score, e.g. `Pricing page ×3 +30 · Director +15 · Student −20`.
pub fn summary_line(model: &Model, card: &Scorecard, score: usize) -> String {
    let Some(result) = card.scores.get(score) else {
        return String::new();
    };
    let spec = &model.scores[score];
    let mut out = String::new();
    if let Some(d) = card.disqualified_by {
        let disqualifier = &model.disqualifiers[usize::from(d)];
        if disqualifier.zero_score {
            out.push_str("Disqualified: ");
            out.push_str(&disqualifier.name);
            return truncate(out, model.summary_max_chars);
        }
    }
    let mut hits: Vec<_> = result.hits.iter().filter(|h| h.points != 0.0).collect();
    hits.sort_by(|a, b| {
        b.points
            .abs()
            .total_cmp(&a.points.abs())
            .then(a.rule.cmp(&b.rule))
    });
    for hit in hits.iter().take(model.summary_items) {
        let rule = &spec.rules[usize::from(hit.rule)];
        let mut item = rule.name.clone();
        if hit.count > 1 && matches!(rule.kind, RuleKind::Events { .. }) {
            let _ = write!(item, " \u{d7}{}", hit.count);
        }
        let _ = write!(item, " {}", signed(hit.points));
        let separator = if out.is_empty() { "" } else { " \u{b7} " };
        if out.chars().count() + separator.chars().count() + item.chars().count()
            > model.summary_max_chars
        {
            break;
        }
        out.push_str(separator);
        out.push_str(&item);
    }
    if out.is_empty() {
        out.push_str("No criteria matched");
    }
    truncate(out, model.summary_max_chars)
}

fn truncate(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('\u{2026}');
    cut
}

/// A scorecard as one JSON object (one line of `leadscored score` output).
#[derive(Debug)]
pub struct CardJson<'a> {
    pub model: &'a Model,
    pub record_id: &'a str,
    pub card: &'a Scorecard,
}

impl Serialize for CardJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let model = self.model;
        let card = self.card;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("id", self.record_id)?;
        map.serialize_entry("scores", &ScoresJson { model, card })?;
        if let Some(p) = card.profile {
            map.serialize_entry("grade_profile", &model.profiles[usize::from(p)].name)?;
        }
        if let Some(d) = card.disqualified_by {
            map.serialize_entry("disqualified_by", &model.disqualifiers[usize::from(d)].name)?;
        }
        if !card.warnings.is_empty() {
            let warnings: Vec<String> = card
                .warnings
                .iter()
                .map(|w| warning_text(model, w.slot, w.problem))
                .collect();
            map.serialize_entry("warnings", &warnings)?;
        }
        map.end()
    }
}

/// A property slot's name as revops wrote it (`jobtitle`, `company.industry`).
fn property_name(model: &Model, slot: u32) -> String {
    model
        .schema
        .props
        .get(slot as usize)
        .map(|p| p.display_name())
        .unwrap_or_default()
}

fn warning_text(model: &Model, slot: u32, problem: Problem) -> String {
    let name = property_name(model, slot);
    match problem {
        Problem::NotANumber => {
            format!("property {name} is not a number; its numeric criteria did not match")
        }
        Problem::NotADate => {
            format!("property {name} is not a date; its date criteria did not match")
        }
        Problem::NoCompany => {
            "no associated company: the company.* criteria did not match".to_owned()
        }
    }
}

struct ScoresJson<'a> {
    model: &'a Model,
    card: &'a Scorecard,
}

impl Serialize for ScoresJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.model.scores.len()))?;
        for (index, result) in self.card.scores.iter().enumerate() {
            let spec = &self.model.scores[index];
            map.serialize_entry(
                &spec.name,
                &ScoreJson {
                    model: self.model,
                    card: self.card,
                    index,
                    result,
                },
            )?;
        }
        map.end()
    }
}

struct ScoreJson<'a> {
    model: &'a Model,
    card: &'a Scorecard,
    index: usize,
    result: &'a ScoreResult,
}

impl Serialize for ScoreJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let model = self.model;
        let spec = &model.scores[self.index];
        let r = self.result;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("fit", &Points(r.fit))?;
        map.serialize_entry("engagement", &Points(r.engagement))?;
        map.serialize_entry("total", &Points(r.total))?;
        map.serialize_entry("grade", &self.card.grade)?;
        map.serialize_entry(
            "tier",
            &r.tier.map(|t| spec.tiers[usize::from(t)].label.as_str()),
        )?;
        if spec.matrix.is_some() {
            map.serialize_entry("matrix", &r.matrix.map(matrix_label))?;
        }
        if !spec.stages.is_empty() {
            map.serialize_entry("stage", &stage_name(model, r))?;
        }
        map.serialize_entry("summary", &summary_line(model, self.card, self.index))?;
        map.serialize_entry(
            "reasons",
            &ReasonsJson {
                model,
                index: self.index,
                result: r,
            },
        )?;
        map.end()
    }
}

pub(crate) fn stage_name<'m>(model: &'m Model, result: &ScoreResult) -> Option<&'m str> {
    let lifecycle = model.lifecycle.as_ref()?;
    result
        .stage
        .and_then(|s| lifecycle.stages.get(usize::from(s)))
        .map(String::as_str)
}

pub(crate) fn matrix_label(cell: [u8; 2]) -> String {
    format!("{}{}", char::from(b'A' + cell[0]), cell[1] + 1)
}

struct ReasonsJson<'a> {
    model: &'a Model,
    index: usize,
    result: &'a ScoreResult,
}

#[derive(Serialize)]
struct ReasonJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adjustment: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    part: &'static str,
    points: Points,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u32>,
}

impl Serialize for ReasonsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let spec = &self.model.scores[self.index];
        let mut seq = s.serialize_seq(None)?;
        for hit in &self.result.hits {
            let rule = &spec.rules[usize::from(hit.rule)];
            let group = &spec.groups[usize::from(rule.group)];
            seq.serialize_element(&ReasonJson {
                rule: Some(&rule.name),
                adjustment: None,
                group: Some(&group.name),
                part: group.part.as_str(),
                points: Points(hit.points),
                count: matches!(rule.kind, RuleKind::Events { .. }).then_some(hit.count),
            })?;
        }
        for adjustment in &self.result.adjustments {
            let (kind, group, points) = adjustment_parts(adjustment);
            let part = group.map_or(Part::Total, |g| spec.groups[g].part);
            seq.serialize_element(&ReasonJson {
                rule: None,
                adjustment: Some(kind),
                group: group.map(|g| spec.groups[g].name.as_str()),
                part: part.as_str(),
                points: Points(points),
                count: None,
            })?;
        }
        seq.end()
    }
}

fn adjustment_parts(adjustment: &Adjustment) -> (&'static str, Option<usize>, f64) {
    match *adjustment {
        Adjustment::GroupMax { group, points } => ("group_max", Some(usize::from(group)), points),
        Adjustment::GroupMin { group, points } => ("group_min", Some(usize::from(group)), points),
        Adjustment::ScoreCap { points } => ("score_cap", None, points),
        Adjustment::ScoreFloor { points } => ("score_floor", None, points),
        Adjustment::Disqualified { points } => ("disqualified", None, points),
    }
}

/// A readable explanation of one record's scorecard, for a person.
pub fn explain_text(model: &Model, record: &Record, card: &Scorecard, now: Timestamp) -> String {
    explain_with(model, record, card, now, false)
}

/// As [`explain_text`]; `verbose` also lists rules that matched but are
/// worth 0 now (decayed, or rounded away).
pub fn explain_with(
    model: &Model,
    record: &Record,
    card: &Scorecard,
    now: Timestamp,
    verbose: bool,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Record {} scored with model \"{}\" as of {now}",
        record.id(),
        model.name
    );
    if let Some(d) = card.disqualified_by {
        let disqualifier = &model.disqualifiers[usize::from(d)];
        let effect = match (disqualifier.zero_score, disqualifier.grade_f) {
            (true, true) => "scores set to 0 and grade to F",
            (true, false) => "scores set to 0",
            _ => "grade set to F",
        };
        let _ = writeln!(out, "Disqualified by \"{}\": {effect}", disqualifier.name);
    }
    out.push('\n');
    match (card.profile, card.grade) {
        (Some(p), Some(grade)) => {
            let profile = &model.profiles[usize::from(p)];
            let how = if profile.when.is_some() {
                "its condition matched"
            } else {
                "the catch-all profile"
            };
            let _ = writeln!(
                out,
                "Grade {grade}  (profile \"{}\", {how}; starts at {})",
                profile.name, profile.start
            );
            for step in &card.grade_steps {
                let criterion = &profile.criteria[usize::from(step.criterion)];
                let why = if step.matched {
                    "matched"
                } else {
                    "did not match"
                };
                let _ = writeln!(
                    out,
                    "  {:>5}  {}  ({why})",
                    step.step.to_string(),
                    criterion.name
                );
            }
            if card.grade_steps.is_empty() {
                let _ = writeln!(out, "  no grading criterion moved the grade");
            }
            if card
                .disqualified_by
                .is_some_and(|d| model.disqualifiers[usize::from(d)].grade_f)
            {
                let _ = writeln!(out, "  forced to F by the disqualifier");
            }
        }
        _ if model.profiles.is_empty() => {
            let _ = writeln!(out, "Grade: none (the model has no [[grading]])");
        }
        _ => {
            let _ = writeln!(
                out,
                "Grade: none (no grading profile applies to this record)"
            );
        }
    }
    for (index, result) in card.scores.iter().enumerate() {
        let spec = &model.scores[index];
        let _ = writeln!(
            out,
            "\nScore \"{}\": {}  (fit {}, engagement {}; cap {})",
            spec.label,
            num(result.total),
            num(result.fit),
            num(result.engagement),
            num(spec.cap)
        );
        // Score-level adjustments under the score, where they apply, not
        // among the last group's rules.
        for adjustment in &result.adjustments {
            let text = match adjustment {
                Adjustment::ScoreCap { .. } => format!("score cap {} reached", num(spec.cap)),
                Adjustment::ScoreFloor { .. } => {
                    format!("score floor {} reached", num(spec.floor.unwrap_or(0.0)))
                }
                Adjustment::Disqualified { .. } => "set to 0: disqualified".to_owned(),
                _ => continue,
            };
            let (_, _, points) = adjustment_parts(adjustment);
            let _ = writeln!(out, "  {:>7}  {text}", signed(points));
        }
        let worthless = |points: f64| !verbose && num(points) == "0";
        let mut hidden = 0;
        for (g, group) in spec.groups.iter().enumerate() {
            let hits: Vec<_> = result
                .hits
                .iter()
                .filter(|h| usize::from(spec.rules[usize::from(h.rule)].group) == g)
                .filter(|h| {
                    let keep = !worthless(h.points);
                    hidden += usize::from(!keep);
                    keep
                })
                .collect();
            let adjustments: Vec<_> = result
                .adjustments
                .iter()
                .filter(|a| matches!(a, Adjustment::GroupMax { group, .. } | Adjustment::GroupMin { group, .. } if usize::from(*group) == g))
                .collect();
            if hits.is_empty() && adjustments.is_empty() {
                continue;
            }
            let bounds = match (group.min, group.max) {
                (Some(lo), Some(hi)) => format!(", {}…{}", num(lo), num(hi)),
                (None, Some(hi)) => format!(", max {}", num(hi)),
                (Some(lo), None) => format!(", min {}", num(lo)),
                (None, None) => String::new(),
            };
            let _ = writeln!(out, "  {} ({}{bounds})", group.name, group.part.as_str());
            for hit in hits {
                let rule = &spec.rules[usize::from(hit.rule)];
                let detail = match rule.kind {
                    RuleKind::Events { .. } if hit.count == 0 => {
                        " (no occurrence in the window)".to_owned()
                    }
                    RuleKind::Events { .. } if hit.count > 1 => {
                        format!(" ({} occurrences)", hit.count)
                    }
                    _ => String::new(),
                };
                let detail = if num(hit.points) == "0" && rule.points != 0.0 {
                    format!("{detail} (worth 0 now)")
                } else {
                    detail
                };
                let _ = writeln!(out, "    {:>7}  {}{detail}", signed(hit.points), rule.name);
            }
            for adjustment in adjustments {
                let (kind, _, points) = adjustment_parts(adjustment);
                let text = if kind == "group_max" {
                    "group max reached"
                } else {
                    "group min reached"
                };
                let _ = writeln!(out, "    {:>7}  {text}", signed(points));
            }
        }
        if hidden > 0 {
            let _ = writeln!(
                out,
                "  ({hidden} more matched but {} worth 0 now: --verbose lists {})",
                if hidden == 1 { "is" } else { "are" },
                if hidden == 1 { "it" } else { "them" }
            );
        }
        if result.hits.is_empty() {
            let _ = writeln!(out, "  no rule matched");
        }
        if let Some(t) = result.tier {
            let tier = &spec.tiers[usize::from(t)];
            let next = spec.tiers.get(usize::from(t) + 1);
            let value = match spec.tier_on {
                Part::Fit => result.fit,
                Part::Engagement => result.engagement,
                Part::Total => result.total,
            };
            let above = next
                .map(|n| format!(", below {} for \"{}\"", num(n.min), n.label))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  Tier \"{}\": {} {} ≥ {}{above}",
                tier.label,
                spec.tier_on.as_str(),
                num(value),
                num(tier.min)
            );
        } else if !spec.tiers.is_empty() {
            let _ = writeln!(
                out,
                "  Tier: none ({} is below the lowest tier)",
                spec.tier_on.as_str()
            );
        }
        if let (Some(cell), Some(matrix)) = (result.matrix, &spec.matrix) {
            let _ = writeln!(
                out,
                "  Matrix {}: fit rows A ≥ {}, B ≥ {}; engagement columns 1 ≥ {}, 2 ≥ {}",
                matrix_label(cell),
                num(matrix.fit[0]),
                num(matrix.fit[1]),
                num(matrix.engagement[0]),
                num(matrix.engagement[1])
            );
        }
        if !spec.stages.is_empty() {
            match (stage_name(model, result), result.stage_kept) {
                (Some(stage), _) if card.disqualified_by.is_some() => {
                    let _ = writeln!(
                        out,
                        "  Stage \"{stage}\": the stage of disqualified records, whatever the stage conditions or the current stage say"
                    );
                }
                (Some(stage), true) => {
                    let _ = writeln!(
                        out,
                        "  Stage \"{stage}\": the record's current stage, kept because rules never downgrade"
                    );
                }
                (Some(stage), false) => {
                    let _ = writeln!(
                        out,
                        "  Stage \"{stage}\": the highest stage whose conditions all hold"
                    );
                }
                (None, _) => {
                    let _ = writeln!(out, "  Stage: none (no stage's conditions hold)");
                }
            }
            if let Some((next, items)) = model.next_stage_checklist(record, card, now, index) {
                let name = model
                    .lifecycle
                    .as_ref()
                    .and_then(|l| l.stages.get(next))
                    .map_or("", String::as_str);
                let missing = items.iter().filter(|(_, held)| !held).count();
                let _ = writeln!(
                    out,
                    "  Next stage \"{name}\": {missing} of {} conditions not met",
                    items.len()
                );
                for (cond, held) in items {
                    let _ = writeln!(
                        out,
                        "    {} {}",
                        if held { "\u{2713}" } else { "\u{2717}" },
                        describe(model, cond)
                    );
                }
            }
        }
        let _ = writeln!(out, "  Summary: {}", summary_line(model, card, index));
    }
    for warning in &card.warnings {
        let _ = writeln!(
            out,
            "\nwarning: {}",
            warning_text(model, warning.slot, warning.problem)
        );
    }
    out
}

/// A condition in words, e.g. `at least 2 content_download events with asset like "premium-*"`.
fn describe(model: &Model, cond: &Cond) -> String {
    match cond {
        Cond::Static(index) => model
            .static_checks
            .get(*index as usize)
            .map(|(slot, check)| describe_property(model, *slot, check))
            .unwrap_or_default(),
        Cond::Prop { slot, check } => describe_property(model, *slot, check),
        Cond::Events { matcher, min, max } => describe_events(model, *matcher, *min, *max),
        Cond::List(list) => format!(
            "member of list \"{}\"",
            model
                .schema
                .lists
                .get(*list as usize)
                .map_or("", |l| l.as_str())
        ),
        Cond::Score { score, part, range } => {
            let name = model
                .scores
                .get(usize::from(*score))
                .map_or("", |s| s.name.as_str());
            format!(
                "score \"{name}\" {} {}",
                part.as_str(),
                describe_range(range)
            )
        }
        Cond::Grade { min, max } => match (min, max) {
            (Some(lo), Some(hi)) => format!("grade between {lo} and {hi}"),
            (Some(lo), None) => format!("grade at least {lo}"),
            (None, Some(hi)) => format!("grade at most {hi}"),
            (None, None) => "any grade".to_owned(),
        },
        Cond::Tier { score, tiers } => {
            let spec = model.scores.get(usize::from(*score));
            let labels: Vec<String> = tiers
                .iter()
                .filter_map(|t| spec.and_then(|s| s.tiers.get(usize::from(*t))))
                .map(|t| format!("\"{}\"", t.label))
                .collect();
            format!("tier is {}", labels.join(" or "))
        }
        Cond::Fired { score, rule } => {
            let name = model
                .scores
                .get(usize::from(*score))
                .and_then(|s| s.rules.get(usize::from(*rule)));
            format!("rule \"{}\" matched", name.map_or("", |r| r.name.as_str()))
        }
        Cond::Disqualified(true) => "disqualified".to_owned(),
        Cond::Disqualified(false) => "not disqualified".to_owned(),
        Cond::Stage(stage) => {
            let name = model
                .lifecycle
                .as_ref()
                .and_then(|l| l.stages.get(usize::from(*stage)));
            format!(
                "qualifies for stage \"{}\"",
                name.map_or("", String::as_str)
            )
        }
        Cond::All(items) => format!("all of ({})", describe_each(model, items)),
        Cond::Any(items) => format!("any of ({})", describe_each(model, items)),
        Cond::Not(inner) => format!("not ({})", describe(model, inner)),
    }
}

fn describe_each(model: &Model, items: &[Cond]) -> String {
    items
        .iter()
        .map(|c| describe(model, c))
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe_property(model: &Model, slot: u32, check: &PropCheck) -> String {
    let name = property_name(model, slot);
    let tests = match check {
        PropCheck::IsSet(true) => return format!("{name} is set"),
        PropCheck::IsSet(false) => return format!("{name} is not set"),
        PropCheck::Value(tests) => tests,
    };
    let parts: Vec<String> = tests
        .iter()
        .map(|test| match test {
            PropTest::Text { op, needles, .. } => {
                let quoted: Vec<String> = needles.iter().map(|n| format!("\"{n}\"")).collect();
                let verb = match (op, needles.len()) {
                    (TextOp::Equals, 1) => "equals",
                    (TextOp::Equals, _) => "is one of",
                    (TextOp::Contains, _) => "contains",
                    (TextOp::StartsWith, _) => "starts with",
                    (TextOp::EndsWith, _) => "ends with",
                };
                let joiner = if *op == TextOp::Equals { ", " } else { " or " };
                format!("{verb} {}", quoted.join(joiner))
            }
            PropTest::Regex(regex) => format!("matches /{}/", regex.as_str()),
            PropTest::Number(range) => describe_range(range),
            PropTest::NumberEquals(x) => format!("= {}", num(*x)),
            PropTest::Bool(b) => format!("is {b}"),
            PropTest::DateAbsolute { after, before } => {
                let date = |ms: i64| {
                    jiff::Timestamp::from_millisecond(ms)
                        .map(|t| t.strftime("%Y-%m-%d").to_string())
                        .unwrap_or_default()
                };
                match (after, before) {
                    (Some(a), Some(b)) => {
                        format!("on or after {} and before {}", date(*a), date(*b))
                    }
                    (Some(a), None) => format!("on or after {}", date(*a)),
                    (None, Some(b)) => format!("before {}", date(*b)),
                    (None, None) => "is a date".to_owned(),
                }
            }
            PropTest::DateWithin(ms) => format!("within the last {} days", days(*ms)),
            PropTest::DateOlderThan(ms) => format!("more than {} days ago", days(*ms)),
        })
        .collect();
    format!("{name} {}", parts.join(" and "))
}

fn describe_events(model: &Model, matcher: u32, min: u32, max: u32) -> String {
    let Some(m) = model.matchers.get(matcher as usize) else {
        return String::new();
    };
    let kind = m
        .kind
        .and_then(|k| model.schema.event_types.get(k as usize))
        .map_or("activity", String::as_str);
    let mut filters = String::new();
    for (index, pattern) in model.patterns.iter().enumerate() {
        if m.required & (1u128 << index) != 0 {
            let attr = model
                .schema
                .attrs
                .get(usize::from(pattern.slot))
                .map_or("", String::as_str);
            let joiner = if filters.is_empty() {
                " with "
            } else {
                " and "
            };
            let _ = write!(filters, "{joiner}{attr} like \"{}\"", pattern.glob);
        }
    }
    let window = m
        .window_ms
        .map(|w| format!(" in the last {} days", days(w)))
        .unwrap_or_default();
    let (one, many) = match m.kind {
        Some(_) => (format!("{kind} event"), format!("{kind} events")),
        None => ("activity".to_owned(), "activities".to_owned()),
    };
    match (min, max) {
        (0, 0) => format!("no {one}{filters}{window}"),
        (1, u32::MAX) if m.kind.is_none() => format!("any activity{filters}{window}"),
        (1, u32::MAX) => {
            let article = if one.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            format!("{article} {one}{filters}{window}")
        }
        (lo, u32::MAX) => format!("at least {lo} {many}{filters}{window}"),
        (lo, hi) => format!("{lo} to {hi} {many}{filters}{window}"),
    }
}

fn describe_range(range: &NumRange) -> String {
    let lo = range
        .lo
        .map(|(v, inclusive)| format!("{} {}", if inclusive { "≥" } else { ">" }, num(v)));
    let hi = range
        .hi
        .map(|(v, inclusive)| format!("{} {}", if inclusive { "≤" } else { "<" }, num(v)));
    match (lo, hi) {
        (Some(lo), Some(hi)) => format!("{lo} and {hi}"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => "any value".to_owned(),
    }
}

fn days(ms: i64) -> String {
    num(ms as f64 / 86_400_000.0)
}
