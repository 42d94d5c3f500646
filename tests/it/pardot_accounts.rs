//! Company scores at Account Engagement, which has no account object:
//! prospects are grouped into accounts by their Salesforce account, else
//! their website's domain, else their company name; each account is
//! scored from its prospects, and its score goes onto every prospect of
//! the account. A second director moves the account from Medium to High
//! and its analysts become MQLs; a director whose Salesforce account
//! changes takes the old account back down.

use std::collections::BTreeMap;

use leadscored::config::{AccountKey, Connection};
use leadscored::crm::Crm as _;
use leadscored::crm::pardot::{Pardot, account_of};
use leadscored::fake::{FakePardot, PardotConfig, spawn_pardot};
use leadscored::state::State;
use leadscored::sync::PassKind;

use super::accounts::{quiet_passes, run};
use serde_json::{Value, json};

fn model_text() -> String {
    super::accounts::MODEL.replace(
        "[lifecycle]",
        r#"[[score.group]]
name = "firmographics"
part = "fit"

[[score.group.rule]]
name = "Known size"
property = "numemployees"
gt = 0
points = 5

[lifecycle]"#,
    )
}

fn connection(url: &str, dir: &tempfile::TempDir, accounts: &str) -> Connection {
    let model = dir.path().join("accounts.toml");
    std::fs::write(&model, model_text()).expect("model file");
    let token = dir.path().join("token");
    std::fs::write(&token, "fake-pardot-access-token").expect("token file");
    let text = format!(
        r#"model = {model:?}

[crm]
kind = "pardot"
business_unit_id = "0Uv5g000000FAKEAAA"
account_tier = "advanced"
token = {{ file = {token:?} }}

[limits]
backoff_base_ms = 5
backoff_max_secs = 0.2
search_overlap_secs = 1

[inputs]
jobtitle = "jobTitle"
"company.numemployees" = {{ field = "employees", type = "number" }}

{accounts}

[[output]]
property = "Lead_Score__c"
value = "contact.total"

[[output]]
property = "Lead_Stage__c"
value = "contact.stage"

[[output]]
property = "Account_Score__c"
value = "account.total"

[[output]]
property = "Account_Tier__c"
value = "account.tier"
"#,
        model = model.display().to_string(),
        token = token.display().to_string(),
    );
    let mut connection = Connection::parse("pardot-accounts.toml", &text, dir.path(), None)
        .unwrap_or_else(|e| panic!("the connection loads: {e}"));
    connection.override_base_url(url).expect("a local URL");
    connection
}

/// A prospect's fields, the keys in order, and the account expected.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a [AccountKey], Option<&'a str>);

#[test]
fn prospects_are_grouped_by_their_first_key() {
    use AccountKey::*;
    let all = [SalesforceAccount, Website, EmailDomain, Company];
    let cases: &[Case] = &[
        // The 18-character id and its 15-character form are one account.
        (
            &[
                ("salesforceAccountId", "0015g00000AbCdEAAQ"),
                ("company", "Acme"),
            ],
            &all,
            Some("sf:0015g00000AbCdE"),
        ),
        (
            &[("salesforceAccountId", "0015g00000AbCdE")],
            &all,
            Some("sf:0015g00000AbCdE"),
        ),
        // Not an id: the next key.
        (
            &[
                ("salesforceAccountId", "n/a"),
                ("website", "https://www.Acme.com/about"),
            ],
            &all,
            Some("domain:acme.com"),
        ),
        (&[("website", "acme.com")], &all, Some("domain:acme.com")),
        (
            &[("website", "http://127.0.0.1/"), ("company", "ACME, Inc.")],
            &all,
            Some("company:acme"),
        ),
        (&[("email", "kari@Acme.com")], &all, Some("domain:acme.com")),
        // A personal mailbox names no company.
        (
            &[("email", "kari@gmail.com"), ("company", "Acme AS")],
            &all,
            Some("company:acme"),
        ),
        (&[("email", "ola@hotmail.no")], &all, None),
        // Legal forms go, whatever the language; the name itself stays.
        (
            &[("company", "Nordlys Data A/S")],
            &all,
            Some("company:nordlys data"),
        ),
        (
            &[("company", "Polbud sp. z o.o.")],
            &all,
            Some("company:polbud"),
        ),
        (
            &[("company", "Van Dijk B.V.")],
            &all,
            Some("company:van dijk"),
        ),
        (&[("company", "Inc")], &all, Some("company:inc")),
        (&[("company", "  ")], &all, None),
        (
            &[("company", "Ærlig Ålesund\n\u{0}AS")],
            &all,
            Some("company:ærlig ålesund"),
        ),
        // Only the keys the connection names count, in its order.
        (
            &[
                ("salesforceAccountId", "0015g00000AbCdEAAQ"),
                ("company", "Acme"),
            ],
            &[Company, SalesforceAccount],
            Some("company:acme"),
        ),
        (
            &[("email", "kari@acme.com")],
            &[SalesforceAccount, Company],
            None,
        ),
    ];
    for (values, by, expected) in cases {
        let values: BTreeMap<String, String> = values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(
            account_of(&values, by).as_deref(),
            *expected,
            "{values:?} by {by:?}"
        );
    }
}

