//! Reading JSON lines in blocks of about a megabyte and working on the
//! blocks with all threads, results kept in input order. Shared by `score`
//! and the evaluation commands.
//!
//! Memory stays flat: a fixed number of blocks and their results are in
//! flight (two per worker), and their buffers are reused, so a run over a
//! million records allocates what a run over a thousand does. The calling
//! thread reads and hands results to the sink while the workers work, so
//! reading and writing overlap with scoring. A line longer than
//! [`MAX_LINE_BYTES`] is reported and skipped instead of being held.

use std::collections::BTreeMap;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, mpsc};

use super::CommandError;

/// Bytes per block: large enough that handing a block to a thread costs
/// nothing next to its work, small enough that the blocks in flight stay a
/// few megabytes.
const BLOCK_BYTES: usize = 1 << 20;

/// The longest line read; a longer one is an error line, not a memory spike.
pub(crate) const MAX_LINE_BYTES: usize = 64 << 20;

/// A run of complete lines and the number of its first line.
#[derive(Debug, Default)]
pub(crate) struct Block {
    seq: u64,
    first_line: u64,
    bytes: Vec<u8>,
    /// The block's first line was longer than [`MAX_LINE_BYTES`] and was
    /// dropped (it stands as an empty line in `bytes`).
    too_long: bool,
}

impl Block {
    /// Each line with its number: its text, trimmed, or why it cannot be
    /// read. Empty lines are `Ok("")`.
    pub(crate) fn lines(&self) -> impl Iterator<Item = (u64, Result<&str, String>)> + '_ {
        let bytes = self.bytes.strip_suffix(b"\n").unwrap_or(&self.bytes);
        let empty = bytes.is_empty() && !self.too_long;
        // memchr finds line ends many bytes at a time; `split` with a
        // closure looked at each byte and cost a tenth of a `score` run.
        let mut ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
        let mut start = 0;
        std::iter::from_fn(move || {
            let end = ends.next()?;
            let line = &bytes[start..end];
            start = end + 1;
            Some(line)
        })
        .take(if empty { 0 } else { usize::MAX })
        .enumerate()
        .map(move |(i, raw)| {
            let number = self.first_line + i as u64;
            if i == 0 && self.too_long {
                let limit = MAX_LINE_BYTES >> 20;
                return (
                    number,
                    Err(format!("line is longer than {limit} MiB; skipped")),
                );
            }
            (number, line_text(raw))
        })
    }
}

/// Cuts the input into blocks that end at a line end.
struct Blocks<R> {
    input: R,
    /// The start of a line that did not fit the previous block.
    carry: Vec<u8>,
    next_line: u64,
    next_seq: u64,
    eof: bool,
}

impl<R: Read> Blocks<R> {
    fn new(input: R) -> Self {
        Self {
            input,
            carry: Vec::new(),
            next_line: 1,
            next_seq: 0,
            eof: false,
        }
    }

    /// Fills `block` with the next lines; false at the end of the input.
    fn next(&mut self, block: &mut Block) -> std::io::Result<bool> {
        block.bytes.clear();
        block.too_long = false;
        block.bytes.extend_from_slice(&self.carry);
        self.carry.clear();
        let mut scanned = 0;
        loop {
            while !self.eof && block.bytes.len() < BLOCK_BYTES {
                let want = (BLOCK_BYTES - block.bytes.len()) as u64;
                let read = (&mut self.input).take(want).read_to_end(&mut block.bytes)?;
                self.eof = read == 0;
            }
            if self.eof {
                if block.bytes.is_empty() {
                    return Ok(false);
                }
                break;
            }
            if let Some(end) = memchr::memrchr(b'\n', &block.bytes[scanned..]) {
                let end = scanned + end;
                self.carry.extend_from_slice(&block.bytes[end + 1..]);
                block.bytes.truncate(end + 1);
                break;
            }
            if block.bytes.len() > MAX_LINE_BYTES {
                self.skip_line()?;
                block.bytes.clear();
                block.bytes.push(b'\n');
                block.too_long = true;
                break;
            }
            // One line longer than a block: read on to its end.
            scanned = block.bytes.len();
            let read = (&mut self.input)
                .take(BLOCK_BYTES as u64)
                .read_to_end(&mut block.bytes)?;
            self.eof = read == 0;
        }
        block.seq = self.next_seq;
        block.first_line = self.next_line;
        self.next_seq += 1;
        let mut lines = memchr::memchr_iter(b'\n', &block.bytes).count() as u64;
        if !block.bytes.ends_with(b"\n") {
            lines += 1;
        }
        self.next_line += lines;
        Ok(true)
    }

