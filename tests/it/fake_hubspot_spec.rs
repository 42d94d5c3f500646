//! The fake HubSpot's responses decode with the shapes HubSpot's public
//! OpenAPI spec gives for these paths (CRM v3 contacts: SimplePublicObject,
//! CollectionResponse…, BatchResponseSimplePublicObject, StandardError,
//! Error). The types below mirror the spec's schemas: required fields are
//! required, optional ones optional, and nothing else is accepted.

use std::collections::BTreeMap;

use leadscored::fake::{FakeHubspot, HubspotConfig, spawn_hubspot};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct SimplePublicObject {
    id: String,
    properties: BTreeMap<String, Option<String>>,
    created_at: DateTime,
    updated_at: DateTime,
    archived: Option<bool>,
    archived_at: Option<DateTime>,
    properties_with_history: Option<Value>,
    object_write_trace_id: Option<String>,
    associations: Option<Value>,
}

/// An ISO 8601 / RFC 3339 `date-time` string.
#[derive(Debug)]
struct DateTime;

impl<'de> Deserialize<'de> for DateTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<jiff::Timestamp>()
            .map(|_| DateTime)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct NextPage {
    after: String,
    link: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Paging {
    next: Option<NextPage>,
    prev: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CollectionResponse {
    results: Vec<SimplePublicObject>,
    paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CollectionResponseWithTotal {
    total: i32,
    results: Vec<SimplePublicObject>,
    paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum BatchStatus {
    Pending,
    Processing,
    Canceled,
    Complete,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct BatchResponse {
    status: BatchStatus,
    results: Vec<SimplePublicObject>,
    started_at: DateTime,
    completed_at: DateTime,
    requested_at: Option<DateTime>,
    links: Option<BTreeMap<String, String>>,
    num_errors: Option<i32>,
    errors: Option<Vec<StandardError>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct StandardError {
    status: String,
    category: String,
    message: String,
    context: BTreeMap<String, Vec<String>>,
    errors: Vec<ErrorDetail>,
    links: BTreeMap<String, String>,
    id: Option<String>,
    sub_category: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ErrorDetail {
    message: String,
    code: Option<String>,
    #[serde(rename = "in")]
    field: Option<String>,
    sub_category: Option<String>,
    context: Option<BTreeMap<String, Vec<String>>>,
}

/// The spec's `Error`, plus the `status: "error"` field HubSpot sends in practice.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Error {
    category: String,
    correlation_id: Uuid,
    message: String,
    status: Option<String>,
    sub_category: Option<String>,
    context: Option<BTreeMap<String, Vec<String>>>,
    links: Option<BTreeMap<String, String>>,
    errors: Option<Vec<ErrorDetail>>,
}

/// A `uuid`-format string.
#[derive(Debug)]
struct Uuid;

impl<'de> Deserialize<'de> for Uuid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let groups: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        let hex = groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
        if lengths == [8, 4, 4, 4, 12] && hex {
            Ok(Uuid)
        } else {
            Err(serde::de::Error::custom(format!("{text:?} is not a uuid")))
        }
    }
}

#[track_caller]
fn conforms<T: DeserializeOwned + std::fmt::Debug>(body: &Value) -> T {
    serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("response does not match the spec: {e}\n{body:#}"))
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url).bearer_auth("pat-spec");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn responses_decode_with_the_spec_shapes() {
    let config = HubspotConfig {
        contacts: 250,
        token: "pat-spec".to_owned(),
        ..HubspotConfig::default()
    };
    let fake = spawn_hubspot(FakeHubspot::new(config))
        .await
        .expect("fake starts");
    let http = reqwest::Client::new();
    let base = fake.url();
    use reqwest::Method;

    let (status, body) = call(
        &http,
        Method::GET,
        format!("{base}/crm/v3/objects/contacts?limit=100&properties=email,jobtitle"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let page: CollectionResponse = conforms(&body);
    assert_eq!(page.results.len(), 100);
    assert!(page.paging.and_then(|p| p.next).is_some());

    let (status, body) = call(
        &http,
        Method::GET,
        format!("{base}/crm/v3/objects/contacts/5"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    conforms::<SimplePublicObject>(&body);

    let (status, body) = call(
        &http,
        Method::POST,
        format!("{base}/crm/v3/objects/contacts/search"),
        Some(json!({ "filterGroups": [{ "filters": [{ "propertyName": "hs_analytics_num_page_views", "operator": "GT", "value": "2" }] }], "limit": 20, "properties": ["hs_analytics_num_page_views"] })),
    )
    .await;
    assert_eq!(status, 200);
    let found: CollectionResponseWithTotal = conforms(&body);
    assert!(found.total > 20);

    let (status, body) = call(
        &http,
        Method::POST,
        format!("{base}/crm/v3/objects/contacts/batch/read"),
        Some(json!({ "properties": ["email"], "propertiesWithHistory": [], "inputs": [{ "id": "1" }, { "id": "2" }, { "id": "99999" }] })),
    )
    .await;
    assert_eq!(status, 207);
    let read: BatchResponse = conforms(&body);
    assert_eq!(read.results.len(), 2);

    let (status, body) = call(
        &http,
        Method::POST,
        format!("{base}/crm/v3/objects/contacts/batch/update"),
        Some(json!({ "inputs": [
            { "id": "1", "properties": { "jobtitle": "CEO" } },
            { "id": "2", "properties": { "numemployees": "many", "nonexistent": "x" } },
            { "id": "99999", "properties": { "jobtitle": "CEO" } },
        ]})),
    )
    .await;
    assert_eq!(status, 207);
    let written: BatchResponse = conforms(&body);
    assert_eq!(written.num_errors, Some(2));
    assert!(
        written.errors.iter().flatten().any(|e| e.errors.len() == 2),
        "one detail per bad property"
    );

    let (status, body) = call(
        &http,
        Method::POST,
        format!("{base}/crm/v3/objects/contacts/batch/update"),
        Some(json!({ "inputs": [{ "id": "0", "properties": {} }] })),
    )
    .await;
    assert_eq!(status, 400);
    conforms::<Error>(&body);

    let (status, body) = call(
        &http,
        Method::GET,
        format!("{base}/crm/v3/objects/contacts/0"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    conforms::<Error>(&body);

    let response = http
        .get(format!("{base}/crm/v3/objects/contacts"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 401);
    conforms::<Error>(&response.json::<Value>().await.expect("json"));
}
