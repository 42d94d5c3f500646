//! Every kind of config error, with its message and location. Each case is
//! a small model text and the exact errors expected (line:column: message),
//! all of them, in file order.

use leadscored::Model;

/// A valid score that cases append to or start from.
const SCORE: &str = r#"
[[score]]
name = "s"

[[score.group]]
name = "g"
part = "fit"

[[score.group.rule]]
name = "r"
property = "jobtitle"
contains = "director"
points = 10
"#;

#[track_caller]
fn check(source: &str, expected: &[&str]) {
    let got: Vec<String> = match Model::compile("m.toml", source) {
        Ok(model) => model
            .warnings(&|_| false)
            .iter()
            .map(|w| format!("{}:{}: warning: {}", w.line, w.column, w.message))
            .collect(),
        Err(errors) => {
            assert!(errors.iter().all(|e| e.file == "m.toml"));
            errors
                .iter()
                .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                .collect()
        }
    };
    assert_eq!(got, expected, "\nsource:\n{source}");
}

#[test]
fn a_valid_model_has_no_errors() {
    check(SCORE, &[]);
}

#[test]
fn toml_syntax() {
    check(
        "[model\nname = \"x\"\n",
        &["1:7: unclosed table, expected `]`"],
    );
}

#[test]
fn no_score() {
    check(
        "[model]\nname = \"x\"\n",
        &["1:1: the model has no [[score]]: define at least one score"],
    );
}

#[test]
fn unknown_section() {
    check(
        &format!("{SCORE}\n[scoring]\nx = 1\n"),
        &[
            "15:2: unknown section `scoring`, expected one of model, score, grading, lifecycle, disqualifier, test",
        ],
    );
}

#[test]
fn unknown_key_suggests_the_closest() {
    check(
        &SCORE.replace("points = 10", "pionts = 10"),
        &["13:1: unknown key `pionts`: did you mean `points`?"],
    );
}

#[test]
fn unknown_key_without_a_close_match() {
    check(
        &SCORE.replace("points = 10", "points = 10\nweight = 3"),
        &["14:1: unknown key `weight`: see the model reference in the README"],
    );
}

#[test]
fn wrong_type() {
    check(
        &SCORE.replace("points = 10", "points = \"ten\""),
        &["13:10: invalid type: string \"ten\", expected a number"],
    );
}

#[test]
fn missing_key() {
    check(
        &SCORE.replace("part = \"fit\"\n", ""),
        &["5:1: missing key `part`"],
    );
}

#[test]
fn bad_regex() {
    check(
        &SCORE.replace("contains = \"director\"", "regex = '(director'"),
        &["12:9: bad regex \"(director\": unclosed group"],
    );
}

#[test]
fn duplicate_names() {
    let source = format!(
        "{SCORE}\n[[score.group.rule]]\nname = \"R\"\nproperty = \"x\"\nis_set = true\npoints = 1\n{SCORE}"
    );
    check(
        &source,
        &[
            "16:8: duplicate rule name \"R\": names must be unique",
            "22:8: duplicate score name \"s\": names must be unique",
        ],
    );
}

#[test]
fn decay_and_window_are_exclusive() {
    let source = r#"
[[score]]
name = "s"

[[score.group]]
name = "g"
part = "engagement"
decay = { percent = 50, every_days = 180 }
window_days = 30

[[score.group.rule]]
name = "r"
event = "page_view"
within_days = 10
points = 1
"#;
    check(
        source,
        &[
            "9:15: a group cannot have both `decay` and a time window (as in HubSpot): remove `decay` or `window_days`",
            "14:15: this rule's group has `decay`: a group cannot have both decay and a time window (as in HubSpot)",
        ],
    );
}

#[test]
fn decay_on_a_fit_group() {
    check(
        &SCORE.replace(
            "part = \"fit\"",
            "part = \"fit\"\ndecay = { half_life_days = 30 }",
        ),
        &[
            "8:9: decay applies to engagement groups: fit describes who a person is, which does not age",
        ],
    );
}

