//! `score`: JSON lines in, one scorecard per line out, streaming.
//!
//! Lines are read in fixed-size batches and each batch is split across
//! worker threads, so memory stays flat whatever the input size and both
//! cores work. Output order equals input order. A malformed line becomes an
//! error line `{"line": N, "error": "..."}` and the stream goes on.

use std::io::{BufRead, Write};

use jiff::Timestamp;

use super::CommandError;
use crate::engine::{CardJson, Scorecard};
use crate::model::Model;

/// Lines per batch: large enough to amortise thread hand-off, small enough
/// to keep memory flat (a few MB for typical records).
const BATCH_LINES: usize = 4096;

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
    mut input: impl BufRead,
    mut output: impl Write,
    threads: usize,
) -> Result<ScoreStats, CommandError> {
    let threads = threads.max(1);
    let mut stats = ScoreStats::default();
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH_LINES);
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut outputs: Vec<Vec<u8>> = vec![Vec::new(); threads];
    let mut first_line = 1u64;
    loop {
        batch.clear();
        while batch.len() < BATCH_LINES {
            let mut line = spare.pop().unwrap_or_default();
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            batch.push(line);
        }
        if batch.is_empty() {
            break;
        }
        let chunk = batch.len().div_ceil(threads);
        if threads == 1 || batch.len() < 64 {
            outputs[0].clear();
            stats.add(score_lines(model, now, &batch, first_line, &mut outputs[0]));
            output.write_all(&outputs[0])?;
        } else {
            let results: Vec<ScoreStats> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .chunks(chunk)
                    .zip(outputs.iter_mut())
                    .enumerate()
                    .map(|(i, (lines, out))| {
                        out.clear();
                        let start = first_line + (i * chunk) as u64;
                        scope.spawn(move || score_lines(model, now, lines, start, out))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            for (result, out) in results.into_iter().zip(&outputs) {
                stats.add(result);
                output.write_all(out)?;
            }
        }
        first_line += batch.len() as u64;
        spare.append(&mut batch);
    }
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
        let text = match std::str::from_utf8(raw) {
            Ok(text) => text.trim(),
            Err(e) => {
                stats.failed += 1;
                error_line(out, number, &format!("line is not UTF-8: {e}"));
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
