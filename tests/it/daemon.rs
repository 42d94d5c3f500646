//! The real binary as a child process against the fake HubSpot: kill -9 at
//! random points then a restart converges with nothing skipped; SIGTERM
//! mid-run stops cleanly and the next run resumes; SIGHUP with a broken
//! config keeps the old one, with a good one switches; a spent daily
//! budget makes the daemon wait without calls and resume after the reset.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leadscored::config::Connection;
use leadscored::crm::hubspot::Hubspot;
use leadscored::fake::{FakeHubspot, HubspotConfig, RunningFake, spawn_hubspot};
use leadscored::state::State;
use leadscored::sync::{Pass, PassKind, Stop, run_pass};

use super::hubspot_flows::{TOKEN, fake_config, stats};

pub(super) const FAST: &str = "per_ten_seconds = 10000\nsearch_per_second = 1000\nconcurrency = 4\nbackoff_base_ms = 5\nbackoff_max_secs = 0.2\nsearch_overlap_secs = 1";

/// A connection file for the fake at `url` in `dir`: the example model,
/// a token file, these `[limits]` lines and this `[daemon]` section.
pub(super) fn write_connection(
    dir: &Path,
    url: &str,
    limits: &str,
    daemon: &str,
    timezone: &str,
) -> PathBuf {
    let text = connection_text(dir, "token", TOKEN, url, limits, daemon, timezone);
    let path = dir.join("portal.toml");
    std::fs::write(&path, text).expect("connection file");
    path
}

/// The text of a connection file for the fake at `url` whose token
/// (written to `dir/token_file`) is `token`.
pub(super) fn connection_text(
    dir: &Path,
    token_file: &str,
    token_value: &str,
    url: &str,
    limits: &str,
    daemon: &str,
    timezone: &str,
) -> String {
    let token = dir.join(token_file);
    std::fs::write(&token, format!("{token_value}\n")).expect("token file");
    let model = crate::root().join("config/b2b.toml");
    let example = crate::read("config/hubspot.toml");
    let without_daemon = match example.find("\n# The daemon") {
        Some(at) => &example[..at],
        None => example.as_str(),
    };
    without_daemon
        .replace(
            "model = \"b2b.toml\"",
            &format!("model = {:?}", model.display().to_string()),
        )
        .replace(
            "token = { credential = \"hubspot-token\" }",
            &format!("token = {{ file = {:?} }}", token.display().to_string()),
        )
        .replace(
            "# base_url = \"https://api.hubapi.com\"",
            &format!("base_url = {url:?}"),
        )
        .replace(
            "timezone = \"Europe/Oslo\"",
            &format!("timezone = {timezone:?}"),
        )
        .replace("[limits]\n", &format!("[limits]\n{limits}\n"))
        + "\n[daemon]\n"
        + daemon
}

pub(super) fn leadscored(args: &[&str], dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadscored"));
    command
        .args(args)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("LEADSCORED_LOG_FORMAT", "journald")
        .env_remove("NOTIFY_SOCKET");
    command
}

