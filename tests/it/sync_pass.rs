//! The sync engine with its local state, against the fake HubSpot: a dry
//! run writes nothing; two identical runs — the second writes nothing and
//! fetches no detail for its own echoes; K changed contacts cost about K;
//! a rescore applies decay from stored inputs with no pull; rejected
//! records are retried from state; a changed field set forces a full pull;
//! a stopped pass leaves the watermark; two holders of one state refuse.

use leadscored::config::Connection;
use leadscored::crm::Crm as _;
use leadscored::crm::hubspot::Hubspot;
use leadscored::fake::hubspot::Faults;
use leadscored::fake::{FakeHubspot, RunningFake, spawn_hubspot};
use leadscored::state::{State, StateError};
use leadscored::sync::{Pass, PassError, PassKind, PassReport, Stop, run_pass};

use super::hubspot_flows::{TOKEN, connection, fake_config, stats};

/// Fast limits, and a one-second search overlap so that runs a few seconds
/// apart see only what changed between them (in production, runs are
/// minutes apart and the overlap two minutes).
const FAST: &str = "per_ten_seconds = 10000\nsearch_per_second = 1000\nconcurrency = 4\nbackoff_base_ms = 5\nbackoff_max_secs = 0.2\nsearch_overlap_secs = 1";

/// Waits until the fake's write clock (one millisecond per write, so it
/// runs ahead during a burst) and the overlap are behind us.
pub(super) async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
}

pub(super) struct Setup {
    pub(super) fake: RunningFake,
    pub(super) connection: Connection,
    pub(super) crm: Hubspot,
    dir: tempfile::TempDir,
}

