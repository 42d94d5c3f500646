//! `demo`: the whole scoring job on embedded defaults — the example B2B
//! model and a bundled sample of contacts — with no account and no files.

use std::fmt::Write as _;

use jiff::Timestamp;

use super::CommandError;
use crate::engine::{Scorecard, explain_text, summary_line};
use crate::model::Model;

/// The example model shipped in `config/b2b.toml`.
pub const EXAMPLE_MODEL: &str = include_str!("../../config/b2b.toml");
/// Sample contacts shipped in `fixtures/records/sample.jsonl`.
pub const SAMPLE_RECORDS: &str = include_str!("../../fixtures/records/sample.jsonl");
/// The moment the sample is scored at, so the demo prints the same every time.
pub const SAMPLE_NOW: &str = "2026-11-01T00:00:00Z";

/// Scores the bundled sample and returns a table plus the top record's explanation.
pub fn demo() -> Result<String, CommandError> {
    let model = Model::compile("config/b2b.toml (embedded)", EXAMPLE_MODEL)?;
    let now: Timestamp = SAMPLE_NOW
        .parse()
        .map_err(|e| CommandError::Data(format!("{e}")))?;
    let mut rows = Vec::new();
    for (index, line) in SAMPLE_RECORDS
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record = model
            .parse_record(line)
            .map_err(|e| CommandError::Data(format!("embedded sample line {}: {e}", index + 1)))?;
        let card = model.score(&record, now);
        rows.push((record, card));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "leadscored demo: model \"{}\", {} sample contacts, scored as of {now}\n",
        model.name(),
        rows.len()
    );
    let _ = writeln!(
        out,
        "{:<8} {:>5} {:>5} {:>5}  {:<5} {:<7} {:<6} summary",
        "id", "fit", "eng", "total", "grade", "tier", "stage"
    );
    let top = rows
        .iter()
        .enumerate()
        .max_by(|a, b| total(&a.1.1).total_cmp(&total(&b.1.1)).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i);
    for (record, card) in &rows {
        let json = serde_json::to_value(crate::engine::CardJson {
            model: &model,
            record_id: record.id(),
            card,
        })
        .unwrap_or_default();
        let score = &json["scores"]["contact"];
        let _ = writeln!(
            out,
            "{:<8} {:>5} {:>5} {:>5}  {:<5} {:<7} {:<6} {}",
            record.id(),
            score["fit"].to_string(),
            score["engagement"].to_string(),
            score["total"].to_string(),
            score["grade"].as_str().unwrap_or("-"),
            score["tier"].as_str().unwrap_or("-"),
            score["stage"].as_str().unwrap_or("-"),
            summary_line(&model, card, 0)
        );
    }
    if let Some(top) = top {
        let (record, card) = &rows[top];
        let _ = write!(
            out,
            "\nWhy the top contact scores what it does:\n\n{}",
            explain_text(&model, record, card, now)
        );
    }
    Ok(out)
}

fn total(card: &Scorecard) -> f64 {
    card.results().first().map_or(0.0, |r| r.total())
}
