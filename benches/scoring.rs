//! Scoring benchmarks (`cargo bench --bench scoring`): synthetic contacts
//! with ~40 properties and ~30 events each, scored with the example model
//! in `config/b2b.toml`.
//!
//! Measures, single core unless said otherwise:
//! 1. the scoring itself (`Model::score_into` on prepared records): cold,
//!    round-robin over a pool of 1,000 records that does not fit the
//!    cache, and as `score` runs it, each record scored right after it was
//!    read (copied into the one buffer just before, untimed),
//! 2. reading a JSON line into a record,
//! 3. `leadscored score` end to end (JSON lines in, scorecard lines out)
//!    with 1 and 2 worker threads, streaming from a generator so no input
//!    file is needed, in this process;
//! 4. side by side on files, as a user runs them: the `leadscored` binary's
//!    `score` (1 and 2 threads), `backtest` and `diff` as child processes,
//!    each with its own peak RSS, next to a validate-only serde_json pass
//!    (`IgnoredAny`) over the same file, on the generated people (`generate`,
//!    ~1.6 KB a line) and on this bench's contacts (~6.4 KB a line), at a
//!    tenth of the records and at all of them.
//!
//! Set `LEADSCORED_BENCH_RECORDS` to change the record count (default
//! 1,000,000; the contacts files hold a quarter as many, being four times
//! larger) and `LEADSCORED_BENCH_ONLY=score|files` to run one part.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::io::{BufRead, Read};
use std::time::Instant;

use leadscored::Model;
use leadscored::engine::Scorecard;

const NOW: &str = "2026-11-01T00:00:00Z";
const NOW_SECONDS: i64 = 1_793_491_200;

/// A small deterministic generator (no dependency, same data every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const TITLES: &[&str] = &[
    "Director of Marketing",
    "VP Sales",
    "Student",
    "Head of Data & Analytics",
    "Software Engineer",
    "CEO",
    "Marketing Manager",
    "Intern",
    "Revenue Operations Lead",
    "Account Executive",
];
const INDUSTRIES: &[&str] = &[
    "Software",
    "Financial Services",
    "Manufacturing",
    "Retail",
    "Healthcare",
    "Education",
];
const COUNTRIES: &[&str] = &[
    "Norway",
    "Denmark",
    "Netherlands",
    "Poland",
    "Sweden",
    "Germany",
    "France",
];
const DOMAINS: &[&str] = &[
    "firm.no",
    "gmail.com",
    "bedrift.dk",
    "rivalsoft.com",
    "bedrijf.nl",
    "firma.pl",
];
const URLS: &[&str] = &[
    "https://acme.example/pricing",
    "https://acme.example/product/tour",
    "https://acme.example/blog/lead-scoring",
    "https://acme.example/careers",
    "https://acme.example/analytics/dashboards",
    "https://acme.example/docs/api",
];
const TYPES: &[&str] = &[
    "page_view",
    "page_view",
    "page_view",
    "page_view",
    "email_open",
    "email_open",
    "email_click",
    "form_submission",
    "content_download",
    "ad_click",
    "webinar",
    "chat",
];

/// One synthetic contact as a JSON line: ~40 properties, ~30 events.
fn contact_line(rng: &mut Lcg, id: u64, out: &mut String) {
    use std::fmt::Write;
    out.clear();
    let _ = write!(out, "{{\"id\":\"{id}\",\"properties\":{{");
    let _ = write!(
        out,
        "\"email\":\"p{id}@{}\",\"firstname\":\"Kari\",\"lastname\":\"Nordmann\",\"jobtitle\":\"{}\",\"country\":\"{}\",",
        rng.pick(DOMAINS),
        rng.pick(TITLES),
        rng.pick(COUNTRIES)
    );
    let _ = write!(
        out,
        "\"hs_analytics_num_visits\":\"{}\",\"hs_email_last_open_date\":\"{}\",\"leadscored_stage\":\"Lead\"",
        rng.below(40),
        (NOW_SECONDS - rng.below(200) as i64 * 86_400) * 1000
    );
    for extra in 0..32 {
        let _ = write!(
            out,
            ",\"custom_field_{extra}\":\"value {}\"",
            rng.below(1000)
        );
    }
    let _ = write!(
        out,
        "}},\"company\":{{\"name\":\"Firm {}\",\"numemployees\":\"{}\",\"industry\":\"{}\",\"tech_stack\":[\"Looker\",\"dbt\"]}},\"events\":[",
        rng.below(5000),
        rng.below(3000),
        rng.pick(INDUSTRIES)
    );
    let events = 20 + rng.below(21);
    for e in 0..events {
        let at = jiff::Timestamp::from_second(NOW_SECONDS - rng.below(540 * 86_400) as i64)
            .expect("in range");
        let kind = rng.pick(TYPES);
        let _ = write!(
            out,
            "{}{{\"type\":\"{kind}\",\"at\":\"{at}\",\"attributes\":{{\"url\":\"{}\",\"asset\":\"premium-{}\",\"form_id\":\"demo-request\",\"campaign\":\"nov\"}}}}",
            if e == 0 { "" } else { "," },
            rng.pick(URLS),
            rng.below(4)
        );
    }
    out.push_str("],\"lists\":[\"Newsletter\"]}\n");
}

