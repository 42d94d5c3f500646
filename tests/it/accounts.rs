//! Company (account) scores against the fake HubSpot: setup creates the
//! company properties, a pass writes each company's score and tier to the
//! company (in batches, only where they changed), and a second engaged
//! director moves a company from Medium to High, which makes its other
//! people MQLs through a contact stage that reads the company's score.

use std::collections::BTreeMap;

use leadscored::crm::Crm;
use leadscored::crm::hubspot::Hubspot;
use leadscored::fake::{FakeHubspot, spawn_hubspot};
use leadscored::state::State;
use leadscored::sync::{Pass, PassKind, PassReport, Stop, run_pass};
use serde_json::{Value, json};

use leadscored::config::Connection;

use super::hubspot_flows::{fake_config, parse_connection, stats};

pub(super) const MODEL: &str = r#"
[model]
name = "accounts flow"

[[score]]
name = "contact"
tiers = [{ label = "Low", min = 0 }, { label = "High", min = 50 }]

[[score.group]]
name = "role"
part = "fit"

[[score.group.rule]]
name = "Decision maker"
property = "jobtitle"
equals = "Director"
points = 50

[[score.group.rule]]
name = "Known title"
property = "jobtitle"
is_set = true
points = 10

[[score]]
name = "account"
object = "company"
tiers = [{ label = "Low", min = 0 }, { label = "Medium", min = 30 }, { label = "High", min = 60 }]

[[score.group]]
name = "people"
part = "engagement"

[[score.group.rule]]
name = "A decision maker"
people_count = { rule = "Decision maker" }
points = 30

[[score.group.rule]]
name = "Two decision makers"
people_count = { rule = "Decision maker" }
gte = 2
points = 30

[lifecycle]

[[lifecycle.stage]]
name = "Lead"

[[lifecycle.stage]]
name = "MQL"
any = [
  { score = "contact", gte = 60 },
  { all = [{ score = "contact", gte = 10 }, { company_score = "account", gte = 60 }] },
]
"#;

fn connection_text(model: &std::path::Path) -> String {
    format!(
        r#"model = {model:?}

[crm]
kind = "hubspot"
account_tier = "professional"
timezone = "Europe/Oslo"
token = {{ credential = "hubspot-token" }}

[limits]
per_ten_seconds = 10000
search_per_second = 1000
concurrency = 4
backoff_base_ms = 5
backoff_max_secs = 0.2
search_overlap_secs = 1

[[output]]
property = "leadscored_score"
value = "contact.total"

[[output]]
property = "leadscored_stage"
value = "contact.stage"

[[output]]
property = "leadscored_account_score"
value = "account.total"

[[output]]
property = "leadscored_account_tier"
value = "account.tier"

[[output]]
property = "leadscored_contact_account_tier"
value = "account.tier"
object = "contact"
"#,
        model = model.display().to_string()
    )
}

