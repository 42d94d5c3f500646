//! The binary as users run it: exit codes, error lines, streaming order.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::{read, root};

const NOW: &str = "2026-11-01T00:00:00Z";

fn leadscored(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadscored"))
        .args(args)
        .current_dir(root())
        .env_remove("LEADSCORED_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("the binary finishes")
}

fn check_config_at(path: &std::path::Path) -> Output {
    leadscored(
        &[
            "check-config",
            "--config",
            path.to_str().expect("utf-8 path"),
        ],
        None,
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn demo_runs_on_embedded_defaults() {
    let out = leadscored(&["demo", "--contacts", "400"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for part in [
        "with 400 generated contacts",
        "1. setup: 6 properties created",
        "2. first sync (everything): pulled 400 contacts",
        "wrote 400 contacts",
        "4. incremental sync: pulled",
        "Tiers after the first sync",
        "The top contact (HubSpot id",
        "The lowest contact (HubSpot id",
        "what moved: ",
        "leadscored sync --once --dry-run --connection /tmp/leadscored-fake.toml",
    ] {
        assert!(shown.contains(part), "{part:?} in {shown}");
    }
    // Ladder order, best first: High above Medium above Low, A+ above F.
    let at = |needle: &str| shown.find(needle).unwrap_or(usize::MAX);
    assert!(at("\n  high ") < at("\n  medium ") && at("\n  medium ") < at("\n  low "));
    assert!(at("\n  A+ ") < at("\n  B ") && at("\n  B ") < at("\n  F "));
    // The same three people on every run.
    let again = text(&leadscored(&["demo", "--contacts", "400"], None).stdout);
    let picks = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.ends_with("explained:"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(picks(&shown), picks(&again));
    let pardot = leadscored(&["demo", "--crm", "pardot", "--contacts", "300"], None);
    assert_eq!(pardot.status.code(), Some(0), "{}", text(&pardot.stderr));
    let shown = text(&pardot.stdout);
    for part in [
        "a fake Pardot account",
        "1. setup: 5 properties created",
        "pulled 300 prospects",
        "wrote 300 prospects",
        "The top contact (Pardot id",
    ] {
        assert!(shown.contains(part), "{part:?} in {shown}");
    }
    let offline = leadscored(&["demo", "--offline"], None);
    assert_eq!(offline.status.code(), Some(0), "{}", text(&offline.stderr));
    assert!(text(&offline.stdout).contains("12 sample contacts"));
}

#[test]
fn check_config_exit_codes() {
    let ok = leadscored(&["check-config", "--config", "config/b2b.toml"], None);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).ends_with("config ok\n"));

    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[[score]]\nname = \"s\"\ncap = \"high\"\n").expect("write");
    let out = check_config_at(&broken);
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("broken.toml:3:7: invalid type: string \"high\", expected a number"),
        "{stderr}"
    );
    assert!(
        stderr.contains("broken.toml:1:1: score has no [[score.group]]"),
        "{stderr}"
    );

    let missing = leadscored(&["check-config", "--config", "config/nope.toml"], None);
    assert_eq!(missing.status.code(), Some(78));
    assert!(text(&missing.stderr).contains("cannot read config config/nope.toml"));

    let failing = read("config/minimal.toml").replace("total = 50", "total = 51");
    let path = dir.path().join("failing.toml");
    std::fs::write(&path, failing).expect("write");
    let out = check_config_at(&path);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stdout).contains("lead.total: expected 51, got 50"),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stderr).contains("1 of 1 embedded test cases failed"));
}

#[test]
fn score_streams_and_reports_bad_lines_by_number() {
    let input = "{\"id\":\"a\"}\n\nnot json\n{\"id\":\"b\",\"events\":[{\"type\":\"page_view\",\"at\":\"never\"}]}\n{\"id\":\"c\"}\n";
    let out = leadscored(
        &["score", "--config", "config/minimal.toml", "--now", NOW],
        Some(input),
    );
    assert_eq!(out.status.code(), Some(65));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every output line is JSON"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["id"], "a");
    assert_eq!(lines[1]["line"], 3);
    assert!(
        lines[1]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid JSON"))
    );
    assert_eq!(lines[2]["line"], 4);
    assert_eq!(
        lines[2]["error"],
        "events[0].at: \"never\" is not an RFC 3339 timestamp (column 53)"
    );
    assert_eq!(lines[3]["id"], "c");
    assert!(text(&out.stderr).contains("2 of 4 lines could not be scored"));
}

