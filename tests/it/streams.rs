//! Engagement read as streams (by type and time window) against the fake
//! HubSpot: the same changes as per-record detail at a fraction of the
//! calls; an occurrence alone — the contact itself unmodified — rescores
//! its contact on the next incremental pass; a contact list that repeats
//! its cursor ends the pass with a protocol error and writes nothing;
//! searches keep to the search limit's exact second.

use std::collections::BTreeMap;

use leadscored::crm::hubspot::Hubspot;
use leadscored::crm::{Crm as _, CrmError};
use leadscored::fake::hubspot::Faults;
use leadscored::fake::{FakeHubspot, HubspotConfig, RunningFake, spawn_hubspot};
use leadscored::state::State;
use leadscored::sync::{Pass, PassError, PassKind, PassReport, Stop, run_pass};
use serde_json::{Value, json};

use super::hubspot_flows::{connection, fake_config, stats};
use super::sync_pass::settle;

const FAST: &str = "per_ten_seconds = 10000\nsearch_per_second = 1000\nconcurrency = 4\nbackoff_base_ms = 5\nbackoff_max_secs = 0.2\nsearch_overlap_secs = 1";

/// A connection reading engagement `how` (`auto`, `streams`, `per_record`).
fn connection_reading(
    fake: &RunningFake,
    how: &str,
    dir: &tempfile::TempDir,
) -> (leadscored::config::Connection, Hubspot) {
    let connection = connection(
        &fake.url(),
        &format!("{FAST}\nevent_reads = \"{how}\""),
        dir,
    );
    let crm = Hubspot::new(&connection).expect("connector");
    (connection, crm)
}

/// A fake portal with a connection reading engagement `auto`, its
/// properties set up, and a state.
struct Portal {
    fake: RunningFake,
    dir: tempfile::TempDir,
    connection: leadscored::config::Connection,
    crm: Hubspot,
    state: State,
}

async fn portal(config: HubspotConfig) -> Portal {
    let fake = spawn_hubspot(FakeHubspot::new(config))
        .await
        .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let (connection, crm) = connection_reading(&fake, "auto", &dir);
    crm.setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    let state = State::open(&dir.path().join("state.sqlite3"), &connection.identity())
        .expect("state opens");
    Portal {
        fake,
        dir,
        connection,
        crm,
        state,
    }
}

async fn pass(
    crm: &Hubspot,
    connection: &leadscored::config::Connection,
    state: Option<&mut State>,
    kind: PassKind,
    now: jiff::Timestamp,
    dry_run: bool,
) -> Result<(PassReport, BTreeMap<String, String>), PassError> {
    let mut planned = BTreeMap::new();
    let report = run_pass(
        crm,
        connection,
        state,
        Pass {
            kind,
            now,
            dry_run,
            since: None,
        },
        &Stop::default(),
        |change| {
            planned.insert(
                change.id.clone(),
                serde_json::to_string(&change.changes).expect("json"),
            );
        },
    )
    .await?;
    Ok((report, planned))
}