#[test]
fn bad_decay_values() {
    let source = r#"
[[score]]
name = "s"

[[score.group]]
name = "g"
part = "engagement"
decay = { percent = 150, every_days = 0 }

[[score.group.rule]]
name = "r"
event = "page_view"
points = 1

[[score.group]]
name = "h"
part = "engagement"
decay = { percent = 50 }

[[score.group.rule]]
name = "q"
event = "page_view"
points = 1
"#;
    check(
        source,
        &[
            "8:21: decay percent must be above 0 and at most 100, got 150",
            "8:39: `every_days` must be a number of days above 0, got 0",
            "18:9: decay is written as { percent = 50, every_days = 180 } or { half_life_days = 90 }",
        ],
    );
}

#[test]
fn event_rule_in_a_fit_group() {
    check(
        &SCORE.replace(
            "property = \"jobtitle\"\ncontains = \"director\"",
            "event = \"page_view\"",
        ),
        &[
            "11:9: event rules belong in an engagement group: fit is about who a person is, not what they did",
        ],
    );
}

#[test]
fn unknown_part() {
    check(
        &SCORE.replace("part = \"fit\"", "part = \"behaviour\""),
        &["7:8: unknown part \"behaviour\", expected \"fit\" or \"engagement\""],
    );
}

#[test]
fn unreachable_caps() {
    let source = r#"
[[score]]
name = "s"
cap = 90

[[score.group]]
name = "g"
part = "fit"
max = 50
min = -20

[[score.group.rule]]
name = "a"
property = "jobtitle"
contains = "director"
points = 30

[[score.group.rule]]
name = "b"
property = "jobtitle"
contains = "student"
points = -10
"#;
    check(
        source,
        &[
            "4:7: warning: score cap 90 can never be reached: its groups give at most 30 together (fine as a cap for rules to come)",
            "9:7: warning: group max 50 can never be reached: its rules give at most 30 together (fine as a cap for rules to come)",
            "10:7: warning: group min -20 can never be reached: its rules take away at most 10 together",
        ],
    );
}

#[test]
fn typos_and_hidden_rules_are_warnings() {
    let source = r#"
[[score]]
name = "s"

[[score.group]]
name = "engagement"
part = "engagement"

[[score.group.rule]]
name = "Clicked"
event = "email_clik"
points = 5

[[score.group.rule]]
name = "Pricing"
event = "page_view"
url = "/pricing"
points = 10

[[score.group.rule]]
name = "Trial"
event = "trial_started"
points = 10

[[score.group]]
name = "capped"
part = "fit"
max = 0

[[score.group.rule]]
name = "Director"
property = "jobtitle"
contains = "director"
points = 10
"#;
    check(
        source,
        &[
            "11:9: warning: event type `email_clik` is not a standard one: did you mean `email_click`? (a custom type needs a source under the connection's [events])",
            "17:7: warning: `url = \"/pricing\"` has no wildcard, so it matches only that exact url: write \"*pricing*\" to match it anywhere in the url",
            "22:9: warning: event type `trial_started` is not a standard one (page_view, email_open, email_click, email_unsubscribe, form_submission, form_error, cta_click, ad_click, content_download, webinar, meeting): the connection must name its source under [events]",
            "30:1: warning: rule \"Director\" can never change the score: the group's max takes back whatever it gives",
        ],
    );
    // A connection that feeds `trial_started` silences its warning.
    let model = Model::compile("m.toml", source).expect("compiles");
    let fed = model.warnings(&|kind| kind == "trial_started");
    assert_eq!(fed.len(), 3);
    // A cap warning never hides a real error further down.
    let broken = format!(
        "{source}\n[[score.group.rule]]\nname = \"x\"\nproperty = \"jobtitle\"\npoints = \"ten\"\n"
    );
    let Err(errors) = Model::compile("m.toml", &broken) else {
        panic!("a string for points is an error");
    };
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("expected a number")),
        "{errors}"
    );
}

#[test]
fn floor_above_cap_and_min_above_max() {
    let source = SCORE
        .replace("name = \"s\"", "name = \"s\"\ncap = 10\nfloor = 20")
        .replace("part = \"fit\"", "part = \"fit\"\nmax = 5\nmin = 8");
    check(
        &source,
        &[
            "5:9: score floor 20 must be below its cap 10",
            "11:7: group min 8 is above its max 5",
        ],
    );
}

