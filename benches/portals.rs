//! Many portals from one process: `leadscored fake-crm --portals 200
//! --contacts 2000 --unlimited` (another process) writes one connection file
//! per portal; `setup` creates each portal's properties; then `leadscored
//! run --connections DIR` serves them all and every connection's first pass
//! (a first full sync: pull, engagement streams, scoring, writes) is timed
//! from `/healthz`.
//!
//! Reports total records/s (every portal's contacts ÷ the time until the
//! last portal's first pass ended), the daemon's peak RSS (VmHWM, sampled
//! throughout), and fairness: the slowest portal's pass time ÷ the median
//! pass time, and the same for the time each portal waited from start to
//! the end of its first pass.
//!
//! `PORTALS=200`, `PORTAL_CONTACTS=2000`, `PORTALS_PARALLEL=8` change the
//! sizes. Run with `cargo bench --bench portals`.

#![allow(clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_leadscored");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

/// CPU seconds (user + system) a running process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The fields after the command name, which ends with ')'.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Kills a child when dropped (the bench never leaves processes behind).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn healthz(port: u16) -> Option<serde_json::Value> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let body = answer.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let portals = env_or("PORTALS", 200);
    let contacts = env_or("PORTAL_CONTACTS", 2_000);
    let parallel = env_or("PORTALS_PARALLEL", 8);
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("connections.d");
    let fake_port = free_port();
    let fake = Reaped(
        Command::new(BIN)
            .args(["fake-crm", "--unlimited", "--listen"])
            .arg(format!("127.0.0.1:{fake_port}"))
            .args(["--portals", &portals.to_string()])
            .args(["--contacts", &contacts.to_string()])
            .arg("--write-connection")
            .arg(&dir)
            .stderr(Stdio::null())
            .spawn()
            .expect("fake starts"),
    );
    let last = dir.join(format!("portal-{portals:04}.toml"));
    let waited = Instant::now();
    while !last.exists() {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "fake-crm wrote no connections"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    setup_all(&dir, portals);

    let port = free_port();
    let fake_cpu_before = cpu_seconds(fake.0.id());
    let started = Instant::now();
    let daemon = Reaped(
        Command::new(BIN)
            .args(["run", "--connections"])
            .arg(&dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--parallel", &parallel.to_string()])
            .arg("--state-dir")
            .arg(work.path().join("state"))
            .env("LEADSCORED_LOG_FORMAT", "journald")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon starts"),
    );
    let pid = daemon.0.id();
    let mut peak: f64 = 0.0;
    let mut finished_at: std::collections::BTreeMap<String, f64> = Default::default();
    let mut pass_seconds: Vec<f64> = Vec::new();
    let mut failed = 0;
    loop {
        peak = peak.max(peak_mib(pid));
        assert!(
            started.elapsed() < Duration::from_secs(3_600),
            "the portals did not all finish a pass in an hour"
        );
        let Some(health) = healthz(port) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let Some(connections) = health["connections"].as_object() else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        for (name, body) in connections {
            if body["passes"].as_u64().unwrap_or(0) >= 1 && !finished_at.contains_key(name) {
                finished_at.insert(name.clone(), started.elapsed().as_secs_f64());
                pass_seconds.push(body["last_seconds"].as_f64().unwrap_or(0.0));
                if body["last_outcome"] != "ok" {
                    failed += 1;
                }
            }
        }
        if finished_at.len() >= portals {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let wall = started.elapsed().as_secs_f64();
    peak = peak.max(peak_mib(pid));
    let daemon_cpu = cpu_seconds(pid);
    let fake_cpu = cpu_seconds(fake.0.id()) - fake_cpu_before;
    drop(daemon);
    let records = (portals * contacts) as f64;
    let mut waits: Vec<f64> = finished_at.values().copied().collect();
    let slowest_pass = pass_seconds.iter().copied().fold(0.0, f64::max);
    let slowest_wait = waits.iter().copied().fold(0.0, f64::max);
    let median_pass = median(&mut pass_seconds);
    let median_wait = median(&mut waits);
    println!(
        "{portals} portals x {contacts} contacts, --parallel {parallel}: first passes of all in {wall:.1} s = {:.0} records/s; peak RSS {peak:.0} MiB; {failed} failed",
        records / wall
    );
    println!(
        "  CPU: the daemon {daemon_cpu:.0} s ({:.0} records per CPU-second), the fake {fake_cpu:.0} s, on {} cores",
        records / daemon_cpu.max(f64::EPSILON),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "  pass time: median {median_pass:.2} s, slowest {slowest_pass:.2} s (slowest / median {:.2})",
        slowest_pass / median_pass.max(f64::EPSILON)
    );
    println!(
        "  start to first pass done: median {median_wait:.1} s, slowest {slowest_wait:.1} s (slowest / median {:.2})",
        slowest_wait / median_wait.max(f64::EPSILON)
    );
}

/// Creates every portal's output properties, a few `setup`s at a time.
fn setup_all(dir: &Path, portals: usize) {
    let started = Instant::now();
    let mut running: Vec<Child> = Vec::new();
    for number in 1..=portals {
        let file = dir.join(format!("portal-{number:04}.toml"));
        running.push(
            Command::new(BIN)
                .args(["setup", "--connection"])
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("setup starts"),
        );
        if running.len() >= 8 {
            for mut child in running.drain(..) {
                assert!(child.wait().expect("setup").success(), "setup failed");
            }
        }
    }
    for mut child in running {
        assert!(child.wait().expect("setup").success(), "setup failed");
    }
    println!(
        "setup of {portals} portals: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
