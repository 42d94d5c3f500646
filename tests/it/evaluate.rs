//! Backtest metrics against hand-computed values, and the evaluation
//! commands on generated people whose outcome is correlated with fit and
//! engagement by construction (and on people whose outcome is random).

use leadscored::commands::{OutcomeSpec, backtest, calibrate, diff, generate};
use leadscored::evaluate::{auc, top_share, wilson};

const NOW: &str = "2026-11-01T00:00:00Z";

#[test]
fn auc_counts_ties_as_halves() {
    let mut scored = vec![(1.0, false), (2.0, true), (2.0, false), (3.0, true)];
    assert_eq!(auc(&mut scored), Some(0.875));
    let mut perfect = vec![(0.0, false), (1.0, true)];
    assert_eq!(auc(&mut perfect), Some(1.0));
    let mut one_class = vec![(0.0, true), (1.0, true)];
    assert_eq!(auc(&mut one_class), None);
}

#[test]
fn wilson_intervals_match_the_textbook() {
    let (low, high) = wilson(5, 10);
    assert!((low - 0.2366).abs() < 1e-4, "{low}");
    assert!((high - 0.7634).abs() < 1e-4, "{high}");
    assert_eq!(wilson(0, 0), (0.0, 1.0));
    let (low, _) = wilson(0, 50);
    assert_eq!(low, 0.0);
}

#[test]
fn lift_and_capture_in_the_top_share() {
    // Ten records, highest first; three converters, two in the top 20 %.
    let sorted: Vec<(f64, bool)> = [
        (9.0, true),
        (8.0, true),
        (7.0, false),
        (6.0, false),
        (5.0, true),
        (4.0, false),
        (3.0, false),
        (2.0, false),
        (1.0, false),
        (0.0, false),
    ]
    .to_vec();
    let top = top_share(&sorted, 0.2);
    assert_eq!(top.records, 2);
    assert_eq!(top.conversion_rate, 1.0);
    assert!((top.lift - 1.0 / 0.3).abs() < 1e-9);
    assert!((top.capture - 2.0 / 3.0).abs() < 1e-9);
}

const TINY: &str = r#"
[[score]]
name = "s"
tiers = [{ label = "Low", min = 0 }, { label = "High", min = 40 }]

[[score.group]]
name = "who"
part = "fit"

[[score.group.rule]]
name = "Director"
property = "jobtitle"
contains = "director"
points = 50
"#;

fn tiny_records() -> String {
    let mut lines = String::new();
    let people = [
        ("director", true),
        ("director", true),
        ("director", true),
        ("director", false),
        ("analyst", true),
        ("analyst", false),
        ("analyst", false),
        ("analyst", false),
        ("analyst", false),
        ("analyst", false),
    ];
    for (i, (title, converted)) in people.iter().enumerate() {
        lines.push_str(&format!(
            "{{\"id\": {i}, \"properties\": {{\"jobtitle\": \"{title}\"}}, \"outcome\": {converted}}}\n"
        ));
    }
    lines.push_str("{\"id\": 99, \"properties\": {}}\n");
    lines
}

#[test]
fn a_small_backtest_matches_hand_computed_figures() {
    let model = leadscored::Model::compile("tiny.toml", TINY).expect("compiles");
    let records = tiny_records();
    let (report, skipped) = backtest(
        &model,
        crate::now(NOW),
        &OutcomeSpec::parse("outcome").expect("spec"),
        records.as_bytes(),
        2,
    )
    .expect("backtest");
    assert_eq!(
        skipped.no_outcome, 1,
        "the record without an outcome is skipped"
    );
    assert_eq!((report.records, report.converted), (10, 4));
    let score = &report.scores[0];
    // Converters: three at 50, one at 0. Others: one at 50, five at 0.
    // Wins 3×5 = 15, ties 3×1 + 1×5 = 8 halves: (15 + 4) / 24.
    assert!((score.auc.expect("auc") - 19.0 / 24.0).abs() < 1e-12);
    let tiers: Vec<(&str, u64, u64)> = score
        .tiers
        .iter()
        .map(|t| (t.label.as_str(), t.records, t.converted))
        .collect();
    assert_eq!(tiers, [("Low", 6, 1), ("High", 4, 3)]);
    assert!(score.tier_inversions.is_empty());
    let director = report
        .criteria
        .iter()
        .find(|c| c.rule == "Director")
        .expect("criterion");
    assert_eq!(director.among_converters, 0.75);
    assert!((director.among_others - 1.0 / 6.0).abs() < 1e-12);
    // The top 10 % is the first record: a converting director.
    assert_eq!(score.top[0].records, 1);
    assert_eq!(score.top[0].conversion_rate, 1.0);
}

