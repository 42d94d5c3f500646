//! `backtest`, `diff` and `calibrate`: records with known outcomes (JSON
//! lines, the `score` format plus an outcome) scored by one or two models,
//! turned into the metrics of `crate::evaluate`. Also `generate`, which
//! writes the fake CRM's people as such records.

use std::borrow::Cow;
use std::fmt;
use std::io::{BufRead, Read, Write};

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::CommandError;
use super::Lines;
use super::lines::for_each_block;
use crate::Scorecard;
use crate::evaluate::calibrate::{Calibration, Judge, Outcome, rewrite_points};
use crate::evaluate::{Collector, Report};
use crate::model::Model;
use crate::record::{Capture, CowStr};

/// Where a record's outcome is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutcomeSpec {
    /// A top-level field: `true`, `1`, `"yes"`... (default `outcome`).
    Field(String),
    /// A property equal to a value (case-insensitive), e.g.
    /// `property:lifecyclestage=customer`.
    Property { name: String, value: String },
    /// Any event of a type, e.g. `event:closed_won`.
    Event(String),
}

impl OutcomeSpec {
    pub fn parse(text: &str) -> Result<OutcomeSpec, String> {
        if let Some(rest) = text.strip_prefix("property:") {
            let (name, value) = rest
                .split_once('=')
                .ok_or_else(|| format!("--outcome {text}: expected property:NAME=VALUE"))?;
            return Ok(OutcomeSpec::Property {
                name: name.to_owned(),
                value: value.to_owned(),
            });
        }
        if let Some(kind) = text.strip_prefix("event:") {
            return Ok(OutcomeSpec::Event(kind.to_owned()));
        }
        let field = text.strip_prefix("field:").unwrap_or(text);
        if field.is_empty() {
            return Err("--outcome: name a field, property:NAME=VALUE or event:TYPE".to_owned());
        }
        Ok(OutcomeSpec::Field(field.to_owned()))
    }

    /// The outcome of one JSON line; `None` when the line does not say.
    /// Reads only what the outcome needs and skips the rest unparsed.
    fn read(&self, line: &str) -> Result<Option<bool>, String> {
        let mut deserializer = serde_json::Deserializer::from_str(line);
        let outcome = OutcomeProbe { spec: self }
            .deserialize(&mut deserializer)
            .map_err(|e| e.to_string())?;
        deserializer.end().map_err(|e| e.to_string())?;
        self.judge(outcome)
    }

    /// The outcome from the value the spec reads (`None`: not there).
    fn judge(&self, outcome: Option<serde_json::Value>) -> Result<Option<bool>, String> {
        match self {
            OutcomeSpec::Field(name) => match outcome {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => truthy(&v)
                    .map(Some)
                    .ok_or_else(|| format!("`{name}`: {v} is not a yes/no outcome")),
            },
            OutcomeSpec::Property { value, .. } => Ok(Some(outcome.is_some_and(|v| match v {
                serde_json::Value::String(s) => s.eq_ignore_ascii_case(value),
                other => other.to_string().eq_ignore_ascii_case(value),
            }))),
            OutcomeSpec::Event(_) => Ok(Some(outcome.is_some())),
        }
    }
}

fn truthy(v: &serde_json::Value) -> Option<bool> {
    match v {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::Number(n) => n.as_f64().map(|n| n != 0.0),
        serde_json::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "won" | "converted" => Some(true),
            "false" | "no" | "0" | "lost" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The field an outcome is, when it can be read in the same pass as the
/// record: one outside the record format, on contact lines.
fn field_beside_record(outcome: &OutcomeSpec, lines: Lines) -> Option<&str> {
    match outcome {
        OutcomeSpec::Field(name)
            if lines == Lines::Contacts && !Capture::RECORD_KEYS.contains(&name.as_str()) =>
        {
            Some(name)
        }
        _ => None,
    }
}

/// Finds the one value an outcome reads in a record line: the field, the
/// property, or (as `true`) an event of the type. Everything else is
/// skipped unparsed.
struct OutcomeProbe<'s> {
    spec: &'s OutcomeSpec,
}

impl<'de> DeserializeSeed<'de> for OutcomeProbe<'_> {
    type Value = Option<serde_json::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OutcomeProbe<'_> {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            match (self.spec, &*key) {
                (OutcomeSpec::Field(name), key) if key == name => {
                    found = Some(map.next_value::<serde_json::Value>()?);
                }
                (OutcomeSpec::Property { name, .. }, "properties") => {
                    found = map.next_value_seed(Named { name })?;
                }
                (OutcomeSpec::Event(kind), "events") => {
                    found = map
                        .next_value_seed(EventOfType { kind })?
                        .then_some(serde_json::Value::Bool(true));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// The value of one key of an object (the last, if repeated).
struct Named<'s> {
    name: &'s str,
}

impl<'de> DeserializeSeed<'de> for Named<'_> {
    type Value = Option<serde_json::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Named<'_> {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of properties")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            if *key == *self.name {
                found = Some(map.next_value::<serde_json::Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Whether an array of events has one of a type.
struct EventOfType<'s> {
    kind: &'s str,
}

impl<'de> DeserializeSeed<'de> for EventOfType<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventOfType<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        #[derive(Deserialize)]
        struct Event<'a> {
            #[serde(rename = "type", borrow)]
            kind: Cow<'a, str>,
        }
        let mut any = false;
        while let Some(event) = seq.next_element::<Event<'de>>()? {
            any |= event.kind == self.kind;
        }
        Ok(any)
    }
}