    /// Drops input up to and including the next line end; what follows it
    /// is kept for the next block.
    fn skip_line(&mut self) -> std::io::Result<()> {
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let read = self.input.read(&mut chunk)?;
            if read == 0 {
                self.eof = true;
                return Ok(());
            }
            if let Some(end) = memchr::memchr(b'\n', &chunk[..read]) {
                self.carry.extend_from_slice(&chunk[end + 1..read]);
                return Ok(());
            }
        }
    }
}

/// Calls `work(block, result)` on every block of `input`, on `threads`
/// workers, and hands each result to `sink` in input order. A result is
/// reused for a later block, so `work` starts by clearing what it fills,
/// and may keep scratch space in it.
pub(crate) fn for_each_block<T: Default + Send>(
    input: impl Read,
    threads: usize,
    work: impl Fn(&Block, &mut T) + Sync,
    mut sink: impl FnMut(&mut T) -> Result<(), CommandError>,
) -> Result<(), CommandError> {
    let mut blocks = Blocks::new(input);
    if threads <= 1 {
        let mut block = Block::default();
        let mut result = T::default();
        while blocks.next(&mut block)? {
            work(&block, &mut result);
            sink(&mut result)?;
        }
        return Ok(());
    }
    let worker_failed =
        || CommandError::Data("a worker thread failed while reading records".to_owned());
    let (jobs, job_queue) = mpsc::sync_channel::<(Block, T)>(threads);
    let job_queue = Mutex::new(job_queue);
    let (done, finished) = mpsc::channel::<Option<(Block, T)>>();
    std::thread::scope(|scope| {
        // Owned here so that leaving, on success or error, closes the queue
        // and the workers stop before the scope waits for them.
        let (jobs, finished) = (jobs, finished);
        for _ in 0..threads {
            let (job_queue, done, work) = (&job_queue, done.clone(), &work);
            scope.spawn(move || {
                loop {
                    let job = match job_queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok((block, mut result)) = job else {
                        return;
                    };
                    let worked = catch_unwind(AssertUnwindSafe(|| work(&block, &mut result)));
                    if done.send(worked.ok().map(|()| (block, result))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done);
        let mut free: Vec<(Block, T)> = (0..threads * 2).map(|_| Default::default()).collect();
        let mut waiting: BTreeMap<u64, (Block, T)> = BTreeMap::new();
        let (mut next, mut in_flight, mut eof) = (0u64, 0usize, false);
        loop {
            while !eof && let Some((mut block, result)) = free.pop() {
                if blocks.next(&mut block)? {
                    jobs.send((block, result)).map_err(|_| worker_failed())?;
                    in_flight += 1;
                } else {
                    eof = true;
                    free.push((block, result));
                }
            }
            if in_flight == 0 {
                return Ok(());
            }
            let (block, result) = finished.recv().ok().flatten().ok_or_else(worker_failed)?;
            waiting.insert(block.seq, (block, result));
            while let Some((block, mut result)) = waiting.remove(&next) {
                sink(&mut result)?;
                next += 1;
                in_flight -= 1;
                free.push((block, result));
            }
        }
    })
}

/// A line's text, or why it is not UTF-8; empty lines are `Ok("")`.
pub(crate) fn line_text(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw)
        .map(str::trim)
        .map_err(|e| format!("line is not UTF-8: {e}"))
}
