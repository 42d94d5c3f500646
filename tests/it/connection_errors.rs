//! Connection files: every problem reported at once with line and column,
//! checked against the model they name; secrets only by reference.

use leadscored::config::{Auth, Connection, LoadError, Overwrite, SecretSource};

#[track_caller]
fn errors(source: &str) -> Vec<String> {
    match Connection::parse("c.toml", source, &crate::root().join("config"), None) {
        Ok(_) => Vec::new(),
        Err(LoadError::Invalid(errors)) => errors
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
            .collect(),
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn a_good_connection_loads_with_defaults_filled_in() {
    let connection = Connection::parse(
        "c.toml",
        r#"
model = "b2b.toml"
[crm]
kind = "hubspot"
token = { env = "HUBSPOT_TOKEN" }
[[output]]
property = "ls_score"
value = "contact.total"
[[output]]
property = "hs_lead_status"
value = "contact.stage"
map = { Lead = "NEW", MQL = "OPEN", SQL = "IN_PROGRESS" }
"#,
        &crate::root().join("config"),
        None,
    )
    .expect("loads");
    assert_eq!(connection.crm.base_url, "https://api.hubapi.com");
    assert_eq!(
        connection.crm.auth,
        Auth::Token(SecretSource::Env("HUBSPOT_TOKEN".to_owned()))
    );
    assert_eq!(connection.limits.per_ten_seconds, 100, "Starter by default");
    assert_eq!(connection.limits.daily, 250_000);
    // Unmapped inputs read the property of their own name.
    let employees = connection
        .inputs
        .iter()
        .find(|i| i.name == "numemployees")
        .expect("an input");
    assert_eq!(employees.field, "numemployees");
    // HubSpot's own lead status is only ever taken over when it is ours.
    assert_eq!(connection.outputs[1].overwrite, Overwrite::IfOurs);
    assert!(
        connection.events.contains_key("page_view"),
        "defaults per CRM"
    );
    assert!(connection.fields().contains(&"ls_score".to_owned()));
}

#[test]
fn every_problem_is_reported_at_once_with_its_place() {
    let got = errors(
        r#"model = "b2b.toml"
colour = "blue"

[crm]
kind = "hubspot"
api_version = "v4"
token = { env = "T", file = "/etc/t" }

[limits]
per_ten_seconds = 0
daily_headroom_percent = 95

[inputs]
jobtitle = { field = "jobtitle", type = "colour" }
nonsense = "x"

[events]
page_view = "web:"

[[output]]
property = "hubspotscore"
value = "contact.total"

[[output]]
property = "ls_score"
value = "kontakt.total"

[[output]]
property = "ls_tier"
value = "contact.tier"
map = { Hot = "hot" }
"#,
    );
    assert_eq!(
        got,
        [
            "2:1: unknown section `colour`, expected one of model, crm, limits, inputs, events, output, daemon, webhooks, accounts, state",
            "6:15: api_version `v4` is not supported for hubspot: use v3",
            "7:9: token: give exactly one of credential, file or env (secrets never go in this file)",
            "10:19: per_ten_seconds must be between 1 and 10000, got 0",
            "11:26: daily_headroom_percent must be between 0 and 90, got 95",
            "14:12: `jobtitle`: unknown type `colour`, expected text, number, bool, datetime or multi",
            "15:12: [inputs] `nonsense`: the model reads no such property, so nothing maps to it",
            "18:13: [events] page_view: `web:`: expected forms, email:<TYPES> or web:<event types> for HubSpot",
            "21:12: `hubspotscore` cannot be an output: hubspotscore is HubSpot's own legacy score (frozen since 2025-08-31)",
            "26:9: `kontakt.total`: the model has no score `kontakt` (it has contact, analytics)",
            "30:9: `ls_tier`: map has `Hot`, which `contact.tier` never produces (it gives Low, Medium, High)",
        ]
    );
}

#[test]
fn pardot_rules_are_checked_too() {
    let got = errors(
        r#"model = "b2b.toml"
[crm]
kind = "pardot"
token = { credential = "pardot" }
[limits]
concurrency = 8
[[output]]
property = "grade"
value = "grade"
[[output]]
property = "lead_score"
value = "contact.total"
[[output]]
property = "score"
value = "contact.total"
[[output]]
property = "Tier__c"
value = "contact.tier"
native = true
"#,
    );
    assert_eq!(
        got,
        [
            "3:8: Pardot needs business_unit_id (the 18-character id starting with 0Uv)",
            "6:15: Pardot allows at most 5 concurrent requests",
            "8:12: `grade` cannot be an output: Pardot's grade is read-only: write the grade to a custom field",
            "11:12: `lead_score`: Pardot outputs go to custom fields, named like Lead_Score__c",
            "14:12: `score` cannot be an output: Pardot's own score is changed by its scoring rules: write to a custom field (Name__c), or say native = true to replace it on purpose",
            "19:10: `Tier__c`: native = true applies only to Pardot's own `score`",
        ]
    );
}

#[test]
fn pardots_own_score_is_written_only_when_said_explicitly() {
    let connection = Connection::parse(
        "c.toml",
        r#"model = "b2b.toml"
[crm]
kind = "pardot"
business_unit_id = "0Uv5g000000FAKEAAA"
token = { credential = "pardot" }
[[output]]
property = "score"
value = "contact.total"
native = true
"#,
        &crate::root().join("config"),
        None,
    )
    .expect("loads");
    assert_eq!(connection.outputs[0].property, "score");
}

#[test]
fn a_missing_model_or_crm_is_named() {
    let got = errors("[[output]]\nproperty = \"x\"\nvalue = \"grade\"\n");
    assert_eq!(
        got,
        [
            "1:1: no `model`: name the model file, e.g. model = \"b2b.toml\"",
            "1:1: no [crm] section: say which CRM, e.g. kind = \"hubspot\"",
        ]
    );
}

#[test]
fn state_in_postgres_takes_its_password_by_reference_only() {
    const OUTPUT: &str = "[[output]]\nproperty = \"ls_score\"\nvalue = \"contact.total\"\n";
    let head = "model = \"b2b.toml\"\n[crm]\nkind = \"hubspot\"\ntoken = { env = \"T\" }\n";
    let cases: &[(&str, &[&str])] = &[
        (
            "[state]\nurl = \"postgres://leadscored@db:5432/leadscored\"\npassword = { credential = \"pg\" }\n",
            &[],
        ),
        (
            "[state]\nurl = \"postgres://leadscored:hunter2@db/leadscored\"\n",
            &[
                "6:7: [state] url holds a password: remove it and give password = { credential = \"...\" } (or env, or file); secrets never go in this file",
            ],
        ),
        (
            "[state]\nurl = \"postgres://db/leadscored?password=hunter2\"\n",
            &[
                "6:7: [state] url holds a password parameter: give password = { credential = \"...\" } instead",
            ],
        ),
        (
            "[state]\nurl = \"mysql://db/x\"\n",
            &[
                "6:7: [state] url: expected postgres://user@host:port/database (leave [state] out to keep a SQLite file per connection)",
            ],
        ),
        (
            "[state]\nurl = \"postgres://db/x\"\npassword = { credential = \"a\", env = \"B\" }\n",
            &[
                "7:12: [state] password: give exactly one of credential, file or env (secrets never go in this file)",
            ],
        ),
        (
            "[state]\nurl = \"postgres://db/x\"\npool = 3\n",
            &["7:1: unknown key `pool`, expected one of url, password"],
        ),
    ];
    for (section, expected) in cases {
        let found = errors(&format!("{head}{section}{OUTPUT}"));
        assert_eq!(&found, expected, "{section}");
        assert!(found.iter().all(|e| !e.contains("hunter2")), "{found:?}");
    }
    let connection = Connection::parse(
        "c.toml",
        &format!("{head}{}{OUTPUT}", cases[0].0),
        &crate::root().join("config"),
        None,
    )
    .expect("loads");
    assert_eq!(
        connection.state,
        leadscored::config::StateStore::Postgres {
            url: "postgres://leadscored@db:5432/leadscored".to_owned(),
            password: Some(SecretSource::Credential("pg".to_owned())),
        }
    );
}
