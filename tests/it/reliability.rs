//! Faults that used to hang a pass, corrupt another portal or leak a
//! secret, each rehearsed: writes answering 500 or 401 while the pull
//! runs, a state that cannot be written, a damaged state file, a state
//! made for another portal, endless and oversized answers, a CRM that
//! quotes our token back, a daily limit spent across processes, a CRM
//! counter that resets after our midnight, a model change reaching stored
//! records, `--now` ahead of the clock, and the run log of a failed pass.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use leadscored::config::Connection;
use leadscored::crm::hubspot::Hubspot;
use leadscored::crm::{Crm as _, CrmError};
use leadscored::fake::hubspot::Faults;
use leadscored::fake::{FakeHubspot, HubspotConfig, RunningFake, spawn_hubspot};
use leadscored::state::{State, StateError};
use leadscored::sync::{Pass, PassError, PassKind, PassReport, Stop, run_logged, run_pass};

use super::daemon::{
    FAST, daemon_child, eventually, free_port, get, leadscored, signal, wait_with_timeout,
    write_connection,
};
use super::hubspot_flows::{connection, fake_config, stats};

/// Long enough for any of these passes to finish, short enough that a
/// hang fails the test instead of the suite.
const NO_HANG: Duration = Duration::from_secs(60);

async fn fake_with(config: HubspotConfig) -> RunningFake {
    spawn_hubspot(FakeHubspot::new(config))
        .await
        .expect("fake starts")
}

fn pass(kind: PassKind) -> Pass {
    Pass {
        kind,
        now: jiff::Timestamp::now(),
        dry_run: false,
        since: None,
    }
}

fn state_at(dir: &Path, connection: &Connection) -> State {
    State::open(&dir.join("state.sqlite3"), &connection.identity()).expect("state opens")
}

/// One pass against `crm`, failing the test if it does not end.
async fn bounded_pass(
    crm: &Hubspot,
    connection: &Connection,
    state: &mut State,
    kind: PassKind,
) -> Result<PassReport, PassError> {
    tokio::time::timeout(
        NO_HANG,
        run_pass(
            crm,
            connection,
            Some(state),
            pass(kind),
            &Stop::default(),
            |_| {},
        ),
    )
    .await
    .expect("the pass ends instead of hanging")
}