#[test]
fn score_keeps_input_order_across_batches_and_threads() {
    let sample = read("fixtures/records/sample.jsonl");
    let mut input = String::new();
    for round in 0..700 {
        for line in sample.lines() {
            input.push_str(&line.replacen("\"id\": \"c-", &format!("\"id\": \"{round}-c-"), 1));
            input.push('\n');
        }
    }
    let path = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(path.path(), &input).expect("write");
    let file = path.path().to_str().expect("utf-8 path");
    let [one, two] = ["1", "2"].map(|threads| {
        let args = [
            "score",
            "--config",
            "config/b2b.toml",
            "--now",
            NOW,
            "--input",
            file,
            "--threads",
            threads,
        ];
        leadscored(&args, None)
    });
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stderr));
    assert_eq!(two.status.code(), Some(0));
    assert_eq!(one.stdout, two.stdout);
    let ids: Vec<String> = text(&two.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 700 * 12);
    assert_eq!(ids[0], "0-c-1001");
    assert_eq!(ids[8399], "699-c-1012");
}

#[test]
fn explain_finds_the_record_or_says_it_is_missing() {
    let out = leadscored(
        &[
            "explain",
            "--config",
            "config/b2b.toml",
            "--input",
            "fixtures/records/sample.jsonl",
            "--id",
            "c-1004",
            "--now",
            NOW,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Record c-1004 scored with model \"Acme B2B\""));
    let out = leadscored(
        &[
            "explain",
            "--config",
            "config/b2b.toml",
            "--input",
            "fixtures/records/sample.jsonl",
            "--id",
            "nobody",
            "--now",
            NOW,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(65));
    assert!(text(&out.stderr).contains("no record with id \"nobody\""));
    let out = leadscored(
        &[
            "explain",
            "--config",
            "config/b2b.toml",
            "--input",
            "missing.jsonl",
            "--id",
            "x",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(66));
}

/// A free loopback port (bound and released; the fake binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `leadscored fake-crm` and waits until it answers.
pub(super) fn start_fake(args: &[&str], port: u16) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadscored"))
        .arg("fake-crm")
        .args(args)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("fake-crm starts");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("fake-crm did not start listening");
}

/// Stops a child with SIGTERM, as systemd or a shell would.
pub(super) fn terminate(mut child: std::process::Child) {
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    let status = child.wait().expect("fake-crm exits");
    assert!(
        status.success(),
        "fake-crm exits cleanly on SIGTERM: {status}"
    );
}

#[test]
fn fake_crm_keeps_writes_in_its_state_file_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("pardot-state.json");
    let state_arg = state.to_str().expect("utf-8 path");
    let args = ["--kind", "pardot", "--contacts", "20", "--state", state_arg];
    let defaults = leadscored::fake::PardotConfig::default();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let call = |port: u16, method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut request = reqwest::Client::new()
            .request(method, format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(&defaults.token)
            .header("Pardot-Business-Unit-Id", &defaults.business_unit_id);
        if let Some(body) = body {
            request = request.json(&body);
        }
        runtime.block_on(async {
            let response = request.send().await.expect("reply");
            response.json::<serde_json::Value>().await.expect("json")
        })
    };

    let port = free_port();
    let fake = start_fake(&args, port);
    call(
        port,
        reqwest::Method::POST,
        "/api/v5/objects/custom-fields",
        Some(serde_json::json!({"name": "Score", "fieldId": "LS_Score", "type": "Number"})),
    );
    call(
        port,
        reqwest::Method::PATCH,
        "/api/v5/objects/prospects/3",
        Some(serde_json::json!({"LS_Score__c": 64})),
    );
    terminate(fake);
    assert!(state.exists(), "saved at shutdown");

    let port = free_port();
    let fake = start_fake(&args, port);
    let read = call(
        port,
        reqwest::Method::GET,
        "/api/v5/objects/prospects/3?fields=LS_Score__c",
        None,
    );
    terminate(fake);
    assert_eq!(read["LS_Score__c"], 64);

    let port = free_port();
    let refused = Command::new(env!("CARGO_BIN_EXE_leadscored"))
        .args(["fake-crm", "--kind", "hubspot", "--state", state_arg])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .output()
        .expect("runs");
    assert!(!refused.status.success(), "another fake's state is refused");
    assert!(
        text(&refused.stderr).contains("pardot"),
        "{}",
        text(&refused.stderr)
    );
}

