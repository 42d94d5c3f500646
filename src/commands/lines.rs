//! Reading JSON lines in fixed-size batches and working on each batch with
//! all threads, results kept in input order: memory stays flat however
//! large the input, and both cores work. Shared by `score` and the
//! evaluation commands.

use std::io::BufRead;

use super::CommandError;

/// Lines per batch: large enough to amortise thread hand-off, small enough
/// to keep memory flat (a few MB for typical records).
pub(crate) const BATCH_LINES: usize = 4096;

/// Calls `work(lines, number of the first line)` on slices of each batch,
/// in parallel, and hands the results to `sink` in input order.
pub(crate) fn for_each_batch<T: Send>(
    mut input: impl BufRead,
    threads: usize,
    work: impl Fn(&[Vec<u8>], u64) -> T + Sync,
    mut sink: impl FnMut(T) -> Result<(), CommandError>,
) -> Result<(), CommandError> {
    let threads = threads.max(1);
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH_LINES);
    let mut spare: Vec<Vec<u8>> = Vec::new();
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
        if threads == 1 || batch.len() < 64 {
            sink(work(&batch, first_line))?;
        } else {
            let chunk = batch.len().div_ceil(threads);
            let work = &work;
            let results: Vec<Option<T>> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .chunks(chunk)
                    .enumerate()
                    .map(|(i, lines)| {
                        let start = first_line + (i * chunk) as u64;
                        scope.spawn(move || work(lines, start))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().ok()).collect()
            });
            for result in results {
                match result {
                    Some(result) => sink(result)?,
                    None => {
                        return Err(CommandError::Data(
                            "a worker thread failed while reading records".to_owned(),
                        ));
                    }
                }
            }
        }
        first_line += batch.len() as u64;
        spare.append(&mut batch);
    }
    Ok(())
}

/// A line's text, or why it is not UTF-8; empty lines are `Ok("")`.
pub(crate) fn line_text(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw)
        .map(str::trim)
        .map_err(|e| format!("line is not UTF-8: {e}"))
}