#[test]
fn tiers_out_of_order_and_duplicated() {
    let source = SCORE.replace(
        "name = \"s\"",
        "name = \"s\"\ntiers = [{ label = \"Low\", min = 0 }, { label = \"High\", min = 75 }, { label = \"low\", min = 40 }]",
    );
    check(
        &source,
        &[
            "4:78: duplicate tier name \"low\": names must be unique",
            "4:91: tier \"low\" min 40 must be above the previous tier's min 75: list tiers from lowest to highest",
        ],
    );
}

#[test]
fn bad_matrix() {
    check(
        &SCORE.replace(
            "name = \"s\"",
            "name = \"s\"\nmatrix = { fit = [10, 30], engagement = [40] }",
        ),
        &[
            "4:18: matrix `fit` must be two lower bounds, highest first, e.g. [60, 30]",
            "4:41: matrix `engagement` must be two lower bounds, highest first, e.g. [60, 30]",
        ],
    );
}

#[test]
fn unknown_grade_and_grade_step() {
    let source = format!(
        "{SCORE}\n[[grading]]\nname = \"p\"\nstart = \"E\"\n\n[[grading.criterion]]\nname = \"c\"\nproperty = \"x\"\nis_set = true\non_match = \"+4/3\"\n"
    );
    check(
        &source,
        &[
            "17:9: unknown grade \"E\": grades run F, D-, D, D+, C-, C, C+, B-, B, B+, A-, A, A+",
            "23:12: unknown grade step \"+4/3\": expected \"+1/3\", \"+2/3\", \"+1\", \"-1/3\", \"-2/3\" or \"-1\"",
        ],
    );
}

#[test]
fn grading_profile_after_the_catch_all() {
    let source = format!(
        "{SCORE}\n[[grading]]\nname = \"all\"\n\n[[grading]]\nname = \"big\"\nwhen = {{ property = \"company.numemployees\", gt = 1000 }}\n"
    );
    check(
        &source,
        &[
            "18:1: grading profile \"big\" can never be chosen: profile \"all\" has no `when` and comes first (put the catch-all profile last)",
        ],
    );
}

#[test]
fn grading_criterion_that_moves_nothing() {
    let source = format!(
        "{SCORE}\n[[grading]]\nname = \"p\"\n\n[[grading.criterion]]\nname = \"c\"\nproperty = \"x\"\nis_set = true\n"
    );
    check(
        &source,
        &["18:1: grading criterion \"c\" moves nothing: add `on_match` and/or `on_miss`"],
    );
}

#[test]
fn keys_that_belong_elsewhere() {
    check(
        &SCORE.replace("points = 10", "points = 10\non_match = \"+1\"\nonce = true"),
        &[
            "14:12: `on_match` is not allowed in a fit rule (it belongs to [[grading.criterion]])",
            "15:8: `once` is not allowed in a fit rule (it applies to event rules in engagement groups)",
        ],
    );
}

#[test]
fn operator_that_does_not_apply() {
    check(
        &SCORE.replace("contains = \"director\"", "url = \"*/pricing*\""),
        &[
            "12:7: `url` does not apply to a `property` condition; properties are tested with equals, one_of, contains, starts_with, ends_with, regex, gt, gte, lt, lte, between, is_set, before, after, within_days, older_than_days",
        ],
    );
}

#[test]
fn two_subjects_in_one_condition() {
    check(
        &SCORE.replace(
            "property = \"jobtitle\"",
            "property = \"jobtitle\"\nlist = \"VIP\"",
        ),
        &[
            "9:1: a condition has one subject but this one names both `property` and `list`: split it into conditions under `all = [...]`",
        ],
    );
}

#[test]
fn property_without_operator() {
    check(
        &SCORE.replace("contains = \"director\"\n", ""),
        &[
            "9:1: property \"jobtitle\" needs an operator: equals, one_of, contains, starts_with, ends_with, regex, gt, gte, lt, lte, between, is_set, before, after, within_days or older_than_days",
        ],
    );
}

#[test]
fn derived_subjects_only_in_stages() {
    check(
        &SCORE.replace(
            "property = \"jobtitle\"\ncontains = \"director\"",
            "score = \"s\"\ngt = 10",
        ),
        &[
            "9:1: `score` can only be used in [[lifecycle.stage]] conditions: here only properties, events and lists are known",
        ],
    );
}