#[test]
fn an_endless_company_name_makes_a_bounded_account_id() {
    let values = BTreeMap::from([("company".to_owned(), "Acme ".repeat(10_000))]);
    let key = account_of(&values, &[AccountKey::Company]).expect("an account");
    assert_eq!(key.chars().count(), "company:".len() + 120, "{key}");
}

#[test]
fn accounts_settings_are_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = |accounts: &str| {
        let model = dir.path().join("accounts.toml");
        std::fs::write(&model, model_text()).expect("model");
        let text = format!(
            "model = {model:?}\n[crm]\nkind = \"pardot\"\nbusiness_unit_id = \"0Uv5g000000FAKEAAA\"\ntoken = {{ env = \"T\" }}\n{accounts}\n",
            model = model.display().to_string()
        );
        match Connection::parse("c.toml", &text, dir.path(), None) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let message = bad("[accounts]\ngroup_by = [\"salesforce_acount\", \"company\", \"company\"]");
    assert!(
        message.contains("did you mean `salesforce_account`"),
        "{message}"
    );
    assert!(message.contains("`company` is named twice"), "{message}");
    let hubspot = {
        let model = dir.path().join("accounts.toml");
        let text = format!(
            "model = {model:?}\n[crm]\nkind = \"hubspot\"\ntoken = {{ env = \"T\" }}\n[accounts]\ngroup_by = [\"company\"]\n",
            model = model.display().to_string()
        );
        Connection::parse("c.toml", &text, dir.path(), None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(
        hubspot.contains(
            "5:1: [accounts]: HubSpot groups contacts by their primary associated company"
        ),
        "{hubspot}"
    );
    let message = bad("[accounts]\ngroup_by = []");
    assert!(message.contains("group_by is empty"), "{message}");
    let message = bad(
        "[[output]]\nproperty = \"Account_Tier__c\"\nvalue = \"account.tier\"\nobject = \"company\"",
    );
    assert!(message.contains("has no account object"), "{message}");
    assert_eq!(
        bad("[[output]]\nproperty = \"Account_Tier__c\"\nvalue = \"account.tier\""),
        "",
        "company outputs go onto prospects by default"
    );
    let message = bad("[accounts]\n[[output]]\nproperty = \"S__c\"\nvalue = \"contact.total\"")
        .replace('\n', " ");
    assert_eq!(message, "", "[accounts] alone takes the default keys");
}

async fn prospect(url: &str, id: &str) -> BTreeMap<String, String> {
    let body: Value = reqwest::get(format!("{url}/__fake/prospects/{id}"))
        .await
        .expect("inspect")
        .json()
        .await
        .expect("json");
    body["values"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    Some((k.clone(), text))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn edit(url: &str, id: &str, values: Value) {
    let answer = reqwest::Client::new()
        .post(format!("{url}/__fake/prospects/{id}"))
        .json(&json!({ "values": values }))
        .send()
        .await
        .expect("fake answers");
    assert!(
        answer.status().is_success(),
        "edit {id}: {}",
        answer.status()
    );
}

/// The stored people of an account, sorted.
fn people_of(state: &State, account: &str) -> Vec<String> {
    let mut people = state
        .records_of_companies(&[account.to_owned()])
        .expect("people");
    people.sort();
    people
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_scores_go_onto_every_prospect_of_the_account() {
    let fake = spawn_pardot(FakePardot::new(PardotConfig {
        prospects: 400,
        daily: 1_000_000,
        ..PardotConfig::default()
    }))
    .await
    .expect("fake starts");
    let url = fake.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = connection(&url, &dir, "");
    assert!(
        connection.company_outputs.is_empty(),
        "Pardot has no account object"
    );
    assert_eq!(
        connection.accounts.as_ref().map(|a| a.group_by.clone()),
        Some(vec![
            AccountKey::SalesforceAccount,
            AccountKey::Website,
            AccountKey::Company
        ])
    );
    let crm = Pardot::new(&connection).expect("connector");
    crm.setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    let mut state =
        State::open(&dir.path().join("state.sqlite3"), &connection.identity()).expect("state");
    let first = run(&crm, &connection, &mut state, PassKind::Full).await;
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert!(first.accounts_scored > 20, "{}", first.text());
    assert_eq!(
        first.accounts_written, 0,
        "nothing is written to an account"
    );

    // Every way of grouping is in use, and an account's prospects agree.
    let accounts = state.record_companies().expect("accounts");
    for prefix in ["sf:", "domain:", "company:"] {
        assert!(
            accounts.iter().any(|a| a.starts_with(prefix)),
            "{prefix} accounts: {accounts:?}"
        );
    }
    for account in accounts.iter().take(30) {
        let mut tiers = std::collections::BTreeSet::new();
        for id in people_of(&state, account) {
            tiers.insert(prospect(&url, &id).await.get("Account_Tier__c").cloned());
        }
        assert_eq!(tiers.len(), 1, "{account}: {tiers:?}");
    }

    // The Salesforce account with the most prospects: one director, the
    // others analysts.
    let account = accounts
        .iter()
        .filter(|a| a.starts_with("sf:"))
        .max_by_key(|a| (people_of(&state, a).len(), std::cmp::Reverse((*a).clone())))
        .expect("a Salesforce account")
        .clone();
    let people = people_of(&state, &account);
    assert!(people.len() >= 3, "{account}: {people:?}");
    edit(&url, &people[0], json!({ "jobTitle": "Director" })).await;
    for id in &people[1..] {
        edit(&url, id, json!({ "jobTitle": "Analyst" })).await;
    }
    quiet_passes(&crm, &connection, &mut state).await;
    for id in &people {
        let held = prospect(&url, id).await;
        assert_eq!(
            held["Account_Score__c"], "35",
            "{id}: 5 for its size, 30 for a director"
        );
        assert_eq!(held["Account_Tier__c"], "Medium", "{id}");
    }
    for id in &people[1..] {
        assert_eq!(prospect(&url, id).await["Lead_Stage__c"], "Lead", "{id}");
    }

    // A second director: the account is High on every prospect, and the
    // analysts are MQLs. Only this account's prospects are written.
    edit(&url, &people[1], json!({ "jobTitle": "Director" })).await;
    super::sync_pass::settle().await;
    let report = run(&crm, &connection, &mut state, PassKind::Incremental).await;
    assert_eq!(report.written, people.len() as u64, "{}", report.text());
    for id in &people {
        let held = prospect(&url, id).await;
        assert_eq!(held["Account_Score__c"], "65", "{id}");
        assert_eq!(held["Account_Tier__c"], "High", "{id}");
    }
    for id in &people[2..] {
        assert_eq!(
            prospect(&url, id).await["Lead_Stage__c"],
            "MQL",
            "{id}: moved by the account"
        );
    }
    quiet_passes(&crm, &connection, &mut state).await;

    // The second director's contact moves to another Salesforce account:
    // the account it left is Medium again, and its analysts Leads.
    let other = accounts
        .iter()
        .find(|a| a.starts_with("sf:") && **a != account)
        .expect("another account");
    let other_id = format!("{}AAQ", other.trim_start_matches("sf:"));
    edit(&url, &people[1], json!({ "salesforceAccountId": other_id })).await;
    quiet_passes(&crm, &connection, &mut state).await;
    assert!(!people_of(&state, &account).contains(&people[1]));
    assert!(people_of(&state, other).contains(&people[1]));
    for id in people.iter().filter(|id| **id != people[1]) {
        let held = prospect(&url, id).await;
        assert_eq!(
            held["Account_Score__c"], "35",
            "{id}: the account lost a director"
        );
    }
    for id in &people[2..] {
        assert_eq!(prospect(&url, id).await["Lead_Stage__c"], "Lead", "{id}");
    }
    let moved = prospect(&url, &people[1]).await;
    let other_person = people_of(&state, other)
        .into_iter()
        .find(|id| *id != people[1])
        .expect("the other account has people");
    assert_eq!(
        moved["Account_Score__c"],
        prospect(&url, &other_person).await["Account_Score__c"],
        "the mover carries its new account's score"
    );

    // `explain --connection` scores the prospect with its account, from
    // the state, and agrees with what the CRM holds.
    let text = leadscored::commands::explain_stored(
        &connection,
        &dir.path().join("state.sqlite3"),
        &people[2],
        jiff::Timestamp::now(),
        false,
    )
    .expect("explain");
    assert!(
        text.contains(&format!(
            "Its company {account}, scored from its stored people: account 35 Medium"
        )),
        "{text}"
    );
    assert!(text.contains("  Account_Score__c: 35\n"), "{text}");
    assert!(text.contains("  Account_Tier__c: Medium\n"), "{text}");
    assert!(!text.contains(" at the next pass"), "{text}");
}