/// Counts of lines that could not be used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    pub unreadable: u64,
    pub no_outcome: u64,
    /// The first few problems, with line numbers.
    pub examples: Vec<String>,
}

impl Skipped {
    fn note(&mut self, line: u64, message: String, unreadable: bool) {
        if unreadable {
            self.unreadable += 1;
        } else {
            self.no_outcome += 1;
        }
        if self.examples.len() < 5 {
            self.examples.push(format!("line {line}: {message}"));
        }
    }

    pub fn text(&self) -> String {
        if self.unreadable + self.no_outcome == 0 {
            return String::new();
        }
        let mut out = format!(
            "skipped {} unreadable records and {} without an outcome",
            self.unreadable, self.no_outcome
        );
        for example in &self.examples {
            out.push_str("\n  ");
            out.push_str(example);
        }
        out.push('\n');
        out
    }
}

/// One line's use: its record's id (a range of `Scored::ids`) and
/// outcome, its cards being the next `models` cards; or why it was skipped.
enum Row {
    Scored {
        id: std::ops::Range<usize>,
        converted: bool,
    },
    Skipped {
        line: u64,
        message: String,
        unreadable: bool,
    },
}

/// One block's records, scored by every model; the buffers are reused.
#[derive(Default)]
struct Scored {
    rows: Vec<Row>,
    ids: String,
    /// `models` cards per scored row, in row order.
    cards: Vec<Scorecard>,
    used: usize,
    /// One per model.
    memos: Vec<crate::record::ReadMemo>,
    record: crate::Record,
    /// The two records of a diff, read in one pass.
    pair: [crate::Record; 2],
    account: crate::record::Account,
    account_card: crate::engine::AccountCard,
}

impl Scored {
    fn skip(&mut self, line: u64, message: String, unreadable: bool) {
        skip_row(&mut self.rows, line, message, unreadable);
    }
}

fn skip_row(rows: &mut Vec<Row>, line: u64, message: String, unreadable: bool) {
    rows.push(Row::Skipped {
        line,
        message,
        unreadable,
    });
}

/// A line's outcome as read; `None` when the line is skipped for it (none
/// given, or not a yes/no outcome), its row pushed onto `rows`.
fn line_outcome(
    rows: &mut Vec<Row>,
    line: u64,
    read: Result<Option<bool>, String>,
) -> Option<bool> {
    match read {
        Ok(Some(converted)) => Some(converted),
        Ok(None) => {
            skip_row(rows, line, "no outcome".to_owned(), false);
            None
        }
        Err(message) => {
            skip_row(rows, line, message, true);
            None
        }
    }
}

