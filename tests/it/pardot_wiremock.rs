//! The Pardot connector against recorded answers (fixtures/pardot/): the
//! request shape (business unit, usage header, fields, paging with only
//! `fields` beside the token), the restart after `Pardot-Warning: 203`,
//! visitor activities as model events, and each error code's handling —
//! 66 retried, 122 stops without retrying, 184 on a static token stops
//! without the token in the message, 181 and 403 stop with the reason, 5 on
//! a PATCH fails that prospect only — and the Import API's request shape
//! (multipart input and CSV, start, poll, failed rows from the error file).

use std::collections::BTreeMap;

use leadscored::crm::{Connector, Crm as _, CrmError, CrmRecord, PullKind, PullSpec, Update};
use serde_json::Value;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::pardot_flows::pardot_connection;

const UNIT: &str = "0Uv5g000000FAKEAAA";

fn fixture(name: &str) -> Value {
    serde_json::from_str(&crate::read(&format!("fixtures/pardot/{name}"))).expect("fixture JSON")
}

fn answer(status: u16, name: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(fixture(name))
}

async fn setup() -> (
    MockServer,
    tempfile::TempDir,
    leadscored::config::Connection,
) {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = pardot_connection(&server.uri(), &dir);
    (server, dir, connection)
}

async fn pull(crm: &Connector, spec: &PullSpec) -> Result<Vec<CrmRecord>, CrmError> {
    let (sink, mut pages) = tokio::sync::mpsc::channel(8);
    let collect = async {
        let mut all = Vec::new();
        while let Some(page) = pages.recv().await {
            all.extend(page);
        }
        all
    };
    let (pulled, records) = tokio::join!(crm.pull(spec, sink), collect);
    pulled.map(|_| records)
}

fn spec(connection: &leadscored::config::Connection, kind: PullKind, events: bool) -> PullSpec {
    PullSpec {
        kind,
        fields: connection.fields(),
        event_types: if events {
            connection.events.keys().cloned().collect()
        } else {
            Vec::new()
        },
        until_ms: jiff::Timestamp::now().as_millisecond(),
        known: Default::default(),
        ids: Default::default(),
    }
}

async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

fn query_of(request: &Request) -> BTreeMap<String, String> {
    request.url.query_pairs().into_owned().collect()
}

#[tokio::test]
async fn pages_carry_the_business_unit_and_only_fields_beside_the_token() {
    let (server, _dir, connection) = setup().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/objects/prospects"))
        .and(query_param("nextPageToken", "tok-page-2"))
        .respond_with(answer(200, "prospects-page-2.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/objects/prospects"))
        .and(header("pardot-business-unit-id", UNIT))
        .and(header("x-return-api-usage", "1"))
        .and(header("authorization", "Bearer fake-pardot-access-token"))
        .and(query_param("limit", "1000"))
        .and(query_param("orderBy", "id ASC"))
        .respond_with(
            answer(200, "prospects-page-1.json").insert_header("x-api-usage", "120/50000"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let crm = Connector::new(&connection).expect("connector");
    let records = pull(&crm, &spec(&connection, PullKind::Full, false))
        .await
        .expect("pull");
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["1001", "1002", "1003"]);
    assert_eq!(records[0].values["jobTitle"], "CTO");
    assert_eq!(records[1].values["leadscored_score__c"], "12");
    assert!(
        !records[0].values.contains_key("leadscored_stage__c"),
        "null is absent"
    );
    assert_eq!(
        records[2].modified_ms,
        "2026-11-21T13:30:00Z"
            .parse::<jiff::Timestamp>()
            .expect("time")
            .as_millisecond()
    );
    let requests = received(&server).await;
    let first = query_of(&requests[0]);
    let fields: Vec<&str> = first["fields"].split(',').collect();
    for needed in [
        "id",
        "updatedAt",
        "jobTitle",
        "employees",
        "leadscored_score__c",
    ] {
        assert!(fields.contains(&needed), "{needed} in {fields:?}");
    }
    let second = query_of(&requests[1]);
    let keys: Vec<&str> = second.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["fields", "nextPageToken"],
        "only fields beside the token"
    );
    // The CRM says 49,880 calls remain (120 of its 50,000 used), a smaller
    // limit than the configured edition's 100,000, so 50,000 it is: the
    // guard keeps 20 % of it for others and counts the one call made
    // since: 49,880 - 10,000 - 1.
    assert_eq!(crm.http().budget_left(), 39_879);
}

