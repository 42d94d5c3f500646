//! Sync benchmark (`cargo bench --bench sync`): the sync engine's first
//! sync of 20,000 contacts against the built-in fake HubSpot at HubSpot's
//! default limit of 100 requests per 10 seconds — contacts, their
//! companies, the model's list, engagement read as streams, write-back —
//! then an incremental pass after 1 % of the companies changed, and one
//! after 1 % of the contacts were active (new events, the contacts
//! themselves unmodified), each next to the fewest calls the API allows.
//!
//! First sync minimum: ceil(N / 100) list pages + ceil(companies / 100)
//! batch reads + ceil(changed / 100) batch updates + the account check,
//! the list search and the list's member pages + the event pages
//! (ceil(events / 1000) at least). Minimum wall time: the first 100 calls
//! may go at once, every further 100 need another 10 seconds.
//!
//! `LEADSCORED_BENCH_CONTACTS` changes N (default 20,000);
//! `LEADSCORED_BENCH_COMPANIES` spreads them over that many companies
//! (default: about eight contacts a company).
//! `LEADSCORED_BENCH_ACCOUNTS=1` adds an account score to the model (fit
//! from the company, roll-ups and a buying group over its people) with
//! its score and tier written to each company, to compare the calls with
//! company scores on and off.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::time::{Duration, Instant};

