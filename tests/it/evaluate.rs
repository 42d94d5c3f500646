//! Backtest metrics against hand-computed values, and the evaluation
//! commands on generated people whose outcome is correlated with fit and
//! engagement by construction (and on people whose outcome is random).

use leadscored::commands::{Lines, OutcomeSpec, backtest, calibrate, diff, generate};
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
        (records.as_bytes(), Lines::Contacts),
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

/// Grades and stages are checked for order as tiers are: a better grade
/// (or a higher stage) that converts no better than the one below it is
/// flagged, and said to be within noise when the intervals overlap.
#[test]
fn grade_and_stage_inversions_are_flagged() {
    let model = leadscored::Model::compile(
        "graded.toml",
        &format!(
            "{TINY}
[[grading]]
name = \"all\"
start = \"C\"

[[grading.criterion]]
name = \"Director\"
property = \"jobtitle\"
contains = \"director\"
on_match = \"+1\"

[lifecycle]
[[lifecycle.stage]]
name = \"Lead\"
[[lifecycle.stage]]
name = \"MQL\"
score = \"s\"
gte = 40
"
        ),
    )
    .expect("compiles");
    // Directors (grade B, stage MQL) convert 1 in 4; analysts 3 in 6.
    let mut lines = String::new();
    for (i, (title, converted)) in [
        ("director", true),
        ("director", false),
        ("director", false),
        ("director", false),
        ("analyst", true),
        ("analyst", true),
        ("analyst", true),
        ("analyst", false),
        ("analyst", false),
        ("analyst", false),
    ]
    .iter()
    .enumerate()
    {
        lines.push_str(&format!(
            "{{\"id\": {i}, \"properties\": {{\"jobtitle\": \"{title}\"}}, \"outcome\": {converted}}}\n"
        ));
    }
    let (report, _) = backtest(
        &model,
        crate::now(NOW),
        &OutcomeSpec::parse("outcome").expect("spec"),
        (lines.as_bytes(), Lines::Contacts),
        1,
    )
    .expect("backtest");
    assert_eq!(
        report.grade_inversions,
        ["B converts no better than C (within noise)"]
    );
    assert_eq!(
        report.scores[0].stage_inversions,
        ["MQL converts no better than Lead (within noise)"]
    );
    assert_eq!(
        report.scores[0].tier_inversions,
        ["High converts no better than Low (within noise)"]
    );
    let text = report.text();
    assert!(
        text.contains("  ! B converts no better than C (within noise)"),
        "{text}"
    );
    assert!(
        text.contains("  ! MQL converts no better than Lead"),
        "{text}"
    );
}

#[test]
fn outcomes_can_come_from_a_property_or_an_event() {
    let property = OutcomeSpec::parse("property:lifecyclestage=customer").expect("spec");
    let event = OutcomeSpec::parse("event:closed_won").expect("spec");
    let model = leadscored::Model::compile("tiny.toml", TINY).expect("compiles");
    let lines = "{\"id\": 1, \"properties\": {\"lifecyclestage\": \"Customer\", \"jobtitle\": \"director\"}, \"events\": [{\"type\": \"closed_won\", \"at\": \"2026-10-01T00:00:00Z\"}]}\n{\"id\": 2, \"properties\": {\"lifecyclestage\": \"lead\"}}\n";
    for spec in [property, event] {
        let (report, _) = backtest(
            &model,
            crate::now(NOW),
            &spec,
            (lines.as_bytes(), Lines::Contacts),
            1,
        )
        .expect("backtest");
        assert_eq!((report.records, report.converted), (2, 1));
    }
}

