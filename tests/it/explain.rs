//! Snapshot tests for what people read: the explanation, the scorecard JSON
//! line, the one-line summary, and the demo. Review changes with
//! `cargo insta review` (or INSTA_UPDATE=always) and commit the snapshots.

use leadscored::engine::{CardJson, explain_text, summary_line};

use crate::{model, now, read};

const SAMPLE_NOW: &str = "2026-11-01T00:00:00Z";

fn sample(id: &str) -> leadscored::Record {
    let model = model("config/b2b.toml");
    read("fixtures/records/sample.jsonl")
        .lines()
        .filter_map(|line| model.parse_record(line).ok())
        .find(|r| r.id() == id)
        .unwrap_or_else(|| panic!("sample {id} exists"))
}

#[test]
fn explanations_of_the_sample_contacts() {
    let model = model("config/b2b.toml");
    for id in [
        "c-1001", "c-1002", "c-1003", "c-1004", "c-1009", "c-1010", "c-1011",
    ] {
        let record = sample(id);
        let card = model.score(&record, now(SAMPLE_NOW));
        insta::assert_snapshot!(
            format!("explain_{id}"),
            explain_text(&model, &record, &card, now(SAMPLE_NOW))
        );
    }
}

#[test]
fn scorecard_json_lines() {
    let model = model("config/b2b.toml");
    let mut lines = String::new();
    for line in read("fixtures/records/sample.jsonl").lines() {
        let record = model.parse_record(line).expect("sample records are valid");
        let card = model.score(&record, now(SAMPLE_NOW));
        lines.push_str(
            &CardJson {
                model: &model,
                record_id: record.id(),
                card: &card,
            }
            .to_line(),
        );
        lines.push('\n');
    }
    insta::assert_snapshot!("scorecards", lines);
}

#[test]
fn summary_lines_fit_a_crm_text_property() {
    let model = model("config/b2b.toml");
    let record = sample("c-1001");
    let card = model.score(&record, now(SAMPLE_NOW));
    assert_eq!(
        summary_line(&model, &card, 0),
        "Pricing page ×3 +30 · Demo request +20 · Decision maker +15"
    );
    let record = sample("c-1002");
    let card = model.score(&record, now(SAMPLE_NOW));
    assert_eq!(
        summary_line(&model, &card, 0),
        "Student −20 · Free email address −10 · Core market +5"
    );
    let record = sample("c-1003");
    let card = model.score(&record, now(SAMPLE_NOW));
    assert_eq!(summary_line(&model, &card, 0), "Disqualified: Competitor");
    for line in read("fixtures/records/sample.jsonl").lines() {
        let record = model.parse_record(line).expect("valid");
        let card = model.score(&record, now(SAMPLE_NOW));
        for score in 0..2 {
            assert!(summary_line(&model, &card, score).chars().count() <= 255);
        }
    }
}

#[test]
fn the_demo_output() {
    let output = leadscored::commands::demo_offline().expect("the demo runs on embedded defaults");
    insta::assert_snapshot!("demo", output);
}