/// A page that needs nothing but itself: no script, nothing fetched, and
/// every chart closed.
fn assert_self_contained(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script"), "no script");
    for fetch in ["src=", "href=", "url(", "@import"] {
        assert!(!html.contains(fetch), "nothing fetched: {fetch}");
    }
    assert!(html.matches("<svg").count() >= 3);
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
}

/// Backtest and diff reports stay the same, figure for figure, as the
/// reports the earlier collector (every total kept as an `f64`, sorted
/// copies for the ranking measures) wrote for the same records. The
/// fixtures hold that collector's output; the models cover whole and
/// fractional totals (precision 0, 1 and 2, decay) with many ties at
/// the decile cuts.
#[test]
fn backtest_and_diff_reports_match_the_earlier_collector_figure_for_figure() {
    let generated = leadscored(&["generate", "--records", "4000", "--seed", "11"], None);
    assert!(generated.status.success());
    let records = text(&generated.stdout);
    let cases: [(&[&str], &str); 3] = [
        (
            &["backtest", "--config", "config/b2b.toml"],
            "fixtures/evaluate/backtest-b2b.json",
        ),
        (
            &[
                "backtest",
                "--config",
                "fixtures/evaluate/minimal-precision-2.toml",
            ],
            "fixtures/evaluate/backtest-minimal-precision-2.json",
        ),
        (
            &[
                "diff",
                "--config",
                "config/b2b.toml",
                "--config",
                "fixtures/evaluate/b2b-precision-1.toml",
            ],
            "fixtures/evaluate/diff-b2b-precision-1.json",
        ),
    ];
    for (command, expected) in cases {
        let mut args = command.to_vec();
        args.extend(["--input", "-", "--now", NOW, "--json"]);
        let out = leadscored(&args, Some(&records));
        assert!(out.status.success(), "{command:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout) == read(expected),
            "{command:?} differs from {expected}"
        );
    }
}

