//! Turning a scorecard into words: the JSON scorecard line, the one-line
//! summary for a CRM text property, and the explanation for a person.
//!
//! Rendering is separate from scoring so the hot path never formats text.

use std::fmt::Write as _;

use jiff::Timestamp;

use super::{AccountCard, Adjustment, People, Problem, ScoreResult, Scorecard};
use crate::model::{Cond, Model, NumRange, Object, Part, PropCheck, PropTest, RuleKind, TextOp};
use crate::record::{Account, Record};

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

/// The one-line summary of a score, e.g. `Pricing page ×3 +30 · Director +15 · Student −20`.
pub fn summary_line(model: &Model, card: &Scorecard, score: usize) -> String {
    let mut out = String::new();
    summary_into(model, card, score, &mut out);
    out
}

/// [`summary_line`] into a reused buffer, without allocating: the largest
/// hits first (by size, then rule order), as many as fit.
pub(crate) fn summary_into(model: &Model, card: &Scorecard, score: usize, out: &mut String) {
    out.clear();
    let Some(result) = card.scores.get(score) else {
        return;
    };
    let spec = &model.scores[score];
    let max = model.summary_max_chars;
    if let Some(d) = card.disqualified_by {
        let disqualifier = &model.disqualifiers[usize::from(d)];
        if disqualifier.zero_score {
            out.push_str("Disqualified: ");
            out.push_str(&disqualifier.name);
            truncate_in_place(out, max);
            return;
        }
    }
    // Order: larger |points| first, then rule, then position.
    let before = |a: (f64, u16, usize), b: (f64, u16, usize)| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
            .is_lt()
    };
    let mut last: Option<(f64, u16, usize)> = None;
    let mut chars = 0usize;
    for _ in 0..model.summary_items {
        let next = result
            .hits
            .iter()
            .enumerate()
            .filter(|(_, h)| h.points != 0.0)
            .map(|(i, h)| (h.points.abs(), h.rule, i))
            .filter(|key| last.is_none_or(|last| before(last, *key)))
            .reduce(|best, key| if before(key, best) { key } else { best });
        let Some(key) = next else { break };
        last = Some(key);
        let hit = &result.hits[key.2];
        let rule = &spec.rules[usize::from(hit.rule)];
        let start = out.len();
        if !out.is_empty() {
            out.push_str(" \u{b7} ");
        }
        out.push_str(&rule.name);
        if hit.count > 1 && matches!(rule.kind, RuleKind::Events { .. }) {
            out.push_str(" \u{d7}");
            out.push_str(itoa::Buffer::new().format(hit.count));
        }
        out.push(' ');
        push_signed(out, hit.points);
        let added = out[start..].chars().count();
        if chars + added > max {
            out.truncate(start);
            break;
        }
        chars += added;
    }
    if out.is_empty() {
        out.push_str("No criteria matched");
    }
    truncate_in_place(out, max);
}

/// [`signed`] appended to `out`.
fn push_signed(out: &mut String, value: f64) {
    out.push(if value < 0.0 { '\u{2212}' } else { '+' });
    let value = value.abs();
    if value.fract() == 0.0 && value < 1e15 {
        out.push_str(itoa::Buffer::new().format(value as i64));
    } else {
        let _ = write!(out, "{value:.2}");
        let trimmed = out.trim_end_matches('0').trim_end_matches('.').len();
        out.truncate(trimmed);
    }
}