#[test]
fn outcomes_can_come_from_a_property_or_an_event() {
    let property = OutcomeSpec::parse("property:lifecyclestage=customer").expect("spec");
    let event = OutcomeSpec::parse("event:closed_won").expect("spec");
    let model = leadscored::Model::compile("tiny.toml", TINY).expect("compiles");
    let lines = "{\"id\": 1, \"properties\": {\"lifecyclestage\": \"Customer\", \"jobtitle\": \"director\"}, \"events\": [{\"type\": \"closed_won\", \"at\": \"2026-10-01T00:00:00Z\"}]}\n{\"id\": 2, \"properties\": {\"lifecyclestage\": \"lead\"}}\n";
    for spec in [property, event] {
        let (report, _) =
            backtest(&model, crate::now(NOW), &spec, lines.as_bytes(), 1).expect("backtest");
        assert_eq!((report.records, report.converted), (2, 1));
    }
}

fn generated(records: u64, seed: u64) -> String {
    let mut out = Vec::new();
    generate(records, seed, crate::now(NOW), &mut out).expect("generate");
    String::from_utf8(out).expect("utf-8")
}

/// The same people with a coin-flip outcome.
fn randomised(lines: &str) -> String {
    lines
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let coin = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60 < 2;
            let line = line
                .replace("\"outcome\":true", "\"outcome\":X")
                .replace("\"outcome\":false", "\"outcome\":X")
                .replace("\"outcome\":X", &format!("\"outcome\":{coin}"));
            format!("{line}\n")
        })
        .collect()
}

#[test]
fn the_example_model_separates_generated_converters_and_calibrate_beats_it() {
    let model = crate::model("config/b2b.toml");
    let source = crate::read("config/b2b.toml");
    let lines = generated(80_000, 5);
    let spec = OutcomeSpec::parse("outcome").expect("spec");
    let (report, _) =
        backtest(&model, crate::now(NOW), &spec, lines.as_bytes(), 2).expect("backtest");
    let contact = &report.scores[0];
    assert!(contact.auc.expect("auc") > 0.65, "{:?}", contact.auc);
    assert!(contact.top[0].lift > 1.5, "{:?}", contact.top[0]);
    assert!(
        contact.tier_inversions.is_empty(),
        "{:?}",
        contact.tier_inversions
    );

    let (fitted, proposal, _) = calibrate(
        &model,
        &source,
        None,
        crate::now(NOW),
        &spec,
        lines.as_bytes(),
        2,
    )
    .expect("calibrate");
    assert!(fitted.fitted_is_better, "{}", fitted.text());
    assert!(fitted.fitted_auc > fitted.hand_auc);
    // The proposal is a model file that compiles, with the new points.
    let proposal = proposal.expect("a proposed model");
    let proposed = leadscored::Model::compile("proposed.toml", &proposal)
        .unwrap_or_else(|e| panic!("the proposal compiles: {e}"));
    assert!(proposal.contains("# ---"), "comments are kept");

    // And diff shows how the proposal moves people.
    let (moves, _) = diff(
        &model,
        &proposed,
        crate::now(NOW),
        &spec,
        lines.as_bytes(),
        2,
    )
    .expect("diff");
    assert_eq!(moves.old.records, 80_000);
    assert!(!moves.biggest_movers.is_empty());
    let moved: u64 = moves.tier_moves[0]
        .1
        .iter()
        .flat_map(|(from, row)| {
            row.iter()
                .filter(move |(to, _)| *to != from)
                .map(|(_, n)| *n)
        })
        .sum();
    assert!(moved > 0, "some records change tier");
}

#[test]
fn on_random_outcomes_auc_is_chance_and_calibrate_claims_nothing() {
    let model = crate::model("config/b2b.toml");
    let source = crate::read("config/b2b.toml");
    let lines = randomised(&generated(30_000, 6));
    let spec = OutcomeSpec::parse("outcome").expect("spec");
    let (report, _) =
        backtest(&model, crate::now(NOW), &spec, lines.as_bytes(), 2).expect("backtest");
    let auc = report.scores[0].auc.expect("auc");
    assert!((auc - 0.5).abs() < 0.03, "{auc}");
    let (fitted, _, _) = calibrate(
        &model,
        &source,
        None,
        crate::now(NOW),
        &spec,
        lines.as_bytes(),
        2,
    )
    .expect("calibrate");
    assert!(!fitted.fitted_is_better, "{}", fitted.text());
}
