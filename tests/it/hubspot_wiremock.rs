//! The HubSpot connector against recorded answers (fixtures/hubspot/):
//! each endpoint's request shape, and each error shape's handling — 207
//! partial failures, 400s, 401 expired and invalid, 403 scopes, 429s with
//! and without `Retry-After`, the daily limit, 5xx, bad bodies, timeouts.

use std::collections::BTreeMap;
use std::time::Duration;

use leadscored::config::Connection;
use leadscored::crm::hubspot::Hubspot;
use leadscored::crm::{Crm as _, CrmError, PullKind, Update};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::hubspot_flows::{TOKEN, connection, pull_all};

const QUICK: &str =
    "backoff_base_ms = 5\nbackoff_max_secs = 0.05\nrequest_timeout_secs = 0.5\nmax_attempts = 3";

fn fixture(name: &str) -> Value {
    serde_json::from_str(&crate::read(&format!("fixtures/hubspot/{name}"))).expect("fixture JSON")
}

fn json_response(status: u16, name: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(fixture(name))
}

async fn setup() -> (MockServer, tempfile::TempDir, Connection, Hubspot) {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = connection(&server.uri(), QUICK, &dir);
    let crm = Hubspot::new(&connection).expect("connector");
    (server, dir, connection, crm)
}

fn update(id: &str, score: &str) -> Update {
    Update {
        id: id.to_owned(),
        values: BTreeMap::from([("leadscored_score".to_owned(), score.to_owned())]),
    }
}

async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