#[tokio::test]
async fn a_query_cut_off_at_the_token_limit_restarts_after_the_last_record() {
    let (server, _dir, connection) = setup().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/objects/prospects"))
        .and(query_param("idGreaterThan", "1003"))
        .respond_with(answer(200, "prospects-after-restart.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/objects/prospects"))
        .and(query_param("nextPageToken", "tok-page-2"))
        .respond_with(answer(200, "prospects-page-2.json").insert_header("Pardot-Warning", "203"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/objects/prospects"))
        .respond_with(answer(200, "prospects-page-1.json"))
        .expect(1)
        .mount(&server)
        .await;
    let crm = Connector::new(&connection).expect("connector");
    let records = pull(&crm, &spec(&connection, PullKind::Full, false))
        .await
        .expect("pull");
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["1001", "1002", "1003", "1004"],
        "none missed, none twice"
    );
}

#[tokio::test]
async fn visitor_activities_become_the_models_events() {
    let (server, _dir, connection) = setup().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/objects/visitor-activities"))
        .and(query_param("prospectId", "1003"))
        .respond_with(answer(200, "visitor-activities.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/objects/prospects"))
        .respond_with(answer(200, "prospects-page-2.json"))
        .mount(&server)
        .await;
    let crm = Connector::new(&connection).expect("connector");
    let records = pull(&crm, &spec(&connection, PullKind::Since(0), true))
        .await
        .expect("pull");
    let events: Vec<(String, Vec<(String, String)>)> = records[0]
        .events
        .iter()
        .map(|e| (e.kind.clone(), e.attributes.clone()))
        .collect();
    let has = |kind: &str, name: &str, value: &str| {
        events
            .iter()
            .any(|(k, a)| k == kind && a.iter().any(|(n, v)| n == name && v == value))
    };
    assert!(
        has("page_view", "url", "https://www.acme.example/pricing"),
        "{events:?}"
    );
    assert!(
        has("content_download", "asset", "premium-roi-calculator"),
        "{events:?}"
    );
    assert!(
        has("form_submission", "form_id", "demo-request"),
        "{events:?}"
    );
    assert!(
        has("email_open", "campaign", "November newsletter"),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|(k, _)| k == "page_view" && has("page_view", "url", "premium-roi-calculator")),
        "a download is not a page view"
    );
    let (derived, events): (Vec<_>, Vec<_>) = events
        .into_iter()
        .partition(|(k, _)| k.starts_with("input:"));
    assert_eq!(events.len(), 4, "type 6 is not read: {events:?}");
    // The newest open also feeds the last-open date input.
    assert_eq!(derived.len(), 1, "{derived:?}");
    assert_eq!(derived[0].0, "input:hs_email_last_open_date");
    let query = query_of(&received(&server).await[0]);
    assert_eq!(query["orderBy"], "updatedAt ASC");
    assert!(query.contains_key("updatedAtAfterOrEqualTo"));
    assert!(query.contains_key("updatedAtBeforeOrEqualTo"));
}