use leadscored::config::Connection;
use leadscored::crm::Crm as _;
use leadscored::crm::hubspot::Hubspot;
use leadscored::fake::{FakeHubspot, HubspotConfig, spawn_hubspot};
use leadscored::state::State;
use leadscored::sync::{Pass, PassKind, Stop, run_pass};

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
    let companies: u64 = std::env::var("LEADSCORED_BENCH_COMPANIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fake = spawn_hubspot(FakeHubspot::new(HubspotConfig {
        contacts,
        companies,
        token: TOKEN.to_owned(),
        per_ten_seconds: 100,
        search_per_second: 5,
        // About 31 events a person, heavy-tailed.
        activity: 2.4,
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
        .replace(
            "[limits]\n",
            // Passes here are seconds apart, not fifteen minutes: a short
            // index-lag overlap keeps each pass to what changed since.
            "[limits]\nper_ten_seconds = 100\nsearch_overlap_secs = 5\n",
        );
    let accounts = std::env::var("LEADSCORED_BENCH_ACCOUNTS").is_ok_and(|v| v == "1");
    let source = if accounts {
        let model = dir.path().join("accounts.toml");
        let text = std::fs::read_to_string(root.join("config/b2b.toml")).unwrap();
        std::fs::write(&model, format!("{text}\n{ACCOUNT_SCORE}")).unwrap();
        format!("{source}\n{ACCOUNT_OUTPUTS}").replace(
            "model = \"b2b.toml\"",
            &format!("model = {:?}", model.display().to_string()),
        )
    } else {
        source
    };
    println!(
        "company scores           {}",
        if accounts { "on" } else { "off" }
    );
    let mut connection =
        Connection::parse("hubspot.toml", &source, &root.join("config"), None).unwrap();
    connection.override_base_url(&fake.url()).unwrap();
    let crm = Hubspot::new(&connection).unwrap();
    // Properties first (a handful of calls, not timed), then let their
    // calls leave the ten-second window so the run starts with a full one.
    crm.setup(&connection.property_specs(), true).await.unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;

    let state_path = dir.path().join("state.sqlite3");
    let mut state = State::open(&state_path, &connection.identity()).unwrap();
    // Every HTTP request the fake answered (its stats also count records).
    let requests = |stats: &serde_json::Value| -> u64 {
        stats["requests"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with("GET ") || k.starts_with("POST "))
                    .filter_map(|(_, v)| v.as_u64())
                    .sum()
            })
            .unwrap_or(0)
    };
    let stats = || async {
        reqwest::get(format!("{}/__fake/stats", fake.url()))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };

    // First sync: every contact, its company, the lists, the writes.
    let before = stats().await;
    let started = Instant::now();
    let first = incremental_pass(&crm, &connection, &mut state).await;
    let first_time = started.elapsed();
    let after = stats().await;
    let companies = first.companies;
    let first_calls = requests(&after) - requests(&before);
    let prefixed = |stats: &serde_json::Value, prefix: &str| -> u64 {
        stats["requests"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.contains(prefix))
                    .filter_map(|(_, v)| v.as_u64())
                    .sum()
            })
            .unwrap_or(0)
    };
    // The list search and the list's member pages (250 a page) are each
    // needed once.
    let list_calls = prefixed(&after, "/crm/v3/lists") - prefixed(&before, "/crm/v3/lists");
    // Each stream's occurrences at its API's page maximum: 50 form
    // submissions a page, 1,000 email or web events; and the form list.
    let counts = state.event_counts().unwrap();
    let mut event_floor = 0;
    let mut forms = false;
    for (kind, count) in &counts {
        let page = match connection.events.get(kind) {
            Some(leadscored::config::EventSource::HubspotForms) => {
                forms = true;
                50
            }
            _ => 1000,
        };
        event_floor += count.div_ceil(page);
    }
    event_floor += u64::from(forms);
    println!("events by type           {counts:?}");
    if accounts {
        println!(
            "  companies              {} scored from their people, {} written in {} batches",
            first.accounts_scored,
            first.accounts_written,
            prefixed(&after, "/crm/v3/objects/companies/batch/update")
                - prefixed(&before, "/crm/v3/objects/companies/batch/update")
        );
    }
    let first_minimum = contacts.div_ceil(100)
        + companies.div_ceil(100)
        + first.changed.div_ceil(100)
        + first.accounts_changed.div_ceil(100)
        + 1
        + list_calls
        + event_floor;
    let minimum_time =
        |calls: u64| Duration::from_secs(10 * calls.saturating_sub(100).div_ceil(100));
    println!("contacts                 {contacts} across {companies} companies");
    println!(
        "first sync               {first_calls} calls (minimum {first_minimum}: {} contact pages, {} company batches, {} write batches, {} company write batches, the account check, {list_calls} list calls, {event_floor} event pages); {:.3}x the minimum",
        contacts.div_ceil(100),
        companies.div_ceil(100),
        first.changed.div_ceil(100),
        first.accounts_changed.div_ceil(100),
        first_calls as f64 / first_minimum as f64
    );
    println!(
        "  engagement             {} events ({:.1} a contact) in {} stream calls (at least {event_floor}); per-contact detail would have cost {} calls",
        first.stream_events,
        first.stream_events as f64 / contacts as f64,
        first.stream_calls,
        contacts * 2
    );
    println!("  429s                   {}", after["rate_limited"]);
    println!(
        "  wall time              {:.1} s (theoretical minimum {:.1} s at 100 requests / 10 s; {:.1} s for the calls made, {:.3}x)",
        first_time.as_secs_f64(),
        minimum_time(first_minimum).as_secs_f64(),
        minimum_time(first_calls).as_secs_f64(),
        first_time.as_secs_f64() / minimum_time(first_calls).as_secs_f64().max(0.001)
    );

    // Our own writes come back once through search; let them (the fake
    // stamps a burst of writes a millisecond apart, so its clock runs
    // ahead for a while), then change 1 % of the companies and run an
    // incremental pass.
    let settle = Duration::from_millis(first.written * 2 / 1000 * 1000 + 11_000);
    tokio::time::sleep(settle).await;
    let echo = incremental_pass(&crm, &connection, &mut state).await;
    println!(
        "echo pass                {} calls ({} of our own writes read back, {} written)",
        echo.requests, echo.pulled, echo.written
    );
    let edited = companies.div_ceil(100);
    let http = reqwest::Client::new();
    for id in 1..=edited {
        http.post(format!("{}/__fake/companies/{id}", fake.url()))
            .json(&serde_json::json!({ "numberofemployees": "250" }))
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(11)).await;
    let before = stats().await;
    let started = Instant::now();
    let incremental = incremental_pass(&crm, &connection, &mut state).await;
    let after = stats().await;
    let calls = requests(&after) - requests(&before);
    println!(
        "incremental, 1 % of companies changed ({edited}): {calls} calls in {:.1} s; {} contacts rescored from state, {} written in {} write calls, {} contacts read; {} companies scored, {} written",
        started.elapsed().as_secs_f64(),
        incremental.moved,
        incremental.written,
        incremental.write_calls,
        incremental.pulled,
        incremental.accounts_scored,
        incremental.accounts_written
    );
    println!(
        "  429s                   {}",
        after["rate_limited"].as_u64().unwrap_or(0) - before["rate_limited"].as_u64().unwrap_or(0)
    );
    println!(
        "  minimum                {} (1 contact search page, 1 company search page, 1 list search, {} stream calls, {} write batches)",
        3 + incremental.stream_calls + incremental.changed.div_ceil(100),
        incremental.stream_calls,
        incremental.changed.div_ceil(100)
    );

    // 1 % of the contacts active: new occurrences, the contacts unmodified.
    let active = contacts.div_ceil(100);
    let events: Vec<serde_json::Value> = (1..=active)
        .flat_map(|i| {
            let id = i * 97 % contacts + 1;
            [
                serde_json::json!({ "contact": id, "kind": "page_view", "value": "https://www.acme.example/pricing" }),
                serde_json::json!({ "contact": id, "kind": "email_open", "value": "2026-10-black-friday" }),
            ]
        })
        .collect();
    http.post(format!("{}/__fake/events", fake.url()))
        .json(&events)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    let before = stats().await;
    let started = Instant::now();
    let engaged = incremental_pass(&crm, &connection, &mut state).await;
    let after = stats().await;
    let calls = requests(&after) - requests(&before);
    println!(
        "incremental, 1 % of contacts active ({active}): {calls} calls in {:.1} s ({} stream calls, {} events); {} contacts rescored for new engagement, {} written in {} write calls",
        started.elapsed().as_secs_f64(),
        engaged.stream_calls,
        engaged.stream_events,
        engaged.engaged,
        engaged.written,
        engaged.write_calls
    );
    println!(
        "  429s                   {}; {:.0}x fewer calls than the first sync",
        after["rate_limited"].as_u64().unwrap_or(0) - before["rate_limited"].as_u64().unwrap_or(0),
        first_calls as f64 / calls.max(1) as f64
    );

    // A day at the portal: 1 % of the people promoted, moved to another
    // company or engaged (`/__fake/advance`).
    let drift: serde_json::Value = http
        .post(format!("{}/__fake/advance", fake.url()))
        .json(&serde_json::json!({ "days": 1, "share": 0.01 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let count = |what: &str| drift[what].as_array().map_or(0, Vec::len);
    tokio::time::sleep(Duration::from_secs(11)).await;
    let before = stats().await;
    let started = Instant::now();
    let day = incremental_pass(&crm, &connection, &mut state).await;
    let after = stats().await;
    let calls = requests(&after) - requests(&before);
    println!(
        "incremental, a day of drift ({} promoted, {} moved company, {} engaged): {calls} calls in {:.1} s; {} contacts read, {} written in {} write calls; {} companies scored, {} written",
        count("promoted"),
        count("moved"),
        count("engaged"),
        started.elapsed().as_secs_f64(),
        day.pulled,
        day.written,
        day.write_calls,
        day.accounts_scored,
        day.accounts_written
    );
    println!(
        "  429s                   {}",
        after["rate_limited"].as_u64().unwrap_or(0) - before["rate_limited"].as_u64().unwrap_or(0)
    );
}

/// The account score `LEADSCORED_BENCH_ACCOUNTS=1` adds to the example model.
const ACCOUNT_SCORE: &str = r#"
[[score]]
name = "account"
object = "company"
tiers = [{ label = "Low", min = 0 }, { label = "Medium", min = 40 }, { label = "High", min = 70 }]

[[score.group]]
name = "Firmographics"
part = "fit"

[[score.group.rule]]
name = "200+ employees"
property = "numemployees"
gte = 200
points = 20

[[score.group.rule]]
name = "Target industry"
property = "industry"
one_of = ["Software", "Financial Services", "Manufacturing", "Retail"]
points = 20

[[score.group]]
name = "People"
part = "engagement"

[[score.group.rule]]
name = "Two engaged decision makers"
people_count = { all = [{ rule = "Decision maker" }, { score = "contact", part = "engagement", gte = 20 }] }
gte = 2
points = 30

[[score.group.rule]]
name = "Buying group"
roles = ["Decision maker", "Target department"]
points = 20

[[score.group.rule]]
name = "Team engagement"
people_sum = "contact"
part = "engagement"
gte = 100
points = 10
"#;

/// Its outputs, on the company.
const ACCOUNT_OUTPUTS: &str = r#"
[[output]]
property = "leadscored_account_score"
value = "account.total"

[[output]]
property = "leadscored_account_tier"
value = "account.tier"
"#;

/// One incremental pass with the state, as the daemon runs it.
async fn incremental_pass(
    crm: &Hubspot,
    connection: &Connection,
    state: &mut State,
) -> leadscored::sync::PassReport {
    run_pass(
        crm,
        connection,
        Some(state),
        Pass {
            kind: PassKind::Incremental,
            now: jiff::Timestamp::now(),
            dry_run: false,
            since: None,
        },
        &Stop::default(),
        |_| {},
    )
    .await
    .unwrap()
}