#[test]
fn generate_backtest_calibrate_and_diff_from_the_command_line() {
    let generated = leadscored(&["generate", "--records", "3000", "--seed", "4"], None);
    assert!(generated.status.success());
    let records = text(&generated.stdout);
    assert_eq!(records.lines().count(), 3000);
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("people.jsonl");
    std::fs::write(&input, &records).expect("write");
    let input = input.to_str().expect("utf-8");

    let report = leadscored(
        &[
            "backtest",
            "--config",
            "config/b2b.toml",
            "--input",
            "-",
            "--now",
            NOW,
            "--json",
        ],
        Some(&records),
    );
    assert!(report.status.success(), "{}", text(&report.stderr));
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).expect("json");
    assert_eq!(json["records"], 3000);
    assert!(json["scores"][0]["auc"].as_f64().expect("auc") > 0.6);

    // The same report as a page: self-contained, charts as SVG.
    let page = dir.path().join("backtest.html");
    let paged = leadscored(
        &[
            "backtest",
            "--config",
            "config/b2b.toml",
            "--input",
            input,
            "--now",
            NOW,
            "--html",
            page.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(paged.status.success(), "{}", text(&paged.stderr));
    let html = std::fs::read_to_string(&page).expect("page written");
    assert_self_contained(&html);
    for part in [
        "aria-label=\"ROC curve\"",
        "Lift and capture by tenth",
        "Conversion by tier",
        "Conversion by grade",
        "Conversion by stage",
        "Decision maker",
    ] {
        assert!(html.contains(part), "{part} in the page");
    }

    // Calibrate reads standard input twice (fit, then judge): it is kept.
    let proposal = dir.path().join("proposed.toml");
    let calibrated = leadscored(
        &[
            "calibrate",
            "--config",
            "config/b2b.toml",
            "--input",
            "-",
            "--now",
            NOW,
            "--write",
            proposal.to_str().expect("utf-8"),
        ],
        Some(&records),
    );
    assert!(calibrated.status.success(), "{}", text(&calibrated.stderr));
    let shown = text(&calibrated.stdout);
    assert!(
        shown.contains("held-out ROC AUC, scored as `score` scores them"),
        "{shown}"
    );
    assert!(
        shown.contains("judged on ") && !shown.contains("judged on 0 held out"),
        "{shown}"
    );

    let compared = leadscored(
        &[
            "diff",
            "--config",
            "config/b2b.toml",
            "--config",
            proposal.to_str().expect("utf-8"),
            "--input",
            input,
            "--now",
            NOW,
            "--html",
            page.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(compared.status.success(), "{}", text(&compared.stderr));
    let shown = text(&compared.stdout);
    assert!(shown.contains("tier moves for \"contact\""));
    assert!(
        shown.contains("conversion by tier for \"contact\" (old → new)"),
        "{shown}"
    );
    let html = std::fs::read_to_string(&page).expect("page written");
    assert_self_contained(&html);
    for part in [
        "ROC curves",
        "Tier transitions:",
        "old ↓ · new →",
        "proposed.toml",
    ] {
        assert!(html.contains(part), "{part} in the diff page");
    }

    let one = leadscored(
        &["diff", "--config", "config/b2b.toml", "--input", input],
        None,
    );
    assert_eq!(one.status.code(), Some(65), "diff needs two models");
}

#[test]
fn setup_and_a_dry_run_sync_against_the_fake_crm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("token");
    std::fs::write(&token, leadscored::fake::HubspotConfig::default().token).expect("token");
    let connection = dir.path().join("hubspot.toml");
    let source = read("config/hubspot.toml")
        .replace(
            "model = \"b2b.toml\"",
            &format!(
                "model = {:?}",
                root().join("config/b2b.toml").display().to_string()
            ),
        )
        .replace(
            "token = { credential = \"hubspot-token\" }",
            &format!("token = {{ file = {:?} }}", token.display().to_string()),
        );
    std::fs::write(&connection, source).expect("connection");
    let connection = connection.to_str().expect("utf-8");
    let port = free_port();
    let fake = start_fake(&["--kind", "hubspot", "--contacts", "40"], port);
    let url = format!("http://127.0.0.1:{port}");
    let check = leadscored(
        &[
            "setup",
            "--connection",
            connection,
            "--crm-url",
            &url,
            "--check",
        ],
        None,
    );
    assert_eq!(
        check.status.code(),
        Some(78),
        "properties are missing at first"
    );
    let setup = leadscored(
        &["setup", "--connection", connection, "--crm-url", &url],
        None,
    );
    assert!(setup.status.success(), "{}", text(&setup.stderr));
    let dry = leadscored(
        &[
            "sync",
            "--connection",
            connection,
            "--crm-url",
            &url,
            "--once",
            "--dry-run",
            "--state-dir",
            dir.path().to_str().expect("utf-8"),
        ],
        None,
    );
    let printed = text(&dry.stdout);
    terminate(fake);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(
        printed.contains("dry run: nothing was written"),
        "{printed}"
    );
    assert!(printed.contains("pull full: 40 records"), "{printed}");
    assert!(
        printed.contains("leadscored_score: (empty) → "),
        "{printed}"
    );
}

#[test]
fn setup_by_hand_reads_the_services_credential_with_credential_flag() {
    let port = free_port();
    let fake = start_fake(&["--contacts", "50", "--unlimited"], port);
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("hubspot-token");
    std::fs::write(&token, "pat-fake-local-token\n").expect("token");
    let connection = dir.path().join("connection.toml");
    std::fs::write(
        &connection,
        crate::read("config/hubspot.toml").replace(
            "model = \"b2b.toml\"",
            &format!(
                "model = {:?}",
                crate::root().join("config/b2b.toml").display().to_string()
            ),
        ),
    )
    .expect("connection");
    let url = format!("http://127.0.0.1:{port}");
    let setup = |extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_leadscored"));
        command
            .args(["setup", "--check", "--connection"])
            .arg(&connection)
            .args(["--crm-url", &url])
            .args(extra)
            .env_remove("CREDENTIALS_DIRECTORY");
        command.output().expect("runs")
    };
    // As an admin would first try it: the systemd credential is not there.
    let without = setup(&[]);
    assert_eq!(without.status.code(), Some(77), "{}", text(&without.stderr));
    let given = format!("hubspot-token={}", token.display());
    let with = setup(&["--credential", &given]);
    terminate(fake);
    // Reaches the CRM: properties are missing (exit 78), not credentials.
    assert_eq!(with.status.code(), Some(78), "{}", text(&with.stderr));
    assert!(
        text(&with.stdout).contains("missing"),
        "{}",
        text(&with.stdout)
    );
}

#[test]
fn score_and_explain_companies_with_their_people() {
    let mut input = read("fixtures/records/accounts.jsonl");
    input.push_str("{\"id\":\"broken\",\"people\":[{\"id\":\"x\",\"events\":[{\"type\":\"page_view\",\"at\":\"never\"}]}]}\n");
    let out = leadscored(
        &[
            "score",
            "--config",
            "config/accounts.toml",
            "--now",
            NOW,
            "--companies",
        ],
        Some(&input),
    );
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every output line is JSON"))
        .collect();
    assert_eq!(lines.len(), 4);
    // The company line holds only company scores, then each person's card.
    let nordlys = &lines[0];
    assert_eq!(nordlys["id"], "nordlys");
    assert_eq!(nordlys["scores"]["account"]["total"], 80);
    assert_eq!(nordlys["scores"]["account"]["tier"], "High");
    assert!(nordlys["scores"].get("contact").is_none());
    let people = nordlys["people"].as_array().expect("people");
    let stages: Vec<(&str, &str)> = people
        .iter()
        .map(|p| {
            assert!(p["scores"].get("account").is_none());
            (
                p["id"].as_str().unwrap_or(""),
                p["scores"]["contact"]["stage"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(stages, [("p1", "SQL"), ("p2", "MQL"), ("p3", "MQL")]);
    assert_eq!(lines[2]["id"], "tiny");
    assert_eq!(lines[2]["people"], serde_json::json!([]));
    assert_eq!(lines[3]["line"], 4);
    assert!(
        lines[3]["error"]
            .as_str()
            .is_some_and(|e| e
                .starts_with("people[0]: events[0].at: \"never\" is not an RFC 3339 timestamp")),
        "{}",
        lines[3]
    );

    let out = leadscored(
        &[
            "explain",
            "--config",
            "config/accounts.toml",
            "--input",
            "fixtures/records/accounts.jsonl",
            "--now",
            NOW,
            "--companies",
            "--id",
            "nordlys",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for part in [
        "Company nordlys scored with model \"Acme accounts\"",
        "Score \"Account score\": 80  (fit 40, engagement 40; cap 100)",
        "+20  Two engaged decision makers",
        "People (3):",
        "  p2  contact 45 Medium MQL",
        "\u{2713} people with (all of (rule \"Decision maker\" matched; score \"contact\" engagement \u{2265} 20)): \u{2265} 2  (2: p1, p3)",
        "\u{2713} distinct people cover the roles \"Decision maker\", \"Technical evaluator\"  (Decision maker p1, Technical evaluator p2)",
        "\u{2717} sum of the people's \"contact\" engagement \u{2265} 150  (115)",
    ] {
        assert!(shown.contains(part), "missing {part:?} in:\n{shown}");
    }
    assert!(!shown.contains("Grade"), "a company has no grade:\n{shown}");
}

#[test]
fn backtest_and_diff_judge_companies_on_their_company_scores() {
    let out = leadscored(
        &[
            "backtest",
            "--config",
            "config/accounts.toml",
            "--input",
            "fixtures/records/accounts.jsonl",
            "--companies",
            "--now",
            NOW,
            "--json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let scores: Vec<&str> = report["report"]["scores"]
        .as_array()
        .or_else(|| report["scores"].as_array())
        .expect("scores")
        .iter()
        .filter_map(|s| s["score"].as_str())
        .collect();
    assert_eq!(scores, ["account"], "{report}");
    let shown = report.to_string();
    assert!(shown.contains("\"records\":3"), "{shown}");

    // A stricter "High" tier moves the High company down, and nothing else.
    let dir = tempfile::tempdir().expect("temp dir");
    let stricter = dir.path().join("stricter.toml");
    std::fs::write(
        &stricter,
        read("config/accounts.toml").replace(
            "{ label = \"High\", min = 70 },\n]\n\n[[score.group]]\nname = \"Firmographics\"",
            "{ label = \"High\", min = 90 },\n]\n\n[[score.group]]\nname = \"Firmographics\"",
        ),
    )
    .expect("write");
    let out = leadscored(
        &[
            "diff",
            "--config",
            "config/accounts.toml",
            "--config",
            stricter.to_str().expect("utf-8"),
            "--input",
            "fixtures/records/accounts.jsonl",
            "--companies",
            "--now",
            NOW,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("High → Medium"), "{shown}");
    assert!(!shown.contains("\"contact\""), "{shown}");
}