/// Reads records, scores each with every model, and calls `visit` in input
/// order.
fn each_scored(
    models: &[&Model],
    now: Timestamp,
    outcome: &OutcomeSpec,
    (input, lines): (impl Read, Lines),
    threads: usize,
    mut visit: impl FnMut(&str, &[Scorecard], bool),
) -> Result<Skipped, CommandError> {
    let mut skipped = Skipped::default();
    for_each_block(
        input,
        threads,
        |block, scored: &mut Scored| {
            scored.rows.clear();
            scored.ids.clear();
            scored.used = 0;
            scored.memos.resize_with(models.len(), Default::default);
            'lines: for (number, text) in block.lines() {
                let text = match text {
                    Ok("") => continue,
                    Ok(text) => text,
                    Err(message) => {
                        scored.skip(number, message, true);
                        continue;
                    }
                };
                // The outcome: read with the first model's record when it
                // is a field of its own, else by a probe first.
                let beside = field_beside_record(outcome, lines);
                let mut converted = false;
                if beside.is_none() {
                    match line_outcome(&mut scored.rows, number, outcome.read(text)) {
                        Some(outcome) => converted = outcome,
                        None => continue,
                    }
                }
                let start = scored.ids.len();
                // Two models (a diff) read the line in one pass.
                let mut found = None;
                let mut pair = None;
                if lines == Lines::Contacts
                    && let ([a, b], [memo_a, memo_b]) = (models, scored.memos.as_mut_slice())
                {
                    let [record_a, record_b] = &mut scored.pair;
                    let capture = beside.map(|name| Capture {
                        name,
                        value: &mut found,
                    });
                    pair = Some(Model::parse_records_capturing(
                        [*a, *b],
                        text,
                        [memo_a, memo_b],
                        [record_a, record_b],
                        capture,
                    ));
                }
                for (m, model) in models.iter().enumerate() {
                    let slot = scored.used + m;
                    if scored.cards.len() <= slot {
                        scored.cards.resize_with(slot + 1, Scorecard::default);
                    }
                    let read = if lines == Lines::Companies {
                        let account = &mut scored.account;
                        model
                            .parse_account_into(text, &mut scored.memos[m], account)
                            .map(|()| {
                                let cards = &mut scored.account_card;
                                model.score_account_into(
                                    &account.company,
                                    &account.people,
                                    now,
                                    cards,
                                );
                                scored.cards[slot].clone_from(&cards.company);
                                account.company.id()
                            })
                    } else {
                        let (record, parsed) = match pair.as_mut() {
                            Some(reads) => (
                                &mut scored.pair[m],
                                std::mem::replace(&mut reads[m], Ok(())),
                            ),
                            None => {
                                let record = &mut scored.record;
                                let capture = beside.filter(|_| m == 0).map(|name| Capture {
                                    name,
                                    value: &mut found,
                                });
                                let parsed = model.parse_record_capturing(
                                    text,
                                    &mut scored.memos[m],
                                    record,
                                    capture,
                                );
                                (record, parsed)
                            }
                        };
                        // As when the outcome is read first: a record
                        // without a usable outcome is skipped for that,
                        // before it is scored.
                        let judged = match (&parsed, beside) {
                            (_, None) => Ok(Some(converted)),
                            _ if m > 0 => Ok(Some(converted)),
                            (Ok(()), Some(_)) => outcome.judge(found.take()),
                            (Err(_), Some(_)) => outcome.read(text),
                        };
                        match line_outcome(&mut scored.rows, number, judged) {
                            Some(outcome) => converted = outcome,
                            None => continue 'lines,
                        }
                        parsed.map(|()| {
                            model.score_into(record, now, &mut scored.cards[slot]);
                            record.id()
                        })
                    };
                    match read {
                        Ok(id) => {
                            if m == 0 {
                                scored.ids.push_str(id);
                            }
                        }
                        Err(e) => {
                            scored.ids.truncate(start);
                            scored.skip(number, e.to_string(), true);
                            continue 'lines;
                        }
                    }
                }
                scored.used += models.len();
                scored.rows.push(Row::Scored {
                    id: start..scored.ids.len(),
                    converted,
                });
            }
        },
        |scored| {
            let mut cards = scored.cards.chunks(models.len().max(1));
            for row in scored.rows.drain(..) {
                match row {
                    Row::Scored { id, converted } => {
                        if let Some(cards) = cards.next() {
                            visit(&scored.ids[id], cards, converted);
                        }
                    }
                    Row::Skipped {
                        line,
                        message,
                        unreadable,
                    } => skipped.note(line, message, unreadable),
                }
            }
            Ok(())
        },
    )?;
    Ok(skipped)
}