/// `leadscored run` on `connection`, serving HTTP on `port`, logging to `log`.
pub(super) fn daemon_child(connection: &Path, port: u16, dir: &Path, log: &Path) -> Child {
    leadscored(
        &[
            "run",
            "--connection",
            connection.to_str().expect("utf-8"),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        dir,
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(log).expect("log file"))
    .spawn()
    .expect("daemon starts")
}

fn sync_child(connection: &Path, dir: &Path) -> Child {
    leadscored(
        &[
            "sync",
            "--once",
            "--connection",
            connection.to_str().expect("utf-8 path"),
        ],
        dir,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("leadscored starts")
}

pub(super) fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

pub(super) fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Records a fresh full pull would still change (0: every contact holds
/// exactly what the model computes now).
pub(super) async fn left_to_write(connection: &Connection) -> u64 {
    left_to_write_at(connection, jiff::Timestamp::now()).await
}

/// Records a fresh full pull would change when scored as of `now`.
async fn left_to_write_at(connection: &Connection, now: jiff::Timestamp) -> u64 {
    let crm = Hubspot::new(connection).expect("connector");
    let pass = Pass {
        kind: PassKind::Full,
        now,
        dry_run: true,
        since: None,
    };
    run_pass(&crm, connection, None, pass, &Stop::default(), |_| {})
        .await
        .expect("dry run")
        .changed
}

pub(super) async fn fake(config: HubspotConfig) -> RunningFake {
    let fake = spawn_hubspot(FakeHubspot::new(config))
        .await
        .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = super::hubspot_flows::connection(&fake.url(), FAST, &dir);
    use leadscored::crm::Crm as _;
    Hubspot::new(&connection)
        .expect("connector")
        .setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    fake
}

fn state_of(dir: &Path, connection: &Connection) -> State {
    State::open(&dir.join("state/portal.sqlite3"), &connection.identity()).expect("state opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_then_restart_converges() {
    let fake = fake(fake_config(1_000)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_connection(dir.path(), &fake.url(), FAST, "", "UTC");
    let connection = Connection::load(&path).expect("connection loads");
    let mut rng = fastrand::Rng::with_seed(20261124);
    let client = reqwest::Client::new();
    let mut completed = 0;
    let mut killed = 0;
    for round in 0..20 {
        // Mostly full passes (a pull with event detail for every contact),
        // so that most kills land mid-pass: during
        // the pull, the writes or the state's transactions.
        let mut args = vec![
            "sync",
            "--once",
            "--connection",
            path.to_str().expect("utf-8"),
        ];
        if round % 4 != 3 {
            args.push("--full");
        }
        let mut child = leadscored(&args, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("leadscored starts");
        // A pass got faster (about a third of a second here in the test
        // build): kill within that, or most rounds finish first.
        tokio::time::sleep(Duration::from_millis(rng.u64(20..350))).await;
        match child.try_wait().expect("wait") {
            Some(status) => {
                assert!(status.success(), "round {round}: {status}");
                completed += 1;
            }
            None => {
                child.kill().expect("SIGKILL");
                child.wait().expect("reaped");
                killed += 1;
            }
        }
        // Meanwhile people change in the CRM.
        let id = 1 + rng.u64(0..1_000);
        let answer = client
            .post(format!(
                "{}/crm/v3/objects/contacts/batch/update",
                fake.url()
            ))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({ "inputs": [
                { "id": id.to_string(), "properties": { "jobtitle": format!("VP Sales {round}") } }
            ] }))
            .send()
            .await
            .expect("fake answers");
        assert!(answer.status().is_success());
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // The final run rescores every stored record as of one moment, and the
    // check scores as of the same moment: scores that time alone moves
    // (windows, decay) between runs cannot look like a lost write.
    let at = jiff::Timestamp::now();
    let status = leadscored(
        &[
            "sync",
            "--once",
            "--rescore",
            "--now",
            &at.to_string(),
            "--connection",
            path.to_str().expect("utf-8 path"),
        ],
        dir.path(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()
    .expect("final run");
    assert!(status.success(), "the final run: {status}");
    assert_eq!(
        left_to_write_at(&connection, at).await,
        0,
        "every contact holds what a clean run computes ({completed} of 20 killed runs completed)"
    );
    let state = state_of(dir.path(), &connection);
    assert_eq!(state.count().expect("count"), 1_000, "no record skipped");
    assert!(state.failed().expect("failed").is_empty());
    eprintln!("killed {killed} of 20");
    assert!(killed >= 8, "most rounds were killed mid-run: {killed}");
    let runs = state.runs(30).expect("runs");
    assert!(
        runs.iter()
            .any(|r| r.outcome.as_deref() == Some("abandoned")),
        "killed runs are marked abandoned: {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_stops_cleanly_and_the_next_run_resumes() {
    let fake = fake(fake_config(1_000)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Slow: 15 calls per ten seconds, so the run (about 35 calls with
    // engagement read as streams) is surely mid-way.
    let slow = write_connection(
        dir.path(),
        &fake.url(),
        "per_ten_seconds = 15\nsearch_overlap_secs = 1",
        "",
        "UTC",
    );
    let mut child = leadscored(
        &[
            "sync",
            "--once",
            "--connection",
            slow.to_str().expect("utf-8"),
        ],
        dir.path(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("starts");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let sent = Instant::now();
    signal(&child, "TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(15));
    let stopped_in = sent.elapsed();
    assert_eq!(status.code(), Some(75), "stopped: try again later");
    assert!(stopped_in < Duration::from_secs(12), "{stopped_in:?}");
    let mut stderr = String::new();
    use std::io::Read as _;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr reads");
    assert!(stderr.contains("stopped"), "{stderr}");

    let connection = Connection::load(&slow).expect("loads");
    {
        let state = state_of(dir.path(), &connection);
        assert_eq!(state.watermark().expect("watermark"), None);
        let runs = state.runs(1).expect("runs");
        assert_eq!(runs[0].outcome.as_deref(), Some("stopped"), "{runs:?}");
    }
    let fast = write_connection(dir.path(), &fake.url(), FAST, "", "UTC");
    let status = sync_child(&fast, dir.path()).wait().expect("next run");
    assert!(status.success());
    let fast = Connection::load(&fast).expect("loads");
    assert_eq!(left_to_write(&fast).await, 0);
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port()
}

pub(super) async fn get(url: &str) -> Option<(u16, String)> {
    let answer = reqwest::get(url).await.ok()?;
    let status = answer.status().as_u16();
    Some((status, answer.text().await.ok()?))
}

pub(super) async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_a_good_config_and_switches_to_a_better_one() {
    let fake = fake(fake_config(600)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let daemon = "incremental = \"every 1s\"\nrescore = \"off\"\n";
    let path = write_connection(dir.path(), &fake.url(), FAST, daemon, "UTC");
    let log = dir.path().join("daemon.log");
    let mut child = daemon_child(&path, port, dir.path(), &log);
    let health = format!("http://127.0.0.1:{port}/healthz");
    eventually("a healthy first run", Duration::from_secs(30), || async {
        matches!(get(&health).await, Some((200, body)) if body.contains("\"last_outcome\":\"ok\""))
    })
    .await;
    let first = Connection::load(&path).expect("loads");
    assert_eq!(left_to_write(&first).await, 0);

    // A broken config: logged, not applied, the daemon keeps running.
    let good = std::fs::read_to_string(&path).expect("reads");
    std::fs::write(&path, good.replace("[crm]", "[crm]\nkind = 7\n")).expect("writes");
    signal(&child, "HUP");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually("the reload refusal", Duration::from_secs(10), || async {
        read_log().contains("not applied")
    })
    .await;
    assert!(
        read_log().contains("portal.toml"),
        "the error names the file"
    );
    assert!(matches!(get(&health).await, Some((200, _))));

    // A good new config: the score property now carries the fit score.
    let fit = good.replace("value = \"contact.total\"", "value = \"contact.fit\"");
    assert_ne!(fit, good);
    std::fs::write(&path, &fit).expect("writes");
    signal(&child, "HUP");
    eventually("the reload", Duration::from_secs(10), || async {
        read_log().contains("configuration reloaded")
    })
    .await;
    let second = Connection::load(&path).expect("loads");
    let mut converged = false;
    for _ in 0..100 {
        if left_to_write(&second).await == 0 {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(converged, "the daemon writes what the new config says");
    let metrics = get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .1;
    assert!(
        metrics.contains("leadscored_config_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("leadscored_records_written_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "leadscored_crm_requests_total{endpoint=\"contacts.batch.update\",status=\"200\"}"
        ),
        "{metrics}"
    );

    signal(&child, "TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", read_log());
    assert!(read_log().contains("stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_daily_budget_waits_without_calls_then_resumes() {
    let fake = fake(fake_config(1_000)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // An account zone whose midnight is 12 seconds away.
    let now = jiff::Timestamp::now();
    let of_day = now.as_second().rem_euclid(86_400);
    let mut offset = (86_400 - 12 - of_day).rem_euclid(86_400);
    if offset > 43_200 {
        offset -= 86_400;
    }
    let sign = if offset < 0 { '-' } else { '+' };
    let zone = format!(
        "UTC{sign}{:02}:{:02}:{:02}",
        offset.abs() / 3600,
        offset.abs() % 3600 / 60,
        offset.abs() % 60
    );
    let port = free_port();
    let path = write_connection(
        dir.path(),
        &fake.url(),
        &format!("{FAST}\ndaily = 40"),
        "incremental = \"every 1s\"\nrescore = \"off\"\n",
        &zone,
    );
    let text = std::fs::read_to_string(&path).expect("reads");
    std::fs::write(
        &path,
        text.replace("daily_headroom_percent = 20", "daily_headroom_percent = 0"),
    )
    .expect("writes");
    let used = |s: serde_json::Value| s["daily_used"].as_u64().unwrap_or(0);
    let baseline = used(stats(&fake).await);
    let log = dir.path().join("daemon.log");
    let mut child = daemon_child(&path, port, dir.path(), &log);
    let health = format!("http://127.0.0.1:{port}/healthz");
    let mut spent = false;
    for _ in 0..80 {
        if matches!(get(&health).await, Some((503, body)) if body.contains("budget")) {
            spent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        spent,
        "the budget runs out: {:?} {}",
        get(&health).await,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let before = used(stats(&fake).await);
    assert!(
        before - baseline <= 40,
        "at most the budget: {}",
        before - baseline
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        used(stats(&fake).await),
        before,
        "no calls while the budget is spent (scheduled runs skipped)"
    );
    eventually(
        "the run after the reset",
        Duration::from_secs(25),
        || async { used(stats(&fake).await) > before },
    )
    .await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log_text.contains("the daily budget is spent"), "{log_text}");
    assert!(log_text.contains("resuming"), "{log_text}");
    signal(&child, "TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notifications_and_json_logs() {
    use std::os::unix::net::UnixDatagram;
    let fake = fake(fake_config(300)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let path = write_connection(
        dir.path(),
        &fake.url(),
        FAST,
        "incremental = \"every 1h\"\nrescore = \"off\"\nlisten = \"off\"\n",
        "UTC",
    );
    let log = dir.path().join("daemon.log");
    let mut child = leadscored(
        &["run", "--connection", path.to_str().expect("utf-8")],
        dir.path(),
    )
    .env("NOTIFY_SOCKET", &socket_path)
    .env("WATCHDOG_USEC", "400000")
    .env("LEADSCORED_LOG_FORMAT", "json")
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).expect("log file"))
    .spawn()
    .expect("daemon starts");
    let mut seen: Vec<String> = Vec::new();
    let receive_until = |want: &str, seen: &mut Vec<String>| {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            let mut buffer = [0u8; 4096];
            if let Ok(n) = socket.recv(&mut buffer) {
                seen.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
            }
            if seen.iter().any(|m| m.contains(want)) {
                return;
            }
        }
        panic!("no {want:?} from the daemon; got {seen:?}");
    };
    receive_until("READY=1", &mut seen);
    receive_until("STATUS=last run incremental", &mut seen);
    receive_until("WATCHDOG=1", &mut seen);
    signal(&child, "HUP");
    receive_until("RELOADING=1", &mut seen);
    signal(&child, "TERM");
    receive_until("STOPPING=1", &mut seen);
    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let ready = seen.iter().position(|m| m.contains("READY=1"));
    let first_status = seen.iter().position(|m| m.contains("STATUS=last run"));
    assert!(ready < first_status, "READY comes first: {seen:?}");

    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "run finished" && l["span"]["run_id"].is_string()),
        "a run span with its id: {text}"
    );
    assert!(!text.contains(TOKEN), "no secret in the logs");
    assert!(!text.contains('@'), "no email addresses in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_a_pardot_connection_with_oauth_unchanged() {
    use leadscored::fake::{FakePardot, PardotConfig, spawn_pardot};
    let fake = spawn_pardot(FakePardot::new(PardotConfig {
        prospects: 400,
        daily: 1_000_000,
        faults: leadscored::fake::pardot::Faults {
            // Salesforce sessions that end: refreshed on Pardot's 401.
            token_ttl: Some(Duration::from_millis(1_500)),
            ..Default::default()
        },
        ..PardotConfig::default()
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let text =
        crate::pardot_flows::pardot_text(dir.path(), crate::pardot_flows::Login::RefreshToken)
            .replace(
                "model = \"b2b.toml\"",
                &format!(
                    "model = {:?}",
                    crate::root().join("config/b2b.toml").display().to_string()
                ),
            )
            .replace(
                "# base_url = \"https://pi.pardot.com\"",
                &format!("base_url = {:?}", fake.url()),
            )
            // A pass a second fits a budget of a million calls a day.
            .replace("[limits]\n", "[limits]\ndaily = 1000000\n")
            + "\n[daemon]\nincremental = \"every 1s\"\nrescore = \"off\"\n";
    let path = dir.path().join("pardot.toml");
    std::fs::write(&path, text).expect("connection file");
    let setup = Command::new(env!("CARGO_BIN_EXE_leadscored"))
        .args(["setup", "--connection", path.to_str().expect("utf-8")])
        .output()
        .expect("setup runs");
    assert!(
        setup.status.success(),
        "setup: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let port = free_port();
    let log = dir.path().join("daemon.log");
    let mut child = daemon_child(&path, port, dir.path(), &log);
    let health = format!("http://127.0.0.1:{port}/healthz");
    eventually("a healthy Pardot run", Duration::from_secs(30), || async {
        matches!(get(&health).await, Some((200, body)) if body.contains("\"last_outcome\":\"ok\""))
    })
    .await;
    // A few more scheduled passes, past an expired session or two.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(matches!(get(&health).await, Some((200, _))));
    signal(&child, "TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(15));
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{logged}");
    assert!(
        !logged.contains("fake-client-secret") && !logged.contains("fake-salesforce-refresh-token")
    );

    let stats = crate::pardot_flows::fake_json(&fake, "/__fake/stats").await;
    let refreshed = stats["requests"]["POST /services/oauth2/token refresh_token 200"]
        .as_u64()
        .unwrap_or(0);
    assert!(refreshed >= 2, "sessions renewed: {stats}");
    assert!(
        stats["max_in_flight"].as_u64().unwrap_or(99) <= 5,
        "{stats}"
    );
    let prospect = crate::pardot_flows::fake_json(&fake, "/__fake/prospects/123").await;
    assert!(
        prospect["values"]["leadscored_grade__c"].is_string(),
        "written: {prospect}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_and_grade_gauges_come_from_the_state_at_start_up() {
    let fake = fake(fake_config(300)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_connection(
        dir.path(),
        &fake.url(),
        FAST,
        "incremental = \"off\"\nrescore = \"off\"\n",
        "UTC",
    );
    let mut first = sync_child(&path, dir.path());
    assert!(wait_with_timeout(&mut first, Duration::from_secs(60)).success());
    let port = free_port();
    let log = dir.path().join("daemon.log");
    let mut child = daemon_child(&path, port, dir.path(), &log);
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    eventually(
        "the gauges, with no full pass in this process",
        Duration::from_secs(20),
        || async {
            get(&metrics).await.is_some_and(|(_, body)| {
                body.contains("leadscored_records{property=\"leadscored_tier\",value=\"high\"}")
                    && body.contains("leadscored_records{property=\"leadscored_grade\"")
            })
        },
    )
    .await;
    signal(&child, "TERM");
    assert!(wait_with_timeout(&mut child, Duration::from_secs(10)).success());
}
