//! `score`: JSON lines in, one scorecard per line out, streaming.
//!
//! Lines are read in blocks that worker threads score (see `lines`), so
//! memory stays flat whatever the input size and all cores work. Output order equals input order. A malformed line becomes an
//! error line `{"line": N, "error": "..."}` and the stream goes on.

use std::io::{Read, Write};

use jiff::Timestamp;

use super::CommandError;
use super::lines::{Block, for_each_block};
use crate::engine::{AccountCard, CardWriter, Scorecard};
use crate::model::Model;
use crate::record::{Account, ReadMemo, Record};

/// What each input line is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lines {
    /// A contact (or prospect) record.
    #[default]
    Contacts,
    /// A company with its people (`"company"`, `"people"`).
    Companies,
}

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

/// One block's scorecard lines, with the scratch space reused for the next.
#[derive(Default)]
struct Done<'m> {
    stats: ScoreStats,
    out: Vec<u8>,
    card: Scorecard,
    writer: Option<CardWriter<'m>>,
    memo: ReadMemo,
    record: Record,
    account: Account,
    account_card: AccountCard,
}

/// Scores every line of `input` into `output` with `threads` workers.
pub fn score_stream(
    model: &Model,
    now: Timestamp,
    input: impl Read,
    mut output: impl Write,
    threads: usize,
    lines: Lines,
) -> Result<ScoreStats, CommandError> {
    let mut stats = ScoreStats::default();
    for_each_block(
        input,
        threads,
        |block, done: &mut Done| score_block(model, now, block, done, lines),
        |done| {
            stats.add(done.stats);
            output.write_all(&done.out)?;
            Ok(())
        },
    )?;
    output.flush()?;
    Ok(stats)
}

fn score_block<'m>(
    model: &'m Model,
    now: Timestamp,
    block: &Block,
    done: &mut Done<'m>,
    lines: Lines,
) {
    done.stats = ScoreStats::default();
    done.out.clear();
    let writer = done.writer.get_or_insert_with(|| CardWriter::new(model));
    for (number, text) in block.lines() {
        let text = match text {
            Ok("") => continue,
            Ok(text) => text,
            Err(message) => {
                done.stats.failed += 1;
                error_line(&mut done.out, number, &message);
                continue;
            }
        };
        if lines == Lines::Companies {
            match model.parse_account_into(text, &mut done.memo, &mut done.account) {
                Ok(()) => {
                    let account = &done.account;
                    let cards = &mut done.account_card;
                    model.score_account_into(&account.company, &account.people, now, cards);
                    writer.write_account(account, cards, &mut done.out);
                    done.out.push(b'\n');
                    done.stats.scored += 1;
                }
                Err(e) => {
                    done.stats.failed += 1;
                    error_line(&mut done.out, number, &e.to_string());
                }
            }
            continue;
        }
        match model.parse_record_into(text, &mut done.memo, &mut done.record) {
            Ok(()) => {
                model.score_into(&done.record, now, &mut done.card);
                writer.write(done.record.id(), &done.card, &mut done.out);
                done.out.push(b'\n');
                done.stats.scored += 1;
            }
            Err(e) => {
                done.stats.failed += 1;
                error_line(&mut done.out, number, &e.to_string());
            }
        }
    }
}

fn error_line(out: &mut Vec<u8>, line: u64, message: &str) {
    let json = serde_json::json!({ "line": line, "error": message });
    let _ = serde_json::to_writer(&mut *out, &json);
    out.push(b'\n');
}
