//! Whole flows of the HubSpot connector against the built-in fake HubSpot:
//! complete pulls past the search cap with timestamp ties and index lag,
//! call counts near the minimum, the rate limit used without tripping it,
//! another integration sharing the budget, faults survived, and every
//! contact ending with the right values.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use leadscored::config::Connection;
use leadscored::crm::hubspot::Hubspot;
use leadscored::crm::{Crm, CrmRecord, PullKind, PullSpec, Update};
use leadscored::fake::hubspot::Faults;
use leadscored::fake::{FakeHubspot, HubspotConfig, RunningFake, spawn_hubspot};
use serde_json::Value;

pub const TOKEN: &str = "pat-flow-token";

/// A connection to `url` with the example model and these extra `[limits]`.
pub fn connection(url: &str, limits: &str, token_dir: &tempfile::TempDir) -> Connection {
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let source = crate::read("config/hubspot.toml")
        .replace(
            "token = { credential = \"hubspot-token\" }",
            &format!(
                "token = {{ file = {:?} }}",
                token_file.display().to_string()
            ),
        )
        .replace("[limits]\n", &format!("[limits]\n{limits}\n"));
    pointed_at(&source, url)
}

/// The same connection, authenticating with OAuth against the fake's
/// token endpoint.
pub fn oauth_connection(url: &str, limits: &str, dir: &tempfile::TempDir) -> Connection {
    let secret = dir.path().join("client-secret");
    let refresh = dir.path().join("refresh-token");
    std::fs::write(&secret, "fake-client-secret").expect("secret file");
    std::fs::write(&refresh, "fake-refresh-token").expect("refresh file");
    let source = crate::read("config/hubspot.toml")
        .replace(
            "token = { credential = \"hubspot-token\" }",
            &format!(
                "oauth = {{ client_id = \"fake-client\", client_secret = {{ file = {:?} }}, refresh_token = {{ file = {:?} }} }}",
                secret.display().to_string(),
                refresh.display().to_string()
            ),
        )
        .replace("[limits]\n", &format!("[limits]\n{limits}\n"));
    pointed_at(&source, url)
}

/// Connection text read with the test token (from a file in `dir`) and
/// pointed at `url`.
pub fn parse_connection(source: &str, url: &str, dir: &tempfile::TempDir) -> Connection {
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let source = source.replace(
        "token = { credential = \"hubspot-token\" }",
        &format!(
            "token = {{ file = {:?} }}",
            token_file.display().to_string()
        ),
    );
    pointed_at(&source, url)
}

/// Compiles connection text (with the example model) and points it at `url`.
fn pointed_at(source: &str, url: &str) -> Connection {
    let mut connection = Connection::parse(
        "config/hubspot.toml",
        source,
        &crate::root().join("config"),
        None,
    )
    .unwrap_or_else(|e| panic!("the connection loads: {e}"));
    connection.override_base_url(url).expect("a local URL");
    connection
}

pub fn fake_config(contacts: u64) -> HubspotConfig {
    HubspotConfig {
        contacts,
        seed: 11,
        token: TOKEN.to_owned(),
        per_ten_seconds: 100_000,
        search_per_second: 100_000,
        ..HubspotConfig::default()
    }
}

/// Fast limits for a fake with no real limits.
const FAST: &str = "per_ten_seconds = 10000\nsearch_per_second = 1000\nbackoff_base_ms = 5\nbackoff_max_secs = 0.2\nconcurrency = 8";

/// Pulls everything `kind` asks for and collects it.
pub async fn pull_all(
    crm: &impl Crm,
    connection: &Connection,
    kind: PullKind,
    until_ms: i64,
    with_events: bool,
) -> Vec<CrmRecord> {
    let spec = PullSpec {
        kind,
        fields: connection.fields(),
        event_types: if with_events {
            connection.events.keys().cloned().collect()
        } else {
            Vec::new()
        },
        until_ms,
        known: Default::default(),
        ids: Default::default(),
    };
    let (sink, mut pages) = tokio::sync::mpsc::channel(4);
    let collect = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(page) = pages.recv().await {
            all.extend(page);
        }
        all
    });
    crm.pull(&spec, sink).await.expect("the pull completes");
    collect.await.expect("collector")
}

