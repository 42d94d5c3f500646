//! Sync benchmark (`cargo bench --bench sync`): a full pull, scoring, plan
//! and write-back of 20,000 contacts against the built-in fake HubSpot at
//! HubSpot's default limit of 100 requests per 10 seconds, reported next to
//! the theoretical minimum for that limit.
//!
//! Calls: ceil(N / 100) list pages + ceil(changed / 100) batch updates.
//! Minimum wall time: the first 100 calls may go at once, every further
//! 100 need another 10 seconds.
//!
//! `LEADSCORED_BENCH_CONTACTS` changes N (default 20,000).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::time::{Duration, Instant};

use leadscored::config::Connection;
use leadscored::crm::hubspot::Hubspot;
use leadscored::crm::{Crm as _, PullKind, PullSpec, Update, mapping};
use leadscored::fake::{FakeHubspot, HubspotConfig, spawn_hubspot};

const TOKEN: &str = "pat-bench-token";

fn main() {
    let contacts: u64 = std::env::var("LEADSCORED_BENCH_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(contacts));
}

async fn run(contacts: u64) {
    let fake = spawn_hubspot(FakeHubspot::new(HubspotConfig {
        contacts,
        token: TOKEN.to_owned(),
        per_ten_seconds: 100,
        search_per_second: 5,
        ..HubspotConfig::default()
    }))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("config/hubspot.toml"))
        .unwrap()
        .replace(
            "token = { credential = \"hubspot-token\" }",
            &format!(
                "token = {{ file = {:?} }}",
                dir.path().join("token").display().to_string()
            ),
        )
        .replace("[limits]\n", "[limits]\nper_ten_seconds = 100\n");
    let mut connection =
        Connection::parse("hubspot.toml", &source, &root.join("config"), None).unwrap();
    connection.override_base_url(&fake.url()).unwrap();
    let crm = Hubspot::new(&connection).unwrap();
    // Properties first (a handful of calls, not timed), then let their
    // calls leave the ten-second window so the run starts with a full one.
    crm.setup(&connection.property_specs(), true).await.unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;

    let now = jiff::Timestamp::now();
    let started = Instant::now();
    let spec = PullSpec {
        kind: PullKind::Full,
        fields: connection.fields(),
        event_types: Vec::new(),
        until_ms: now.as_millisecond(),
        known: Default::default(),
    };
    let (sink, mut pages) = tokio::sync::mpsc::channel(4);
    let pull = crm.pull(&spec, sink);
    let plan = async {
        let mut updates: Vec<Update> = Vec::new();
        while let Some(page) = pages.recv().await {
            for pulled in page {
                let record = mapping::to_record(&connection.model, &connection.inputs, &pulled);
                let card = connection.model.score(&record, now);
                let changes = leadscored::plan::changes(
                    &connection.model,
                    &connection.outputs,
                    &pulled.values,
                    &card,
                );
                if !changes.is_empty() {
                    updates.push(Update {
                        id: pulled.id.clone(),
                        values: changes.into_iter().map(|c| (c.property, c.new)).collect(),
                    });
                }
            }
        }
        updates
    };
    let (pulled, updates) = tokio::join!(pull, plan);
    let pulled = pulled.unwrap();
    let pull_time = started.elapsed();
    let changed = updates.len() as u64;
    let report = crm.write(updates).await.unwrap();
    let total = started.elapsed();

    let stats: serde_json::Value = reqwest::get(format!("{}/__fake/stats", fake.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let calls = pulled.pages + report.calls;
    let minimum_calls = contacts.div_ceil(100) + changed.div_ceil(100);
    let minimum_time = Duration::from_secs(10 * calls.saturating_sub(100).div_ceil(100));
    println!("contacts                 {contacts}");
    println!(
        "changed                  {changed} (written {}, failed {})",
        report.written.len(),
        report.failed.len()
    );
    println!("calls                    {calls} (minimum {minimum_calls})");
    println!("429s                     {}", stats["rate_limited"]);
    println!("pull + score + plan      {:.1} s", pull_time.as_secs_f64());
    println!("total wall time          {:.1} s", total.as_secs_f64());
    println!(
        "theoretical minimum      {:.1} s at 100 requests / 10 s ({:.0} % of it)",
        minimum_time.as_secs_f64(),
        100.0 * minimum_time.as_secs_f64() / total.as_secs_f64().max(1e-9)
    );
}