/// Backtests one model.
pub fn backtest(
    model: &Model,
    now: Timestamp,
    outcome: &OutcomeSpec,
    input: (impl Read, Lines),
    threads: usize,
) -> Result<(Report, Skipped), CommandError> {
    let mut collector = Collector::new(model);
    let skipped = each_scored(
        &[model],
        now,
        outcome,
        input,
        threads,
        |_, cards, converted| {
            if let Some(card) = cards.first() {
                collector.add(card, converted);
            }
        },
    )?;
    if collector.is_empty() {
        return Err(CommandError::Data(format!(
            "no record with an outcome to backtest\n{}",
            skipped.text()
        )));
    }
    Ok((collector.report(), skipped))
}

pub use crate::evaluate::html::Moves;

/// How records move between two models.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Diff {
    pub old: Report,
    pub new: Report,
    /// Per score present in both: tier transitions, old → new → records.
    pub tier_moves: Vec<(String, Moves)>,
    pub grade_moves: Moves,
    pub biggest_movers: Vec<Mover>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Mover {
    pub id: String,
    pub score: String,
    pub old_total: f64,
    pub new_total: f64,
    pub old_reasons: String,
    pub new_reasons: String,
}

/// Compares two models on the same records.
pub fn diff(
    old: &Model,
    new: &Model,
    now: Timestamp,
    outcome: &OutcomeSpec,
    input: (impl Read, Lines),
    threads: usize,
) -> Result<(Diff, Skipped), CommandError> {
    // Companies are compared on their company scores, people on theirs.
    let object = match input.1 {
        Lines::Companies => crate::model::Object::Company,
        Lines::Contacts => crate::model::Object::Contact,
    };
    let shared: Vec<(usize, usize, String)> = old
        .scores
        .iter()
        .enumerate()
        .filter(|(_, s)| s.object == object)
        .filter_map(|(i, s)| {
            new.scores
                .iter()
                .position(|t| t.name == s.name)
                .map(|j| (i, j, s.name.clone()))
        })
        .collect();
    let mut old_collector = Collector::new(old);
    let mut new_collector = Collector::new(new);
    // Moves are counted by index while reading, named at the end.
    let tier_count = |model: &Model, score: usize| model.scores[score].tiers.len() + 1;
    let mut tier_counts: Vec<Vec<u64>> = shared
        .iter()
        .map(|(i, j, _)| vec![0; tier_count(old, *i) * tier_count(new, *j)])
        .collect();
    let tier_index = |model: &Model, card: &Scorecard, score: usize| {
        let tiers = model.scores[score].tiers.len();
        card.scores
            .get(score)
            .and_then(|r| r.tier)
            .map(usize::from)
            .filter(|t| *t < tiers)
            .unwrap_or(tiers)
    };
    const NO_GRADE: usize = 13;
    let mut grade_counts = [[0u64; NO_GRADE + 1]; NO_GRADE + 1];
    let mut grade_names: [&str; NO_GRADE + 1] = ["(none)"; NO_GRADE + 1];
    let mut grade_index = |card: &Scorecard| match card.grade {
        Some(g) => {
            let rank = usize::from(g.rank()).min(NO_GRADE - 1);
            grade_names[rank] = g.as_str();
            rank
        }
        None => NO_GRADE,
    };
    let mut movers: Vec<Mover> = Vec::new();
    // Once 20 movers are kept, one that moved no more than the 20th can
    // never be among the 20 reported (ties keep file order).
    let mut least_kept: Option<f64> = None;
    let by_move = |x: &Mover, y: &Mover| {
        (y.new_total - y.old_total)
            .abs()
            .total_cmp(&(x.new_total - x.old_total).abs())
    };
    let skipped = each_scored(
        &[old, new],
        now,
        outcome,
        input,
        threads,
        |id, cards, converted| {
            let [a, b] = cards else { return };
            old_collector.add(a, converted);
            new_collector.add(b, converted);
            for (k, (i, j, name)) in shared.iter().enumerate() {
                let cell = tier_index(old, a, *i) * tier_count(new, *j) + tier_index(new, b, *j);
                tier_counts[k][cell] += 1;
                let (before, after) = (
                    a.scores.get(*i).map_or(0.0, |r| r.total),
                    b.scores.get(*j).map_or(0.0, |r| r.total),
                );
                let moved = (after - before).abs();
                if before != after && least_kept.is_none_or(|least| moved.total_cmp(&least).is_gt())
                {
                    movers.push(Mover {
                        id: id.to_owned(),
                        score: name.clone(),
                        old_total: before,
                        new_total: after,
                        old_reasons: crate::engine::summary_line(old, a, *i),
                        new_reasons: crate::engine::summary_line(new, b, *j),
                    });
                    if movers.len() > 200 {
                        movers.sort_by(by_move);
                        movers.truncate(20);
                        least_kept = movers.last().map(|m| (m.new_total - m.old_total).abs());
                    }
                }
            }
            grade_counts[grade_index(a)][grade_index(b)] += 1;
        },
    )?;
    let tier_label = |model: &Model, score: usize, index: usize| {
        model.scores[score]
            .tiers
            .get(index)
            .map_or("(none)".to_owned(), |t| t.label.clone())
    };
    let tier_moves: Vec<Moves> = shared
        .iter()
        .zip(&tier_counts)
        .map(|((i, j, _), counts)| {
            let mut moves = Moves::new();
            let columns = tier_count(new, *j);
            for (cell, count) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
                *moves
                    .entry(tier_label(old, *i, cell / columns))
                    .or_default()
                    .entry(tier_label(new, *j, cell % columns))
                    .or_default() += count;
            }
            moves
        })
        .collect();
    let mut grade_moves = Moves::new();
    for (from, row) in grade_counts.iter().enumerate() {
        for (to, count) in row.iter().enumerate().filter(|(_, c)| **c > 0) {
            *grade_moves
                .entry(grade_names[from].to_owned())
                .or_default()
                .entry(grade_names[to].to_owned())
                .or_default() += count;
        }
    }
    movers.sort_by(|x, y| {
        (y.new_total - y.old_total)
            .abs()
            .total_cmp(&(x.new_total - x.old_total).abs())
    });
    movers.truncate(20);
    if old_collector.is_empty() {
        return Err(CommandError::Data(format!(
            "no record with an outcome to compare\n{}",
            skipped.text()
        )));
    }
    Ok((
        Diff {
            old: old_collector.report(),
            new: new_collector.report(),
            tier_moves: shared
                .into_iter()
                .zip(tier_moves)
                .map(|((_, _, name), moves)| (name, moves))
                .collect(),
            grade_moves,
            biggest_movers: movers,
        },
        skipped,
    ))
}