async fn props(url: &str, path: &str) -> BTreeMap<String, String> {
    let body: Value = reqwest::get(format!("{url}{path}"))
        .await
        .expect("inspect")
        .json()
        .await
        .expect("json");
    body["properties"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

async fn edit_title(url: &str, id: &str, title: &str) {
    let answer = reqwest::Client::new()
        .post(format!("{url}/__fake/contacts/{id}"))
        .json(&json!({ "properties": { "jobtitle": title } }))
        .send()
        .await
        .expect("fake answers");
    assert!(
        answer.status().is_success(),
        "edit {id}: {}",
        answer.status()
    );
}

fn written(stats: &Value, what: &str) -> u64 {
    stats["requests"][what].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_director_makes_the_account_high_and_its_people_mqls() {
    let fake = spawn_hubspot(FakeHubspot::new(fake_config(300)))
        .await
        .expect("fake starts");
    let url = fake.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("accounts.toml");
    std::fs::write(&model, MODEL).expect("model file");
    let connection = parse_connection(&connection_text(&model), &url, &dir);
    assert_eq!(
        connection.company_outputs.len(),
        2,
        "account outputs go to companies"
    );
    let crm = Hubspot::new(&connection).expect("connector");
    let setup = crm
        .setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    for name in ["leadscored_account_score", "leadscored_account_tier"] {
        assert!(setup.created.contains(&name.to_owned()), "{setup:?}");
    }
    let mut state =
        State::open(&dir.path().join("state.sqlite3"), &connection.identity()).expect("state");
    // First sync: every company with people gets its score, in batches.
    let first: PassReport = run(&crm, &connection, &mut state, PassKind::Full).await;
    assert!(first.accounts_scored > 20, "{}", first.text());
    assert_eq!(first.accounts_written, first.accounts_changed);
    let after_first = stats(&fake).await;
    let companies_written = written(&after_first, "companies written");
    assert_eq!(companies_written, first.accounts_written);
    let batches: u64 = after_first["requests"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with("POST /crm/v3/objects/companies/batch/update"))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(
        batches,
        first.accounts_written.div_ceil(100),
        "companies are written in whole batches of 100: {after_first}"
    );

    // The company with the most people, all made analysts but one director.
    let mut best = (String::new(), Vec::new());
    for company in state.record_companies().expect("companies") {
        let people = state
            .records_of_companies(std::slice::from_ref(&company))
            .expect("people");
        if people.len() > best.1.len() {
            best = (company, people);
        }
    }
    let (company, mut people) = best;
    people.sort();
    assert!(people.len() >= 3, "a company with three people: {people:?}");
    edit_title(&url, &people[0], "Director").await;
    for id in &people[1..] {
        edit_title(&url, id, "Analyst").await;
    }
    quiet_passes(&crm, &connection, &mut state).await;
    let held = props(&url, &format!("/__fake/companies/{company}")).await;
    assert_eq!(
        held.get("leadscored_account_score").map(String::as_str),
        Some("30")
    );
    assert_eq!(
        held.get("leadscored_account_tier").map(String::as_str),
        Some("Medium")
    );
    for id in &people[1..] {
        let contact = props(&url, &format!("/__fake/contacts/{id}")).await;
        assert_eq!(contact["leadscored_score"], "10", "{id}");
        assert_eq!(contact["leadscored_stage"], "Lead", "{id}");
        assert_eq!(contact["leadscored_contact_account_tier"], "Medium", "{id}");
    }

    // A second director: the account is High, and the analysts become MQLs.
    let before = stats(&fake).await;
    edit_title(&url, &people[1], "Director").await;
    super::sync_pass::settle().await;
    let report = run(&crm, &connection, &mut state, PassKind::Incremental).await;
    let after = stats(&fake).await;
    let held = props(&url, &format!("/__fake/companies/{company}")).await;
    assert_eq!(
        held.get("leadscored_account_score").map(String::as_str),
        Some("60")
    );
    assert_eq!(
        held.get("leadscored_account_tier").map(String::as_str),
        Some("High")
    );
    for id in &people[2..] {
        let contact = props(&url, &format!("/__fake/contacts/{id}")).await;
        assert_eq!(contact["leadscored_score"], "10", "{id}");
        assert_eq!(
            contact["leadscored_stage"], "MQL",
            "{id}: moved by the account"
        );
    }
    let director = props(&url, &format!("/__fake/contacts/{}", people[1])).await;
    assert_eq!(director["leadscored_stage"], "MQL");
    // One company written, and its people (the account tier they carry
    // moved), nobody else.
    assert_eq!(report.accounts_written, 1, "{}", report.text());
    assert_eq!(
        written(&after, "companies written") - written(&before, "companies written"),
        1
    );
    assert_eq!(
        written(&after, "contacts written") - written(&before, "contacts written"),
        people.len() as u64,
        "{}",
        report.text()
    );

    // The echo of those writes changes nothing.
    quiet_passes(&crm, &connection, &mut state).await;
    let settled = stats(&fake).await;
    assert_eq!(
        written(&settled, "companies written"),
        written(&after, "companies written")
    );
    assert_eq!(
        written(&settled, "contacts written"),
        written(&after, "contacts written")
    );
}

/// One pass against either CRM.
pub(super) async fn run<C: Crm>(
    crm: &C,
    connection: &Connection,
    state: &mut State,
    kind: PassKind,
) -> PassReport {
    let pass = Pass {
        kind,
        now: jiff::Timestamp::now(),
        dry_run: false,
        since: None,
    };
    run_pass(crm, connection, Some(state), pass, &Stop::default(), |_| {})
        .await
        .expect("pass")
}

/// Incremental passes until one finds nothing to write.
pub(super) async fn quiet_passes<C: Crm>(crm: &C, connection: &Connection, state: &mut State) {
    for _ in 0..4 {
        super::sync_pass::settle().await;
        let report = run(crm, connection, state, PassKind::Incremental).await;
        if report.changed == 0 && report.accounts_changed == 0 {
            return;
        }
    }
    panic!("the CRM did not settle");
}

/// The flow model with decision makers as generated titles name them, so
/// promotions and moves change the accounts.
fn drift_model() -> String {
    MODEL.replace(
        "equals = \"Director\"",
        "regex = '(?i)\\b(director|head of|vp|ceo|cfo|cto|coo|cmo|founder)\\b'",
    )
}

async fn advance(url: &str, days: u32, share: f64) -> Value {
    let answer = reqwest::Client::new()
        .post(format!("{url}/__fake/advance"))
        .json(&json!({ "days": days, "share": share }))
        .send()
        .await
        .expect("fake answers");
    assert!(answer.status().is_success(), "{}", answer.status());
    answer.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_portal_drifts_the_same_way_for_the_same_seed() {
    let a = spawn_hubspot(FakeHubspot::new(fake_config(500)))
        .await
        .expect("fake starts");
    let b = spawn_hubspot(FakeHubspot::new(fake_config(500)))
        .await
        .expect("fake starts");
    let drift = advance(&a.url(), 5, 0.05).await;
    assert_eq!(drift, advance(&b.url(), 5, 0.05).await);
    let promoted = drift["promoted"].as_array().expect("promoted");
    let moved = drift["moved"].as_array().expect("moved");
    assert!(!promoted.is_empty() && !moved.is_empty(), "{drift}");
    assert!(
        drift["engaged"].as_array().is_some_and(|e| e.len() > 50),
        "{drift}"
    );
    // The portal holds what the drift says, and the next days differ.
    let (id, _, title) = (&promoted[0][0], &promoted[0][1], &promoted[0][2]);
    let held = props(&a.url(), &format!("/__fake/contacts/{id}")).await;
    assert_eq!(
        held.get("jobtitle"),
        title.as_str().map(str::to_owned).as_ref()
    );
    let (id, _, company) = (&moved[0][0], &moved[0][1], &moved[0][2]);
    let held = props(&a.url(), &format!("/__fake/contacts/{id}")).await;
    assert_eq!(
        held.get("associatedcompanyid"),
        company.as_str().map(str::to_owned).as_ref()
    );
    assert_ne!(advance(&a.url(), 5, 0.05).await, drift);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_days_of_drift_incremental_passes_leave_nothing_for_a_full_pass() {
    let fake = spawn_hubspot(FakeHubspot::new(fake_config(400)))
        .await
        .expect("fake starts");
    let url = fake.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("accounts.toml");
    std::fs::write(&model, drift_model()).expect("model file");
    let connection = parse_connection(&connection_text(&model), &url, &dir);
    let crm = Hubspot::new(&connection).expect("connector");
    crm.setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    let mut state =
        State::open(&dir.path().join("state.sqlite3"), &connection.identity()).expect("state");
    run(&crm, &connection, &mut state, PassKind::Full).await;
    quiet_passes(&crm, &connection, &mut state).await;

    // Ten days: people are promoted, move company and engage.
    let drift = advance(&url, 10, 0.05).await;
    let moved = drift["moved"].as_array().expect("moved").len();
    let promoted = drift["promoted"].as_array().expect("promoted").len();
    assert!(moved > 0 && promoted > 0, "{drift}");
    super::sync_pass::settle().await;
    let report = run(&crm, &connection, &mut state, PassKind::Incremental).await;
    assert!(
        report.accounts_scored as usize >= moved,
        "the companies people left and joined are scored: {}",
        report.text()
    );
    quiet_passes(&crm, &connection, &mut state).await;

    // A full pass re-reads everything and finds nothing left to write.
    let full = run(&crm, &connection, &mut state, PassKind::Full).await;
    assert_eq!(
        (full.changed, full.accounts_changed),
        (0, 0),
        "{}",
        full.text()
    );
}
