//! One model, two CRMs: the same generated people, served by the fake
//! HubSpot as contacts and by the fake Pardot as prospects, pulled through
//! each connector with the example connections (`config/hubspot.toml`,
//! `config/pardot.toml`, both on `config/b2b.toml`), score identically —
//! the same explanation, line for line, and the same written values.

use std::collections::BTreeMap;

use leadscored::crm::{Connector, Crm as _, CrmRecord, PullKind};
use leadscored::engine::OutputValue;
use leadscored::engine::explain_text;
use leadscored::fake::{FakeHubspot, FakePardot, PardotConfig, spawn_hubspot, spawn_pardot};

use crate::hubspot_flows::{connection, fake_config, pull_all};
use crate::pardot_flows::pardot_connection;

/// Each person's explanation (without its record line) and written values,
/// by email address.
fn scorecards(
    connection: &leadscored::config::Connection,
    records: &[CrmRecord],
    companies: &crate::hubspot_flows::Companies,
    now: jiff::Timestamp,
) -> BTreeMap<String, (String, Vec<Option<String>>)> {
    records
        .iter()
        .map(|pulled| {
            let record = crate::hubspot_flows::model_record(connection, pulled, companies);
            let card = connection.model.score(&record, now);
            let text = explain_text(&connection.model, &record, &card, now);
            let body = text
                .split_once('\n')
                .map_or("", |(_, rest)| rest)
                .to_owned();
            let values = [
                "contact.total",
                "contact.tier",
                "contact.matrix",
                "contact.stage",
                "contact.summary",
                "analytics.total",
                "grade",
            ]
            .iter()
            .map(|value| {
                OutputValue::parse(&connection.model, value)
                    .expect("the model has it")
                    .render(&connection.model, &card)
            })
            .collect();
            let email = pulled.values.get("email").cloned().unwrap_or_default();
            (email, (body, values))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_people_get_the_same_scorecards_from_hubspot_and_pardot() {
    let n = 600;
    let seed = 11;
    let hubspot = spawn_hubspot(FakeHubspot::new(fake_config(n)))
        .await
        .expect("fake HubSpot");
    let pardot = spawn_pardot(FakePardot::new(PardotConfig {
        prospects: n,
        seed,
        daily: 1_000_000,
        ..PardotConfig::default()
    }))
    .await
    .expect("fake Pardot");
    let dir = tempfile::tempdir().expect("temp dir");
    let fast = "per_ten_seconds = 10000\nsearch_per_second = 1000\nconcurrency = 8";
    let from_hubspot = connection(&hubspot.url(), fast, &dir);
    let dir2 = tempfile::tempdir().expect("temp dir");
    let from_pardot = pardot_connection(&pardot.url(), &dir2);
    assert_eq!(
        from_hubspot.model_path, from_pardot.model_path,
        "one model file"
    );

    let until = jiff::Timestamp::now().as_millisecond() + 86_400_000;
    let (hubspot_crm, pardot_crm) = (
        Connector::new(&from_hubspot).expect("HubSpot"),
        Connector::new(&from_pardot).expect("Pardot"),
    );
    for (crm, connection) in [(&hubspot_crm, &from_hubspot), (&pardot_crm, &from_pardot)] {
        crm.setup(&connection.property_specs(), true)
            .await
            .expect("setup");
    }
    let contacts = pull_all(&hubspot_crm, &from_hubspot, PullKind::Full, until, true).await;
    let prospects = pull_all(&pardot_crm, &from_pardot, PullKind::Full, until, true).await;
    assert_eq!((contacts.len(), prospects.len()), (n as usize, n as usize));

    let now = jiff::Timestamp::now();
    let companies =
        crate::hubspot_flows::companies_of(&hubspot_crm, &from_hubspot, &contacts).await;
    // HubSpot reads company facts from the Company record and says so
    // when a contact has none; a Pardot prospect just has empty fields.
    let mut a = scorecards(&from_hubspot, &contacts, &companies, now);
    for (text, _) in a.values_mut() {
        *text = text.replace(
            "\nwarning: no associated company: the company.* criteria did not match\n",
            "",
        );
    }
    let b = scorecards(&from_pardot, &prospects, &Default::default(), now);
    assert_eq!(a.len(), n as usize, "emails are unique");
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same people"
    );
    let mut engaged = 0;
    for (email, (text, values)) in &a {
        let (other_text, other_values) = &b[email];
        assert_eq!(
            text, other_text,
            "{email}: HubSpot's explanation, then Pardot's"
        );
        assert_eq!(values, other_values, "{email}");
        engaged += usize::from(text.contains("Frequent visitor"));
    }
    assert!(
        engaged > n as usize / 10,
        "visit counts reached the model: {engaged}"
    );
}