/// Streams `remaining` lines by cycling through a pool of pre-generated
/// ones, so the measurement is the reader's work, not the generator's.
struct Generated<'a> {
    pool: &'a [String],
    next: usize,
    remaining: u64,
    offset: usize,
}

impl<'a> Generated<'a> {
    fn new(pool: &'a [String], count: u64) -> Self {
        Self {
            pool,
            next: 0,
            remaining: count,
            offset: usize::MAX,
        }
    }

    fn current(&self) -> &'a [u8] {
        self.pool[self.next % self.pool.len()].as_bytes()
    }
}

impl Read for Generated<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Generated<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.offset == usize::MAX || self.offset >= self.current().len() {
            if self.remaining == 0 {
                return Ok(&[]);
            }
            if self.offset != usize::MAX {
                self.next += 1;
            }
            self.remaining -= 1;
            self.offset = 0;
        }
        Ok(&self.current()[self.offset..])
    }
    fn consume(&mut self, amount: usize) {
        self.offset += amount;
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let records: u64 = std::env::var("LEADSCORED_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/b2b.toml"))
        .expect("example model");
    let model = Model::compile("config/b2b.toml", &source).expect("example model compiles");
    let now: jiff::Timestamp = NOW.parse().expect("valid");

    // A pool of distinct prepared records, scored round-robin.
    let pool_size = std::env::var("LEADSCORED_BENCH_POOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000usize)
        .min(records as usize)
        .max(1);
    let mut rng = Lcg(42);
    let mut line = String::new();
    let mut pool = Vec::with_capacity(pool_size);
    let mut lines = Vec::with_capacity(pool_size);
    let mut bytes = 0usize;
    let mut events = 0usize;
    for id in 0..pool_size as u64 {
        contact_line(&mut rng, id, &mut line);
        bytes += line.len();
        let record = model
            .parse_record(line.trim_end())
            .expect("synthetic records are valid");
        events += record.event_count();
        pool.push(record);
        lines.push(line.clone());
    }
    println!(
        "synthetic contacts: ~40 properties, {:.1} events kept on average, {:.0} bytes per JSON line",
        events as f64 / pool_size as f64,
        bytes as f64 / pool_size as f64
    );

    // 1. Scoring itself.
    let mut card = Scorecard::default();
    let mut checksum = 0.0;
    for record in pool.iter().take(2_000) {
        model.score_into(record, now, &mut card);
    }
    let start = Instant::now();
    for i in 0..records as usize {
        model.score_into(&pool[i % pool_size], now, &mut card);
        checksum += card.results()[0].total();
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "score_into, cold:      {records} records in {elapsed:.3} s = {:>10.0} records/s ({:.0} ns/record) [checksum {checksum}]",
        records as f64 / elapsed,
        elapsed * 1e9 / records as f64
    );
    // As `score` runs it: each record scored right after it was read, so
    // it is in the cache. Each record is copied into one buffer (untimed)
    // before it is scored; the timer's own cost is measured and taken off.
    let mut hot = leadscored::Record::default();
    let (mut timed, mut timer) = (0.0f64, 0.0f64);
    for i in 0..records as usize {
        hot.clone_from(&pool[i % pool_size]);
        let start = Instant::now();
        model.score_into(&hot, now, &mut card);
        let middle = Instant::now();
        let end = Instant::now();
        timed += (middle - start).as_secs_f64();
        timer += (end - middle).as_secs_f64();
        checksum += card.results()[0].total();
    }
    let elapsed = (timed - timer).max(f64::MIN_POSITIVE);
    println!(
        "score_into, just read: {records} records in {elapsed:.3} s = {:>10.0} records/s ({:.0} ns/record; timer's {:.0} ns taken off) [checksum {checksum}]",
        records as f64 / elapsed,
        elapsed * 1e9 / records as f64,
        timer * 1e9 / records as f64
    );

    let only = std::env::var("LEADSCORED_BENCH_ONLY").unwrap_or_default();
    if only == "score" {
        return;
    }
    if only == "files" {
        side_by_side(records, &lines);
        return;
    }

    // 2. Reading JSON lines into records.
    let read_count = (records / 5).max(1);
    let mut generated = Generated::new(&lines, read_count);
    let mut buffer = Vec::new();
    let start = Instant::now();
    let mut parsed = 0u64;
    loop {
        buffer.clear();
        if generated.read_until(b'\n', &mut buffer).expect("generator") == 0 {
            break;
        }
        let text = std::str::from_utf8(&buffer).expect("utf-8");
        if model.parse_record(text.trim_end()).is_ok() {
            parsed += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "parse_record:          {parsed} lines in {elapsed:.3} s = {:>10.0} records/s ({:.0} MB/s of JSON)",
        parsed as f64 / elapsed,
        parsed as f64 * bytes as f64 / pool_size as f64 / elapsed / 1e6
    );

    // 3. End to end, streaming, with 1 and 2 threads; memory after 10 % and 100 %.
    for threads in [1usize, 2] {
        for count in [records / 10, records] {
            let start = Instant::now();
            let stats = leadscored::commands::score_stream(
                &model,
                now,
                Generated::new(&lines, count),
                std::io::sink(),
                threads,
                leadscored::commands::Lines::Contacts,
            )
            .expect("stream");
            let elapsed = start.elapsed().as_secs_f64();
            println!(
                "score stream {threads} thread{}: {} lines in {elapsed:.3} s = {:>10.0} records/s, peak RSS so far {:.0} MB",
                if threads == 1 { " " } else { "s" },
                stats.scored,
                stats.scored as f64 / elapsed,
                peak_rss_mb()
            );
        }
    }

    side_by_side(records, &lines);
}

/// Part 4: the binary on files, next to plain serde_json on the same files.
fn side_by_side(records: u64, contacts: &[String]) {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temporary directory");
    let people_count = records;
    let contact_count = (records / 4).max(1);
    let people = dir.path().join("people.jsonl");
    let contacts_file = dir.path().join("contacts.jsonl");
    {
        let out = std::io::BufWriter::new(std::fs::File::create(&people).expect("create"));
        leadscored::commands::generate(people_count, 1, NOW.parse().expect("valid"), out)
            .expect("generate");
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&contacts_file).expect("create"));
        for i in 0..contact_count as usize {
            out.write_all(contacts[i % contacts.len()].as_bytes())
                .expect("write");
        }
        out.flush().expect("flush");
    }
    for (label, file, count) in [
        ("generated people", &people, people_count),
        ("bench contacts", &contacts_file, contact_count),
    ] {
        for part in [count / 10, count] {
            let path = if part == count {
                file.clone()
            } else {
                let head = dir.path().join("head.jsonl");
                let text = std::fs::File::open(file).expect("open");
                let mut out =
                    std::io::BufWriter::new(std::fs::File::create(&head).expect("create"));
                for line in std::io::BufReader::new(text).lines().take(part as usize) {
                    writeln!(out, "{}", line.expect("line")).expect("write");
                }
                out.flush().expect("flush");
                head
            };
            let bytes = std::fs::metadata(&path).expect("size").len();
            println!(
                "\n{label}: {part} records, {:.0} MB, {:.0} bytes a line",
                bytes as f64 / 1e6,
                bytes as f64 / part as f64
            );
            let validate = (0..3)
                .map(|_| validate_only(&path))
                .fold(f64::MAX, f64::min);
            println!(
                "  serde_json IgnoredAny (1 thread): {validate:.3} s = {:>8.0} records/s",
                part as f64 / validate
            );
            let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/b2b.toml");
            let minimal = concat!(env!("CARGO_MANIFEST_DIR"), "/config/minimal.toml");
            let input = path.to_str().expect("utf-8 path");
            let mut one = f64::NAN;
            for threads in ["1", "2"] {
                let (seconds, rss) = run_binary(&[
                    "score",
                    "--config",
                    config,
                    "--now",
                    NOW,
                    "--threads",
                    threads,
                    "--input",
                    input,
                ]);
                if threads == "1" {
                    one = seconds;
                }
                println!(
                    "  score --threads {threads}: {seconds:.3} s = {:>8.0} records/s, {:.2}x IgnoredAny's time, {:.2}x one thread's speed, peak RSS {rss:.0} MB",
                    part as f64 / seconds,
                    seconds / validate,
                    one / seconds
                );
            }
            if label == "generated people" {
                for (name, args) in [
                    ("backtest", vec!["backtest", "--config", config]),
                    (
                        "diff",
                        vec!["diff", "--config", config, "--config", minimal],
                    ),
                ] {
                    let mut args = args;
                    args.extend(["--now", NOW, "--input", input]);
                    let (seconds, rss) = run_binary(&args);
                    println!(
                        "  {name} (all cores): {seconds:.3} s = {:>8.0} records/s, peak RSS {rss:.0} MB",
                        part as f64 / seconds
                    );
                }
            }
        }
    }
}

/// Seconds for a validate-only serde_json pass over a file, line by line.
fn validate_only(path: &std::path::Path) -> f64 {
    let file = std::fs::File::open(path).expect("open");
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    let start = Instant::now();
    let mut ok = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).expect("read") == 0 {
            break;
        }
        if serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok() {
            ok += 1;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    assert!(ok > 0, "no line parsed");
    seconds
}

/// Runs the `leadscored` binary three times, output discarded: the best
/// wall seconds (this machine's neighbours make single runs noisy) and the
/// highest peak RSS in MB.
fn run_binary(args: &[&str]) -> (f64, f64) {
    (0..3)
        .map(|_| run_once(args))
        .fold((f64::MAX, 0.0), |(t, m), (t2, m2)| {
            (t.min(t2), f64::max(m, m2))
        })
}

/// One run; peak RSS read from /proc while it runs.
fn run_once(args: &[&str]) -> (f64, f64) {
    let start = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_leadscored"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run leadscored");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0f64;
    loop {
        if let Some(kb) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        }) {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "leadscored {args:?} failed: {status}");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    (start.elapsed().as_secs_f64(), peak_kb / 1024.0)
}
