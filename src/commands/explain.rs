//! `explain`: why one record has the score, grade, tier and stage it has.

use std::io::BufRead;

use jiff::Timestamp;

use super::CommandError;
use crate::engine::explain_text;
use crate::model::Model;

/// Finds record `id` in JSON-lines `input` and explains its scorecard.
pub fn explain(
    model: &Model,
    now: Timestamp,
    input: impl BufRead,
    id: &str,
) -> Result<String, CommandError> {
    let mut skipped = None;
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        let text = line.trim();
        if text.is_empty() || !text.contains(id) {
            continue;
        }
        let record = match model.parse_record(text) {
            Ok(record) => record,
            Err(e) => {
                skipped = Some(format!("line {}: {e}", index + 1));
                continue;
            }
        };
        if record.id() == id {
            let card = model.score(&record, now);
            return Ok(explain_text(model, &record, &card, now));
        }
    }
    let hint = skipped
        .map(|s| format!(" (a malformed line mentions it: {s})"))
        .unwrap_or_default();
    Err(CommandError::Data(format!(
        "no record with id {id:?} in the input{hint}"
    )))
}