/// The companies of pulled records, read as the sync reads them.
pub async fn companies_of(
    crm: &impl Crm,
    connection: &Connection,
    records: &[CrmRecord],
) -> Companies {
    let fields = connection.company_fields();
    if fields.is_empty() {
        return Companies::new();
    }
    let mut ids: Vec<String> = records
        .iter()
        .filter_map(|r| r.company_id().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    crm.companies(&ids, &fields)
        .await
        .expect("companies")
        .into_iter()
        .map(|c| (c.id, c.values))
        .collect()
}

/// Company id → its values.
pub type Companies = std::collections::HashMap<String, leadscored::crm::mapping::CompanyValues>;

/// A pulled record as the model sees it, with its company.
pub fn model_record(
    connection: &Connection,
    pulled: &CrmRecord,
    companies: &Companies,
) -> leadscored::record::Record {
    let company = pulled.company_id().and_then(|id| companies.get(id));
    leadscored::crm::mapping::to_record(&connection.model, &connection.inputs, pulled, company)
}

/// Scores pulled records and plans their writes.
pub fn plan(
    connection: &Connection,
    records: &[CrmRecord],
    companies: &Companies,
    now: jiff::Timestamp,
) -> Vec<Update> {
    records
        .iter()
        .filter_map(|pulled| {
            let record = model_record(connection, pulled, companies);
            let card = connection.model.score(&record, now);
            let changes = leadscored::plan::changes(
                &connection.model,
                &connection.outputs,
                &pulled.values,
                &card,
            );
            (!changes.is_empty()).then(|| Update {
                id: pulled.id.clone(),
                values: changes.into_iter().map(|c| (c.property, c.new)).collect(),
            })
        })
        .collect()
}

pub async fn stats(fake: &RunningFake) -> Value {
    reqwest::get(format!("{}/__fake/stats", fake.url()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json")
}

fn calls(stats: &Value, key: &str) -> u64 {
    stats["requests"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with(key))
                .map(|(_, v)| v.as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

fn ids(records: &[CrmRecord]) -> Vec<u64> {
    records
        .iter()
        .map(|r| r.id.parse().expect("numeric id"))
        .collect()
}

fn far_future() -> i64 {
    jiff::Timestamp::now().as_millisecond() + 86_400_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_contacts_pulled_completely_with_ties_and_lag_at_minimum_cost() {
    let n = 50_000u64;
    let fake = spawn_hubspot(FakeHubspot::new(HubspotConfig {
        faults: Faults {
            bulk_import: 12_000,
            search_lag: Duration::from_millis(600),
            ..Faults::default()
        },
        ..fake_config(n)
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = connection(&fake.url(), FAST, &dir);
    let crm = Hubspot::new(&connection).expect("connector");

    // Full pull through the list endpoint: every contact once.
    let full = pull_all(&crm, &connection, PullKind::Full, far_future(), false).await;
    assert_eq!(ids(&full), (1..=n).collect::<Vec<_>>());
    let after_full = stats(&fake).await;
    assert_eq!(
        calls(&after_full, "GET /crm/v3/objects/contacts 200"),
        n.div_ceil(100)
    );

    // Incremental from the beginning of time through search: 12,000
    // contacts share one lastmodifieddate and the window holds five times
    // the 10,000-result cap, yet each comes once, in ceil(n / 200) calls.
    let incremental = pull_all(&crm, &connection, PullKind::Since(0), far_future(), false).await;
    let seen: BTreeSet<u64> = ids(&incremental).into_iter().collect();
    assert_eq!(incremental.len() as u64, n, "no contact twice");
    assert_eq!(seen.len() as u64, n, "no contact missed");
    let searches = calls(
        &stats(&fake).await,
        "POST /crm/v3/objects/contacts/search 200",
    );
    assert!(
        searches <= n.div_ceil(200) + 1,
        "{searches} searches for {n} contacts (minimum {})",
        n.div_ceil(200)
    );

    // Writes lag in the search index: a pull right after them misses
    // some; the next run, reaching back by the overlap, gets them all.
    let written: Vec<Update> = (1..=300u64)
        .map(|id| Update {
            id: (id * 97).to_string(),
            values: BTreeMap::from([("firstname".to_owned(), format!("Renamed{id}"))]),
        })
        .collect();
    let watermark = jiff::Timestamp::now().as_millisecond() - 1;
    let report = crm.write(written.clone()).await.expect("write");
    assert_eq!(report.written.len(), 300, "{:?}", report.failed);
    assert_eq!(report.calls, 3);
    let first_run_until = jiff::Timestamp::now().as_millisecond();
    let first = pull_all(
        &crm,
        &connection,
        PullKind::Since(watermark),
        first_run_until,
        false,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = pull_all(
        &crm,
        &connection,
        PullKind::Since(first_run_until),
        far_future(),
        false,
    )
    .await;
    let caught: BTreeSet<u64> = ids(&first).into_iter().chain(ids(&second)).collect();
    let expected: BTreeSet<u64> = written.iter().map(|u| u.id.parse().expect("id")).collect();
    assert!(
        expected.is_subset(&caught),
        "{} of 300 written contacts never pulled",
        expected.difference(&caught).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_used_without_tripping_it() {
    // A one-second window keeps the test short; the logic is HubSpot's.
    let fake = spawn_hubspot(FakeHubspot::new(HubspotConfig {
        per_ten_seconds: 40,
        interval: Duration::from_secs(1),
        ..fake_config(6_000)
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = connection(
        &fake.url(),
        "per_ten_seconds = 40\nrate_interval_secs = 1\nconcurrency = 4",
        &dir,
    );
    let crm = Hubspot::new(&connection).expect("connector");
    let started = std::time::Instant::now();
    let all = pull_all(&crm, &connection, PullKind::Full, far_future(), false).await;
    let elapsed = started.elapsed();
    assert_eq!(all.len(), 6_000);
    let stats = stats(&fake).await;
    assert_eq!(stats["rate_limited"], 0, "{stats}");
    // 60 calls at 39 per second (one slot kept for jitter) need at least
    // about 0.5 s beyond the first burst; far slower means the limit idles.
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_integration_eating_half_the_budget_slows_us_down_instead_of_tripping() {
    let fake = spawn_hubspot(FakeHubspot::new(HubspotConfig {
        per_ten_seconds: 100,
        interval: Duration::from_secs(1),
        other_integration_share: 0.5,
        ..fake_config(25_000)
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = connection(
        &fake.url(),
        "per_ten_seconds = 100\nrate_interval_secs = 1\nconcurrency = 4",
        &dir,
    );
    let crm = Hubspot::new(&connection).expect("connector");
    let all = pull_all(&crm, &connection, PullKind::Full, far_future(), false).await;
    assert_eq!(all.len(), 25_000);
    let stats = stats(&fake).await;
    let total = calls(&stats, "GET /crm/v3/objects/contacts");
    let throttled = stats["rate_limited"].as_u64().unwrap_or(0);
    assert!(
        throttled * 100 <= total,
        "{throttled} of {total} calls got 429: more than 1 %"
    );
    assert_eq!(
        crm.http()
            .stats
            .throttled
            .load(std::sync::atomic::Ordering::Relaxed),
        throttled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_survived_and_every_contact_ends_with_the_right_values() {
    let n = 400u64;
    let fake = spawn_hubspot(FakeHubspot::new(HubspotConfig {
        faults: Faults {
            rate_429: 0.03,
            retry_after_on_429: false,
            rate_5xx: 0.03,
            rate_malformed: 0.03,
            rate_reset: 0.03,
            rate_record_error: 0.05,
            // OAuth tokens live two seconds: refreshed ahead, or on 401.
            token_ttl: Some(Duration::from_secs(2)),
            ..Faults::default()
        },
        ..fake_config(n)
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    // About one call in eight meets a fault here; ten attempts make giving
    // up on a call (0.12^10) practically impossible over a few thousand.
    let limits = format!("{FAST}\nmax_attempts = 10");
    let connection = oauth_connection(&fake.url(), &limits, &dir);
    let crm = Hubspot::new(&connection).expect("connector");
    let setup = crm
        .setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    assert!(setup.conflicts.is_empty(), "{:?}", setup.conflicts);

    let now = jiff::Timestamp::now();
    let mut failures = Vec::new();
    // Rejected records are reported and come back on the next run.
    for _run in 0..4 {
        let records = pull_all(&crm, &connection, PullKind::Full, far_future(), true).await;
        assert_eq!(records.len() as u64, n);
        let companies = companies_of(&crm, &connection, &records).await;
        let updates = plan(&connection, &records, &companies, now);
        if updates.is_empty() {
            break;
        }
        let report = crm.write(updates.clone()).await.expect("write");
        assert_eq!(report.written.len() + report.failed.len(), updates.len());
        failures.extend(report.failed);
    }
    assert!(!failures.is_empty(), "the fake rejected some records");
    assert!(
        failures.iter().all(|(_, why)| why.contains("fault")),
        "{failures:?}"
    );

    // Every contact holds what its scorecard says, with detail and all.
    let records = pull_all(&crm, &connection, PullKind::Full, far_future(), true).await;
    let companies = companies_of(&crm, &connection, &records).await;
    assert!(
        plan(&connection, &records, &companies, now).is_empty(),
        "nothing left to write"
    );
    let events: usize = records.iter().map(|r| r.events.len()).sum();
    assert!(events > 0, "event detail was pulled");
    let http = reqwest::Client::new();
    for record in records.iter().take(50) {
        let stored: Value = http
            .get(format!("{}/__fake/contacts/{}", fake.url(), record.id))
            .send()
            .await
            .expect("inspect")
            .json()
            .await
            .expect("json");
        let model_record = model_record(&connection, record, &companies);
        let card = connection.model.score(&model_record, now);
        for output in &connection.outputs {
            let expected = output.render(&connection.model, &card).unwrap_or_default();
            let held = stored["properties"][&output.property]
                .as_str()
                .unwrap_or_default();
            if output.property == "hs_lead_status" && !held.is_empty() && expected.is_empty() {
                continue;
            }
            assert_eq!(held, expected, "contact {} {}", record.id, output.property);
        }
    }
    let stats = stats(&fake).await;
    assert!(
        calls(&stats, "POST /oauth/v1/token 200") >= 2,
        "tokens were refreshed: {stats}"
    );
    let faults = stats["faults"].clone();
    for kind in ["429", "5xx", "malformed", "reset"] {
        assert!(
            faults[kind].as_u64().unwrap_or(0) > 0,
            "{kind} faults were served: {faults}"
        );
    }
}
