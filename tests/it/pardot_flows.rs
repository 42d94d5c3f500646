//! The Pardot connector against the built-in fake Pardot, through the sync
//! engine: custom-field setup, a first sync that crosses the page token's
//! record limit (restarting the query without missing or repeating a
//! prospect) and writes every prospect with at most five requests at once,
//! then an incremental pass that recognises its own echoes.

use leadscored::config::Connection;
use leadscored::crm::{Connector, Crm as _};
use leadscored::fake::{FakePardot, PardotConfig, spawn_pardot};
use leadscored::state::State;
use leadscored::sync::{Pass, PassKind, Stop, run_pass};

const TOKEN: &str = "fake-pardot-access-token";

/// How a test connection signs in to the fake Pardot.
#[derive(Clone, Copy, Debug)]
pub enum Login {
    /// A static access token from a file.
    Token,
    /// The example's Salesforce OAuth refresh-token flow (secrets from files).
    RefreshToken,
    /// Salesforce's client-credentials flow.
    ClientCredentials,
}

/// The example Pardot connection pointed at `url`, signing in as `login`,
/// with fast retries and `edit` applied to its text.
pub fn pardot_connection_as(
    url: &str,
    dir: &tempfile::TempDir,
    login: Login,
    edit: impl Fn(String) -> String,
) -> Connection {
    let source = edit(pardot_text(dir.path(), login));
    let mut connection = Connection::parse(
        "config/pardot.toml",
        &source,
        &crate::root().join("config"),
        None,
    )
    .unwrap_or_else(|e| panic!("the connection loads: {e}"));
    connection.override_base_url(url).expect("a local URL");
    connection
}

/// The example Pardot connection's text, signing in as `login` with
/// secrets in files under `dir`, with fast retries.
pub fn pardot_text(dir: &std::path::Path, login: Login) -> String {
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("secret file");
        format!("{{ file = {:?} }}", path.display().to_string())
    };
    let example = crate::read("config/pardot.toml").replace(
        "[limits]\n",
        "[limits]\nbackoff_base_ms = 5\nbackoff_max_secs = 0.2\nsearch_overlap_secs = 1\n",
    );
    let (head, rest) = example.split_once("[crm.oauth]").expect("an oauth block");
    let (oauth, rest) = rest.split_at(rest.find("[limits]").expect("a limits section"));
    let client = oauth
        .replace("\"3MVG9...your connected app\"", "\"fake-client-id\"")
        .replace(
            "{ credential = \"salesforce-client-secret\" }",
            &file("client-secret", "fake-client-secret"),
        );
    let auth = match login {
        Login::Token => format!("token = {}\n\n", file("token", TOKEN)),
        Login::RefreshToken => format!(
            "[crm.oauth]{}",
            client.replace(
                "{ credential = \"salesforce-refresh-token\" }",
                &file("refresh-token", "fake-salesforce-refresh-token"),
            )
        ),
        Login::ClientCredentials => format!(
            "[crm.oauth]{}",
            client.replace(
                "refresh_token = { credential = \"salesforce-refresh-token\" }",
                "grant = \"client_credentials\"",
            )
        ),
    };
    format!("{head}{auth}{rest}")
}

/// The example Pardot connection with a token file, pointed at `url`.
pub fn pardot_connection(url: &str, dir: &tempfile::TempDir) -> Connection {
    pardot_connection_as(url, dir, Login::Token, |s| s)
}