#[test]
fn bad_ranges_and_dates() {
    let source = r#"
[[score]]
name = "s"

[[score.group]]
name = "g"
part = "fit"

[[score.group.rule]]
name = "a"
property = "n"
between = [50, 10]
points = 1

[[score.group.rule]]
name = "b"
property = "n"
gt = 5
gte = 6
points = 1

[[score.group.rule]]
name = "c"
property = "d"
after = "last tuesday"
points = 1

[[score.group.rule]]
name = "d"
property = "n"
gt = 10
lt = 5
points = 1
"#;
    check(
        source,
        &[
            "12:11: `between` takes two numbers, lowest first, e.g. between = [10, 50]",
            "19:7: give `gt` or `gte`, not both",
            "25:9: \"last tuesday\" is not a date: write 2026-01-31 or 2026-01-31T12:00:00Z",
            "28:1: the range 10 … 5 is empty: the condition could never hold",
        ],
    );
}

#[test]
fn event_counting_mistakes() {
    let source = r#"
[[score]]
name = "s"

[[score.group]]
name = "g"
part = "engagement"

[[score.group.rule]]
name = "a"
event = "email_open"
absent = true
points = -5

[[score.group.rule]]
name = "b"
event = "page_view"
min_count = 0
points = 1

[[score.group.rule]]
name = "c"
event = "page_view"
min_count = 5
max_count = 2
points = 1

[[score.group.rule]]
name = "d"
event = "page_view"
once = true
max_occurrences = 3
points = 1

[[score.group.rule]]
name = "e"
event = "page_view"
url = ""
points = 1
"#;
    check(
        source,
        &[
            "12:10: `absent` needs a time window: add `within_days` (\"no email open in the last 60 days\")",
            "18:13: `min_count` must be at least 1: for \"never\" use `absent = true`",
            "25:13: `max_count` 2 is below `min_count` 5: the rule could never match",
            "32:19: choose one way to count: `absent`, `once`, `min_count`/`max_count` or `max_occurrences` (got once, max_occurrences)",
            "38:7: bad pattern \"\" for `url`: empty pattern: use \"*\" to accept any value",
        ],
    );
}

#[test]
fn lifecycle_references() {
    let source = format!(
        r#"{SCORE}
[lifecycle]
scores = ["s", "nope"]

[[lifecycle.stage]]
name = "Lead"

[[lifecycle.stage]]
name = "MQL"
all = [{{ stage = "SQL" }}, {{ rule = "missing" }}, {{ tier = "High" }}, {{ score = "other", gt = 1 }}]

[[lifecycle.stage]]
name = "SQL"

[[lifecycle.stage]]
name = "mql"
grade_at_least = "Z"
"#
    );
    check(
        &source,
        &[
            "16:16: unknown score \"nope\"",
            "23:18: stage \"MQL\" can only refer to earlier stages, and \"SQL\" is not earlier",
            "23:36: score \"s\" has no rule \"missing\"",
            "23:58: score \"s\" has no tier \"High\": its tiers are none",
            "23:78: unknown score \"other\": known scores are \"s\"",
            "25:1: stage \"SQL\" has no conditions, so every record would reach it: only the first stage may have none",
            "29:8: duplicate stage name \"mql\": names must be unique",
            "30:18: unknown grade \"Z\": grades run F, D-, D, D+, C-, C, C+, B-, B, B+, A-, A, A+",
        ],
    );
}

#[test]
fn test_case_mistakes() {
    let source = format!(
        r#"{SCORE}
[[test]]
name = "t"
now = "yesterday"
[test.record]
id = "1"
properties = {{ jobtitle = {{ nested = true }} }}
[test.expect.other]
total = 1
"#
    );
    check(
        &source,
        &[
            "17:7: test `now` must be an RFC 3339 timestamp, e.g. \"2026-06-01T00:00:00Z\"",
            "20:14: properties.jobtitle: invalid type: map, expected a string, number, boolean, null or an array of those in `jobtitle`",
            "21:1: test expects unknown score \"other\": known scores are \"s\"",
        ],
    );
}

