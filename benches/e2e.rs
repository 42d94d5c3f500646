//! End-to-end sync at scale: `leadscored sync --once --full` as its own
//! process against `leadscored fake-crm --unlimited` (another process),
//! for 100,000 and 1,000,000 contacts (`E2E_SIZES=...` to change). The
//! first sync writes every contact; a second full sync finds nothing to
//! write. Reports records per second and the sync process's peak RSS
//! (VmHWM, sampled until it exits), which must stay flat as the portal
//! grows.
//!
//! Event detail is switched off (`[events] ... = "off"`): with it, every
//! contact costs two more calls and the figure measures the fake's HTTP
//! serving, not the sync.
//!
//! Then the same for Pardot (`E2E_PARDOT_SIZES`, 100,000 prospects by
//! default) with visitor activities on, since on Pardot the daily call
//! budget is what limits a sync: a first sync and an incremental one that
//! finds only its own writes, with the calls each made.
//!
//! With `LEADSCORED_TEST_POSTGRES` set (see `.ci/postgres`), HubSpot runs
//! once more with the state in PostgreSQL (`E2E_POSTGRES_SIZES`, 100,000
//! by default).
//!
//! Run with `cargo bench --bench e2e`.

#![allow(clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_leadscored");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_123)
}

/// Peak RSS in MiB of a running process, from /proc (0 when gone).
fn peak_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs a child to completion, sampling its peak RSS; returns (seconds,
/// MiB, success).
fn measure(command: Command) -> (f64, f64, bool) {
    measure_into(command, Stdio::null())
}

/// The same, with the child's standard output going to `stdout`.
fn measure_into(mut command: Command, stdout: Stdio) -> (f64, f64, bool) {
    let started = Instant::now();
    let mut child: Child = command
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("leadscored starts");
    let mut peak: f64 = 0.0;
    loop {
        peak = peak.max(peak_mib(child.id()));
        if let Some(status) = child.try_wait().expect("wait") {
            return (started.elapsed().as_secs_f64(), peak, status.success());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn connection(dir: &Path, url: &str) -> PathBuf {
    let token = dir.join("token");
    std::fs::write(&token, "pat-fake-local-token").expect("token");
    let text = std::fs::read_to_string(root().join("config/hubspot.toml"))
        .expect("example connection")
        .replace(
            "model = \"b2b.toml\"",
            &format!(
                "model = {:?}",
                root().join("config/b2b.toml").display().to_string()
            ),
        )
        .replace(
            "token = { credential = \"hubspot-token\" }",
            &format!("token = {{ file = {:?} }}", token.display().to_string()),
        )
        .replace(
            "# base_url = \"https://api.hubapi.com\"",
            &format!("base_url = {url:?}"),
        )
        .replace(
            "[limits]\n",
            "[limits]\nper_ten_seconds = 10000\nsearch_per_second = 1000\nconcurrency = 8\ndaily = 100000000\n",
        )
        .replace("form_submission = \"forms\"", "form_submission = \"off\"")
        .replace("email_open = \"email:OPEN\"", "email_open = \"off\"")
        .replace(
            "page_view = \"web:e_visited_page\"",
            "page_view = \"off\"\nemail_click = \"off\"\nad_click = \"off\"\ncontent_download = \"off\"\nemail_unsubscribe = \"off\"\nwebinar = \"off\"",
        );
    let path = dir.join("bench.toml");
    std::fs::write(&path, text).expect("connection file");
    path
}

/// [`connection`] keeping its state in the PostgreSQL server of
/// `LEADSCORED_TEST_POSTGRES` (a fresh schema: the file's name is new).
fn postgres_connection(dir: &Path, url: &str) -> PathBuf {
    let path = connection(dir, url);
    let db = std::env::var("LEADSCORED_TEST_POSTGRES").expect("a server");
    let text = std::fs::read_to_string(&path).expect("connection")
        + &format!(
            "\n[state]\nurl = {db:?}\npassword = {{ env = \"LEADSCORED_TEST_POSTGRES_PASSWORD\" }}\n"
        );
    let unique = dir.join(format!(
        "bench-{}-{}.toml",
        std::process::id(),
        Instant::now().elapsed().as_nanos() + u128::from(free_port())
    ));
    std::fs::write(&unique, text).expect("connection file");
    unique
}

/// The example Pardot connection with a token file, at `url`, activities on.
fn pardot_connection(dir: &Path, url: &str) -> PathBuf {
    let token = dir.join("token");
    std::fs::write(&token, "fake-pardot-access-token").expect("token");
    let text =
        std::fs::read_to_string(root().join("config/pardot.toml")).expect("example connection");
    let (head, rest) = text.split_once("[crm.oauth]").expect("an oauth block");
    let rest = &rest[rest.find("[limits]").expect("limits")..];
    let text = format!(
        "{}token = {{ file = {:?} }}\n\n{rest}",
        head.replace(
            "model = \"b2b.toml\"",
            &format!(
                "model = {:?}",
                root().join("config/b2b.toml").display().to_string()
            ),
        )
        .replace(
            "# base_url = \"https://pi.pardot.com\"",
            &format!("base_url = {url:?}"),
        ),
        token.display().to_string()
    );
    let path = dir.join("pardot.toml");
    std::fs::write(&path, text).expect("connection file");
    path
}

/// Calls a `sync --json` run reports in its summary line.
fn calls_in(output: &Path) -> u64 {
    let text = std::fs::read_to_string(output).unwrap_or_default();
    let summary = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or_default();
    let report = &summary["summary"];
    ["pull_pages", "detail_calls", "write_calls"]
        .iter()
        .map(|k| report[k].as_u64().unwrap_or(0))
        .sum()
}

/// A fresh directory, `fake-crm --kind kind --unlimited` with `records`
/// records on a free port, and the connection `write` makes for it, set up.
/// Writes a connection file for a fake at a URL into a directory.
type WriteConnection = fn(&Path, &str) -> PathBuf;

fn start(kind: &str, records: u64, write: WriteConnection) -> (PathBuf, Child, PathBuf) {
    let dir = std::env::temp_dir().join(format!("leadscored-e2e-{kind}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    let fake = Command::new(BIN)
        .args(["fake-crm", "--kind", kind, "--unlimited", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--contacts", &records.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fake starts");
    std::thread::sleep(Duration::from_millis(500));
    let path = write(&dir, &format!("http://127.0.0.1:{port}"));
    let status = Command::new(BIN)
        .args(["setup", "--connection"])
        .arg(&path)
        .stdout(Stdio::null())
        .status()
        .expect("setup runs");
    assert!(status.success(), "setup");
    (dir, fake, path)
}

fn pardot(sizes: &[u64]) {
    println!();
    println!(
        "prospects  first sync (activities, writes all)          incremental (own writes only)"
    );
    for &prospects in sizes {
        let (dir, mut fake, path) = start("pardot", prospects, pardot_connection);
        let mut runs = Vec::new();
        for round in 0..2 {
            if round == 1 {
                // Pardot's times have whole seconds.
                std::thread::sleep(Duration::from_millis(1_100));
            }
            let output = dir.join(format!("sync-{round}.jsonl"));
            let mut command = Command::new(BIN);
            command
                .args(["sync", "--once", "--json", "--connection"])
                .arg(&path)
                .arg("--state-dir")
                .arg(dir.join("state"));
            let file = std::fs::File::create(&output).expect("output file");
            let (seconds, mib, ok) = measure_into(command, Stdio::from(file));
            assert!(ok, "the sync succeeds");
            runs.push((seconds, mib, calls_in(&output)));
        }
        let _ = fake.kill();
        let _ = fake.wait();
        let _ = std::fs::remove_dir_all(&dir);
        let [(s1, m1, c1), (s2, m2, c2)] = [runs[0], runs[1]];
        println!(
            "{prospects:>9}  {:>7.0} rec/s {:>6.1} s {:>4.0} MiB {:>6} calls   {:>7.0} rec/s {:>5.1} s {:>4.0} MiB {:>5} calls",
            prospects as f64 / s1,
            s1,
            m1,
            c1,
            prospects as f64 / s2,
            s2,
            m2,
            c2
        );
    }
}

fn sizes(variable: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(variable)
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn main() {
    let sizes_pardot = sizes("E2E_PARDOT_SIZES", &[100_000]);
    let sizes = sizes("E2E_SIZES", &[100_000, 1_000_000]);
    println!("contacts   first sync (writes all)        second sync (writes none)");
    // With a PostgreSQL server given, the same with the state in it.
    let postgres = std::env::var_os("LEADSCORED_TEST_POSTGRES").is_some();
    let mut runs: Vec<(u64, WriteConnection, &str)> = sizes
        .iter()
        .map(|n| (*n, connection as WriteConnection, ""))
        .collect();
    if postgres {
        for n in self::sizes("E2E_POSTGRES_SIZES", &[100_000]) {
            runs.push((n, postgres_connection, "  (state in PostgreSQL)"));
        }
    }
    for (contacts, write, label) in runs {
        let (dir, mut fake, path) = start("hubspot", contacts, write);
        let sync = || {
            let mut command = Command::new(BIN);
            command
                .args(["sync", "--once", "--full", "--connection"])
                .arg(&path)
                .arg("--state-dir")
                .arg(dir.join("state"));
            command
        };
        let (first_s, first_mib, ok1) = measure(sync());
        let (second_s, second_mib, ok2) = measure(sync());
        let _ = fake.kill();
        let _ = fake.wait();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(ok1 && ok2, "the syncs succeed");
        println!(
            "{contacts:>9}  {:>7.0} rec/s {:>6.1} s {:>5.0} MiB   {:>7.0} rec/s {:>6.1} s {:>5.0} MiB{label}",
            contacts as f64 / first_s,
            first_s,
            first_mib,
            contacts as f64 / second_s,
            second_s,
            second_mib
        );
    }
    pardot(&sizes_pardot);
}