#[tokio::test]
async fn list_pages_request_exactly_the_needed_properties_with_the_token() {
    let (server, _dir, connection, crm) = setup().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts"))
        .and(query_param("after", "102"))
        .respond_with(json_response(200, "contacts-page-2.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(query_param("limit", "100"))
        .respond_with(json_response(200, "contacts-page-1.json"))
        .expect(1)
        .mount(&server)
        .await;
    let records = pull_all(&crm, &connection, PullKind::Full, i64::MAX, false).await;
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["101", "102", "103"]);
    // Nulls are left out; epoch-millisecond dates are understood.
    assert!(!records[0].values.contains_key("leadscored_score"));
    assert_eq!(records[2].modified_ms, 1_761_811_200_000);

    let requests = received(&server).await;
    let first = &requests[0];
    let asked: Vec<String> = first
        .url
        .query_pairs()
        .find(|(k, _)| k == "properties")
        .map(|(_, v)| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut expected = connection.fields();
    expected.push("lastmodifieddate".to_owned());
    expected.sort();
    expected.dedup();
    assert_eq!(asked, expected);
    let agent = first
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(agent.starts_with("leadscored/"), "{agent}");
}

#[tokio::test]
async fn incremental_search_pages_by_id_inside_the_window() {
    let (server, _dir, connection, crm) = setup().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .and(body_partial_json(json!({
            "filterGroups": [{ "filters": [
                { "propertyName": "lastmodifieddate", "operator": "GTE" },
                { "propertyName": "lastmodifieddate", "operator": "LTE", "value": "1793500000000" },
                { "propertyName": "hs_object_id", "operator": "GT", "value": "205" }
            ]}]
        })))
        .respond_with(json_response(200, "search-last-page.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .and(body_partial_json(json!({
            "sorts": [{ "propertyName": "hs_object_id", "direction": "ASCENDING" }],
            "limit": 200
        })))
        .respond_with(json_response(200, "search-page.json"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let watermark = 1_793_400_000_000;
    let records = pull_all(
        &crm,
        &connection,
        PullKind::Since(watermark),
        1_793_500_000_000,
        false,
    )
    .await;
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["201", "205", "230"]);
    let requests = received(&server).await;
    let body: Value = serde_json::from_slice(&requests[0].body).expect("json body");
    let from = body["filterGroups"][0]["filters"][0]["value"]
        .as_str()
        .and_then(|v| v.parse::<i64>().ok())
        .expect("a lower bound");
    assert_eq!(
        from,
        watermark - connection.limits.search_overlap.as_millis() as i64,
        "the window reaches back by the overlap"
    );
    assert_eq!(body["filterGroups"][0]["filters"][2]["value"], "0");
}

#[tokio::test]
async fn a_207_reports_failures_per_record_and_retries_nothing() {
    let (server, _dir, _connection, crm) = setup().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/update"))
        .respond_with(json_response(207, "batch-update-207.json"))
        .expect(1)
        .mount(&server)
        .await;
    let report = crm
        .write(vec![
            update("101", "72"),
            update("102", "eleven"),
            update("999", "1"),
        ])
        .await
        .expect("a partial success is not an error");
    assert_eq!(report.written, ["101"]);
    let failed: BTreeMap<&str, &str> = report
        .failed
        .iter()
        .map(|(id, why)| (id.as_str(), why.as_str()))
        .collect();
    assert!(failed["102"].starts_with("VALIDATION_ERROR"), "{failed:?}");
    assert!(failed["999"].starts_with("OBJECT_NOT_FOUND"), "{failed:?}");
    assert_eq!(report.calls, 1);
}

#[tokio::test]
async fn writes_go_in_batches_of_one_hundred_and_a_400_fails_only_its_batch() {
    let (server, _dir, _connection, crm) = setup().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/update"))
        .and(body_partial_json(json!({ "inputs": [{ "id": "bad-0" }] })))
        .respond_with(json_response(400, "batch-update-400.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/update"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let results: Vec<Value> = body["inputs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| json!({ "id": i["id"], "properties": {}, "createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2026-11-24T00:00:00Z", "archived": false }))
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({ "status": "COMPLETE", "results": results, "startedAt": "2026-11-24T00:00:00Z", "completedAt": "2026-11-24T00:00:01Z" }))
        })
        .expect(2)
        .mount(&server)
        .await;
    let mut updates: Vec<Update> = (0..200).map(|i| update(&i.to_string(), "5")).collect();
    updates.extend((0..50).map(|i| update(&format!("bad-{i}"), "5")));
    let report = crm.write(updates).await.expect("write");
    assert_eq!(report.calls, 3);
    assert_eq!(report.written.len(), 200);
    assert_eq!(report.failed.len(), 50);
    assert!(report.failed[0].1.contains("does not exist"));
    for request in received(&server).await {
        let body: Value = serde_json::from_slice(&request.body).expect("json");
        assert!(body["inputs"].as_array().map_or(0, Vec::len) <= 100);
    }
}

#[tokio::test]
async fn rate_limited_and_failing_calls_are_retried_honouring_retry_after() {
    let (server, _dir, _connection, crm) = setup().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/update"))
        .respond_with(
            json_response(429, "error-429-ten-secondly.json").insert_header("Retry-After", "1"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/update"))
        .respond_with(json_response(502, "error-500.json"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/update"))
        .respond_with(json_response(200, "batch-update-200.json"))
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let report = crm
        .write(vec![update("101", "72"), update("102", "0")])
        .await
        .expect("write");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(report.written, ["101", "102"]);
    assert_eq!(received(&server).await.len(), 3);
    let stats = &crm.http().stats;
    assert_eq!(stats.retries.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(
        stats.throttled.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn retries_are_bounded_and_other_4xx_are_never_retried() {
    let (server, _dir, _connection, crm) = setup().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts"))
        .respond_with(json_response(503, "error-500.json"))
        .expect(3)
        .mount(&server)
        .await;
    let error = crm.setup(&[], false).await.expect_err("the CRM stays down");
    assert!(
        matches!(error, CrmError::Unavailable { attempts: 3, .. }),
        "{error}"
    );

    let (server, _dir, _connection, crm) = setup().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({ "status": "error", "message": "Not found", "category": "OBJECT_NOT_FOUND" }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let error = crm.setup(&[], false).await.expect_err("not found");
    assert!(
        matches!(error, CrmError::Rejected { status: 404, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn bad_bodies_and_timeouts_are_retried() {
    let (server, _dir, connection, crm) = setup().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"results\": [{\"id\": \"1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts"))
        .respond_with(json_response(200, "contacts-page-2.json").set_delay(Duration::from_secs(2)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts"))
        .respond_with(json_response(200, "contacts-page-2.json"))
        .mount(&server)
        .await;
    let records = pull_all(&crm, &connection, PullKind::Full, i64::MAX, false).await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        crm.http()
            .stats
            .retries
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[tokio::test]
async fn auth_failures_stop_the_run_with_a_clear_message_and_no_secret() {
    let (server, _dir, _connection, crm) = setup().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts"))
        .respond_with(json_response(401, "error-401-invalid.json"))
        .expect(1)
        .mount(&server)
        .await;
    let error = crm.setup(&[], false).await.expect_err("rejected");
    let text = error.to_string();
    assert!(matches!(error, CrmError::Auth(_)), "{text}");
    assert!(text.contains("INVALID_AUTHENTICATION"), "{text}");
    assert!(!text.contains(TOKEN), "the token never appears: {text}");
    assert!(!format!("{crm:?}").contains(TOKEN), "nor in Debug output");

    let (server, _dir, _connection, crm) = setup().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts"))
        .respond_with(json_response(403, "error-403-scope.json"))
        .expect(1)
        .mount(&server)
        .await;
    let error = crm.setup(&[], false).await.expect_err("forbidden");
    assert!(matches!(error, CrmError::MissingScope(_)), "{error}");
    assert!(
        error.to_string().contains("crm.schemas.contacts.write"),
        "names the scope: {error}"
    );

    // A static token that HubSpot calls expired cannot be refreshed.
    let (server, _dir, _connection, crm) = setup().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts"))
        .respond_with(json_response(401, "error-401-expired.json"))
        .expect(1)
        .mount(&server)
        .await;
    let error = crm.setup(&[], false).await.expect_err("expired");
    assert!(matches!(error, CrmError::Auth(_)), "{error}");
}

#[tokio::test]
async fn an_expired_oauth_token_is_refreshed_once_and_the_call_retried_once() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("secret"), "fixture-client-secret").expect("secret");
    std::fs::write(dir.path().join("refresh"), "fixture-refresh-token").expect("refresh");
    let source = crate::read("config/hubspot.toml").replace(
        "token = { credential = \"hubspot-token\" }",
        &format!(
            "oauth = {{ client_id = \"fixture-client\", client_secret = {{ file = {:?} }}, refresh_token = {{ file = {:?} }} }}",
            dir.path().join("secret").display().to_string(),
            dir.path().join("refresh").display().to_string()
        ),
    );
    let mut connection = Connection::parse(
        "hubspot-oauth.toml",
        &source,
        &crate::root().join("config"),
        None,
    )
    .expect("connection");
    connection.override_base_url(&server.uri()).expect("url");
    let crm = Hubspot::new(&connection).expect("connector");

    let issued = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = std::sync::Arc::clone(&issued);
    Mock::given(method("POST"))
        .and(path("/oauth/v1/token"))
        .respond_with(move |request: &Request| {
            let form = String::from_utf8_lossy(&request.body).to_string();
            assert!(form.contains("grant_type=refresh_token"), "{form}");
            assert!(
                form.contains("refresh_token=fixture-refresh-token"),
                "{form}"
            );
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let mut body = fixture("oauth-token.json");
            body["access_token"] = json!(format!("fixture-access-token-{n}"));
            ResponseTemplate::new(200).set_body_json(body)
        })
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts"))
        .and(header("authorization", "Bearer fixture-access-token-1"))
        .respond_with(json_response(401, "error-401-expired.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts"))
        .and(header("authorization", "Bearer fixture-access-token-2"))
        .respond_with(json_response(200, "properties.json"))
        .expect(1)
        .mount(&server)
        .await;
    let report = crm.setup(&[], false).await.expect("works after a refresh");
    assert!(report.conflicts.is_empty());
    assert_eq!(issued.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_daily_limit_and_the_budget_guard_stop_cleanly() {
    let (server, _dir, _connection, crm) = setup().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts"))
        .respond_with(json_response(429, "error-429-daily.json"))
        .expect(1)
        .mount(&server)
        .await;
    let error = crm.setup(&[], false).await.expect_err("daily limit");
    assert!(matches!(error, CrmError::BudgetExhausted { .. }), "{error}");

    // The headers say other integrations spent the day: stop before the
    // headroom is touched, without sending.
    let (server, _dir, _connection, crm) = setup().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts"))
        .respond_with(
            json_response(200, "properties.json")
                .insert_header("X-HubSpot-RateLimit-Daily", "625000")
                .insert_header("X-HubSpot-RateLimit-Daily-Remaining", "1000"),
        )
        .expect(1)
        .mount(&server)
        .await;
    crm.setup(&[], false)
        .await
        .expect("the first call goes through");
    let error = crm.setup(&[], false).await.expect_err("the guard stops");
    match error {
        CrmError::BudgetExhausted { resume_at, .. } => {
            assert!(
                resume_at > jiff::Timestamp::now(),
                "resumes after the reset"
            );
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn setup_creates_missing_properties_in_our_group_and_reports_wrong_types() {
    let (server, _dir, connection, crm) = setup().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts"))
        .respond_with(json_response(200, "properties.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts/groups"))
        .respond_with(json_response(200, "property-groups.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/properties/contacts/groups"))
        .and(body_partial_json(json!({ "name": "leadscored" })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "name": "leadscored", "label": "leadscored", "displayOrder": -1, "archived": false })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/properties/contacts"))
        .respond_with(|request: &Request| {
            ResponseTemplate::new(201)
                .set_body_json(serde_json::from_slice::<Value>(&request.body).unwrap_or_default())
        })
        .mount(&server)
        .await;
    let report = crm
        .setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    assert_eq!(
        report.conflicts,
        [(
            "leadscored_score".to_owned(),
            "exists as type string, leadscored writes number".to_owned()
        )]
    );
    assert_eq!(report.existing, ["hs_lead_status"]);
    assert_eq!(report.created.len(), 5);
    let created: Vec<Value> = received(&server)
        .await
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/crm/v3/properties/contacts")
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect();
    let grade = created
        .iter()
        .find(|p| p["name"] == "leadscored_grade")
        .expect("the grade property");
    assert_eq!(grade["type"], "enumeration");
    assert_eq!(grade["fieldType"], "select");
    assert_eq!(grade["groupName"], "leadscored");
    assert_eq!(grade["options"].as_array().map(Vec::len), Some(13));
    let tier = created
        .iter()
        .find(|p| p["name"] == "leadscored_tier")
        .expect("the tier property");
    let values: Vec<&str> = tier["options"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["value"].as_str())
        .collect();
    assert_eq!(values, ["low", "medium", "high"], "after the value map");
    let reasons = created
        .iter()
        .find(|p| p["name"] == "leadscored_reasons")
        .expect("the summary property");
    assert_eq!(reasons["type"], "string");
}

#[tokio::test]
async fn event_detail_comes_from_forms_email_and_web_events_only_when_asked() {
    type Seen = (String, i64, Vec<(String, String)>);
    let (server, _dir, connection, crm) = setup().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts"))
        .respond_with(|_: &Request| {
            let mut page = fixture("contacts-page-1.json");
            page["results"] = json!([page["results"][0].clone()]);
            page.as_object_mut().map(|o| o.remove("paging"));
            ResponseTemplate::new(200).set_body_json(page)
        })
        .mount(&server)
        .await;
    let records = pull_all(&crm, &connection, PullKind::Full, i64::MAX, false).await;
    assert!(records[0].events.is_empty());
    assert_eq!(
        received(&server).await.len(),
        1,
        "no detail calls unless a rule needs them"
    );

    Mock::given(method("GET"))
        .and(path("/marketing/v3/forms"))
        .respond_with(json_response(200, "forms.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/form-integrations/v1/submissions/forms/6f1d0c1e-0000-4000-8000-000000000001",
        ))
        .respond_with(json_response(200, "form-submissions.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/email/public/v1/events"))
        .and(query_param("recipient", "ingrid.berg@nordlys.no"))
        .respond_with(json_response(200, "email-events.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/events/v3/events"))
        .and(query_param("objectId", "101"))
        .respond_with(json_response(200, "web-events.json"))
        .expect(1)
        .mount(&server)
        .await;
    let records = pull_all(&crm, &connection, PullKind::Full, i64::MAX, true).await;
    let mut events: Vec<Seen> = records[0]
        .events
        .iter()
        .map(|e| (e.kind.clone(), e.at_ms, e.attributes.clone()))
        .collect();
    events.sort_by_key(|e| e.1);
    assert_eq!(
        events,
        [
            (
                "form_submission".to_owned(),
                1_761_904_800_000,
                vec![("form_id".to_owned(), "demo-request".to_owned())]
            ),
            (
                "email_open".to_owned(),
                1_761_991_200_000,
                vec![("campaign".to_owned(), "123456".to_owned())]
            ),
            (
                "page_view".to_owned(),
                1_793_433_600_000,
                vec![
                    ("hs_title".to_owned(), "Pricing".to_owned()),
                    ("url".to_owned(), "https://acme.example/pricing".to_owned())
                ]
            ),
        ]
    );
}