/// A first sync of 3,000 contacts whose writes all fail: the pull has
/// thirty pages to send while the writer gives up on the first batch.
async fn writes_failing_with(status: u16) -> PassError {
    let fake = fake_with(HubspotConfig {
        faults: Faults {
            fail_writes: Some(status),
            ..Faults::default()
        },
        ..fake_config(3_000)
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = connection(
        &fake.url(),
        "per_ten_seconds = 10000\nsearch_per_second = 1000\nbackoff_base_ms = 5\nbackoff_max_secs = 0.05",
        &dir,
    );
    let crm = Hubspot::new(&connection).expect("connector");
    let mut state = state_at(dir.path(), &connection);
    let error = bounded_pass(&crm, &connection, &mut state, PassKind::Incremental)
        .await
        .expect_err("the writes fail");
    assert_eq!(
        state.watermark().expect("watermark"),
        None,
        "nothing settled"
    );
    let pulled = state.count().expect("count");
    assert!(pulled < 3_000, "the pull stopped with the writer: {pulled}");
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_answering_500_end_the_pass_with_an_error() {
    let error = writes_failing_with(500).await;
    assert!(
        matches!(error, PassError::Crm(CrmError::Unavailable { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("batch.update"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_during_writes_ends_the_pass_with_an_auth_error() {
    let error = writes_failing_with(401).await;
    assert!(
        matches!(error, PassError::Crm(CrmError::Auth(_))),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_that_cannot_be_written_ends_the_pass_naming_file_and_record() {
    let fake = fake_with(fake_config(3_000)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = connection(&fake.url(), FAST, &dir);
    let crm = Hubspot::new(&connection).expect("connector");
    crm.setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    let mut state = state_at(dir.path(), &connection);
    // The disk fills up after 300 records: SQLite answers SQLITE_FULL.
    rusqlite::Connection::open(dir.path().join("state.sqlite3"))
        .and_then(|db| {
            db.execute_batch(
                "CREATE TRIGGER disk_full BEFORE INSERT ON records
                 WHEN (SELECT count(*) FROM records) >= 300
                 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
            )
        })
        .expect("trigger");
    let error = bounded_pass(&crm, &connection, &mut state, PassKind::Incremental)
        .await
        .expect_err("the state fails");
    let text = error.to_string();
    assert!(matches!(error, PassError::State(_)), "{text}");
    assert!(text.contains("state.sqlite3"), "names the file: {text}");
    assert!(text.contains("pulled record"), "names the record: {text}");
    assert!(text.contains("disk is full"), "{text}");
    assert_eq!(state.watermark().expect("watermark"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_file_fails_a_full_sync_with_exit_73() {
    let fake = super::daemon::fake(fake_config(2_000)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_connection(dir.path(), &fake.url(), FAST, "", "UTC");
    let sync = |full: bool| {
        let mut args = vec![
            "sync",
            "--once",
            "--connection",
            path.to_str().expect("utf-8"),
        ];
        if full {
            args.push("--full");
        }
        leadscored(&args, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("leadscored starts")
    };
    let mut first = sync(false);
    assert!(wait_with_timeout(&mut first, NO_HANG).success());
    // Garbage over the middle of the database: its pages no longer decode.
    let file = dir.path().join("state/portal.sqlite3");
    let mut bytes = std::fs::read(&file).expect("state file");
    let (start, end) = (bytes.len() / 4, bytes.len() * 3 / 4);
    for (i, byte) in bytes[start..end].iter_mut().enumerate() {
        *byte = (i * 7 + 13) as u8;
    }
    std::fs::write(&file, bytes).expect("damaged");
    let mut second = sync(true);
    let status = wait_with_timeout(&mut second, NO_HANG);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(73), "{stderr}");
    assert!(stderr.contains("portal.sqlite3"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_made_for_another_portal_is_refused_before_any_write() {
    let portal_a = fake_with(HubspotConfig {
        portal_id: Some(1_111),
        ..fake_config(300)
    })
    .await;
    let portal_b = fake_with(HubspotConfig {
        portal_id: Some(2_222),
        ..fake_config(300)
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let to_a = connection(&portal_a.url(), FAST, &dir);
    let to_b = connection(&portal_b.url(), FAST, &dir);
    // Both are "hubspot http://127.0.0.1": only the portal tells them apart.
    assert_eq!(to_a.identity(), to_b.identity());
    let crm_a = Hubspot::new(&to_a).expect("connector");
    crm_a
        .setup(&to_a.property_specs(), true)
        .await
        .expect("setup");
    let mut state = state_at(dir.path(), &to_a);
    let report = bounded_pass(&crm_a, &to_a, &mut state, PassKind::Incremental)
        .await
        .expect("portal A syncs");
    assert!(report.written > 0);
    assert_eq!(
        state.portal().expect("portal").as_deref(),
        Some("HubSpot portal 1111")
    );
    let crm_b = Hubspot::new(&to_b).expect("connector");
    for kind in [PassKind::Rescore, PassKind::Full] {
        let error = bounded_pass(&crm_b, &to_b, &mut state, kind)
            .await
            .expect_err("portal B is refused");
        let text = error.to_string();
        assert!(
            matches!(error, PassError::State(StateError::Foreign { .. })),
            "{text}"
        );
        assert!(text.contains("1111") && text.contains("2222"), "{text}");
        assert_eq!(
            leadscored::commands::CommandError::from(error).exit_code(),
            78
        );
    }
    let b = stats(&portal_b).await;
    let writes = b["requests"]
        .as_object()
        .expect("requests")
        .iter()
        .filter(|(k, _)| k.contains("batch/update"))
        .count();
    assert_eq!(writes, 0, "nothing written to portal B: {b}");
}

/// A server that answers the contact list (and anything unrouted) with
/// `body`, names its portal, and takes batch updates without applying them.
async fn serve(
    body: impl Fn() -> axum::body::Body + Clone + Send + Sync + 'static,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    let json = |text: &'static str| {
        axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from(text))
            .expect("response")
    };
    let app = axum::Router::new()
        .route(
            "/account-info/v3/details",
            axum::routing::get(move || async move { json("{\"portalId\": 77}") }),
        )
        .route(
            "/events/v3/events",
            axum::routing::get(move || async move { json("{\"results\": []}") }),
        )
        .route(
            "/email/public/v1/events",
            axum::routing::get(move || async move { json("{\"events\": [], \"hasMore\": false}") }),
        )
        .route(
            "/marketing/v3/forms",
            axum::routing::get(move || async move { json("{\"results\": []}") }),
        )
        .route(
            "/crm/v3/objects/contacts/batch/update",
            axum::routing::post(move || async move {
                json("{\"status\": \"COMPLETE\", \"results\": []}")
            }),
        )
        .fallback(move || {
            let body = body.clone();
            async move {
                axum::response::Response::builder()
                    .header("content-type", "application/json")
                    .body(body())
                    .expect("response")
            }
        });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// The example connection with no event detail: a pass costs its pages
/// and writes only.
fn without_events(url: &str, limits: &str, dir: &tempfile::TempDir) -> Connection {
    let example = super::read("config/hubspot.toml");
    let types: Vec<String> = super::hubspot_flows::parse_connection(&example, url, dir)
        .events
        .keys()
        .cloned()
        .collect();
    let mut source = String::new();
    for line in example.lines() {
        // The example's own [events] lines give way to "off" for every type.
        let is_event_line = types.iter().any(|t| line.starts_with(&format!("{t} =")));
        if !is_event_line && !line.starts_with("daily_headroom_percent") {
            source.push_str(line);
            source.push('\n');
        }
        if line == "[events]" {
            for t in &types {
                source.push_str(&format!("{t} = \"off\"\n"));
            }
        }
        if line == "[limits]" {
            source.push_str(limits);
            source.push('\n');
        }
    }
    super::hubspot_flows::parse_connection(&source, url, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_is_cut_at_the_size_limit() {
    use futures_util::StreamExt as _;
    let addr = serve(|| {
        let head = futures_util::stream::once(async {
            Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{\"results\":["))
        });
        let endless = futures_util::stream::repeat_with(|| {
            Ok(axum::body::Bytes::from_static(
                b"{\"id\":\"1\",\"properties\":{\"jobtitle\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}},",
            ))
        });
        axum::body::Body::from_stream(head.chain(endless))
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = connection(
        &format!("http://{addr}"),
        &format!("{FAST}\nmax_answer_mb = 2"),
        &dir,
    );
    let crm = Hubspot::new(&connection).expect("connector");
    let error = tokio::time::timeout(
        NO_HANG,
        run_pass(
            &crm,
            &connection,
            None,
            Pass {
                dry_run: true,
                ..pass(PassKind::Full)
            },
            &Stop::default(),
            |_| {},
        ),
    )
    .await
    .expect("ends")
    .expect_err("refused");
    let text = error.to_string();
    assert!(
        text.contains("larger than 2097152 bytes") && text.contains("max_answer_mb"),
        "{text}"
    );
    assert_eq!(
        leadscored::commands::CommandError::from(error).exit_code(),
        76
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_longer_than_any_property_is_refused_not_stored() {
    let huge = "y".repeat(70_000);
    let page = serde_json::json!({
        "results": [
            {"id": "1", "properties": {"jobtitle": "CEO", "lastmodifieddate": "2026-11-01T00:00:00Z"}},
            {"id": "2", "properties": {"jobtitle": huge, "lastmodifieddate": "2026-11-01T00:00:00Z"}},
        ]
    })
    .to_string();
    let page = axum::body::Bytes::from(page);
    let addr = serve(move || axum::body::Body::from(page.clone())).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://{addr}");
    let connection = without_events(&url, FAST, &dir);
    let crm = Hubspot::new(&connection).expect("connector");
    let mut state = state_at(dir.path(), &connection);
    let report = run_pass(
        &crm,
        &connection,
        Some(&mut state),
        Pass {
            dry_run: false,
            ..pass(PassKind::Full)
        },
        &Stop::default(),
        |_| {},
    )
    .await
    .expect("the pass goes on past the bad record");
    assert_eq!(report.pulled, 2);
    let refused: Vec<&(String, String)> =
        report.failed.iter().filter(|(id, _)| id == "2").collect();
    assert_eq!(refused.len(), 1, "{:?}", report.failed);
    assert!(
        refused[0].1.contains("70000 characters"),
        "{}",
        refused[0].1
    );
    assert!(state.record("2").expect("reads").is_none(), "not stored");
    assert!(state.record("1").expect("reads").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_crm_quotes_back_never_leaves_the_process() {
    let fake = fake_with(HubspotConfig {
        faults: Faults {
            echo_auth: true,
            ..Faults::default()
        },
        ..fake_config(100)
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_connection(
        dir.path(),
        &fake.url(),
        FAST,
        "incremental = \"every 1s\"\n",
        "UTC",
    );
    // A token the fake does not know: its 401 quotes the header back.
    let canary = "pat-canary-7f3e9a1c5b2d4e6f";
    std::fs::write(dir.path().join("token"), canary).expect("token");
    let sync = leadscored(
        &[
            "sync",
            "--once",
            "--connection",
            path.to_str().expect("utf-8"),
        ],
        dir.path(),
    )
    .env("LEADSCORED_LOG_FORMAT", "json")
    .output()
    .expect("runs");
    let stderr = String::from_utf8_lossy(&sync.stderr);
    assert_eq!(sync.status.code(), Some(77), "{stderr}");
    assert!(
        stderr.contains("Bearer [redacted]"),
        "the quote is there, scrubbed: {stderr}"
    );
    assert!(!stderr.contains(canary), "{stderr}");

    let port = free_port();
    let log = dir.path().join("daemon.log");
    let mut child = daemon_child(&path, port, dir.path(), &log);
    let health = format!("http://127.0.0.1:{port}/healthz");
    eventually(
        "the daemon reports the failing token",
        Duration::from_secs(20),
        || async {
            matches!(get(&health).await, Some((503, body)) if body.contains("authentication"))
        },
    )
    .await;
    let (_, body) = get(&health).await.expect("healthz");
    let metrics = get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .1;
    signal(&child, "TERM");
    wait_with_timeout(&mut child, Duration::from_secs(10));
    assert!(body.contains("[redacted]"), "{body}");
    for (what, text) in [
        ("/healthz", body),
        ("/metrics", metrics),
        (
            "the daemon's log",
            std::fs::read_to_string(&log).expect("log"),
        ),
    ] {
        assert!(!text.contains(canary), "{what}: {text}");
    }
    for entry in std::fs::read_dir(dir.path().join("state")).expect("state dir") {
        let file = entry.expect("entry").path();
        let bytes = std::fs::read(&file).expect("state file");
        assert!(
            memchr::memmem::find(&bytes, canary.as_bytes()).is_none(),
            "{} holds the token",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_limit_holds_across_processes_sharing_a_state() {
    let fake = super::daemon::fake(fake_config(3_000)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = format!("{FAST}\ndaily = 60\ndaily_headroom_percent = 0");
    let connection = without_events(&fake.url(), &limits, &dir);
    let used = |s: serde_json::Value| s["daily_used"].as_u64().unwrap_or(0);
    let before = used(stats(&fake).await);
    let mut exhausted = 0;
    for _ in 0..4 {
        // A new connector is a new process: its own count starts at zero,
        // the state's does not.
        let crm = Hubspot::new(&connection).expect("connector");
        let mut state = state_at(dir.path(), &connection);
        match bounded_pass(&crm, &connection, &mut state, PassKind::Full).await {
            Err(PassError::Crm(CrmError::BudgetExhausted { .. })) => exhausted += 1,
            Ok(_) => {}
            Err(other) => panic!("{other}"),
        }
    }
    let spent = used(stats(&fake).await) - before;
    assert!(spent <= 60, "four runs spent {spent} of a daily 60");
    assert!(exhausted >= 3, "later runs find the day spent: {exhausted}");
}

/// A fixed-offset account zone whose local time is now about `minutes`
/// past midnight.
fn zone_just_past_midnight(minutes: i64) -> String {
    let of_day = jiff::Timestamp::now().as_second().rem_euclid(86_400);
    let mut offset = (minutes * 60 - of_day).rem_euclid(86_400);
    if offset > 50_400 {
        offset -= 86_400;
    }
    let sign = if offset < 0 { '-' } else { '+' };
    format!(
        "UTC{sign}{:02}:{:02}:{:02}",
        offset.abs() / 3600,
        offset.abs() % 3600 / 60,
        offset.abs() % 60
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_counter_that_resets_after_our_midnight_is_probed_not_waited_a_day() {
    let fake = fake_with(HubspotConfig {
        daily: 1_500,
        ..fake_config(200)
    })
    .await;
    // The CRM's day is spent (yesterday's count, not reset yet).
    let client = reqwest::Client::new();
    for _ in 0..1_500 {
        client
            .get(format!("{}/crm/v3/objects/contacts?limit=1", fake.url()))
            .bearer_auth(super::hubspot_flows::TOKEN)
            .send()
            .await
            .expect("spends");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let source = super::read("config/hubspot.toml").replace(
        "timezone = \"Europe/Oslo\"",
        &format!("timezone = {:?}", zone_just_past_midnight(10)),
    );
    let limits = format!("{FAST}\ndaily_reset_probe_secs = 1");
    let source = source.replace("[limits]\n", &format!("[limits]\n{limits}\n"));
    let connection = super::hubspot_flows::parse_connection(&source, &fake.url(), &dir);
    let crm = Hubspot::new(&connection).expect("connector");
    let mut state = state_at(dir.path(), &connection);
    let error = bounded_pass(&crm, &connection, &mut state, PassKind::Incremental)
        .await
        .expect_err("the CRM says the day is spent");
    let PassError::Crm(CrmError::BudgetExhausted { resume_at, .. }) = error else {
        panic!("{error}");
    };
    let wait = resume_at.duration_since(jiff::Timestamp::now());
    assert!(
        wait < jiff::SignedDuration::from_secs(5),
        "a probe in a second, not the next midnight: {wait}"
    );
    // The CRM resets a moment later; the probe finds it and the pass runs.
    client
        .post(format!("{}/__fake/reset-daily", fake.url()))
        .send()
        .await
        .expect("reset");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    bounded_pass(&crm, &connection, &mut state, PassKind::Incremental)
        .await
        .expect("the probe finds the new day");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_model_reaches_stored_records_on_the_next_pass() {
    let fake = super::daemon::fake(fake_config(500)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let old = connection(&fake.url(), FAST, &dir);
    let crm = Hubspot::new(&old).expect("connector");
    let mut state = state_at(dir.path(), &old);
    let first = bounded_pass(&crm, &old, &mut state, PassKind::Incremental)
        .await
        .expect("first sync");
    assert!(!first.model_changed, "a first sync is no model change");
    assert!(!first.text().contains("model or its outputs changed"));
    settle().await;
    let quiet = bounded_pass(&crm, &old, &mut state, PassKind::Incremental)
        .await
        .expect("nothing changed");
    // Nothing to write (but for the rare record whose score the seconds
    // between passes moved: an event crossing a window's edge).
    assert!(quiet.written <= 3 && !quiet.model_changed, "{quiet:?}");
    // A revops edit: every point of the first rule plus one.
    let model_text = super::read("config/b2b.toml");
    let edited = bump_first_points(&model_text);
    let model_path = dir.path().join("b2b.toml");
    std::fs::write(&model_path, &edited).expect("model");
    let source = super::read("config/hubspot.toml").replace(
        "model = \"b2b.toml\"",
        &format!("model = {:?}", model_path.display().to_string()),
    );
    let token = dir.path().join("token");
    let source = source.replace(
        "token = { credential = \"hubspot-token\" }",
        &format!("token = {{ file = {:?} }}", token.display().to_string()),
    );
    let source = source.replace("[limits]\n", &format!("[limits]\n{FAST}\n"));
    let new = super::hubspot_flows::parse_connection(&source, &fake.url(), &dir);
    settle().await;
    let crm = Hubspot::new(&new).expect("connector");
    let dry = run_pass(
        &crm,
        &new,
        Some(
            &mut State::open_read_only(&dir.path().join("state.sqlite3"), &new.identity())
                .expect("opens")
                .expect("exists"),
        ),
        Pass {
            dry_run: true,
            ..pass(PassKind::Incremental)
        },
        &Stop::default(),
        |_| {},
    )
    .await
    .expect("dry run");
    assert!(dry.model_changed && dry.changed > 0, "{dry:?}");
    assert!(dry.text().contains("model or its outputs changed"));
    let report = bounded_pass(&crm, &new, &mut state, PassKind::Incremental)
        .await
        .expect("rescored");
    assert!(report.model_changed, "{report:?}");
    assert!(
        report.written.abs_diff(dry.changed) <= 3,
        "what the dry run promised: {} and {}",
        report.written,
        dry.changed
    );
    assert!(
        report.rescored >= 400,
        "stored records rescored: {}",
        report.rescored
    );
    settle().await;
    let after = bounded_pass(&crm, &new, &mut state, PassKind::Incremental)
        .await
        .expect("settled");
    assert!(after.written <= 3 && !after.model_changed, "{after:?}");
}

/// Waits until the fake's write clock (a millisecond per write, ahead of
/// the wall clock during a burst) and the one-second overlap are behind.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(2_500)).await;
}

/// The model text with the first `points = N` raised by one.
fn bump_first_points(model: &str) -> String {
    let at = model.find("points = ").expect("a rule with points") + "points = ".len();
    let end = at
        + model[at..]
            .find(|c: char| !c.is_ascii_digit() && c != '-')
            .expect("a number");
    let n: i64 = model[at..end].parse().expect("points");
    format!("{}{}{}", &model[..at], n + 1, &model[end..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn now_ahead_of_the_clock_never_moves_the_watermark_past_it() {
    let fake = super::daemon::fake(fake_config(200)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = connection(&fake.url(), FAST, &dir);
    let crm = Hubspot::new(&connection).expect("connector");
    let mut state = state_at(dir.path(), &connection);
    let tomorrow = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    run_pass(
        &crm,
        &connection,
        Some(&mut state),
        Pass {
            now: tomorrow,
            ..pass(PassKind::Incremental)
        },
        &Stop::default(),
        |_| {},
    )
    .await
    .expect("pass");
    let watermark = state.watermark().expect("watermark").expect("set");
    assert!(
        watermark <= jiff::Timestamp::now().as_millisecond(),
        "the watermark stays at the clock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_log_counts_what_a_budget_stopped_pass_wrote() {
    let fake = super::daemon::fake(fake_config(3_000)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = format!("{FAST}\ndaily = 45\ndaily_headroom_percent = 0");
    let connection = without_events(&fake.url(), &limits, &dir);
    let crm = Hubspot::new(&connection).expect("connector");
    let mut state = state_at(dir.path(), &connection);
    let error = run_logged(
        &crm,
        &connection,
        &mut state,
        pass(PassKind::Incremental),
        &Stop::default(),
        |_| {},
    )
    .await
    .expect_err("the budget runs out mid-pass");
    assert!(
        matches!(error, PassError::Crm(CrmError::BudgetExhausted { .. })),
        "{error}"
    );
    let log = state.runs(1).expect("runs");
    assert_eq!(log[0].outcome.as_deref(), Some("budget-exhausted"));
    assert!(
        log[0].written > 0 && log[0].pulled > 0,
        "{:?} {}",
        log[0],
        stats(&fake).await
    );
    assert!(log[0].calls > 0, "{:?}", log[0]);
}

#[test]
fn a_pass_past_its_progress_deadline_degrades_health() {
    use leadscored::daemon::service::Health;
    let now = jiff::Timestamp::now();
    let mut health = Health::new(now, Duration::from_secs(3600));
    let progress = leadscored::crm::http::Progress::default();
    progress.restart();
    health.progress = Some(progress.clone());
    health.running = true;
    assert!(health.reasons(now).is_empty(), "{:?}", health.reasons(now));
    let later = now + jiff::SignedDuration::from_secs(120);
    let reasons = health.reasons(later);
    assert!(reasons.iter().any(|r| r.contains("stuck")), "{reasons:?}");
    health.running = false;
    assert!(
        health.reasons(later).is_empty(),
        "an idle daemon is not stuck"
    );
}

#[test]
fn fake_crm_takes_fault_rates_and_refuses_bad_ones() {
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_leadscored"))
        .args(["fake-crm", "--faults", "5xx=2"])
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("between 0 and 1"));
    let mut faults = Faults::default();
    faults
        .apply_spec("429=0.1,5xx=0.05,reset=0.02,malformed=0.02,slow=0.05,writes=500")
        .expect("parses");
    assert_eq!(
        (faults.rate_429, faults.rate_5xx, faults.fail_writes),
        (0.1, 0.05, Some(500))
    );
    assert!(faults.apply_spec("lag=0.1").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_rehearsed_against_the_binaries_converge() {
    let port = free_port();
    let fake = super::cli::start_fake(
        &[
            "--contacts",
            "400",
            "--unlimited",
            "--portal-id",
            "31337",
            "--faults",
            "429=0.05,5xx=0.05,reset=0.02,malformed=0.02",
        ],
        port,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{port}");
    let path = write_connection(
        dir.path(),
        &url,
        &format!("{FAST}\nmax_attempts = 12"),
        "",
        "UTC",
    );
    std::fs::write(dir.path().join("token"), "pat-fake-local-token").expect("token");
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--connection", path.to_str().expect("utf-8")]);
        let output = if args[0] == "setup" {
            std::process::Command::new(env!("CARGO_BIN_EXE_leadscored"))
                .args(&all)
                .output()
        } else {
            leadscored(&all, dir.path()).output()
        }
        .expect("runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = run(&["setup"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, first, stderr) = run(&["sync", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(first.contains("written 400"), "{first}");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (code, second, stderr) = run(&["sync", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    let stats: serde_json::Value = reqwest::get(format!("{url}/__fake/stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats");
    super::cli::terminate(fake);
    let served = stats["faults"].as_object().expect("faults").values();
    assert!(
        served.filter_map(serde_json::Value::as_u64).sum::<u64>() > 5,
        "faults were served: {stats}"
    );
    assert!(second.contains("records need writes"), "{second}");
    let state = State::open_read_only(
        &dir.path().join("state/portal.sqlite3"),
        "hubspot http://127.0.0.1",
    )
    .expect("opens")
    .expect("exists");
    assert_eq!(
        state.portal().expect("portal").as_deref(),
        Some("HubSpot portal 31337")
    );
}

#[test]
fn score_into_a_pipe_closed_early_exits_quietly() {
    let input = super::read("fixtures/records/sample.jsonl").repeat(2_000);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_leadscored"))
        .args([
            "score",
            "--config",
            "config/b2b.toml",
            "--now",
            "2026-11-01T00:00:00Z",
        ])
        .current_dir(super::root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("score starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut stdin, input.as_bytes());
    });
    // `| head -1`: read one line, then close the pipe.
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("a line");
    assert!(line.starts_with('{'), "{line}");
    drop(stdout);
    let status = wait_with_timeout(&mut child, NO_HANG);
    let _ = feeder.join();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.is_empty(), "quietly: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_from_before_the_account_check_is_migrated_and_claimed() {
    let fake = super::daemon::fake(fake_config(200)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = connection(&fake.url(), FAST, &dir);
    let path = dir.path().join("state.sqlite3");
    // A schema-1 file, as the last release left it.
    {
        let db = rusqlite::Connection::open(&path).expect("creates");
        db.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE records (id TEXT PRIMARY KEY, seen_ms INTEGER NOT NULL,
                 inputs TEXT NOT NULL, written TEXT) WITHOUT ROWID;
             CREATE INDEX records_seen ON records (seen_ms);
             CREATE TABLE failed (id TEXT PRIMARY KEY, reason TEXT NOT NULL,
                 attempts INTEGER NOT NULL, first_ms INTEGER NOT NULL,
                 last_ms INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,
                 kind TEXT NOT NULL, started_ms INTEGER NOT NULL, ended_ms INTEGER,
                 outcome TEXT, pulled INTEGER NOT NULL DEFAULT 0,
                 changed INTEGER NOT NULL DEFAULT 0, written INTEGER NOT NULL DEFAULT 0,
                 failed INTEGER NOT NULL DEFAULT 0, calls INTEGER NOT NULL DEFAULT 0,
                 watermark_ms INTEGER, message TEXT);
             PRAGMA user_version = 1;",
        )
        .expect("schema 1");
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('identity', ?1)",
            [connection.identity()],
        )
        .expect("identity");
    }
    let mut state = State::open(&path, &connection.identity()).expect("migrates");
    assert_eq!(state.portal().expect("portal"), None);
    let crm = Hubspot::new(&connection).expect("connector");
    bounded_pass(&crm, &connection, &mut state, PassKind::Incremental)
        .await
        .expect("syncs");
    assert_eq!(
        state.portal().expect("portal").as_deref(),
        Some("HubSpot portal 40000011"),
        "the first account met is recorded"
    );
    let day = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::get("Europe/Oslo").expect("zone"))
        .date();
    assert!(state.calls_on(&day.to_string()).expect("budget") > 0);
    use std::os::unix::fs::PermissionsExt as _;
    let fresh = tempfile::tempdir().expect("temp dir");
    let new_path = fresh.path().join("new.sqlite3");
    drop(State::open(&new_path, "x").expect("creates"));
    for file in [new_path.clone(), fresh.path().join("new.sqlite3.lock")] {
        let mode = std::fs::metadata(&file)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}
