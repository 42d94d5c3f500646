//! The plan of writes: only changed values, under each output's
//! ownership policy.

use std::collections::BTreeMap;

use leadscored::config::Connection;
use leadscored::crm::{CrmRecord, mapping};

fn connection() -> Connection {
    let source = crate::read("config/hubspot.toml");
    Connection::parse("hubspot.toml", &source, &crate::root().join("config"), None)
        .expect("the example connection")
}

/// The changes for a VP at a large software company, given what the CRM holds.
fn changes(held: &[(&str, &str)]) -> BTreeMap<String, (Option<String>, String)> {
    let connection = connection();
    let mut values: BTreeMap<String, String> = [
        ("jobtitle", "VP Marketing"),
        ("email", "vp@bigsoft.example"),
        ("numemployees", "1200"),
        ("industry", "Software"),
        ("country", "Norway"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in held {
        values.insert((*k).to_owned(), (*v).to_owned());
    }
    let pulled = CrmRecord {
        id: "1".to_owned(),
        values,
        ..CrmRecord::default()
    };
    let record = mapping::to_record(&connection.model, &connection.inputs, &pulled, None);
    let card = connection
        .model
        .score(&record, crate::now("2026-11-01T00:00:00Z"));
    leadscored::plan::changes(
        &connection.model,
        &connection.outputs,
        &pulled.values,
        &card,
    )
    .into_iter()
    .map(|c| (c.property, (c.old, c.new)))
    .collect()
}

#[test]
fn a_fresh_contact_gets_every_output() {
    let got = changes(&[]);
    assert_eq!(got["leadscored_tier"].1, "low", "value map applied");
    assert_eq!(got["hs_lead_status"].1, "NEW");
    assert!(got.contains_key("leadscored_score"));
    assert!(got.contains_key("leadscored_grade"));
}

#[test]
fn unchanged_values_are_not_written_and_numbers_compare_as_numbers() {
    let first = changes(&[]);
    let held: Vec<(&str, &str)> = first
        .iter()
        .map(|(k, (_, new))| (k.as_str(), new.as_str()))
        .collect();
    assert!(changes(&held).is_empty(), "nothing moved, nothing written");
    let score = first["leadscored_score"].1.clone();
    let as_float = format!("{score}.0");
    let mut held = held.clone();
    held.retain(|(k, _)| *k != "leadscored_score");
    held.push(("leadscored_score", &as_float));
    assert!(
        changes(&held).is_empty(),
        "{score} and {as_float} are the same number"
    );
}

#[test]
fn a_status_sales_set_is_left_alone_but_ours_is_updated() {
    let by_sales = changes(&[("hs_lead_status", "CONNECTED")]);
    assert!(!by_sales.contains_key("hs_lead_status"), "{by_sales:?}");
    let ours = changes(&[("hs_lead_status", "OPEN")]);
    assert_eq!(
        ours["hs_lead_status"],
        (Some("OPEN".to_owned()), "NEW".to_owned())
    );
}
