//! The scorecard as one JSON line, the output of `leadscored score`.
//!
//! Most of a line is the model's own names (scores, rules, groups, tiers),
//! so [`CardWriter`] escapes them once, when it is made for a model, and a
//! line is then mostly copies of those ready pieces; only the record's id,
//! the summary and numbers are written per record. [`CardJson`] is the
//! same line for one-off uses. Keys and their order are the documented
//! format and must not change: a test holds the output of a generated file
//! to the bytes an earlier, serde-derived writer produced.

use super::{AccountCard, Scorecard};
use crate::model::{Model, Part, RuleKind};
use crate::record::Account;

/// Appends `text` as a JSON string.
fn push_str(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Appends a number of points: whole numbers without a fraction (`30`),
/// others as serde_json writes an `f64` (`-2.5`).
fn push_points(out: &mut Vec<u8>, value: f64) {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        let _ = serde_json::to_writer(&mut *out, &(value as i64));
    } else {
        let _ = serde_json::to_writer(&mut *out, &value);
    }
}

fn push_integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn escaped(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    push_str(&mut out, text);
    out
}

/// Ready pieces of one score's part of the line.
#[derive(Debug)]
struct ScorePieces {
    /// `"name":{"fit":`
    head: Vec<u8>,
    /// Per tier: its label as a JSON string.
    tiers: Vec<Vec<u8>>,
    has_matrix: bool,
    has_stages: bool,
    /// Per rule: `{"rule":"…","group":"…","part":"…","points":`
    rules: Vec<Vec<u8>>,
    /// Per rule: whether it reports a `count` (event rules).
    counts: Vec<bool>,
    /// Per group: `,"group":"…","part":"…","points":`
    groups: Vec<Vec<u8>>,
}

/// Writes scorecard lines for one model. Make it once and reuse it.
#[derive(Debug)]
pub struct CardWriter<'m> {
    model: &'m Model,
    scores: Vec<ScorePieces>,
    /// Per lifecycle stage: its name as a JSON string.
    stages: Vec<Vec<u8>>,
    /// Per grading profile: `,"grade_profile":"…"`
    profiles: Vec<Vec<u8>>,
    /// Per disqualifier: `,"disqualified_by":"…"`
    disqualifiers: Vec<Vec<u8>>,
    summary: String,
}