impl Setup {
    pub(super) async fn new(contacts: u64, faults: Faults) -> Setup {
        let fake = spawn_hubspot(FakeHubspot::new(leadscored::fake::HubspotConfig {
            faults,
            ..fake_config(contacts)
        }))
        .await
        .expect("fake starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let connection = connection(&fake.url(), FAST, &dir);
        let crm = Hubspot::new(&connection).expect("connector");
        crm.setup(&connection.property_specs(), true)
            .await
            .expect("setup");
        Setup {
            fake,
            connection,
            crm,
            dir,
        }
    }

    pub(super) fn state(&self) -> State {
        State::open(
            &self.dir.path().join("state.sqlite3"),
            &self.connection.identity(),
        )
        .expect("state opens")
    }

    pub(super) async fn pass(
        &self,
        state: &mut State,
        kind: PassKind,
        now: jiff::Timestamp,
    ) -> Result<PassReport, PassError> {
        let pass = Pass {
            kind,
            now,
            dry_run: false,
            since: None,
        };
        run_pass(
            &self.crm,
            &self.connection,
            Some(state),
            pass,
            &Stop::default(),
            |_| {},
        )
        .await
    }

    /// What a fresh full pull would still change at `now` (zero when every
    /// contact holds the right values).
    async fn left_to_write(&self, now: jiff::Timestamp) -> u64 {
        let pass = Pass {
            kind: PassKind::Full,
            now,
            dry_run: true,
            since: None,
        };
        let report = run_pass(
            &self.crm,
            &self.connection,
            None,
            pass,
            &Stop::default(),
            |_| {},
        )
        .await
        .expect("dry run");
        report.changed
    }

    async fn written(&self) -> u64 {
        stats(&self.fake).await["requests"]["contacts written"]
            .as_u64()
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_then_two_identical_runs_the_second_writes_nothing() {
    let setup = Setup::new(1_500, Faults::default()).await;
    let now = jiff::Timestamp::now();

    let mut planned = Vec::new();
    let dry = run_pass(
        &setup.crm,
        &setup.connection,
        None,
        Pass {
            kind: PassKind::Incremental,
            now,
            dry_run: true,
            since: None,
        },
        &Stop::default(),
        |c| planned.push(c.clone()),
    )
    .await
    .expect("dry run");
    assert_eq!(dry.pulled, 1_500);
    assert_eq!(dry.changed, 1_500, "every contact gets its first scores");
    assert_eq!(planned.len(), 1_500);
    assert_eq!(dry.write_cost, 15);
    assert_eq!((dry.written, dry.write_calls), (0, 0));
    assert_eq!(setup.written().await, 0, "a dry run writes nothing");
    assert_eq!(dry.after["leadscored_tier"].values().sum::<u64>(), 1_500);
    assert_eq!(dry.before["leadscored_tier"]["(empty)"], 1_500);

    let mut state = setup.state();
    let first = setup
        .pass(&mut state, PassKind::Incremental, now)
        .await
        .expect("first run");
    assert_eq!(first.pull, "full", "no watermark yet: everything");
    assert_eq!(first.written, 1_500);
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert_eq!(first.write_calls, 15, "full batches of 100");
    assert_eq!(first.watermark, Some(now.as_millisecond()));
    assert_eq!(state.count().expect("count"), 1_500);

    settle().await;
    let later = jiff::Timestamp::now();
    let second = setup
        .pass(&mut state, PassKind::Incremental, later)
        .await
        .expect("second run");
    assert!(second.pull.starts_with("since"), "{}", second.pull);
    assert_eq!(second.pulled, 1_500, "our own writes come back as changes");
    assert_eq!(second.unchanged, 1_500, "…and are recognised as echoes");
    assert_eq!(second.detail_calls, 0, "no detail fetched for echoes");
    // Nothing to write, but for the rare record whose score the second or
    // so between the runs moved (an event crossing a window's edge).
    let moved = moved_by_time(&setup.connection, &state, now, later);
    assert!(moved <= 3, "{moved} moved in a second");
    assert!(second.changed <= moved, "{} changed", second.changed);
    assert_eq!(setup.written().await, 1_500 + second.changed);

    settle().await;
    let third = setup
        .pass(&mut state, PassKind::Incremental, jiff::Timestamp::now())
        .await
        .expect("third run");
    assert_eq!(
        third.pulled, second.changed,
        "nothing changed since the second run but its own writes"
    );
    assert_eq!(third.pull_pages, 1);
}

/// Stored records whose written values differ when scored at `later`
/// instead of `now`.
pub(super) fn moved_by_time(
    connection: &Connection,
    state: &State,
    now: jiff::Timestamp,
    later: jiff::Timestamp,
) -> u64 {
    let mut moved = 0;
    let mut after = String::new();
    loop {
        let batch = state.records_after(&after, 500).expect("records");
        let Some((last, _)) = batch.last() else {
            return moved;
        };
        after = last.id.clone();
        for (pulled, _) in &batch {
            let mut pulled = pulled.clone();
            let company = state.context(&mut pulled).expect("context");
            let record = leadscored::crm::mapping::to_record(
                &connection.model,
                &connection.inputs,
                &pulled,
                company.as_ref(),
            );
            let (a, b) = (
                connection.model.score(&record, now),
                connection.model.score(&record, later),
            );
            let differs = connection
                .outputs
                .iter()
                .any(|o| o.render(&connection.model, &a) != o.render(&connection.model, &b));
            moved += u64::from(differs);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_k_contacts_costs_about_k() {
    let setup = Setup::new(2_000, Faults::default()).await;
    let mut state = setup.state();
    let now = jiff::Timestamp::now();
    setup
        .pass(&mut state, PassKind::Incremental, now)
        .await
        .expect("first run");
    settle().await;
    setup
        .pass(&mut state, PassKind::Incremental, jiff::Timestamp::now())
        .await
        .expect("echo run");

    // 37 contacts become CEOs (a fit criterion) in the CRM.
    let ids: Vec<u64> = (0..37).map(|i| 17 + i * 53).collect();
    let inputs: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| serde_json::json!({ "id": id.to_string(), "properties": { "jobtitle": "CEO" } }))
        .collect();
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/crm/v3/objects/contacts/batch/update",
            setup.fake.url()
        ))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "inputs": inputs }))
        .send()
        .await
        .expect("fake answers");
    assert!(answer.status().is_success(), "{}", answer.status());
    let before = setup.written().await;
    // The fake stamps writes a millisecond apart; let them fall before `now`.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let changed = setup
        .pass(&mut state, PassKind::Incremental, jiff::Timestamp::now())
        .await
        .expect("incremental run");
    assert!(
        (37..=45).contains(&changed.pulled),
        "pulled {} for 37 changes",
        changed.pulled
    );
    assert!(
        changed.written >= 30 && changed.written <= 37,
        "{changed:?}"
    );
    assert!(
        changed.detail_calls <= 2 * changed.pulled,
        "detail only for changed contacts: {}",
        changed.detail_calls
    );
    assert_eq!(setup.written().await - before, changed.written);
    assert_eq!(setup.left_to_write(jiff::Timestamp::now()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescore_applies_decay_from_state_without_a_pull() {
    let setup = Setup::new(1_200, Faults::default()).await;
    let mut state = setup.state();
    let now = jiff::Timestamp::now();
    setup
        .pass(&mut state, PassKind::Incremental, now)
        .await
        .expect("first run");
    settle().await;
    setup
        .pass(&mut state, PassKind::Incremental, jiff::Timestamp::now())
        .await
        .expect("echo run");
    // 120 days on, engagement has decayed; nothing changed in the CRM.
    let later = now + jiff::SignedDuration::from_hours(24 * 120);
    let rescore = setup
        .pass(&mut state, PassKind::Rescore, later)
        .await
        .expect("rescore");
    assert_eq!(rescore.pulled, 0, "{rescore:?}");
    assert_eq!(rescore.rescored, 1_200, "every record, from local state");
    assert_eq!(rescore.detail_calls, 0, "{rescore:?}");
    assert!(rescore.written > 100, "decay moved scores: {rescore:?}");
    assert_eq!(
        setup.left_to_write(later).await,
        0,
        "the CRM holds what a fresh full pull computes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_records_are_retried_from_state() {
    let faults = Faults {
        rate_record_error: 0.08,
        ..Faults::default()
    };
    let setup = Setup::new(1_000, faults).await;
    let mut state = setup.state();
    let first = setup
        .pass(&mut state, PassKind::Incremental, jiff::Timestamp::now())
        .await
        .expect("first run");
    assert!(!first.failed.is_empty(), "faults rejected some records");
    assert_eq!(
        state.failed().expect("failed").len(),
        first.failed.len(),
        "every failure is recorded"
    );
    assert!(
        first.watermark.is_some(),
        "failures do not hold the watermark"
    );
    for _ in 0..6 {
        if state.failed().expect("failed").is_empty() {
            break;
        }
        setup
            .pass(&mut state, PassKind::Incremental, jiff::Timestamp::now())
            .await
            .expect("retry run");
    }
    let left = state.failed().expect("failed");
    assert!(left.is_empty(), "still failing: {left:?}");
    assert_eq!(setup.left_to_write(jiff::Timestamp::now()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_fields_force_a_full_pull_and_stop_keeps_the_watermark() {
    let setup = Setup::new(800, Faults::default()).await;
    let mut state = setup.state();
    let now = jiff::Timestamp::now();
    setup
        .pass(&mut state, PassKind::Incremental, now)
        .await
        .expect("first run");
    let watermark = state.watermark().expect("watermark");
    assert_eq!(watermark, Some(now.as_millisecond()));

    // A stop before the pass gets anywhere: the watermark stays.
    let stop = Stop::default();
    stop.stop();
    let stopped = run_pass(
        &setup.crm,
        &setup.connection,
        Some(&mut state),
        Pass {
            kind: PassKind::Incremental,
            now: now + jiff::SignedDuration::from_secs(60),
            dry_run: false,
            since: None,
        },
        &stop,
        |_| {},
    )
    .await;
    assert!(matches!(stopped, Err(PassError::Stopped)), "{stopped:?}");
    assert_eq!(state.watermark().expect("watermark"), watermark);

    // Another field set: stored inputs lack something, so pull everything.
    let mut other = connection(&setup.fake.url(), FAST, &setup.dir);
    other.inputs.retain(|i| i.field != "jobtitle");
    let crm = Hubspot::new(&other).expect("connector");
    let report = run_pass(
        &crm,
        &other,
        Some(&mut state),
        Pass {
            kind: PassKind::Incremental,
            now: now + jiff::SignedDuration::from_secs(60),
            dry_run: true,
            since: None,
        },
        &Stop::default(),
        |_| {},
    )
    .await
    .expect("dry run");
    assert_eq!(report.pull, "full");
    assert_eq!(report.pulled, 800);
}

#[test]
fn one_holder_per_state_and_no_foreign_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.sqlite3");
    let held = State::open(&path, "hubspot https://api.hubapi.com").expect("opens");
    let second = State::open(&path, "hubspot https://api.hubapi.com");
    assert!(
        matches!(second, Err(StateError::Locked { .. })),
        "{second:?}"
    );
    drop(held);
    let foreign = State::open(&path, "hubspot https://api-eu1.hubapi.com");
    assert!(
        matches!(foreign, Err(StateError::Foreign { .. })),
        "{foreign:?}"
    );
    let again = State::open(&path, "hubspot https://api.hubapi.com").expect("reopens");
    assert_eq!(again.watermark().expect("watermark"), None);
}