#[tokio::test]
async fn error_66_is_retried_and_122_stops_at_once() {
    let (server, _dir, connection) = setup().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/objects/prospects"))
        .respond_with(answer(429, "error-66-concurrency.json"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/objects/prospects"))
        .respond_with(answer(200, "prospects-page-2.json"))
        .mount(&server)
        .await;
    let crm = Connector::new(&connection).expect("connector");
    let records = pull(&crm, &spec(&connection, PullKind::Full, false))
        .await
        .expect("retried");
    assert_eq!(records.len(), 1);
    assert_eq!(
        crm.http()
            .stats
            .throttled
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    let (server, _dir, connection) = setup().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/objects/prospects"))
        .respond_with(answer(429, "error-122-daily.json"))
        .expect(1)
        .mount(&server)
        .await;
    let crm = Connector::new(&connection).expect("connector");
    let error = pull(&crm, &spec(&connection, PullKind::Full, false))
        .await
        .expect_err("the day's budget is spent");
    let CrmError::BudgetExhausted { resume_at, .. } = error else {
        panic!("{error:?}");
    };
    let zone = jiff::tz::TimeZone::get("America/New_York").expect("zone");
    let local = resume_at.to_zoned_datetime(zone.clone());
    // In the first two hours after the account's midnight the CRM's counter
    // may not have reset yet: a probe soon, not a day's wait. Otherwise the
    // next midnight in the account's zone.
    if jiff::Timestamp::now().to_zoned_datetime(zone).hour() < 2 {
        let wait = resume_at.duration_since(jiff::Timestamp::now());
        assert!(
            wait <= jiff::SignedDuration::from_secs(7200),
            "a probe soon after midnight, not {wait:?}"
        );
    } else {
        assert_eq!(
            (local.hour(), local.minute()),
            (0, 0),
            "midnight in the account's zone"
        );
    }
    assert!(resume_at > jiff::Timestamp::now());
}

#[tokio::test]
async fn a_refused_static_token_stops_without_showing_it() {
    let (server, _dir, connection) = setup().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/objects/prospects"))
        .respond_with(answer(401, "error-184-token.json"))
        .expect(1)
        .mount(&server)
        .await;
    let crm = Connector::new(&connection).expect("connector");
    let error = pull(&crm, &spec(&connection, PullKind::Full, false))
        .await
        .expect_err("refused");
    assert!(matches!(error, CrmError::Auth(_)), "{error:?}");
    let shown = format!("{error} {error:?} {crm:?}");
    assert!(!shown.contains("fake-pardot-access-token"), "{shown}");
}

#[tokio::test]
async fn a_refused_patch_fails_only_its_prospect() {
    let (server, _dir, connection) = setup().await;
    Mock::given(method("PATCH"))
        .and(path("/api/v5/objects/prospects/1002"))
        .respond_with(answer(400, "error-5-invalid-value.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v5/objects/prospects/1001"))
        .and(header("pardot-business-unit-id", UNIT))
        .respond_with(answer(200, "prospect-patched.json"))
        .expect(1)
        .mount(&server)
        .await;
    let crm = Connector::new(&connection).expect("connector");
    let update = |id: &str, score: &str| Update {
        id: id.to_owned(),
        values: BTreeMap::from([
            ("leadscored_score__c".to_owned(), score.to_owned()),
            ("leadscored_reasons__c".to_owned(), String::new()),
        ]),
    };
    let report = crm
        .write(vec![update("1001", "87"), update("1002", "abc")])
        .await
        .expect("write");
    assert_eq!(report.written, ["1001"]);
    assert_eq!(report.failed.len(), 1);
    assert!(
        report.failed[0].1.contains("not a number"),
        "{:?}",
        report.failed
    );
    assert_eq!(report.calls, 2);
    assert_eq!(
        report.stamps,
        [(
            "1001".to_owned(),
            "2026-11-24T10:00:01Z"
                .parse::<jiff::Timestamp>()
                .expect("time")
                .as_millisecond()
        )]
    );
    let requests = received(&server).await;
    let body: Value = requests
        .iter()
        .find(|r| r.url.path().ends_with("/1001"))
        .map(|r| serde_json::from_slice(&r.body).expect("JSON body"))
        .expect("the PATCH");
    assert_eq!(body["leadscored_score__c"], "87");
    assert_eq!(body["leadscored_reasons__c"], Value::Null, "empty clears");
}

#[tokio::test]
async fn many_updates_go_by_one_import_and_its_failed_rows_fail_alone() {
    let (server, _dir, connection) = setup().await;
    Mock::given(method("POST"))
        .and(path("/api/v5/imports"))
        .and(header("pardot-business-unit-id", UNIT))
        .respond_with(answer(201, "import-created.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v5/imports/8801"))
        .respond_with(answer(200, "import-ready.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/imports/8801"))
        .respond_with(answer(200, "import-processing.json"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/imports/8801"))
        .respond_with(answer(200, "import-complete.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/imports/8801/errors"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/csv")
                .set_body_string(crate::read("fixtures/pardot/import-errors.csv")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let crm = Connector::new(&connection).expect("connector");
    // 120 prospects with the same two changed fields, one with a comma.
    let updates: Vec<Update> = (1000..1120)
        .map(|id| Update {
            id: id.to_string(),
            values: BTreeMap::from([
                ("leadscored_score__c".to_owned(), (id % 97).to_string()),
                (
                    "leadscored_tier__c".to_owned(),
                    if id == 1001 { "high, \"hot\"" } else { "low" }.to_owned(),
                ),
            ]),
        })
        .collect();
    let report = crm.write(updates).await.expect("write");
    assert_eq!(report.written.len(), 118, "{report:?}");
    assert_eq!(report.failed.len(), 2);
    let failed: BTreeMap<_, _> = report.failed.iter().cloned().collect();
    assert!(failed["1007"].contains("not a number"), "{failed:?}");
    assert!(failed["1042"].contains("No prospect matched"), "{failed:?}");
    assert_eq!(report.calls, 5, "create, start, two polls, errors");
    // Every written row carries the import's finishing time as its stamp.
    let finished = "2026-11-24T09:15:41-05:00"
        .parse::<jiff::Timestamp>()
        .expect("time")
        .as_millisecond();
    assert!(report.stamps.iter().all(|(_, at)| *at == finished));

    let requests = received(&server).await;
    let create = &requests[0];
    let content_type = create
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("multipart/form-data"),
        "{content_type}"
    );
    let body = String::from_utf8_lossy(&create.body);
    assert!(body.contains("name=\"input\""), "{body}");
    assert!(body.contains("\"operation\":\"Upsert\""));
    assert!(body.contains("\"createOnNoMatch\":false"));
    assert!(body.contains("name=\"importFile\"; filename=\"leadscored.csv\""));
    assert!(body.contains("matchId,leadscored_score__c,leadscored_tier__c\n1000,30,low\n"));
    assert!(
        body.contains("1001,31,\"high, \"\"hot\"\"\"\n"),
        "quoted as CSV"
    );
    let start: Value = serde_json::from_slice(&requests[1].body).expect("json");
    assert_eq!(start, serde_json::json!({ "status": "Ready" }));
}

#[tokio::test]
async fn a_few_updates_go_by_patch() {
    let (server, _dir, connection) = setup().await;
    Mock::given(method("PATCH"))
        .and(path_regex_prospect())
        .respond_with(answer(200, "prospect-patched.json"))
        .expect(3)
        .mount(&server)
        .await;
    let crm = Connector::new(&connection).expect("connector");
    let updates: Vec<Update> = (1..=3)
        .map(|id| Update {
            id: id.to_string(),
            values: BTreeMap::from([("leadscored_score__c".to_owned(), "10".to_owned())]),
        })
        .collect();
    let report = crm.write(updates).await.expect("write");
    assert_eq!((report.written.len(), report.calls), (3, 3));
}

fn path_regex_prospect() -> wiremock::matchers::PathRegexMatcher {
    wiremock::matchers::path_regex(r"^/api/v5/objects/prospects/\d+$")
}

#[tokio::test]
async fn a_wrong_business_unit_or_missing_ability_stops_at_once_with_the_reason() {
    for (status, fixture, expect) in [
        (400, "error-181-business-unit.json", "business_unit_id"),
        (403, "error-403-ability.json", "Account Engagement access"),
    ] {
        let (server, _dir, connection) = setup().await;
        Mock::given(method("GET"))
            .and(path("/api/v5/objects/prospects"))
            .respond_with(answer(status, fixture))
            .expect(1)
            .mount(&server)
            .await;
        let crm = Connector::new(&connection).expect("connector");
        let error = pull(&crm, &spec(&connection, PullKind::Full, false))
            .await
            .expect_err("refused");
        assert!(
            matches!(error, CrmError::Auth(_) | CrmError::MissingScope(_)),
            "{fixture}: {error:?}"
        );
        let text = error.to_string();
        assert!(text.contains(expect), "{fixture}: {text}");
    }
}
