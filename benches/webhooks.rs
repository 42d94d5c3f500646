//! Near-real-time: from a change in the fake HubSpot to the new score in
//! that contact's record, with `leadscored run` (its own process) taking
//! the fake's signed webhooks. The fake holds HubSpot Professional's rate
//! limit (190 requests per 10 s, search 5/s); people in sales change job
//! titles at 1, 10 and 100 changes a second, each rate sustained for a
//! minute (`WEBHOOK_BENCH_SECONDS` to change, `WEBHOOK_BENCH_RATES` to
//! pick rates). Reports p50, p95 and the worst latency, the changes that
//! never reached a score, the calls spent and the 429s the fake answered.
//!
//! Run with `cargo bench --bench webhooks`.

#![allow(clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leadscored::config::Connection;
use leadscored::crm::Crm as _;
use leadscored::fake::hubspot::webhooks::FakeWebhooks;
use leadscored::fake::{FakeHubspot, HubspotConfig, spawn_hubspot};

const BIN: &str = env!("CARGO_BIN_EXE_leadscored");
const TOKEN: &str = "pat-bench-token";
const SECRET: &str = "bench-app-secret";
const CONTACTS: u64 = 5_000;
const SCORE: &str = "leadscored_score";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_321)
}

fn connection_file(dir: &Path, fake_url: &str, port: u16) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let token = dir.join("token");
    let secret = dir.join("app-secret");
    std::fs::write(&token, TOKEN).expect("token");
    std::fs::write(&secret, SECRET).expect("secret");
    let example = std::fs::read_to_string(root.join("config/hubspot.toml")).expect("example");
    let head = example
        .find("\n# The daemon")
        .map_or(example.as_str(), |at| &example[..at]);
    let text = head
        .replace(
            "model = \"b2b.toml\"",
            &format!(
                "model = {:?}",
                root.join("config/b2b.toml").display().to_string()
            ),
        )
        .replace(
            "token = { credential = \"hubspot-token\" }",
            &format!("token = {{ file = {:?} }}", token.display().to_string()),
        )
        .replace(
            "# base_url = \"https://api.hubapi.com\"",
            &format!("base_url = {fake_url:?}"),
        )
        + &format!(
            "\n[daemon]\nincremental = \"every 1h\"\nrescore = \"off\"\n\n[webhooks]\nurl = \"http://127.0.0.1:{port}/webhooks/hubspot\"\nsecret = {{ file = {:?} }}\n",
            secret.display().to_string()
        );
    let path = dir.join("portal.toml");
    std::fs::write(&path, text).expect("connection");
    path
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// One change: who, when, and the outputs it started from.
struct Change {
    id: u64,
    at: Instant,
    before: (Option<String>, Option<String>),
}

/// The score and its reasons as the contact holds them.
fn outputs(fake: &FakeHubspot, id: u64) -> (Option<String>, Option<String>) {
    (
        fake.property(id, SCORE),
        fake.property(id, "leadscored_reasons"),
    )
}