impl Diff {
    /// Records whose grade differs between the models.
    pub fn grade_changes(&self) -> u64 {
        self.grade_moves
            .iter()
            .flat_map(|(from, row)| {
                row.iter()
                    .filter(move |(to, _)| *to != from)
                    .map(|(_, n)| *n)
            })
            .sum()
    }

    /// The diff as one self-contained HTML page; `labels` name the models
    /// as the user gave them.
    pub fn html(&self, labels: [&str; 2]) -> String {
        crate::evaluate::html::diff_page(
            &self.old,
            &self.new,
            labels,
            &self.tier_moves,
            self.grade_changes(),
        )
    }

    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "{} records", self.old.records);
        for (old, new) in self.old.scores.iter().zip(&self.new.scores) {
            let auc = |a: Option<f64>| a.map_or("n/a".to_owned(), |a| format!("{a:.3}"));
            let _ = writeln!(
                out,
                "score \"{}\": ROC AUC {} → {}; top-10 % lift {:.2}× → {:.2}×",
                old.score,
                auc(old.auc),
                auc(new.auc),
                old.top.first().map_or(0.0, |t| t.lift),
                new.top.first().map_or(0.0, |t| t.lift)
            );
        }
        for (old, new) in self.old.scores.iter().zip(&self.new.scores) {
            if old.tiers.is_empty() && new.tiers.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "\nconversion by tier for \"{}\" (old → new)",
                old.score
            );
            let mut labels: Vec<&str> = old.tiers.iter().map(|t| t.label.as_str()).collect();
            for t in &new.tiers {
                if !labels.contains(&t.label.as_str()) {
                    labels.push(&t.label);
                }
            }
            let cell = |tiers: &[crate::evaluate::Bucket], label: &str| {
                tiers
                    .iter()
                    .find(|t| t.label == label)
                    .map_or("—".to_owned(), |t| {
                        format!(
                            "{:>6.1} % of {:>7} (95 % CI {:.1}–{:.1} %)",
                            100.0 * t.rate,
                            t.records,
                            100.0 * t.low,
                            100.0 * t.high
                        )
                    })
            };
            for label in labels {
                let _ = writeln!(
                    out,
                    "  {label:<12} {}  →  {}",
                    cell(&old.tiers, label),
                    cell(&new.tiers, label)
                );
            }
            for inversion in &old.tier_inversions {
                let _ = writeln!(out, "  ! old: {inversion}");
            }
            for inversion in &new.tier_inversions {
                let _ = writeln!(out, "  ! new: {inversion}");
            }
        }
        for (score, moves) in &self.tier_moves {
            let _ = writeln!(out, "\ntier moves for \"{score}\" (old → new: records)");
            for (from, row) in moves {
                for (to, n) in row {
                    let marker = if from == to { " " } else { "*" };
                    let _ = writeln!(out, "  {marker} {from:>10} → {to:<10} {n}");
                }
            }
        }
        let changed = self.grade_changes();
        let _ = writeln!(out, "\n{changed} records change grade");
        for inversion in &self.old.grade_inversions {
            let _ = writeln!(out, "  ! old: {inversion}");
        }
        for inversion in &self.new.grade_inversions {
            let _ = writeln!(out, "  ! new: {inversion}");
        }
        if !self.biggest_movers.is_empty() {
            let _ = writeln!(out, "\nbiggest movers");
            for m in &self.biggest_movers {
                let _ = writeln!(
                    out,
                    "  {} ({}): {} → {}\n    was: {}\n    now: {}",
                    m.id, m.score, m.old_total, m.new_total, m.old_reasons, m.new_reasons
                );
            }
        }
        out
    }
}

