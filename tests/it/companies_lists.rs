//! Company facts and list memberships on HubSpot, the whole flow against
//! the fake: `company.*` inputs read the contact's primary company (each
//! company once per pass, in batches of 100); a company edit rescores
//! exactly that company's contacts on the next incremental pass without
//! reading them again; a list membership added in the CRM turns on a list
//! rule on the next pass although the contact itself did not change.

use std::collections::BTreeMap;

use leadscored::fake::hubspot::Faults;
use leadscored::state::State;
use leadscored::sync::{PassKind, PassReport};
use serde_json::{Value, json};

use super::hubspot_flows::stats;
use super::sync_pass::{Setup, settle};

fn calls(stats: &Value, prefix: &str) -> u64 {
    stats["requests"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// What leadscored wrote to a contact: output property → value.
async fn outputs(setup: &Setup, id: &str) -> BTreeMap<String, String> {
    let contact: Value = reqwest::get(format!("{}/__fake/contacts/{id}", setup.fake.url()))
        .await
        .expect("inspect")
        .json()
        .await
        .expect("json");
    setup
        .connection
        .outputs
        .iter()
        .filter_map(|o| {
            let value = contact["properties"][&o.property].as_str()?;
            Some((o.property.clone(), value.to_owned()))
        })
        .collect()
}

async fn post(setup: &Setup, path: &str, body: Value) {
    let answer = reqwest::Client::new()
        .post(format!("{}{path}", setup.fake.url()))
        .json(&body)
        .send()
        .await
        .expect("fake answers");
    assert!(answer.status().is_success(), "{path}: {}", answer.status());
}

/// Passes until one pulls nothing (the echoes of our own writes are read
/// back once), so the next pass sees only what the test changes.
async fn quiet(setup: &Setup, state: &mut State) {
    for _ in 0..3 {
        settle().await;
        let report = setup
            .pass(state, PassKind::Incremental, jiff::Timestamp::now())
            .await
            .expect("pass");
        if report.pulled == 0 && report.changed == 0 {
            return;
        }
    }
    panic!("the portal did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_edit_and_a_list_join_rescore_exactly_their_contacts() {
    let contacts = 800;
    let setup = Setup::new(contacts, Faults::default()).await;
    let mut state = setup.state();
    let before = stats(&setup.fake).await;
    let first: PassReport = setup
        .pass(&mut state, PassKind::Incremental, jiff::Timestamp::now())
        .await
        .expect("first sync");
    let after = stats(&setup.fake).await;
    assert_eq!(first.pulled, contacts);

    // Each company once, in full batches of 100.
    let mut companies: Vec<String> = Vec::new();
    let mut last = String::new();
    loop {
        let batch = state.records_after(&last, 500).expect("records");
        let Some((tail, _)) = batch.last() else { break };
        last = tail.id.clone();
        companies.extend(
            batch
                .iter()
                .filter_map(|(r, _)| r.company_id().map(str::to_owned)),
        );
    }
    companies.sort();
    companies.dedup();
    let batch_reads = calls(&after, "POST /crm/v3/objects/companies/batch/read")
        - calls(&before, "POST /crm/v3/objects/companies/batch/read");
    assert_eq!(first.companies, companies.len() as u64, "{first:?}");
    let least = companies.len().div_ceil(100) as u64;
    assert!(
        (least..=least + 1).contains(&batch_reads),
        "{batch_reads} company reads for {} companies",
        companies.len()
    );
    quiet(&setup, &mut state).await;

    // A small company with several contacts grows from 8 to 250.
    let (company, members) = companies
        .iter()
        .filter_map(|id| {
            let employees: f64 = state
                .company(id)
                .expect("company")?
                .get("numberofemployees")?
                .parse()
                .ok()?;
            let members = state
                .records_of_companies(std::slice::from_ref(id))
                .expect("members");
            (employees <= 10.0 && members.len() >= 3).then(|| (id.clone(), members))
        })
        .next()
        .expect("a small company with three contacts");
    let mut held = BTreeMap::new();
    for id in &members {
        held.insert(id.clone(), outputs(&setup, id).await);
    }
    post(
        &setup,
        &format!("/__fake/companies/{company}"),
        json!({ "numberofemployees": "250" }),
    )
    .await;
    settle().await;
    let before = stats(&setup.fake).await;
    let mut moved = Vec::new();
    let report = {
        let pass = leadscored::sync::Pass {
            kind: PassKind::Incremental,
            now: jiff::Timestamp::now(),
            dry_run: false,
            since: None,
        };
        leadscored::sync::run_pass(
            &setup.crm,
            &setup.connection,
            Some(&mut state),
            pass,
            &leadscored::sync::Stop::default(),
            |change| moved.push(change.id.clone()),
        )
        .await
        .expect("incremental pass")
    };
    let after = stats(&setup.fake).await;
    assert_eq!(report.companies_changed, 1, "{report:?}");
    assert_eq!(report.pulled, 0, "no contact is read again: {report:?}");
    assert_eq!(report.moved, members.len() as u64, "{report:?}");
    moved.sort();
    let mut expected = members.clone();
    expected.sort();
    assert_eq!(moved, expected, "exactly the company's contacts change");
    assert_eq!(
        calls(&after, "POST /crm/v3/objects/companies/search")
            - calls(&before, "POST /crm/v3/objects/companies/search"),
        1,
        "one search finds the changed company"
    );
    assert_eq!(
        calls(&after, "POST /crm/v3/objects/companies/batch/read")
            - calls(&before, "POST /crm/v3/objects/companies/batch/read"),
        0,
        "the search brought its values"
    );
    let mut tier_or_stage = 0;
    for id in &members {
        let now_held = outputs(&setup, id).await;
        let was = &held[id];
        let score = |m: &BTreeMap<String, String>| -> f64 {
            m.get("leadscored_score")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0)
        };
        assert!(
            score(&now_held) > score(was),
            "contact {id}: {was:?} → {now_held:?}"
        );
        if now_held.get("leadscored_tier") != was.get("leadscored_tier")
            || now_held.get("leadscored_stage") != was.get("leadscored_stage")
        {
            tier_or_stage += 1;
        }
    }
    println!(
        "company {company}: {} contacts rescored, {tier_or_stage} changed tier or stage",
        members.len()
    );
    quiet(&setup, &mut state).await;

    // A contact joins the webinar list: the list rule fires next pass.
    let joiner = (1..=contacts)
        .map(|id| id.to_string())
        .find(|id| {
            state.record(id).ok().flatten().is_some_and(|(mut r, _)| {
                state.context(&mut r).is_ok()
                    && !r.lists.iter().any(|l| l == "Analytics webinar 2026")
            })
        })
        .expect("someone outside the list");
    let was = outputs(&setup, &joiner).await;
    post(
        &setup,
        "/__fake/lists/11/members",
        json!({ "add": [joiner.parse::<u64>().expect("id")] }),
    )
    .await;
    let report = setup
        .pass(&mut state, PassKind::Incremental, jiff::Timestamp::now())
        .await
        .expect("pass after the list join");
    assert_eq!(report.pulled, 0, "{report:?}");
    assert_eq!(report.lists_read, 1, "{report:?}");
    assert_eq!(report.moved, 1, "{report:?}");
    assert_eq!(report.changed, 1, "{report:?}");
    let now_held = outputs(&setup, &joiner).await;
    let analytics = |m: &BTreeMap<String, String>| -> f64 {
        m.get("leadscored_analytics_score")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        analytics(&now_held) > analytics(&was),
        "{was:?} → {now_held:?}"
    );

    // A contact of a small company moves to a large one: its own modified
    // time moves, the search brings it back, and it is scored with the
    // new company's values.
    let employees = |state: &State, id: &str| -> Option<f64> {
        state
            .company(id)
            .ok()??
            .get("numberofemployees")?
            .parse()
            .ok()
    };
    let large = companies
        .iter()
        .find(|id| employees(&state, id).is_some_and(|n| n >= 500.0))
        .expect("a large company")
        .clone();
    let mover = companies
        .iter()
        .filter(|id| **id != company && employees(&state, id).is_some_and(|n| n <= 10.0))
        .flat_map(|id| {
            state
                .records_of_companies(std::slice::from_ref(id))
                .expect("members")
        })
        .next()
        .expect("a contact of another small company");
    let was = outputs(&setup, &mover).await;
    post(
        &setup,
        &format!("/__fake/contacts/{mover}/company"),
        json!({ "company": large }),
    )
    .await;
    settle().await;
    let report = setup
        .pass(&mut state, PassKind::Incremental, jiff::Timestamp::now())
        .await
        .expect("pass after the move");
    assert_eq!(
        report.pulled - report.unchanged,
        1,
        "the mover (and echoes of our last write): {report:?}"
    );
    let (moved_record, _) = state.record(&mover).expect("read").expect("stored");
    assert_eq!(moved_record.company_id(), Some(large.as_str()));
    let now_held = outputs(&setup, &mover).await;
    let score = |m: &BTreeMap<String, String>| -> f64 {
        m.get("leadscored_score")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(score(&now_held) > score(&was), "{was:?} → {now_held:?}");
    settle().await;

    // Nothing changed: the lists are not read again.
    let report = setup
        .pass(&mut state, PassKind::Incremental, jiff::Timestamp::now())
        .await
        .expect("quiet pass");
    assert_eq!((report.lists_read, report.moved), (0, 0), "{report:?}");
}

#[test]
fn setup_check_reports_every_input_the_portal_cannot_feed_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = super::daemon::free_port();
    let connection = dir.path().join("c.toml");
    let path = connection.display().to_string();
    let fake = super::cli::start_fake(&["--contacts", "50", "--write-connection", &path], port);
    for _ in 0..100 {
        if connection.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let run = |extra: &str| {
        let text = std::fs::read_to_string(&connection).expect("connection");
        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, format!("{text}\n{extra}")).expect("write");
        std::process::Command::new(env!("CARGO_BIN_EXE_leadscored"))
            .args(["setup", "--check", "--connection"])
            .arg(&broken)
            .output()
            .expect("setup runs")
    };
    // The file as written: every input exists on the fake portal.
    let fine = run("");
    let out = String::from_utf8_lossy(&fine.stdout).to_string();
    assert!(!out.contains("MISSING"), "{out}");

    // A misspelt company field and a model list the portal lacks: both
    // reported in one run, with what reads them.
    let model = dir.path().join("c-model.toml");
    let text = std::fs::read_to_string(&model).expect("model");
    std::fs::write(
        &model,
        text.replace("Analytics webinar 2026", "Analytics webinar 2031"),
    )
    .expect("model");
    let source = std::fs::read_to_string(&connection).expect("connection");
    std::fs::write(
        &connection,
        source.replace(
            "field = \"numberofemployees\"",
            "field = \"number_of_employees\"",
        ),
    )
    .expect("connection");
    let broken = run("");
    // check-config asks the same portal when given --crm-url: warnings
    // located where the model reads each input, fatal only with --strict.
    let check = |strict: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_leadscored"));
        command
            .args(["check-config", "--connection"])
            .arg(dir.path().join("broken.toml"))
            .args(["--crm-url", &format!("http://127.0.0.1:{port}")]);
        if strict {
            command.arg("--strict");
        }
        command.output().expect("check-config runs")
    };
    let (lenient, strict) = (check(false), check(true));
    super::cli::terminate(fake);
    let shown = String::from_utf8_lossy(&lenient.stdout).to_string();
    assert_eq!(lenient.status.code(), Some(0), "{shown}");
    let model_file = model.display().to_string();
    let warning = shown
        .lines()
        .find(|l| l.contains("warning: company property number_of_employees"))
        .unwrap_or_else(|| panic!("no warning for the company field in {shown}"));
    assert!(warning.starts_with(&format!("{model_file}:")), "{warning}");
    assert!(
        shown
            .lines()
            .any(|l| l.contains("warning: list \"analytics webinar 2031\"")),
        "{shown}"
    );
    assert!(shown.contains("\n2 warnings\n"), "{shown}");
    assert_eq!(strict.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("2 warnings (fatal under --strict)"));
    let out = String::from_utf8_lossy(&broken.stdout).to_string();
    assert_eq!(broken.status.code(), Some(78), "{out}");
    assert!(
        out.contains("MISSING   company property number_of_employees")
            && out.contains("rule \"More than 10 employees\""),
        "{out}"
    );
    assert!(
        out.contains("MISSING   list \"analytics webinar 2031\"")
            && out.contains("rule \"Analytics webinar list\""),
        "{out}"
    );
}