async fn contact(fake: &RunningFake, id: u64) -> Value {
    reqwest::get(format!("{}/__fake/contacts/{id}", fake.url()))
        .await
        .expect("fake answers")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_plan_the_same_changes_as_per_record_detail_for_far_fewer_calls() {
    let fake = spawn_hubspot(FakeHubspot::new(fake_config(600)))
        .await
        .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    // Sales set three lead statuses leadscored never writes.
    let inputs: Vec<Value> = (1..=3)
        .map(|id| json!({ "id": id.to_string(), "properties": { "hs_lead_status": "CONNECTED" } }))
        .collect();
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/crm/v3/objects/contacts/batch/update",
            fake.url()
        ))
        .bearer_auth(super::hubspot_flows::TOKEN)
        .json(&json!({ "inputs": inputs }))
        .send()
        .await
        .expect("fake answers");
    assert!(answer.status().is_success(), "{}", answer.status());
    let now = jiff::Timestamp::now();
    let mut plans = Vec::new();
    let mut reports = Vec::new();
    for how in ["streams", "per_record"] {
        let (connection, crm) = connection_reading(&fake, how, &dir);
        crm.setup(&connection.property_specs(), true)
            .await
            .expect("setup");
        let (report, planned) = pass(&crm, &connection, None, PassKind::Full, now, true)
            .await
            .expect("dry run");
        assert_eq!(report.pulled, 600);
        plans.push(planned);
        reports.push(report);
    }
    let (streams, per_record) = (&reports[0], &reports[1]);
    // The summary's after counts are what the CRM will hold: the statuses
    // sales set stay (the output writes only over its own values).
    let connected = |counts: &BTreeMap<String, BTreeMap<String, u64>>| {
        counts["hs_lead_status"].get("CONNECTED").copied()
    };
    assert_eq!(connected(&streams.before), Some(3));
    assert_eq!(connected(&streams.after), Some(3), "{:?}", streams.after);
    assert_eq!(streams.events, "streams");
    assert_eq!(per_record.events, "per record");
    assert!(streams.stream_events > 5_000, "{streams:?}");
    assert_eq!(streams.detail_calls, 0);
    assert_eq!(plans[0].len(), 600, "every contact gets its first scores");
    let differing: Vec<(&String, &String, Option<&String>)> = plans[0]
        .iter()
        .filter(|(id, plan)| plans[1].get(*id) != Some(*plan))
        .map(|(id, plan)| (id, plan, plans[1].get(id)))
        .take(3)
        .collect();
    assert!(
        differing.is_empty() && plans[0].len() == plans[1].len(),
        "the same scores, tiers, stages and reasons: {differing:#?}"
    );
    assert!(
        streams.calls() * 10 < per_record.calls(),
        "streams {} calls, per record {}",
        streams.calls(),
        per_record.calls()
    );
    assert_eq!(
        streams.detail_estimate,
        Some(600 * 2),
        "the summary says what per-record detail would have cost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_occurrence_alone_rescores_its_unmodified_contact() {
    let Portal {
        fake,
        dir,
        connection,
        crm,
        mut state,
    } = portal(fake_config(400)).await;
    let (first, _) = pass(
        &crm,
        &connection,
        Some(&mut state),
        PassKind::Incremental,
        jiff::Timestamp::now(),
        false,
    )
    .await
    .expect("first sync");
    assert_eq!(first.events, "streams", "{first:?}");
    // Echoes of our own writes come back once.
    settle().await;
    pass(
        &crm,
        &connection,
        Some(&mut state),
        PassKind::Incremental,
        jiff::Timestamp::now(),
        false,
    )
    .await
    .expect("echo pass");
    settle().await;

    let id = 5;
    let before = contact(&fake, id).await;
    let added = json!([
        { "contact": id, "kind": "form_submission", "value": "demo-request" },
        { "contact": id, "kind": "page_view", "value": "https://www.acme.example/pricing" },
        { "contact": id, "kind": "page_view", "value": "https://www.acme.example/pricing" },
        { "contact": id, "kind": "email_open", "value": "2026-10-black-friday" },
    ]);
    let answer = reqwest::Client::new()
        .post(format!("{}/__fake/events", fake.url()))
        .json(&added)
        .send()
        .await
        .expect("fake answers");
    assert!(answer.status().is_success());
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let now = jiff::Timestamp::now();
    let (report, planned) = pass(
        &crm,
        &connection,
        Some(&mut state),
        PassKind::Incremental,
        now,
        false,
    )
    .await
    .expect("incremental pass");
    assert_eq!(report.events, "streams", "{report:?}");
    assert_eq!(report.pulled - report.unchanged, 0, "{report:?}");
    assert_eq!(report.engaged, 1, "{report:?}");
    assert!(report.stream_events >= 4, "{report:?}");
    assert!(planned.contains_key(&id.to_string()), "{planned:?}");
    let after = contact(&fake, id).await;
    assert_ne!(
        before["properties"]["leadscored_score"],
        after["properties"]["leadscored_score"]
    );
    // Per-record detail read afresh agrees with what the streams built.
    let (fresh, crm) = connection_reading(&fake, "per_record", &dir);
    let (check, left) = pass(&crm, &fresh, None, PassKind::Full, now, true)
        .await
        .expect("dry run");
    assert_eq!(check.changed, 0, "left to write: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_cursor_ends_the_pass_with_a_protocol_error_and_nothing_written() {
    let Portal {
        fake,
        connection,
        crm,
        mut state,
        ..
    } = portal(HubspotConfig {
        faults: Faults {
            stuck_cursor: true,
            ..Faults::default()
        },
        ..fake_config(300)
    })
    .await;
    let result = pass(
        &crm,
        &connection,
        Some(&mut state),
        PassKind::Incremental,
        jiff::Timestamp::now(),
        false,
    )
    .await;
    match result {
        Err(PassError::Crm(CrmError::Protocol { endpoint, message })) => {
            assert_eq!(endpoint, "contacts.list");
            assert!(message.contains("a second time"), "{message}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    let stats = stats(&fake).await;
    assert_eq!(
        stats["requests"]["GET /crm/v3/objects/contacts 200"].as_u64(),
        Some(2),
        "the second page gave the cursor again: {stats}"
    );
    assert_eq!(
        stats["requests"]["contacts written"].as_u64().unwrap_or(0),
        0
    );
    assert_eq!(state.watermark().expect("watermark"), None);
    assert!(
        state.record("string").expect("state").is_none(),
        "an id HubSpot cannot give is never pulled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_are_paced_to_the_second_without_a_single_429() {
    let fake = spawn_hubspot(FakeHubspot::new(HubspotConfig {
        search_per_second: 5,
        per_ten_seconds: 1_000,
        ..fake_config(3_000)
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut connection = connection(
        &fake.url(),
        "search_per_second = 5\nper_ten_seconds = 1000\nconcurrency = 4",
        &dir,
    );
    connection.events.clear();
    let crm = Hubspot::new(&connection).expect("connector");
    let started = std::time::Instant::now();
    // Everything modified since the epoch: fifteen search pages of 200.
    let report = run_pass(
        &crm,
        &connection,
        None,
        Pass {
            kind: PassKind::Incremental,
            now: jiff::Timestamp::now(),
            dry_run: true,
            since: Some(0),
        },
        &Stop::default(),
        |_| {},
    )
    .await
    .expect("dry run");
    let elapsed = started.elapsed();
    assert_eq!(report.pulled, 3_000);
    assert!(report.pull_pages >= 15, "{report:?}");
    let stats = stats(&fake).await;
    assert_eq!(stats["rate_limited"].as_u64(), Some(0), "{stats}");
    assert_eq!(report.throttled, 0);
    // Five a second: fifteen searches cannot take under two seconds, and
    // the pacing should not take much more.
    assert!(elapsed >= std::time::Duration::from_secs(2), "{elapsed:?}");
    assert!(elapsed < std::time::Duration::from_secs(6), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_passes_choose_per_record_detail_and_rescore_passes_read_the_streams() {
    let Portal {
        fake: _fake,
        dir: _dir,
        connection,
        crm,
        mut state,
    } = portal(fake_config(400)).await;
    let logged = |now| Pass {
        kind: PassKind::Incremental,
        now,
        dry_run: false,
        since: None,
    };
    // A first sync, its echo, then quiet passes: the run log now says an
    // incremental pass brings next to nothing.
    for _ in 0..5 {
        leadscored::sync::run_logged(
            &crm,
            &connection,
            &mut state,
            logged(jiff::Timestamp::now()),
            &Stop::default(),
            |_| {},
        )
        .await
        .expect("pass");
        settle().await;
    }
    let (quiet, _) = pass(
        &crm,
        &connection,
        Some(&mut state),
        PassKind::Incremental,
        jiff::Timestamp::now(),
        true,
    )
    .await
    .expect("dry run");
    assert_eq!(quiet.events, "per record", "{quiet:?}");
    let (streams, detail) = (quiet.stream_estimate, quiet.detail_estimate);
    assert!(
        matches!((streams, detail), (Some(s), Some(d)) if d < s),
        "{streams:?} {detail:?}"
    );
    assert!(quiet.text().contains("streams would have cost about"));
    // The nightly rescore reads the streams whatever they cost.
    let (nightly, _) = pass(
        &crm,
        &connection,
        Some(&mut state),
        PassKind::Rescore,
        jiff::Timestamp::now(),
        true,
    )
    .await
    .expect("dry run");
    assert_eq!(nightly.events, "streams", "{nightly:?}");
}