/// Fits point values for one score, writes them into the model file, and
/// judges that written model against the hand-set one on held-out records.
/// The records are read twice, so `open` gives them from the start each
/// time it is called.
#[allow(clippy::too_many_arguments)]
pub fn calibrate<'a>(
    model: &Model,
    source: &str,
    score: Option<&str>,
    now: Timestamp,
    outcome: &OutcomeSpec,
    open: &mut dyn FnMut() -> Result<Box<dyn BufRead + 'a>, CommandError>,
    (threads, lines): (usize, Lines),
    allow_sign_change: bool,
) -> Result<(Outcome, Option<String>, Skipped), CommandError> {
    let object = match lines {
        Lines::Companies => crate::model::Object::Company,
        Lines::Contacts => crate::model::Object::Contact,
    };
    let index = match score {
        None => (0..model.scores.len())
            .find(|&i| model.score_object(i) == object)
            .ok_or_else(|| {
                CommandError::Data(format!("the model has no {} score", object.as_str()))
            })?,
        Some(name) => model
            .scores
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| {
                CommandError::Data(format!("--score {name}: the model has no such score"))
            })?,
    };
    let mut calibration = Calibration::new(model, index);
    let skipped = each_scored(
        &[model],
        now,
        outcome,
        (open()?, lines),
        threads,
        |id, cards, converted| {
            if let Some(card) = cards.first() {
                calibration.add(id, card, converted);
            }
        },
    )?;
    let fit = calibration.finish(1.0, allow_sign_change);
    let proposal = rewrite_points(source, index, &fit.rules);
    let written = match &proposal {
        Some(text) => Model::compile("proposal.toml", text)
            .map_err(|e| CommandError::Data(format!("the proposed model does not compile: {e}")))?,
        None => {
            return Err(CommandError::Data(
                "could not match the model file's rules to its scores to write a proposal"
                    .to_owned(),
            ));
        }
    };
    let known: Vec<String> = model
        .warnings(&|_| true)
        .into_iter()
        .map(|w| w.message)
        .collect();
    let new_warnings: Vec<String> = written
        .warnings(&|_| true)
        .into_iter()
        .map(|w| w.message)
        .filter(|m| !known.contains(m))
        .collect();
    let mut judge = Judge::new(model, index, &fit);
    each_scored(
        &[model, &written],
        now,
        outcome,
        (open()?, lines),
        threads,
        |id, cards, converted| {
            if let [hand, proposed] = cards {
                judge.add(id, hand, proposed, converted);
            }
        },
    )?;
    Ok((judge.finish(fit, new_warnings), proposal, skipped))
}

/// Writes `count` generated people as JSON-line records with an `outcome`.
pub fn generate(
    count: u64,
    seed: u64,
    epoch: Timestamp,
    mut out: impl Write,
) -> Result<(), CommandError> {
    let people = crate::fake::PeopleSpec {
        seed,
        epoch_ms: epoch.as_millisecond(),
        activity: 1.0,
        companies: 0,
    };
    for id in 1..=count {
        let person = people.person(id);
        serde_json::to_writer(&mut out, &person.to_record_json()).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