impl<'m> CardWriter<'m> {
    pub fn new(model: &'m Model) -> Self {
        let scores = model
            .scores
            .iter()
            .map(|spec| {
                let mut head = escaped(&spec.name);
                head.extend_from_slice(br#":{"fit":"#);
                let groups: Vec<Vec<u8>> = spec
                    .groups
                    .iter()
                    .map(|group| {
                        let mut piece = br#","group":"#.to_vec();
                        push_str(&mut piece, &group.name);
                        piece.extend_from_slice(br#","part":"#);
                        push_str(&mut piece, group.part.as_str());
                        piece.extend_from_slice(br#","points":"#);
                        piece
                    })
                    .collect();
                // A rule's piece is its name, then its group's piece.
                let rules = spec
                    .rules
                    .iter()
                    .map(|rule| {
                        let mut piece = br#"{"rule":"#.to_vec();
                        push_str(&mut piece, &rule.name);
                        piece.extend_from_slice(&groups[usize::from(rule.group)]);
                        piece
                    })
                    .collect();
                ScorePieces {
                    head,
                    tiers: spec.tiers.iter().map(|t| escaped(&t.label)).collect(),
                    has_matrix: spec.matrix.is_some(),
                    has_stages: !spec.stages.is_empty(),
                    rules,
                    counts: spec
                        .rules
                        .iter()
                        .map(|r| matches!(r.kind, RuleKind::Events { .. }))
                        .collect(),
                    groups,
                }
            })
            .collect();
        let prefixed = |key: &str, name: &str| {
            let mut piece = format!(",\"{key}\":").into_bytes();
            push_str(&mut piece, name);
            piece
        };
        CardWriter {
            model,
            scores,
            stages: model
                .lifecycle
                .as_ref()
                .map(|l| l.stages.iter().map(|s| escaped(s)).collect())
                .unwrap_or_default(),
            profiles: model
                .profiles
                .iter()
                .map(|p| prefixed("grade_profile", &p.name))
                .collect(),
            disqualifiers: model
                .disqualifiers
                .iter()
                .map(|d| prefixed("disqualified_by", &d.name))
                .collect(),
            summary: String::new(),
        }
    }

    /// Appends one scorecard line (without the line end) to `out`.
    pub fn write(&mut self, record_id: &str, card: &Scorecard, out: &mut Vec<u8>) {
        let model = self.model;
        out.extend_from_slice(br#"{"id":"#);
        push_str(out, record_id);
        out.extend_from_slice(br#","scores":{"#);
        let mut first_score = true;
        for (index, result) in card.scores.iter().enumerate() {
            // A contact's line holds its contact scores, a company's its
            // company scores.
            if model.scores[index].object != card.object {
                continue;
            }
            let pieces = &self.scores[index];
            if !std::mem::take(&mut first_score) {
                out.push(b',');
            }
            out.extend_from_slice(&pieces.head);
            push_points(out, result.fit);
            out.extend_from_slice(br#","engagement":"#);
            push_points(out, result.engagement);
            out.extend_from_slice(br#","total":"#);
            push_points(out, result.total);
            out.extend_from_slice(br#","grade":"#);
            match card.grade {
                Some(grade) => push_str(out, grade.as_str()),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(br#","tier":"#);
            match result.tier.and_then(|t| pieces.tiers.get(usize::from(t))) {
                Some(label) => out.extend_from_slice(label),
                None => out.extend_from_slice(b"null"),
            }
            if pieces.has_matrix {
                out.extend_from_slice(br#","matrix":"#);
                match result.matrix {
                    Some(cell) => {
                        out.extend_from_slice(&[b'"', b'A' + cell[0]]);
                        push_integer(out, u16::from(cell[1]) + 1);
                        out.push(b'"');
                    }
                    None => out.extend_from_slice(b"null"),
                }
            }
            if pieces.has_stages {
                out.extend_from_slice(br#","stage":"#);
                match result.stage.and_then(|s| self.stages.get(usize::from(s))) {
                    Some(name) => out.extend_from_slice(name),
                    None => out.extend_from_slice(b"null"),
                }
            }
            out.extend_from_slice(br#","summary":"#);
            super::explain::summary_into(model, card, index, &mut self.summary);
            push_str(out, &self.summary);
            out.extend_from_slice(br#","reasons":["#);
            let mut first = true;
            for hit in &result.hits {
                let rule = usize::from(hit.rule);
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                out.extend_from_slice(&pieces.rules[rule]);
                push_points(out, hit.points);
                if pieces.counts[rule] {
                    out.extend_from_slice(br#","count":"#);
                    push_integer(out, hit.count);
                }
                out.push(b'}');
            }
            for adjustment in &result.adjustments {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                let (kind, group, points) = super::explain::adjustment_parts(adjustment);
                out.extend_from_slice(br#"{"adjustment":"#);
                push_str(out, kind);
                match group {
                    Some(g) => out.extend_from_slice(&pieces.groups[g]),
                    None => {
                        out.extend_from_slice(br#","part":"#);
                        push_str(out, Part::Total.as_str());
                        out.extend_from_slice(br#","points":"#);
                    }
                }
                push_points(out, points);
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
        }
        out.push(b'}');
        if let Some(p) = card.profile {
            out.extend_from_slice(&self.profiles[usize::from(p)]);
        }
        if let Some(d) = card.disqualified_by {
            out.extend_from_slice(&self.disqualifiers[usize::from(d)]);
        }
        if !card.warnings.is_empty() {
            out.extend_from_slice(br#","warnings":["#);
            for (i, w) in card.warnings.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_str(out, &super::explain::warning_text(model, w.slot, w.problem));
            }
            out.push(b']');
        }
        out.push(b'}');
    }
}

impl CardWriter<'_> {
    /// Appends one company line: the company's scorecard (its company
    /// scores), with `"people"`, each person's scorecard line, last.
    pub fn write_account(&mut self, account: &Account, cards: &AccountCard, out: &mut Vec<u8>) {
        self.write(account.company.id(), &cards.company, out);
        out.pop();
        out.extend_from_slice(br#","people":["#);
        for (i, (person, card)) in account.people.iter().zip(&cards.people).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.write(person.id(), card, out);
        }
        out.extend_from_slice(b"]}");
    }
}

/// A scorecard as one JSON object (one line of `leadscored score` output),
/// for one-off uses; [`CardWriter`] writes many.
#[derive(Debug)]
pub struct CardJson<'a> {
    pub model: &'a Model,
    pub record_id: &'a str,
    pub card: &'a Scorecard,
}

impl CardJson<'_> {
    /// The line, without a line end.
    pub fn to_line(&self) -> String {
        let mut out = Vec::new();
        CardWriter::new(self.model).write(self.record_id, self.card, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The line as a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.to_line()).unwrap_or_default()
    }
}