#[test]
fn settings_out_of_range() {
    check(
        &format!("[model]\nprecision = 9\nsummary_items = 0\n{SCORE}"),
        &[
            "2:13: `precision` must be between 0 and 6, got 9",
            "3:17: `summary_items` must be between 1 and 50, got 0",
        ],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let source = format!(
        "[model]\nprecision = -1\n{}\n[[disqualifier]]\nname = \"d\"\nproperty = \"email\"\neffect = \"nuke\"\n",
        SCORE
            .replace("points = 10", "points = \"x\"")
            .replace("part = \"fit\"", "part = \"fits\"")
    );
    check(
        &source,
        &[
            "2:13: `precision` must be between 0 and 6, got -1",
            "9:8: unknown part \"fits\", expected \"fit\" or \"engagement\"",
            "15:10: invalid type: string \"x\", expected a number",
            "20:10: unknown effect \"nuke\", expected \"zero\", \"grade_f\" or \"zero_and_grade_f\"",
        ],
    );
}

#[test]
fn every_unknown_key_in_one_table_and_its_type_errors() {
    let source = SCORE
        .replace("property = \"jobtitle\"", "proprety = \"jobtitle\"")
        .replace("contains = \"director\"", "contians = \"director\"")
        .replace("points = 10", "points = \"ten\"");
    check(
        &source,
        &[
            "11:1: unknown key `proprety`: did you mean `property`?",
            "12:1: unknown key `contians`: did you mean `contains`?",
            "13:10: invalid type: string \"ten\", expected a number",
        ],
    );
}

#[test]
fn company_score_errors_come_all_at_once() {
    let source = format!(
        r#"{SCORE}
[[score.group.rule]]
name = "hot account"
company_score = "acount"
gte = 60
points = 5

[[score.group.rule]]
name = "roll-up on a person"
people_sum = "s"
gte = 10
points = 5

[[score]]
name = "account"
object = "company"

[[score.group]]
name = "people"
part = "engagement"

[[score.group.rule]]
name = "visits"
event = "page_view"
points = 1

[[score.group.rule]]
name = "sum"
people_sum = "nobody"
gte = 10
points = 1

[[score.group.rule]]
name = "group"
roles = ["r", "Decision maker"]
points = 1

[[score.group.rule]]
name = "avg without a comparison"
people_avg = "s"
points = 1

[[score.group.rule]]
name = "count with a bad key"
people_count = {{ rule = "r", url = "*/x" }}
points = 1

[[score.group.rule]]
name = "list"
list = "Webinar"
points = 1

[[score.group.rule]]
name = "own score"
company_score = "account"
gte = 1
points = 1

[[score]]
name = "account2"
object = "company"

[[score.group]]
name = "g"
part = "fit"

[[score.group.rule]]
name = "a stage"
people_count = {{ stage = "MQL" }}
points = 1

[[score.group.rule]]
name = "not a person"
score = "s"
gte = 1
points = 1

[[score]]
name = "typo"
object = "companies"

[[score.group]]
name = "g"
part = "fit"

[[score.group.rule]]
name = "r"
property = "x"
is_set = true
points = 1

[lifecycle]
scores = ["account2"]

[[lifecycle.stage]]
name = "Lead"
"#
    );
    check(
        &source,
        &[
            r#"17:17: unknown company score "acount": did you mean "account"?"#,
            r#"21:1: `people_sum` is a roll-up over a company's people: it belongs in a company score (`object = "company"`)"#,
            r#"37:9: a company score has no events of its own: read its people's engagement with people_sum, people_max, people_avg or people_count"#,
            r#"42:14: unknown contact score "nobody": roll-ups read contact scores, which are "s", "typo""#,
            r#"48:9: unknown role "Decision maker": a role is the name of a contact rule that marks it (e.g. a job-title rule)"#,
            r#"51:1: a roll-up condition needs a comparison: gt, gte, lt, lte, between or equals"#,
            r#"58:36: `url` does not apply to a `rule` condition"#,
            r#"61:1: a company score reads the company's properties and its people through roll-ups, not `list`: count people with `people_count = { list = ... }`"#,
            r#"66:1: `company_score` is read by a contact's rules and stages (the company it belongs to); a company score reads its people with roll-ups"#,
            r#"82:26: unknown stage "MQL": stages are "Lead""#,
            r#"85:1: `score` reads a person's scorecard: in a company score, count such people with `people_count = { ... }`"#,
            r#"93:10: unknown object "companies": a score is about a "contact" (the default) or a "company""#,
            r#"106:11: score "account2" is a company score: lifecycle stages are a person's (a contact's stage may read `company_score`)"#,
        ],
    );
}