fn truncate_in_place(text: &mut String, max: usize) {
    if text.chars().count() <= max {
        return;
    }
    let cut = text
        .char_indices()
        .nth(max.saturating_sub(1))
        .map_or(text.len(), |(i, _)| i);
    text.truncate(cut);
    text.push('\u{2026}');
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

pub(super) fn warning_text(model: &Model, slot: u32, problem: Problem) -> String {
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

pub(super) fn adjustment_parts(adjustment: &Adjustment) -> (&'static str, Option<usize>, f64) {
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
        "{} {} scored with model \"{}\" as of {now}",
        if card.object == Object::Company {
            "Company"
        } else {
            "Record"
        },
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
    if card.object == Object::Contact {
        out.push('\n');
    }
    match (card.profile, card.grade) {
        // A company has no grade: grading reads a person.
        _ if card.object == Object::Company => {}
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
        if spec.object != card.object {
            continue;
        }
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
        Cond::PersonStage(stage) => {
            let name = model
                .lifecycle
                .as_ref()
                .and_then(|l| l.stages.get(usize::from(*stage)));
            format!("at stage \"{}\"", name.map_or("", String::as_str))
        }
        Cond::CompanyScore { score, part, range } => format!(
            "company score \"{}\" {} {}",
            score_name(model, *score),
            part.as_str(),
            describe_range(range)
        ),
        Cond::Rollup {
            agg,
            score,
            part,
            range,
        } => format!(
            "{} of the people's \"{}\" {} {}",
            agg.as_str(),
            score_name(model, *score),
            part.as_str(),
            describe_range(range)
        ),
        Cond::PeopleCount { cond, range } => format!(
            "people with ({}): {}",
            describe(model, cond),
            describe_range(range)
        ),
        Cond::Roles(roles) => format!(
            "distinct people cover the roles {}",
            roles
                .iter()
                .map(|r| format!("\"{}\"", role_name(model, r)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Cond::All(items) => format!("all of ({})", describe_each(model, items)),
        Cond::Any(items) => format!("any of ({})", describe_each(model, items)),
        Cond::Not(inner) => format!("not ({})", describe(model, inner)),
    }
}

fn score_name(model: &Model, score: u16) -> &str {
    model
        .scores
        .get(usize::from(score))
        .map_or("", |s| s.name.as_str())
}

/// A role of a buying group: the contact rule that marks it.
pub(crate) fn role_name<'m>(model: &'m Model, role: &Cond) -> &'m str {
    match role {
        Cond::Fired { score, rule } => model
            .scores
            .get(usize::from(*score))
            .and_then(|s| s.rules.get(usize::from(*rule)))
            .map_or("", |r| r.name.as_str()),
        _ => "",
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

/// A company's explanation: its scores as [`explain_with`] gives them,
/// then its people (each one's contact scores, tier and stage), then every
/// roll-up its rules read, with its value and the people behind it.
/// One object's scores on a card in brief: `contact 60 Medium SQL  grade B`.
pub fn brief(model: &Model, card: &Scorecard, object: Object) -> String {
    let mut line = String::new();
    for (index, result) in card.scores.iter().enumerate() {
        let spec = &model.scores[index];
        if spec.object != object {
            continue;
        }
        let _ = write!(line, " {} {}", spec.name, num(result.total));
        if let Some(tier) = result.tier.and_then(|t| spec.tiers.get(usize::from(t))) {
            let _ = write!(line, " {}", tier.label);
        }
        if let Some(stage) = stage_name(model, result) {
            let _ = write!(line, " {stage}");
        }
    }
    if let Some(grade) = card.grade.filter(|_| object == Object::Contact) {
        let _ = write!(line, "  grade {grade}");
    }
    line
}

pub fn explain_account(
    model: &Model,
    account: &Account,
    cards: &AccountCard,
    now: Timestamp,
    verbose: bool,
) -> String {
    let mut out = explain_with(model, &account.company, &cards.company, now, verbose);
    let people = People {
        records: &account.people,
        cards: &cards.people,
    };
    let now_ms = now.as_millisecond();
    let _ = writeln!(out, "\nPeople ({}):", account.people.len());
    if account.people.is_empty() {
        let _ = writeln!(out, "  none: the company's roll-ups see nobody");
    }
    for (record, card) in account.people.iter().zip(&cards.people) {
        let _ = writeln!(
            out,
            "  {} {}",
            record.id(),
            brief(model, card, Object::Contact)
        );
    }
    let mut rollups = Vec::new();
    for spec in model.scores.iter().filter(|s| s.object == Object::Company) {
        for rule in &spec.rules {
            if let RuleKind::Condition(cond) = &rule.kind {
                collect_rollups(cond, &mut rollups);
            }
        }
    }
    if !rollups.is_empty() {
        let _ = writeln!(out, "\nRoll-ups:");
    }
    for cond in rollups {
        let ids = |list: &[usize]| {
            list.iter()
                .filter_map(|&p| account.people.get(p).map(Record::id))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (held, detail) = match cond {
            Cond::Rollup {
                agg,
                score,
                part,
                range,
            } => match super::rollup_value(people, *agg, *score, *part) {
                Some(value) => (range.contains(value), num(value)),
                None => (false, "no people".to_owned()),
            },
            Cond::PeopleCount { cond, range } => {
                let who: Vec<usize> = (0..account.people.len())
                    .filter(|&p| super::person_holds(people, p, now_ms, cond))
                    .collect();
                let detail = if who.is_empty() {
                    "0".to_owned()
                } else {
                    format!("{}: {}", who.len(), ids(&who))
                };
                (range.contains(who.len() as f64), detail)
            }
            Cond::Roles(roles) => match super::cover_roles(people, now_ms, roles) {
                Some(by_role) => (
                    true,
                    roles
                        .iter()
                        .zip(by_role)
                        .map(|(r, p)| format!("{} {}", role_name(model, r), ids(&[p])))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                None => {
                    let missing: Vec<&str> = roles
                        .iter()
                        .filter(|r| {
                            !(0..account.people.len())
                                .any(|p| super::person_holds(people, p, now_ms, r))
                        })
                        .map(|r| role_name(model, r))
                        .collect();
                    let detail = if missing.is_empty() {
                        "each role has someone, but not a different person for each".to_owned()
                    } else {
                        format!("nobody is {}", missing.join(" or "))
                    };
                    (false, detail)
                }
            },
            _ => continue,
        };
        let _ = writeln!(
            out,
            "  {} {}  ({detail})",
            if held { "\u{2713}" } else { "\u{2717}" },
            describe(model, cond)
        );
    }
    out
}

/// Every roll-up inside a condition, in order.
fn collect_rollups<'c>(cond: &'c Cond, out: &mut Vec<&'c Cond>) {
    match cond {
        Cond::Rollup { .. } | Cond::PeopleCount { .. } | Cond::Roles(_) => out.push(cond),
        Cond::All(items) | Cond::Any(items) => items.iter().for_each(|c| collect_rollups(c, out)),
        Cond::Not(inner) => collect_rollups(inner, out),
        _ => {}
    }
}
