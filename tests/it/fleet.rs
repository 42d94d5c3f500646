//! `leadscored run --connections DIR` as a child process against several
//! fake HubSpot portals behind one address: a portal answering 5xx never
//! delays the healthy ones, a file that does not load is reported and
//! skipped, `/healthz` and `/metrics` speak per connection, and SIGHUP
//! starts new files, stops removed ones and keeps the old version of a
//! file that broke.

use std::path::Path;
use std::time::Duration;

use leadscored::config::Connection;
use leadscored::crm::Crm as _;
use leadscored::crm::hubspot::Hubspot;
use leadscored::fake::portals::{portal_config, portal_token};
use leadscored::fake::{FakePortals, spawn_portals};

use super::daemon::{
    FAST, connection_text, eventually, free_port, get, leadscored, left_to_write, signal,
    wait_with_timeout,
};
use super::hubspot_flows::fake_config;

const DAEMON: &str = "incremental = \"every 1s\"\nrescore = \"off\"\n";

/// Writes connection `name` for portal `number` into `dir` and, unless the
/// portal only fails, creates its output properties.
async fn connect(dir: &Path, name: &str, number: usize, url: &str, setup: bool) -> Connection {
    connect_with(dir, name, number, url, DAEMON, setup).await
}

/// [`connect`] with this `[daemon]` section (and what follows it).
async fn connect_with(
    dir: &Path,
    name: &str,
    number: usize,
    url: &str,
    daemon: &str,
    setup: bool,
) -> Connection {
    let text = connection_text(
        dir,
        &format!("{name}.token"),
        &portal_token(number),
        url,
        FAST,
        daemon,
        "UTC",
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("connection file");
    let connection = Connection::load(&path).expect("connection loads");
    if setup {
        Hubspot::new(&connection)
            .expect("connector")
            .setup(&connection.property_specs(), true)
            .await
            .expect("setup");
    }
    connection
}

/// `leadscored run --connections dir` on `port` with these extra
/// arguments, logging to `log`.
fn fleet_child(
    dir: &Path,
    port: u16,
    work: &Path,
    log: &Path,
    extra: &[&str],
) -> std::process::Child {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "run",
        "--connections",
        dir.to_str().expect("utf-8"),
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    leadscored(&args, work)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("daemon starts")
}

/// [`DAEMON`] with `[state]` in the test PostgreSQL server, or `None`
/// (said on stderr) when no server is given.
fn shared_state(test: &str) -> Option<String> {
    let backend = super::state::Backend::postgres(test)?;
    let leadscored::config::StateStore::Postgres { url, .. } = backend.store() else {
        return None;
    };
    Some(format!(
        "{DAEMON}\n[state]\nurl = {url:?}\npassword = {{ env = \"LEADSCORED_TEST_POSTGRES_PASSWORD\" }}\n"
    ))
}

/// `(HTTP status, passes so far)` of one connection's `/healthz`.
async fn passes(port: u16, name: &str) -> Option<(u16, u64)> {
    let (status, body) = get(&format!("http://127.0.0.1:{port}/healthz/{name}")).await?;
    let body: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some((status, body["passes"].as_u64()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_run_apart_and_reload_one_by_one() {
    let base = fake_config(300);
    let mut failing = portal_config(&base, 1);
    failing.faults.apply_spec("5xx=1").expect("fault spec");
    let configs = vec![
        failing,
        portal_config(&base, 2),
        portal_config(&base, 3),
        portal_config(&base, 4),
    ];
    let portals = FakePortals::new(configs).expect("portals");
    let fake = spawn_portals(portals.clone()).await.expect("fake starts");
    let url = fake.url();
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("connections.d");
    std::fs::create_dir_all(&dir).expect("dir");
    connect(&dir, "portal-a", 1, &url, false).await;
    let b = connect(&dir, "portal-b", 2, &url, true).await;
    let c = connect(&dir, "portal-c", 3, &url, true).await;
    std::fs::write(dir.join("broken.toml"), "[crm]\nkind = 7\n").expect("broken file");
    let port = free_port();
    let log = work.path().join("daemon.log");
    let mut child = fleet_child(&dir, port, work.path(), &log, &["--parallel", "2"]);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // The healthy portals converge while the failing one fails.
    for name in ["portal-b", "portal-c"] {
        eventually(name, Duration::from_secs(60), || async {
            matches!(passes(port, name).await, Some((200, n)) if n >= 1)
        })
        .await;
    }
    assert_eq!(left_to_write(&b).await, 0);
    assert_eq!(left_to_write(&c).await, 0);
    assert!(work.path().join("state/portal-b.sqlite3").exists());

    // A failing portal never holds the others up: they keep to their
    // schedule of one pass a second.
    let before = passes(port, "portal-b").await.expect("health").1;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = passes(port, "portal-b").await.expect("health").1;
    assert!(
        after >= before + 2,
        "portal-b ran {before} → {after} passes in 4 s"
    );
    let (_, body) = get(&format!("http://127.0.0.1:{port}/healthz/portal-a"))
        .await
        .expect("healthz");
    let failing: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(failing["last_outcome"], "crm-error", "{body}");
    assert!(failing["passes"].as_u64() >= Some(1), "{body}");

    // Overall health names what is wrong (a failing pass degrades its
    // connection only once it is stale, as with one connection); each
    // connection answers alone.
    let (status, body) = get(&format!("http://127.0.0.1:{port}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("1 of 4 connections degraded: broken"),
        "{body}"
    );
    let (status, body) = get(&format!("http://127.0.0.1:{port}/healthz/broken"))
        .await
        .expect("healthz");
    assert_eq!(status, 503);
    assert!(body.contains("connection file not loaded"), "{body}");
    assert!(body.contains("broken.toml"), "{body}");
    let metrics = get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .1;
    for wanted in [
        "leadscored_runs_total{kind=\"incremental\",outcome=\"ok\",connection=\"portal-b\"}",
        "leadscored_runs_total{kind=\"incremental\",outcome=\"crm-error\",connection=\"portal-a\"}",
        "leadscored_crm_requests_total{endpoint=\"contacts.batch.update\",status=\"200\",connection=\"portal-c\"}",
        "leadscored_connections 3",
        "leadscored_connections_not_loaded 1",
    ] {
        assert!(metrics.contains(wanted), "{wanted} in\n{metrics}");
    }
    assert!(
        portals
            .portal(1)
            .expect("portal 1")
            .property(1, "leadscored_score")
            .is_none(),
        "nothing was written to the failing portal"
    );

    // SIGHUP: the broken file becomes a good one (portal 4), portal-c's
    // file goes, portal-b's file breaks, and a second file for portal-b's
    // portal appears (it runs no pass once its portal is known).
    let d = connect(&dir, "broken", 4, &url, true).await;
    connect(&dir, "twin", 2, &url, false).await;
    std::fs::remove_file(dir.join("portal-c.toml")).expect("remove");
    let good_b = std::fs::read_to_string(dir.join("portal-b.toml")).expect("reads");
    std::fs::write(
        dir.join("portal-b.toml"),
        good_b.replace("[crm]", "[crm]\nkind = 7\n"),
    )
    .expect("writes");
    signal(&child, "HUP");
    eventually("the new connection", Duration::from_secs(60), || async {
        matches!(passes(port, "broken").await, Some((200, n)) if n >= 1)
    })
    .await;
    assert_eq!(left_to_write(&d).await, 0);
    eventually("portal-c stopped", Duration::from_secs(20), || async {
        matches!(
            get(&format!("http://127.0.0.1:{port}/healthz/portal-c")).await,
            Some((404, _))
        )
    })
    .await;
    eventually("portal-b's refusal", Duration::from_secs(20), || async {
        read_log().contains("not applied")
    })
    .await;
    assert!(
        read_log().contains("portal-b.toml"),
        "the refusal names the file"
    );
    eventually("the twin's refusal", Duration::from_secs(20), || async {
        matches!(get(&format!("http://127.0.0.1:{port}/healthz/twin")).await,
            Some((503, body)) if body.contains("already worked by connection portal-b"))
    })
    .await;
    let twin = passes(port, "twin").await.expect("health").1;
    let before = passes(port, "portal-b").await.expect("health").1;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, after) = passes(port, "portal-b").await.expect("health");
    assert_eq!(status, 200, "portal-b keeps its old configuration");
    assert!(after > before, "portal-b keeps running");
    assert_eq!(
        passes(port, "twin").await.expect("health").1,
        twin,
        "the twin runs no pass"
    );

    signal(&child, "TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    assert!(status.success(), "{status}: {}", read_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_takes_its_own_webhooks() {
    use leadscored::fake::hubspot::webhooks::FakeWebhooks;
    const SECRET: &str = "fleet-app-secret";
    let port = free_port();
    let base = fake_config(200);
    let mut configs = Vec::new();
    for (number, name) in [(1, "portal-a"), (2, "portal-b")] {
        let mut config = portal_config(&base, number);
        let url = format!("http://127.0.0.1:{port}/webhooks/hubspot/{name}");
        let mut hooks = FakeWebhooks::new(&url, SECRET).expect("loopback URL");
        hooks.retry_base = Duration::from_millis(200);
        config.webhooks = Some(hooks);
        configs.push(config);
    }
    let fake = spawn_portals(FakePortals::new(configs).expect("portals"))
        .await
        .expect("fake starts");
    let url = fake.url();
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("connections.d");
    std::fs::create_dir_all(&dir).expect("dir");
    let secret = work.path().join("app-secret");
    std::fs::write(&secret, SECRET).expect("secret");
    let mut connections = Vec::new();
    for (number, name) in [(1, "portal-a"), (2, "portal-b")] {
        let daemon = format!(
            "incremental = \"every 1h\"\nrescore = \"off\"\n\n[webhooks]\nurl = \"http://127.0.0.1:{port}/webhooks/hubspot/{name}\"\nsecret = {{ file = {:?} }}\ngather_ms = 200\n",
            secret.display().to_string()
        );
        let connection = connect_with(&dir, name, number, &url, &daemon, true).await;
        connections.push(connection);
    }
    let log = work.path().join("daemon.log");
    let mut child = fleet_child(&dir, port, work.path(), &log, &[]);
    for name in ["portal-a", "portal-b"] {
        eventually(name, Duration::from_secs(60), || async {
            matches!(passes(port, name).await, Some((200, n)) if n >= 1)
        })
        .await;
    }

    // Someone edits contacts in portal 2 only: portal-b's webhook passes
    // score them; portal-a runs no webhook pass.
    let client = reqwest::Client::new();
    for id in [5, 17, 41] {
        let answer = client
            .post(format!("{url}/__fake/contacts/{id}"))
            .header(leadscored::fake::portals::PORTAL_HEADER, "2")
            .json(&serde_json::json!({ "properties": { "jobtitle": "CEO and founder" } }))
            .send()
            .await
            .expect("edit");
        assert!(answer.status().is_success());
    }
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    eventually("portal-b's webhook pass", Duration::from_secs(20), || async {
        get(&metrics_url).await.is_some_and(|(_, m)| {
            m.contains("leadscored_runs_total{kind=\"webhook\",outcome=\"ok\",connection=\"portal-b\"}")
        })
    })
    .await;
    assert_eq!(left_to_write(&connections[1]).await, 0);
    let metrics = get(&metrics_url).await.expect("metrics").1;
    assert!(
        !metrics.contains("kind=\"webhook\",outcome=\"ok\",connection=\"portal-a\""),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "leadscored_webhook_deliveries_total{outcome=\"accepted\",connection=\"portal-b\"}"
        ),
        "{metrics}"
    );
    signal(&child, "TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_tells_portals_apart_by_token() {
    let base = fake_config(50);
    let portals = FakePortals::numbered(&base, 3);
    let fake = spawn_portals(portals.clone()).await.expect("fake starts");
    let client = reqwest::Client::new();
    let details = |token: &str| {
        client
            .get(format!("{}/account-info/v3/details", fake.url()))
            .bearer_auth(token)
            .send()
    };
    // Each token is its own portal, with its own id.
    let mut ids = Vec::new();
    for number in 1..=3 {
        let answer = details(&portal_token(number)).await.expect("answers");
        assert_eq!(answer.status(), 200);
        let body: serde_json::Value = answer.json().await.expect("json");
        ids.push(body["portalId"].as_u64().expect("a portal id"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "three portals, three ids: {ids:?}");
    // An unknown token gets HubSpot's 401 body.
    let answer = details("pat-nobody").await.expect("answers");
    assert_eq!(answer.status(), 401);
    let body: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(body["category"], "INVALID_AUTHENTICATION");
    assert_eq!(body["status"], "error");
    // The portal header picks a portal on the fake's own routes only.
    let stats = client
        .get(format!("{}/__fake/stats", fake.url()))
        .header(leadscored::fake::portals::PORTAL_HEADER, "2")
        .send()
        .await
        .expect("answers");
    assert_eq!(stats.status(), 200);
    let answer = client
        .get(format!("{}/account-info/v3/details", fake.url()))
        .header(leadscored::fake::portals::PORTAL_HEADER, "2")
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 401, "the header is no credential");
    // A write to one portal is not seen in another.
    let answer = client
        .post(format!("{}/__fake/contacts/3", fake.url()))
        .bearer_auth(portal_token(1))
        .json(&serde_json::json!({ "properties": { "jobtitle": "Chief of portal one" } }))
        .send()
        .await
        .expect("edit");
    assert!(answer.status().is_success());
    let one = portals.portal(1).expect("portal 1").property(3, "jobtitle");
    let two = portals.portal(2).expect("portal 2").property(3, "jobtitle");
    assert_eq!(one.as_deref(), Some("Chief of portal one"));
    assert_ne!(two.as_deref(), Some("Chief of portal one"));
}

/// Which of `ports`' instances works connection `name` now, and its passes.
async fn owner(ports: &[u16], name: &str) -> Option<(usize, u64)> {
    for (index, port) in ports.iter().enumerate() {
        let Some((200, body)) = get(&format!("http://127.0.0.1:{port}/healthz/{name}")).await
        else {
            continue;
        };
        let body: serde_json::Value = serde_json::from_str(&body).ok()?;
        if body["status"] == "ok" {
            return Some((index, body["passes"].as_u64().unwrap_or(0)));
        }
    }
    None
}

/// The process id in a leadscored User-Agent.
fn pid_of(agent: &str) -> Option<u32> {
    agent
        .split("pid ")
        .nth(1)?
        .trim_end_matches(')')
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_twenty_portals_and_take_over_a_killed_ones() {
    let Some(shared) = shared_state("failover") else {
        return;
    };
    const PORTALS: usize = 20;
    let base = fake_config(200);
    let portals = FakePortals::new((1..=PORTALS).map(|n| portal_config(&base, n)).collect())
        .expect("portals");
    let fake = spawn_portals(portals.clone()).await.expect("fake starts");
    let url = fake.url();
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("connections.d");
    std::fs::create_dir_all(&dir).expect("dir");
    // Names of this run only: the database outlives it.
    let run = format!(
        "fo{}x{}",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    );
    let mut connections = Vec::new();
    for n in 1..=PORTALS {
        let name = format!("{run}-{n:02}");
        let connection = connect_with(&dir, &name, n, &url, &shared, true).await;
        connections.push((name, n, connection));
    }
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut children: Vec<std::process::Child> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let home = work.path().join(format!("instance-{i}"));
            std::fs::create_dir_all(&home).expect("home");
            fleet_child(&dir, *port, &home, &home.join("daemon.log"), &[])
        })
        .collect();
    let pids: Vec<u32> = children.iter().map(std::process::Child::id).collect();

    // Every portal is claimed by one instance, and the three share them
    // (an instance that counted fewer instances at first lets go of what
    // is over its share once it sees them all).
    let held = || async {
        let mut held = [0usize; 3];
        for (name, ..) in &connections {
            match owner(&ports, name).await {
                Some((index, _)) => held[index] += 1,
                None => return None,
            }
        }
        Some(held)
    };
    eventually(
        "every portal claimed, at most 7 each",
        Duration::from_secs(90),
        || async {
            held()
                .await
                .is_some_and(|h| h.iter().all(|n| (1..=7).contains(n)))
        },
    )
    .await;
    let held = held().await.expect("all claimed");
    // Kill -9 the instance holding most, as soon as it is writing.
    let victim = (0..3).max_by_key(|i| held[*i]).expect("an instance");
    let victim_pid = pids[victim];
    let orphans: Vec<String> = {
        let mut out = Vec::new();
        for (name, ..) in &connections {
            if owner(&ports, name).await.map(|o| o.0) == Some(victim) {
                out.push(name.clone());
            }
        }
        out
    };
    eventually("the victim writing", Duration::from_secs(60), || async {
        (1..=PORTALS).any(|n| {
            portals
                .portal(n)
                .expect("portal")
                .write_log()
                .iter()
                .any(|w| pid_of(&w.agent) == Some(victim_pid))
        })
    })
    .await;
    children[victim].kill().expect("kill -9");
    let _ = children[victim].wait();
    let killed_at = std::time::Instant::now();
    let killed_ms = jiff::Timestamp::now().as_millisecond();

    // The survivors take each of its portals over and run a pass on it.
    let survivors: Vec<u16> = (0..3).filter(|i| *i != victim).map(|i| ports[i]).collect();
    eventually(
        "the orphans taken over",
        Duration::from_secs(60),
        || async {
            for name in &orphans {
                if !matches!(owner(&survivors, name).await, Some((_, n)) if n >= 1) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let failover = killed_at.elapsed();
    eprintln!(
        "failover: {} portals of the killed instance taken over and passed in {:.1} s",
        orphans.len(),
        failover.as_secs_f64()
    );
    // Claims are looked for every 2 s; the sessions of a killed process
    // end at once, so its locks are free at once.
    assert!(
        failover < Duration::from_secs(20),
        "failover took {failover:?}"
    );

    // Every portal converges to what the model computes.
    for (name, _, connection) in &connections {
        eventually(name, Duration::from_secs(90), || async {
            left_to_write(connection).await == 0
        })
        .await;
    }

    // Each portal's writes came from one instance at a time: the owners
    // in the write log never go back to an earlier one, and the killed
    // one wrote nothing after it died (a write in flight may land just
    // after).
    for (name, n, _) in &connections {
        let log = portals.portal(*n).expect("portal").write_log();
        let mut owners: Vec<u32> = Vec::new();
        for entry in &log {
            let pid = pid_of(&entry.agent).expect("leadscored's agent names its pid");
            assert!(pids.contains(&pid), "{pid} is one of the instances");
            if pid == victim_pid {
                assert!(
                    entry.at_ms <= killed_ms + 1_000,
                    "{name}: the killed instance wrote {} ms after it died",
                    entry.at_ms - killed_ms
                );
            }
            if owners.last() != Some(&pid) {
                assert!(
                    !owners.contains(&pid),
                    "{name}: writes went back to instance {pid} after another wrote: {owners:?}"
                );
                owners.push(pid);
            }
        }
        assert!(!owners.is_empty(), "{name} was written to");
    }

    for (i, child) in children.iter_mut().enumerate() {
        if i != victim {
            signal(child, "TERM");
            let status = wait_with_timeout(child, Duration::from_secs(30));
            assert!(status.success(), "instance {i} stops cleanly");
        }
    }
}

/// `run --connection FILE` with its state in PostgreSQL: when another
/// instance claims the connection behind its back (its fencing token
/// raised), the daemon's next write is refused and it exits 75, which
/// systemd's `Restart=on-failure` restarts, rather than 0, which it would
/// not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_connection_daemon_that_loses_its_claim_exits_75() {
    let Some(shared) = shared_state("single_lost_claim") else {
        return;
    };
    let db_url = std::env::var("LEADSCORED_TEST_POSTGRES").unwrap_or_default();
    let base = fake_config(50);
    let portals = FakePortals::new(vec![portal_config(&base, 1)]).expect("portals");
    let fake = spawn_portals(portals.clone()).await.expect("fake starts");
    let work = tempfile::tempdir().expect("temp dir");
    let name = format!(
        "lost{}x{}",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    );
    connect_with(work.path(), &name, 1, &fake.url(), &shared, true).await;
    let port = free_port();
    let log = work.path().join("daemon.log");
    let mut child = super::daemon::daemon_child(
        &work.path().join(format!("{name}.toml")),
        port,
        work.path(),
        &log,
    );
    eventually("a first pass", Duration::from_secs(60), || async {
        let Some((_, body)) = get(&format!("http://127.0.0.1:{port}/healthz")).await else {
            return false;
        };
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|b| b["passes"].as_u64())
            .is_some_and(|n| n >= 1)
    })
    .await;
    let (url, claimed) = (db_url.clone(), name.clone());
    tokio::task::spawn_blocking(move || {
        super::state::raw_client(&url)
            .execute(
                "UPDATE leadscored.connections SET token = token + 1 WHERE name = $1",
                &[&claimed],
            )
            .expect("raises the token")
    })
    .await
    .expect("joins");
    let status =
        tokio::task::spawn_blocking(move || wait_with_timeout(&mut child, Duration::from_secs(60)))
            .await
            .expect("joins");
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(75), "{log}");
    assert!(log.contains("claim"), "{log}");
}