/// The records from their start, as often as calibrate asks.
fn reopen<'a>(
    lines: &'a str,
) -> impl FnMut() -> Result<Box<dyn std::io::BufRead + 'a>, leadscored::commands::CommandError> + 'a
{
    move || Ok(Box::new(lines.as_bytes()))
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
fn the_example_model_separates_generated_converters_and_calibrate_judges_what_it_writes() {
    let model = crate::model("config/b2b.toml");
    let source = crate::read("config/b2b.toml");
    let lines = generated(80_000, 5);
    let spec = OutcomeSpec::parse("outcome").expect("spec");
    let (report, _) = backtest(
        &model,
        crate::now(NOW),
        &spec,
        (lines.as_bytes(), Lines::Contacts),
        2,
    )
    .expect("backtest");
    let contact = &report.scores[0];
    assert!(contact.auc.expect("auc") > 0.65, "{:?}", contact.auc);
    assert!(contact.top[0].lift > 1.5, "{:?}", contact.top[0]);
    assert!(
        contact.tier_inversions.is_empty(),
        "{:?}",
        contact.tier_inversions
    );
    // The generated people convert more often after a support form: the
    // example's penalty for it is flagged, in the text report too.
    let support = report
        .criteria
        .iter()
        .find(|c| c.rule == "Support form")
        .expect("criterion");
    assert!(
        support
            .flag
            .as_deref()
            .is_some_and(|f| f.starts_with("penalty fires")),
        "{support:?}"
    );
    assert!(
        report
            .text()
            .contains("! contact / Support form (-10 points): penalty fires")
    );
    // Deciles and the ROC curve for the charts.
    assert_eq!(contact.deciles.len(), 10);
    assert!((contact.deciles[9].capture - 1.0).abs() < 1e-12);
    assert!(contact.deciles[0].lift > contact.deciles[9].lift);
    assert_eq!(contact.roc.first(), Some(&[0.0, 0.0]));
    assert_eq!(contact.roc.last(), Some(&[1.0, 1.0]));
    assert!(contact.roc.len() <= 202);

    let (fitted, proposal, _) = calibrate(
        &model,
        &source,
        None,
        crate::now(NOW),
        &spec,
        &mut reopen(&lines),
        (2, Lines::Contacts),
        false,
    )
    .expect("calibrate");
    // The claim is about the written proposal: on these people the fit
    // itself ranks better than the hand-set model, but once its points are
    // rounded and the score's floor and caps apply the proposal is no
    // clear win, and calibrate says so.
    let text = fitted.text();
    let (hand, written) = (
        fitted.hand_auc.expect("hand auc"),
        fitted.written_auc.expect("written auc"),
    );
    assert!(fitted.z.is_some(), "{text}");
    if fitted.written_is_better {
        assert!(written > hand, "{text}");
    } else {
        assert!(text.contains("no clear win for the proposal"), "{text}");
    }
    assert!(text.contains("to another tier"), "{text}");
    // No sign is turned without --allow-sign-change; each one the data
    // disputes is listed.
    for rule in &fitted.fit.rules {
        assert!(
            rule.proposed_points * rule.current_points >= 0.0,
            "{} {} → {}",
            rule.rule,
            rule.current_points,
            rule.proposed_points
        );
        if rule.sign_change {
            assert!(text.contains(&format!("{}  ", rule.rule)), "{text}");
        }
    }
    // The proposal is a model file that compiles, with the new points and
    // the hand-set caps.
    let proposal = proposal.expect("a proposed model");
    let caps = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("max =") || l.starts_with("min =") || l.starts_with("cap ="))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(caps(&proposal), caps(&source), "caps are never changed");
    let proposed = leadscored::Model::compile("proposed.toml", &proposal)
        .unwrap_or_else(|e| panic!("the proposal compiles: {e}"));
    assert!(proposal.contains("# ---"), "comments are kept");

    // And diff shows how the proposal moves people.
    let (moves, _) = diff(
        &model,
        &proposed,
        crate::now(NOW),
        &spec,
        (lines.as_bytes(), Lines::Contacts),
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
    let (report, _) = backtest(
        &model,
        crate::now(NOW),
        &spec,
        (lines.as_bytes(), Lines::Contacts),
        2,
    )
    .expect("backtest");
    let auc = report.scores[0].auc.expect("auc");
    assert!((auc - 0.5).abs() < 0.03, "{auc}");
    let (fitted, _, _) = calibrate(
        &model,
        &source,
        None,
        crate::now(NOW),
        &spec,
        &mut reopen(&lines),
        (2, Lines::Contacts),
        false,
    )
    .expect("calibrate");
    assert!(!fitted.written_is_better, "{}", fitted.text());
}

/// Criteria in three units — once (a title), per unit (employees), per
/// occurrence (page views) — with outcomes drawn from a known logistic
/// model: calibrate recovers each coefficient per unit within 0.15 × its
/// size (0.06 log-odds for the intercept-free terms at this sample).
const KNOWN: &str = r#"
[[score]]
name = "s"
cap = 10000

[[score.group]]
name = "who"
part = "fit"

[[score.group.rule]]
name = "Director"
property = "jobtitle"
contains = "director"
points = 10

[[score.group.rule]]
name = "Employees"
property = "employees"
points_per_unit = 1

[[score.group.rule]]
name = "Support form"
property = "support"
equals = "yes"
points = -10

[[score.group]]
name = "what"
part = "engagement"

[[score.group.rule]]
name = "Page view"
event = "page_view"
points = 2
"#;

/// Records whose outcome is drawn with log-odds
/// −2.5 + 1.0·director + 0.02·employees + 0.3·page views + 0.4·support.
fn known_records(n: u64) -> String {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut out = String::new();
    for id in 0..n {
        let director = next() < 0.3;
        let employees = (next() * 100.0).floor();
        let views = (next() * 9.0).floor() as u32;
        let support = next() < 0.2;
        let z = -2.5
            + if director { 1.0 } else { 0.0 }
            + 0.02 * employees
            + 0.3 * f64::from(views)
            + if support { 0.4 } else { 0.0 };
        let converted = next() < 1.0 / (1.0 + (-z).exp());
        let events: Vec<String> = (0..views)
            .map(|v| {
                format!(
                    "{{\"type\": \"page_view\", \"at\": \"2026-10-{:02}T00:00:00Z\"}}",
                    v + 1
                )
            })
            .collect();
        out.push_str(&format!(
            "{{\"id\": {id}, \"properties\": {{\"jobtitle\": \"{}\", \"employees\": {employees}, \"support\": \"{}\"}}, \"events\": [{}], \"outcome\": {converted}}}\n",
            if director { "Director of IT" } else { "Analyst" },
            if support { "yes" } else { "no" },
            events.join(", ")
        ));
    }
    out
}

#[test]
fn calibrate_recovers_known_coefficients_in_their_units_and_keeps_signs() {
    let model = leadscored::Model::compile("known.toml", KNOWN).expect("compiles");
    let lines = known_records(60_000);
    let spec = OutcomeSpec::parse("outcome").expect("spec");
    let run = |allow: bool| {
        calibrate(
            &model,
            KNOWN,
            None,
            crate::now(NOW),
            &spec,
            &mut reopen(&lines),
            (2, Lines::Contacts),
            allow,
        )
        .expect("calibrate")
    };
    let (allowed, proposal, _) = run(true);
    let coefficient = |name: &str| {
        allowed
            .fit
            .rules
            .iter()
            .find(|r| r.rule == name)
            .map(|r| r.coefficient)
            .expect("rule")
    };
    let text = allowed.text();
    for (name, truth) in [
        ("Director", 1.0),
        ("Employees", 0.02),
        ("Page view", 0.3),
        ("Support form", 0.4),
    ] {
        let got = coefficient(name);
        assert!(
            (got - truth).abs() <= 0.15 * truth,
            "{name}: fitted {got}, true {truth}\n{text}"
        );
    }
    assert!((allowed.fit.intercept + 2.5).abs() < 0.25, "{text}");
    // Units are named, and the per-unit rule's new value is written to
    // `points_per_unit`.
    assert!(
        text.contains("unit of employees") && text.contains("occurrence"),
        "{text}"
    );
    let proposal = proposal.expect("proposal");
    assert!(!proposal.contains("points_per_unit = 1\n"), "{proposal}");
    // The support penalty points the other way in the data: proposed only
    // when asked, listed either way.
    let support = |o: &leadscored::evaluate::calibrate::Outcome| {
        o.fit
            .rules
            .iter()
            .find(|r| r.rule == "Support form")
            .cloned()
            .expect("rule")
    };
    assert!(support(&allowed).sign_change && support(&allowed).proposed_points > 0.0);
    let (kept, kept_proposal, _) = run(false);
    let held = support(&kept);
    assert!(held.sign_change && held.kept, "{}", kept.text());
    assert_eq!(held.proposed_points, -10.0);
    assert!(
        kept.text()
            .contains("the data point the other way; kept as set")
    );
    assert!(kept_proposal.expect("proposal").contains("points = -10"));
    // The judgement is on the written model, scored as `score` does.
    assert!(kept.written_auc.is_some() && kept.hand_auc.is_some());
}

/// A backtest keeps each total in as few bytes as its score's steps allow
/// (2, then 4, then an `f64`), widening mid-file. Its ranking measures stay
/// those of every record sorted by total: here totals of 0.01, 0.5 and
/// 5,000 at precision 6 (10,000, 500,000 and 5,000,000,000 steps) arrive in
/// that order, with ties at every cut.
#[test]
fn ranking_measures_hold_while_kept_totals_widen() {
    const WIDE: &str = r#"
[model]
name = "Widening"
precision = 6

[[score]]
name = "s"
cap = 100000

[[score.group]]
name = "Tag"
part = "fit"

[[score.group.rule]]
name = "small"
property = "tag"
equals = "a"
points = 0.01

[[score.group.rule]]
name = "half"
property = "tag"
equals = "b"
points = 0.5

[[score.group.rule]]
name = "huge"
property = "tag"
equals = "c"
points = 5000
"#;
    let model = leadscored::Model::compile("wide.toml", WIDE).expect("compiles");
    let now = crate::now(NOW);
    let mut lines = String::new();
    let mut scored: Vec<(f64, bool)> = Vec::new();
    let mut seed = 7u64;
    for i in 0..997u64 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let phase = ["a", "b", "c"][(i * 3 / 997) as usize];
        let tag = if (seed >> 40).is_multiple_of(3) {
            "none"
        } else {
            phase
        };
        let converted = (seed >> 20).is_multiple_of(4);
        let line = format!(
            "{{\"id\": {i}, \"properties\": {{\"tag\": \"{tag}\"}}, \"outcome\": {converted}}}"
        );
        let record = model.parse_record(&line).expect("record");
        scored.push((model.score(&record, now).results()[0].total(), converted));
        lines.push_str(&line);
        lines.push('\n');
    }
    let distinct: std::collections::BTreeSet<u64> = scored.iter().map(|s| s.0.to_bits()).collect();
    assert_eq!(distinct.len(), 4, "totals 0, 0.01, 0.5 and 5000");
    let (report, _) = backtest(
        &model,
        now,
        &OutcomeSpec::parse("outcome").expect("spec"),
        (lines.as_bytes(), Lines::Contacts),
        2,
    )
    .expect("backtest");
    let score = &report.scores[0];
    assert_eq!(score.auc, auc(&mut scored.clone()));
    let mut sorted = scored;
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    assert_eq!(score.top[0], top_share(&sorted, 0.1));
    assert_eq!(score.top[1], top_share(&sorted, 0.2));
    // Each tenth counted straight from the sorted records.
    let total = sorted.len();
    for (k, decile) in score.deciles.iter().enumerate() {
        let slice = &sorted[k * total / 10..(k + 1) * total / 10];
        let converted = slice.iter().filter(|s| s.1).count() as u64;
        assert_eq!(
            (decile.records, decile.converted),
            (slice.len() as u64, converted),
            "decile {}",
            k + 1
        );
    }
    assert_eq!(score.deciles.len(), 10);
}

