//! `score`: JSON lines in, one scorecard per line out, streaming.
//!
//! Lines are read in fixed-size batches and each batch is split across
//! worker threads, so memory stays flat whatever the input size and both
//! cores work. Output order equals input order. A malformed line becomes an
//! error line `{"line": N, "error": "..."}` and the stream goes on.

use std::io::{BufRead, Write};

use jiff::Timestamp;

use super::CommandError;
use super::lines::{for_each_batch, line_text};
use crate::engine::{CardJson, Scorecard};
use crate::model::Model;

/// Counts from one `score` run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScoreStats {
    pub scored: u64,
    pub failed: u64,
}

impl ScoreStats {
    fn add(&mut self, other: ScoreStats) {
        self.scored += other.scored;
        self.failed += other.failed;
    }
}

/// Scores every line of `input` into `output` with `threads` workers.
pub fn score_stream(
    model: &Model,
    now: Timestamp,
    input: impl BufRead,
    mut output: impl Write,
    threads: usize,
) -> Result<ScoreStats, CommandError> {
    let mut stats = ScoreStats::default();
    for_each_batch(
        input,
        threads,
        |lines, first_line| {
            let mut out = Vec::new();
            let stats = score_lines(model, now, lines, first_line, &mut out);
            (stats, out)
        },
        |(part, out)| {
            stats.add(part);
            output.write_all(&out)?;
            Ok(())
        },
    )?;
    output.flush()?;
    Ok(stats)
}

fn score_lines(
    model: &Model,
    now: Timestamp,
    lines: &[Vec<u8>],
    first_line: u64,
    out: &mut Vec<u8>,
) -> ScoreStats {
    let mut stats = ScoreStats::default();
    let mut card = Scorecard::default();
    for (i, raw) in lines.iter().enumerate() {
        let number = first_line + i as u64;
        let text = match line_text(raw) {
            Ok(text) => text,
            Err(message) => {
                stats.failed += 1;
                error_line(out, number, &message);
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        match model.parse_record(text) {
            Ok(record) => {
                model.score_into(&record, now, &mut card);
                let json = CardJson {
                    model,
                    record_id: record.id(),
                    card: &card,
                };
                if serde_json::to_writer(&mut *out, &json).is_ok() {
                    out.push(b'\n');
                    stats.scored += 1;
                }
            }
            Err(e) => {
                stats.failed += 1;
                error_line(out, number, &e.to_string());
            }
        }
    }
    stats
}

fn error_line(out: &mut Vec<u8>, line: u64, message: &str) {
    let json = serde_json::json!({ "line": line, "error": message });
    let _ = serde_json::to_writer(&mut *out, &json);
    out.push(b'\n');
}