fn pass(kind: PassKind, dry_run: bool) -> Pass {
    Pass {
        kind,
        now: jiff::Timestamp::now(),
        dry_run,
        since: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_sync_against_the_fake_pardot() {
    let fake = spawn_pardot(FakePardot::new(PardotConfig {
        prospects: 2_500,
        token_record_limit: 1_000,
        daily: 1_000_000,
        ..PardotConfig::default()
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = pardot_connection(&fake.url(), &dir);
    let crm = Connector::new(&connection).expect("connector");

    let specs = connection.property_specs();
    let made = crm.setup(&specs, true).await.expect("setup");
    assert_eq!(made.created.len(), 5, "{made:?}");
    let again = crm.setup(&specs, false).await.expect("check");
    assert_eq!(again.existing.len(), 5, "{again:?}");
    assert!(again.conflicts.is_empty() && again.missing.is_empty());

    let mut state =
        State::open(&dir.path().join("state.sqlite3"), &connection.identity()).expect("state");
    let mut ids = std::collections::BTreeSet::new();
    let first_pass = pass(PassKind::Incremental, false);
    let first = run_pass(
        &crm,
        &connection,
        Some(&mut state),
        first_pass,
        &Stop::default(),
        |change| {
            assert!(ids.insert(change.id.clone()), "{} came twice", change.id);
        },
    )
    .await
    .expect("first sync");
    assert_eq!(first.pulled, 2_500, "{first:?}");
    assert_eq!(ids.len(), 2_500, "every prospect once");
    assert_eq!(first.written, 2_500);
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert!(first.detail_calls >= 2_500, "activities per prospect");

    let stats = fake_stats(&fake).await;
    assert!(
        stats["max_in_flight"].as_u64().unwrap_or(99) <= 5,
        "{stats}"
    );
    assert_eq!(stats["rejected_concurrency"], 0, "{stats}");
    // 2,500 writes of the same five fields: one import, not 2,500 PATCHes.
    assert_eq!(stats["requests"]["prospects imported"], 2_500, "{stats}");
    assert!(first.write_calls <= 12, "{} write calls", first.write_calls);
    assert!(
        stats["cut_off_queries"].as_u64().unwrap_or(0) >= 2,
        "the token limit was crossed: {stats}"
    );

    // Pardot's times have second precision: let the writes fall behind.
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let second_pass = pass(PassKind::Incremental, false);
    let second = run_pass(
        &crm,
        &connection,
        Some(&mut state),
        second_pass,
        &Stop::default(),
        |_| {},
    )
    .await
    .expect("second sync");
    assert_eq!(
        second.unchanged, second.pulled,
        "only our own echoes: {second:?}"
    );
    assert_eq!(second.detail_calls, 0);
    // Nothing to write, but for the rare prospect whose score the seconds
    // between the runs moved (an event crossing a window's edge).
    let moved =
        super::sync_pass::moved_by_time(&connection, &state, first_pass.now, second_pass.now);
    assert!(moved <= 3, "{moved} moved in two seconds");
    assert!(second.changed <= moved, "{second:?}");

    // A fresh read, scored at the second pass's moment (later, an event
    // may cross a window's edge): nothing is left to write.
    let check = run_pass(
        &crm,
        &connection,
        None,
        Pass {
            now: second_pass.now,
            ..pass(PassKind::Full, true)
        },
        &Stop::default(),
        |_| {},
    )
    .await
    .expect("dry run");
    assert_eq!(check.pulled, 2_500);
    assert_eq!(check.changed, 0, "every prospect holds its scores");

    // explain --connection: a prospect from the local state, no CRM call.
    let calls = crm
        .http()
        .stats
        .calls
        .load(std::sync::atomic::Ordering::Relaxed);
    let state_path = dir.path().join("state.sqlite3");
    let now = jiff::Timestamp::now();
    let text = leadscored::commands::explain_stored(&connection, &state_path, "42", now, false)
        .expect("explained");
    assert!(text.starts_with("Record 42 scored with model"), "{text}");
    assert!(text.contains("In pardot") && text.contains("leadscored_grade__c: "));
    assert!(
        !text.contains("at the next pass"),
        "it holds its values: {text}"
    );
    // A year on, decay moves engaged prospects' scores: shown as the next write.
    let later = now + jiff::SignedDuration::from_hours(24 * 365);
    let moved = (1..=200).any(|id| {
        leadscored::commands::explain_stored(
            &connection,
            &state_path,
            &id.to_string(),
            later,
            false,
        )
        .is_ok_and(|t| t.contains("at the next pass"))
    });
    assert!(moved, "decay shows as a pending write");
    assert_eq!(
        crm.http()
            .stats
            .calls
            .load(std::sync::atomic::Ordering::Relaxed),
        calls,
        "explain made no CRM call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_150000_prospects_across_the_token_limit_once_each() {
    let fake = spawn_pardot(FakePardot::new(PardotConfig {
        prospects: 150_000,
        daily: 1_000_000,
        ..PardotConfig::default()
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    // Fields only: this is about paging, not activities.
    let connection = pardot_connection_as(&fake.url(), &dir, Login::Token, |text| {
        let (head, events) = text.split_once("[events]\n").expect("an events section");
        let (_, outputs) = events.split_once("\n[[output]]").expect("outputs");
        let off = [
            "email_click",
            "ad_click",
            "email_unsubscribe",
            "webinar",
            "email_open",
            "page_view",
            "content_download",
            "form_submission",
        ]
        .map(|kind| format!("{kind} = \"off\"\n"))
        .concat();
        let head = head
            .replace("{ count = \"activity:20\" }", "\"off\"")
            .replace("{ latest = \"activity:11\" }", "\"off\"");
        format!("{head}[events]\n{off}\n[[output]]{outputs}")
    });
    assert!(connection.events.is_empty());
    let crm = Connector::new(&connection).expect("connector");
    crm.setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    for kind in [
        leadscored::crm::PullKind::Full,
        leadscored::crm::PullKind::Since(0),
    ] {
        let spec = leadscored::crm::PullSpec {
            kind,
            fields: connection.fields(),
            event_types: Vec::new(),
            until_ms: jiff::Timestamp::now().as_millisecond(),
            known: Default::default(),
            ids: Default::default(),
        };
        let (sink, mut pages) = tokio::sync::mpsc::channel::<Vec<leadscored::crm::CrmRecord>>(4);
        let collect = async {
            let mut seen = std::collections::HashSet::new();
            let mut repeated = 0u64;
            while let Some(page) = pages.recv().await {
                for record in page {
                    if !seen.insert(record.id) {
                        repeated += 1;
                    }
                }
            }
            (seen.len(), repeated)
        };
        let (pulled, (unique, repeated)) = tokio::join!(crm.pull(&spec, sink), collect);
        let summary = pulled.expect("pull");
        assert_eq!((unique, repeated), (150_000, 0), "{kind:?}");
        assert_eq!(summary.records, 150_000);
        assert!(summary.pages <= 152, "{kind:?}: {} pages", summary.pages);
    }
    let stats = fake_stats(&fake).await;
    assert!(
        stats["cut_off_queries"].as_u64().unwrap_or(0) >= 2,
        "both pulls crossed the 100,000-record token limit: {stats}"
    );
}

/// A JSON answer of the fake at `path` (`/__fake/stats`, ...).
pub async fn fake_json(fake: &leadscored::fake::RunningFake, path: &str) -> serde_json::Value {
    reqwest::get(format!("{}{path}", fake.url()))
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn fake_stats(fake: &leadscored::fake::RunningFake) -> serde_json::Value {
    fake_json(fake, "/__fake/stats").await
}

/// A new day at the fake: its call count starts over (and with `max`, its
/// daily limit changes).
async fn new_day(fake: &leadscored::fake::RunningFake, max: Option<u64>) {
    let query = max.map(|m| format!("?max={m}")).unwrap_or_default();
    reqwest::Client::new()
        .post(format!("{}/__fake/reset-daily{query}", fake.url()))
        .send()
        .await
        .expect("reset");
}

/// Requests the fake counted under keys starting with `prefix`.
fn counted(stats: &serde_json::Value, prefix: &str) -> u64 {
    stats["requests"].as_object().map_or(0, |m| {
        m.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.as_u64().unwrap_or(0))
            .sum()
    })
}

/// Incremental passes until one leaves no failed record (at most `max`).
async fn converge(
    crm: &Connector,
    connection: &Connection,
    state: &mut State,
    max: usize,
) -> Vec<leadscored::sync::PassReport> {
    let mut reports = Vec::new();
    for _ in 0..max {
        let report = run_pass(
            crm,
            connection,
            Some(&mut *state),
            pass(PassKind::Incremental, false),
            &Stop::default(),
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("pass {} survives: {e}", reports.len() + 1));
        let done = report.failed.is_empty();
        reports.push(report);
        if done {
            break;
        }
        // Pardot's times have whole seconds.
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    }
    reports
}

/// A full dry run from a fresh pull: what is still to write.
async fn left_to_write(crm: &Connector, connection: &Connection) -> u64 {
    left_to_write_at(crm, connection, jiff::Timestamp::now()).await
}

/// What a fresh full pull would change when scored as of `now`.
async fn left_to_write_at(crm: &Connector, connection: &Connection, now: jiff::Timestamp) -> u64 {
    let report = run_pass(
        crm,
        connection,
        None,
        Pass {
            now,
            ..pass(PassKind::Full, true)
        },
        &Stop::default(),
        |_| {},
    )
    .await
    .expect("dry run");
    report.changed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_expiring_oauth_tokens_are_survived_and_every_prospect_converges() {
    let n = 400;
    let fake = spawn_pardot(FakePardot::new(PardotConfig {
        prospects: n,
        seed: 5,
        daily: 1_000_000,
        faults: leadscored::fake::pardot::Faults {
            // High enough that each kind is met in the pass's fifty-odd
            // calls whatever order concurrent requests draw in.
            rate_429: 0.08,
            rate_5xx: 0.08,
            rate_malformed: 0.08,
            rate_reset: 0.08,
            rate_record_error: 0.05,
            // Salesforce sessions stated nowhere: refreshed on 401 only.
            token_ttl: Some(std::time::Duration::from_millis(400)),
            ..Default::default()
        },
        ..PardotConfig::default()
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    // About one call in three meets a fault: ten attempts per call.
    let connection = pardot_connection_as(&fake.url(), &dir, Login::RefreshToken, |text| {
        text.replace("[limits]\n", "[limits]\nmax_attempts = 10\n")
    });
    let crm = Connector::new(&connection).expect("connector");
    crm.setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    let mut state =
        State::open(&dir.path().join("state.sqlite3"), &connection.identity()).expect("state");

    let reports = converge(&crm, &connection, &mut state, 8).await;
    let first = &reports[0];
    assert_eq!(first.pulled, n, "{first:?}");
    assert!(!first.failed.is_empty(), "the fake refused some prospects");
    // Refusals name Pardot's error (a refusal whose body was cut has no
    // message, only its status).
    assert!(
        first
            .failed
            .iter()
            .all(|(_, why)| why.starts_with("Pardot error") || why.starts_with("Pardot import")),
        "{:?}",
        first.failed
    );
    assert!(
        reports.last().is_some_and(|r| r.failed.is_empty()),
        "refused prospects were retried until none was left: {:?}",
        reports.iter().map(|r| r.failed.len()).collect::<Vec<_>>()
    );
    assert!(state.failed().expect("failed").is_empty());

    // Concurrent requests draw faults in no fixed order, so a kind can
    // miss the first fifty-odd calls (about one run in a hundred): full
    // passes go on, each of which must survive too, until every kind has
    // been met.
    let mut stats = fake_stats(&fake).await;
    let unmet = |stats: &serde_json::Value| {
        ["429", "5xx", "malformed", "reset"]
            .into_iter()
            .filter(|kind| stats["faults"][*kind].as_u64().unwrap_or(0) == 0)
            .collect::<Vec<_>>()
    };
    for _ in 0..6 {
        if unmet(&stats).is_empty() {
            break;
        }
        run_pass(
            &crm,
            &connection,
            Some(&mut state),
            pass(PassKind::Full, false),
            &Stop::default(),
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("an extra full pass survives: {e}"));
        stats = fake_stats(&fake).await;
    }
    assert!(
        unmet(&stats).is_empty(),
        "{:?} faults were never served: {stats}",
        unmet(&stats)
    );
    assert!(
        counted(&stats, "POST /services/oauth2/token refresh_token 200") >= 2,
        "expired tokens were refreshed: {stats}"
    );
    assert!(
        stats["max_in_flight"].as_u64().unwrap_or(99) <= 5,
        "{stats}"
    );

    // A client-credentials connection (no refresh token) reads the same
    // account and finds every prospect holding its scores.
    let dir2 = tempfile::tempdir().expect("temp dir");
    let other = pardot_connection_as(&fake.url(), &dir2, Login::ClientCredentials, |text| {
        text.replace("[limits]\n", "[limits]\nmax_attempts = 10\n")
    });
    let crm2 = Connector::new(&other).expect("connector");
    assert_eq!(
        left_to_write(&crm2, &other).await,
        0,
        "every prospect converged"
    );
    let stats = fake_stats(&fake).await;
    assert!(
        counted(&stats, "POST /services/oauth2/token client_credentials 200") >= 1,
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_token_stops_with_a_clear_error_and_no_secret() {
    let fake = spawn_pardot(FakePardot::new(PardotConfig {
        prospects: 10,
        faults: leadscored::fake::pardot::Faults {
            token_ttl: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        },
        ..PardotConfig::default()
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = pardot_connection_as(&fake.url(), &dir, Login::RefreshToken, |text| text);
    std::fs::write(dir.path().join("refresh-token"), "revoked-refresh-secret").expect("write");
    let crm = Connector::new(&connection).expect("connector");
    let error = run_pass(
        &crm,
        &connection,
        None,
        pass(PassKind::Full, true),
        &Stop::default(),
        |_| {},
    )
    .await
    .expect_err("refused");
    let text = error.to_string();
    assert!(text.contains("invalid_grant"), "{text}");
    assert!(!text.contains("revoked-refresh-secret") && !text.contains("fake-client-secret"));
    assert_eq!(counted(&fake_stats(&fake).await, "GET"), 0, "no API call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_limit_pardot_reports_stops_passes_cleanly_and_they_converge_later() {
    // About 300 calls in all (pages, activities by id range, imports):
    // more than two days of a 150-call limit with 20 % kept for others.
    let n = 8_000;
    let fake = spawn_pardot(FakePardot::new(PardotConfig {
        prospects: n,
        // Far below the configured edition's 100,000: the reported limit wins.
        daily: 150,
        ..PardotConfig::default()
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = pardot_connection(&fake.url(), &dir);
    let mut state =
        State::open(&dir.path().join("state.sqlite3"), &connection.identity()).expect("state");
    let mut stopped = 0;
    let mut finished = false;
    for day in 0..8 {
        // Each round is a new day: the fake's count and ours (kept in the
        // state, as every process on it shares the day's budget) start over.
        new_day(&fake, None).await;
        rusqlite::Connection::open(dir.path().join("state.sqlite3"))
            .and_then(|db| db.execute("DELETE FROM budget", []))
            .expect("the state's day count starts over");
        let crm = Connector::new(&connection).expect("connector");
        if day == 0 {
            crm.setup(&connection.property_specs(), true)
                .await
                .expect("setup");
        }
        let result = run_pass(
            &crm,
            &connection,
            Some(&mut state),
            pass(PassKind::Incremental, false),
            &Stop::default(),
            |_| {},
        )
        .await;
        let used = fake_stats(&fake).await["daily_used"].as_u64().unwrap_or(0);
        assert!(
            used <= 125,
            "day {day}: 20 % of 150 kept for others, used {used}"
        );
        match result {
            Err(leadscored::sync::PassError::Crm(leadscored::crm::CrmError::BudgetExhausted {
                limit,
                resume_at,
                ..
            })) => {
                assert_eq!(limit, 150, "the limit Pardot reports");
                assert!(resume_at > jiff::Timestamp::now());
                assert_eq!(state.watermark().expect("watermark"), None);
                stopped += 1;
            }
            Ok(report) => {
                assert!(report.failed.is_empty(), "{report:?}");
                finished = true;
                break;
            }
            Err(other) => panic!("day {day}: {other}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    }
    assert!(
        stopped >= 1 && finished,
        "stopped {stopped} times, finished {finished}"
    );
    let stats = fake_stats(&fake).await;
    assert_eq!(
        counted(&stats, "GET /api/v5/objects/prospects 429")
            + counted(&stats, "PATCH /api/v5/objects/prospects/{id} 429"),
        0,
        "never met error 122: {stats}"
    );
    // An upgraded edition: room to check everything from a fresh pull,
    // after a rescore as of the same moment (the passes above ran seconds
    // apart; time alone may have moved a score since).
    new_day(&fake, Some(10_000)).await;
    rusqlite::Connection::open(dir.path().join("state.sqlite3"))
        .and_then(|db| db.execute("DELETE FROM budget", []))
        .expect("the state's day count starts over");
    let crm = Connector::new(&connection).expect("connector");
    let at = jiff::Timestamp::now();
    run_pass(
        &crm,
        &connection,
        Some(&mut state),
        Pass {
            now: at,
            ..pass(PassKind::Rescore, false)
        },
        &Stop::default(),
        |_| {},
    )
    .await
    .expect("rescore");
    assert_eq!(left_to_write_at(&crm, &connection, at).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_split_to_stay_under_pardots_file_size() {
    let fake = spawn_pardot(FakePardot::new(PardotConfig {
        prospects: 200,
        ..PardotConfig::default()
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = pardot_connection(&fake.url(), &dir);
    let crm = Connector::new(&connection).expect("connector");
    crm.setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    // 120 rows of 100 kB each: 12 MB, more than one 10 MB file.
    let long = "reason, \"quoted\" ".repeat(6_000);
    let updates: Vec<leadscored::crm::Update> = (1..=120)
        .map(|id| leadscored::crm::Update {
            id: id.to_string(),
            values: [("leadscored_reasons__c".to_owned(), format!("{id} {long}"))].into(),
        })
        .collect();
    let report = crm.write(updates).await.expect("write");
    assert_eq!((report.written.len(), report.failed.len()), (120, 0));
    let stats = fake_stats(&fake).await;
    assert!(
        counted(&stats, "POST /api/v5/imports 201") >= 2,
        "split into several imports: {stats}"
    );
    let stored = fake_json(&fake, "/__fake/prospects/77").await;
    assert_eq!(
        stored["values"]["leadscored_reasons__c"],
        format!("77 {long}"),
        "the value came through CSV quoting intact"
    );
}