/// The outcome field is read in the same pass as the record, and a line
/// is still judged as when the outcome was read first: an unusable
/// outcome is what a line is skipped for, even when its record is broken
/// too.
#[test]
fn a_line_is_skipped_for_its_outcome_before_its_record() {
    let model = leadscored::Model::compile("tiny.toml", TINY).expect("compiles");
    let lines = [
        r#"{"id": 1, "properties": {"jobtitle": "director"}, "outcome": true}"#,
        r#"{"id": 2, "properties": {"jobtitle": "director"}, "outcome": "maybe"}"#,
        r#"{"id": 3, "properties": 5, "outcome": true}"#,
        r#"{"id": 4, "properties": 5, "outcome": "maybe"}"#,
        r#"{"id": 5, "properties": 5}"#,
        r#"{"id": 6, "outcome": null, "properties": {}}"#,
        r#"{"outcome": false, "id": 7, "properties": {}, "outcome": true}"#,
    ]
    .join("\n");
    let (report, skipped) = backtest(
        &model,
        crate::now(NOW),
        &OutcomeSpec::parse("outcome").expect("spec"),
        (lines.as_bytes(), Lines::Contacts),
        1,
    )
    .expect("backtest");
    // Lines 1 and 7 (its last outcome wins: converted).
    assert_eq!((report.records, report.converted), (2, 2));
    assert_eq!((skipped.unreadable, skipped.no_outcome), (3, 2));
    let examples = skipped.examples.join("\n");
    assert!(
        skipped.examples[0].starts_with("line 2: `outcome`: \"maybe\" is not a yes/no outcome"),
        "{examples}"
    );
    assert!(
        skipped.examples[1].starts_with("line 3: ")
            && skipped.examples[1].contains("an object of property names"),
        "{examples}"
    );
    assert!(
        skipped.examples[2].starts_with("line 4: `outcome`: \"maybe\""),
        "{examples}"
    );
    assert_eq!(skipped.examples[3], "line 5: no outcome", "{examples}");
    assert_eq!(skipped.examples[4], "line 6: no outcome", "{examples}");
}