async fn stats(url: &str) -> serde_json::Value {
    reqwest::get(format!("{url}/__fake/stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json")
}

/// API requests the fake served (its stats also count records written).
fn requests(stats: &serde_json::Value) -> u64 {
    stats["requests"].as_object().map_or(0, |r| {
        r.iter()
            .filter(|(key, _)| is_request(key))
            .filter_map(|(_, n)| n.as_u64())
            .sum()
    })
}

fn is_request(key: &str) -> bool {
    ["GET ", "POST ", "PATCH "]
        .iter()
        .any(|m| key.starts_with(m))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = std::env::var("WEBHOOK_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let rates: Vec<u64> = std::env::var("WEBHOOK_BENCH_RATES")
        .ok()
        .map(|s| s.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 10, 100]);
    let port = free_port();
    let mut hooks = FakeWebhooks::new(&format!("http://127.0.0.1:{port}/webhooks/hubspot"), SECRET)
        .expect("loopback");
    hooks.retry_base = Duration::from_millis(500);
    let config = HubspotConfig {
        contacts: CONTACTS,
        seed: 5,
        token: TOKEN.to_owned(),
        per_ten_seconds: 190,
        search_per_second: 5,
        webhooks: Some(hooks),
        ..HubspotConfig::default()
    };
    let fake = FakeHubspot::new(config);
    let running = spawn_hubspot(fake.clone()).await.expect("fake");
    let url = running.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = connection_file(dir.path(), &url, port);
    let connection = Connection::load(&path).expect("connection");
    leadscored::crm::hubspot::Hubspot::new(&connection)
        .expect("connector")
        .setup(&connection.property_specs(), true)
        .await
        .expect("setup");

    let log = dir.path().join("daemon.log");
    let mut child: Child = Command::new(BIN)
        .args(["run", "--connection", path.to_str().expect("utf-8")])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("LEADSCORED_LOG_FORMAT", "journald")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("daemon");
    let health = format!("http://127.0.0.1:{port}/healthz");
    let started = Instant::now();
    loop {
        let body = match reqwest::get(&health).await {
            Ok(answer) => answer.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains("\"last_outcome\":\"ok\"") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no first sync: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "first sync of {CONTACTS} contacts at 190 requests / 10 s: {:.0} s",
        started.elapsed().as_secs_f64()
    );

    println!(
        "\nchanges/s | changes | p50 s | p95 s | max s | never scored | calls | calls/change | 429s"
    );
    let mut next_id = 1;
    for rate in rates {
        let before_stats = stats(&url).await;
        let mut pending: VecDeque<Change> = VecDeque::new();
        let mut latencies: Vec<f64> = Vec::new();
        let total = rate * seconds;
        let every = Duration::from_secs_f64(1.0 / rate as f64);
        let start = Instant::now();
        let mut sent = 0;
        let deadline = start + Duration::from_secs(seconds) + Duration::from_secs(30);
        while (sent < total || !pending.is_empty()) && Instant::now() < deadline {
            // Changes due by now.
            while sent < total && start + every * sent as u32 <= Instant::now() {
                let id = next_id;
                next_id = next_id % CONTACTS + 1;
                // The opposite of what the title says now: the "Student"
                // rule fires or stops firing, so the score and its reasons
                // move.
                let now_title = fake
                    .property(id, "jobtitle")
                    .unwrap_or_default()
                    .to_lowercase();
                let student = ["student", "intern", "trainee"]
                    .iter()
                    .any(|w| now_title.contains(w));
                let title = if student {
                    "CEO and founder"
                } else {
                    "Student intern"
                };
                let before = outputs(&fake, id);
                fake.edit_contact(
                    id,
                    BTreeMap::from([("jobtitle".to_owned(), title.to_owned())]),
                );
                pending.push_back(Change {
                    id,
                    at: Instant::now(),
                    before,
                });
                sent += 1;
            }
            // Changes whose score has moved.
            pending.retain(|change| {
                if outputs(&fake, change.id) != change.before {
                    latencies.push(change.at.elapsed().as_secs_f64());
                    false
                } else {
                    true
                }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let after_stats = stats(&url).await;
        let calls = requests(&after_stats) - requests(&before_stats);
        let throttled = after_stats["rate_limited"].as_u64().unwrap_or(0)
            - before_stats["rate_limited"].as_u64().unwrap_or(0);
        latencies.sort_by(f64::total_cmp);
        println!(
            "{rate:>9} | {total:>7} | {:>5.2} | {:>5.2} | {:>5.2} | {:>12} | {calls:>5} | {:>12.2} | {throttled}",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.95),
            latencies.last().copied().unwrap_or(f64::NAN),
            pending.len(),
            calls as f64 / total.max(1) as f64,
        );
        if std::env::var_os("WEBHOOK_BENCH_CALLS").is_some() {
            for (endpoint, after) in after_stats["requests"].as_object().into_iter().flatten() {
                let before = before_stats["requests"][endpoint].as_u64().unwrap_or(0);
                let spent = after.as_u64().unwrap_or(0) - before;
                if spent > 0 && is_request(endpoint) {
                    println!("          {endpoint}: {spent}");
                }
            }
        }
        // Let the last passes and their webhooks settle.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    drop(running);
}
