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
    let out = leadscored(&["demo"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("12 sample contacts"));
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
