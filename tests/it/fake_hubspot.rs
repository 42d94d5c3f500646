//! The fake HubSpot behaves like HubSpot where a sync depends on it: paging,
//! search and its cap, batch reads and partial-failure writes, properties,
//! auth, rate limits and their headers, deterministic people.

use std::collections::BTreeSet;

use leadscored::fake::{FakeHubspot, HubspotConfig, PeopleSpec, Persona, spawn_hubspot};
use serde_json::{Value, json};

const TOKEN: &str = "pat-test-token";

fn config(contacts: u64) -> HubspotConfig {
    HubspotConfig {
        contacts,
        seed: 7,
        token: TOKEN.to_owned(),
        per_ten_seconds: 10_000,
        search_per_second: 1_000,
        ..HubspotConfig::default()
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(base: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base,
        }
    }

    async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.json().await.expect("json body"))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.json().await.expect("json body"))
    }
}

#[tokio::test]
async fn list_paging_walks_every_contact_exactly_once() {
    let fake = spawn_hubspot(FakeHubspot::new(config(1_234)))
        .await
        .expect("fake starts");
    let client = Client::new(fake.url());
    let mut seen = BTreeSet::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(a) => {
                format!("/crm/v3/objects/contacts?limit=100&properties=jobtitle,email&after={a}")
            }
            None => "/crm/v3/objects/contacts?limit=100&properties=jobtitle,email".to_owned(),
        };
        let (status, _, body) = client.get(&path).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        for contact in body["results"].as_array().expect("results") {
            assert!(contact["properties"]["jobtitle"].is_string());
            assert!(
                seen.insert(contact["id"].as_str().expect("id").to_owned()),
                "contact seen twice"
            );
        }
        match body["paging"]["next"]["after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1_234);
    assert_eq!(pages, 13);
    let (status, _, body) = client.get("/crm/v3/objects/contacts?limit=101").await;
    assert_eq!(
        (status, body["category"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
}

#[tokio::test]
async fn missing_or_wrong_tokens_get_hubspots_401() {
    let fake = spawn_hubspot(FakeHubspot::new(config(10)))
        .await
        .expect("fake starts");
    let http = reqwest::Client::new();
    for token in [None, Some("pat-wrong")] {
        let mut request = http.get(format!("{}/crm/v3/objects/contacts", fake.url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status().as_u16(), 401);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["status"], "error");
        assert_eq!(body["category"], "INVALID_AUTHENTICATION");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Authentication credentials not found"))
        );
        assert!(body["correlationId"].is_string());
    }
}

#[tokio::test]
async fn search_filters_sorts_pages_and_stops_at_the_cap() {
    let fake = spawn_hubspot(FakeHubspot::new(config(600)))
        .await
        .expect("fake starts");
    let client = Client::new(fake.url());
    // Everything modified since 60 days before the epoch, keyset on hs_object_id.
    let since = (1_793_491_200_000i64 - 60 * 86_400_000).to_string();
    let mut last_id = "0".to_owned();
    let mut found = Vec::new();
    loop {
        let (status, headers, body) = client
            .post(
                "/crm/v3/objects/contacts/search",
                json!({
                    "filterGroups": [{ "filters": [
                        { "propertyName": "lastmodifieddate", "operator": "GTE", "value": since },
                        { "propertyName": "hs_object_id", "operator": "GT", "value": last_id },
                    ]}],
                    "sorts": [{ "propertyName": "hs_object_id", "direction": "ASCENDING" }],
                    "properties": ["lastmodifieddate", "jobtitle"],
                    "limit": 50,
                }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            headers.get("x-hubspot-ratelimit-remaining").is_none(),
            "search responses carry no rate-limit headers"
        );
        let results = body["results"].as_array().expect("results").clone();
        if results.is_empty() {
            break;
        }
        for r in &results {
            let modified: jiff::Timestamp = r["properties"]["lastmodifieddate"]
                .as_str()
                .expect("date")
                .parse()
                .expect("iso");
            assert!(modified.as_millisecond() >= since.parse::<i64>().expect("number"));
            found.push(
                r["id"]
                    .as_str()
                    .expect("id")
                    .parse::<u64>()
                    .expect("numeric id"),
            );
        }
        last_id = found.last().expect("non-empty").to_string();
    }
    assert!(
        found.windows(2).all(|w| w[0] < w[1]),
        "ascending, no repeats"
    );
    assert!(
        !found.is_empty() && found.len() < 600,
        "the window selects some contacts: {}",
        found.len()
    );

    let (status, _, body) = client
        .post(
            "/crm/v3/objects/contacts/search",
            json!({ "filterGroups": [], "limit": 200, "after": "9900" }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["category"], "VALIDATION_ERROR");
    let (status, _, body) = client
        .post(
            "/crm/v3/objects/contacts/search",
            json!({ "limit": 200, "after": "400" }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 600);
    assert_eq!(body["results"].as_array().map(Vec::len), Some(200));
    assert!(body.get("paging").is_none(), "the last page has no paging");
    let (status, _, _) = client
        .post("/crm/v3/objects/contacts/search", json!({ "limit": 201 }))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn batch_update_applies_the_valid_records_and_reports_the_rest_with_207() {
    let fake = spawn_hubspot(FakeHubspot::new(config(20)))
        .await
        .expect("fake starts");
    let client = Client::new(fake.url());
    let (status, _, body) = client
        .post(
            "/crm/v3/properties/contacts",
            json!({ "name": "ls_score", "label": "Lead score", "type": "number", "fieldType": "number", "groupName": "no_such_group" }),
        )
        .await;
    assert_eq!(status, 400, "the group must exist: {body}");
    let (status, _, _) = client
        .post(
            "/crm/v3/properties/contacts/groups",
            json!({ "name": "leadscored", "label": "leadscored" }),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _, created) = client
        .post(
            "/crm/v3/properties/contacts",
            json!({ "name": "ls_score", "label": "Lead score", "type": "number", "fieldType": "number", "groupName": "leadscored" }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    // HubSpot's schema requires every option field, `hidden` included.
    let (status, _, body) = client
        .post(
            "/crm/v3/properties/contacts",
            json!({ "name": "ls_tier", "label": "Tier", "type": "enumeration", "fieldType": "select", "groupName": "leadscored",
                    "options": [{ "label": "High", "value": "high", "displayOrder": 0 }] }),
        )
        .await;
    assert_eq!(status, 400, "an option without hidden: {body}");
    // Types take only their documented field types.
    let (status, _, body) = client
        .post(
            "/crm/v3/properties/contacts",
            json!({ "name": "ls_tier", "label": "Tier", "type": "enumeration", "fieldType": "text", "groupName": "leadscored",
                    "options": [{ "label": "High", "value": "high", "displayOrder": 0, "hidden": false }] }),
        )
        .await;
    assert_eq!(status, 400, "enumeration with fieldType text: {body}");
    let (status, _, _) = client
        .post(
            "/crm/v3/properties/contacts",
            json!({ "name": "ls_tier", "label": "Tier", "type": "enumeration", "fieldType": "select", "groupName": "leadscored",
                    "options": [{ "label": "High", "value": "high", "displayOrder": 0, "hidden": false }, { "label": "Low", "value": "low", "displayOrder": 1, "hidden": false }] }),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _, body) = client
        .post(
            "/crm/v3/properties/contacts",
            json!({ "name": "ls_score", "label": "again", "type": "number", "fieldType": "number", "groupName": "leadscored" }),
        )
        .await;
    assert_eq!(
        (status, body["category"].as_str()),
        (409, Some("OBJECT_ALREADY_EXISTS"))
    );

    let (_, _, before) = client
        .get("/crm/v3/objects/contacts/3?properties=lastmodifieddate")
        .await;
    let (status, _, body) = client
        .post(
            "/crm/v3/objects/contacts/batch/update",
            json!({ "inputs": [
                { "id": "3", "properties": { "ls_score": "72", "ls_tier": "high" } },
                { "id": "4", "properties": { "ls_score": "seventy" } },
                { "id": "5", "properties": { "undefined_property": "x" } },
                { "id": "6", "properties": { "ls_tier": "medium" } },
                { "id": "999", "properties": { "ls_score": "1" } },
                { "id": "7", "properties": { "ls_score": "10" } },
            ]}),
        )
        .await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["status"], "COMPLETE");
    assert_eq!(body["numErrors"], 4);
    let ok: BTreeSet<&str> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ok, BTreeSet::from(["3", "7"]));
    let categories: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["category"].as_str())
        .collect();
    assert_eq!(
        categories
            .iter()
            .filter(|c| **c == "VALIDATION_ERROR")
            .count(),
        3
    );
    assert_eq!(
        categories
            .iter()
            .filter(|c| **c == "OBJECT_NOT_FOUND")
            .count(),
        1
    );

    let (_, _, after) = client
        .get("/crm/v3/objects/contacts/3?properties=ls_score,ls_tier,lastmodifieddate")
        .await;
    assert_eq!(after["properties"]["ls_score"], "72");
    assert_eq!(after["properties"]["ls_tier"], "high");
    let modified = |v: &Value| {
        v["properties"]["lastmodifieddate"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    };
    assert!(
        modified(&after) > modified(&before),
        "a write bumps lastmodifieddate"
    );
    let (_, _, untouched) = client
        .get("/crm/v3/objects/contacts/4?properties=ls_score")
        .await;
    assert_eq!(untouched["properties"]["ls_score"], Value::Null);

    // Writes are visible to a search on lastmodifieddate.
    let since = modified(&before)
        .map(|t| (t.as_millisecond() + 1).to_string())
        .unwrap_or_default();
    let (_, _, found) = client
        .post(
            "/crm/v3/objects/contacts/search",
            json!({ "filterGroups": [{ "filters": [{ "propertyName": "lastmodifieddate", "operator": "GTE", "value": since }] }] }),
        )
        .await;
    let ids: BTreeSet<&str> = found["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(ids.contains("3") && ids.contains("7"), "{found}");

    let (status, _, body) = client
        .post(
            "/crm/v3/objects/contacts/batch/update",
            json!({ "inputs": [{ "id": "999", "properties": {} }] }),
        )
        .await;
    assert_eq!(
        (status, body["category"].as_str()),
        (400, Some("VALIDATION_ERROR")),
        "all inputs failing is a 400"
    );

    let (status, _, body) = client
        .post(
            "/crm/v3/objects/contacts/batch/read",
            json!({ "properties": ["ls_score"], "inputs": [{ "id": "3" }, { "id": "12345" }] }),
        )
        .await;
    assert_eq!(status, 207);
    assert_eq!(body["results"][0]["properties"]["ls_score"], "72");
    assert_eq!(body["errors"][0]["category"], "OBJECT_NOT_FOUND");
}

#[tokio::test]
async fn rate_limits_answer_429_with_the_policy_and_headers_count_down() {
    let limited = HubspotConfig {
        per_ten_seconds: 5,
        search_per_second: 2,
        daily: 9,
        ..config(30)
    };
    let fake = spawn_hubspot(FakeHubspot::new(limited))
        .await
        .expect("fake starts");
    let client = Client::new(fake.url());
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let (status, headers, _) = client.get("/crm/v3/objects/contacts?limit=1").await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-hubspot-ratelimit-max"], "5");
        assert_eq!(
            headers["x-hubspot-ratelimit-interval-milliseconds"],
            "10000"
        );
        remaining.push(leadscored::fake::hubspot::rate_limit_remaining(&headers).expect("header"));
    }
    assert_eq!(remaining, [4, 3, 2, 1, 0]);
    let (status, headers, body) = client.get("/crm/v3/objects/contacts?limit=1").await;
    assert_eq!(status, 429);
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert!(headers.contains_key("retry-after"));
    // Search has its own per-second limit.
    for expected in [200, 200, 429] {
        let (status, _, body) = client
            .post("/crm/v3/objects/contacts/search", json!({ "limit": 1 }))
            .await;
        assert_eq!(status, expected, "{body}");
        if status == 429 {
            assert_eq!(body["policyName"], "SECONDLY");
        }
    }
    // 9 calls were made; the daily budget of 9 is spent.
    let (status, _, body) = client
        .post("/crm/v3/objects/contacts/search", json!({ "limit": 1 }))
        .await;
    assert_eq!((status, body["policyName"].as_str()), (429, Some("DAILY")));
    let stats: Value = reqwest::get(format!("{}/__fake/stats", fake.url()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["rate_limited"], 3);
    assert_eq!(stats["requests"]["GET /crm/v3/objects/contacts 200"], 5);
}

#[test]
fn people_are_deterministic_varied_and_their_outcome_has_signal() {
    let spec = PeopleSpec {
        seed: 42,
        epoch_ms: 1_793_491_200_000,
        activity: 1.0,
        companies: 0,
    };
    assert_eq!(spec.person(17), spec.person(17));
    assert_ne!(spec.person(17), PeopleSpec { seed: 43, ..spec }.person(17));
    let people: Vec<_> = (1..=4_000).map(|id| spec.person(id)).collect();
    let share = |f: &dyn Fn(&leadscored::fake::Person) -> bool| {
        people.iter().filter(|p| f(p)).count() as f64 / people.len() as f64
    };
    let students = share(&|p| p.persona == Persona::Student);
    let competitors = share(&|p| p.persona == Persona::Competitor);
    let free_mail = share(&|p| {
        ["gmail.com", "hotmail.com", "outlook.com", "yahoo.com"]
            .iter()
            .any(|d| p.email.ends_with(d))
    });
    assert!((0.05..0.12).contains(&students), "students {students}");
    assert!(
        (0.005..0.04).contains(&competitors),
        "competitors {competitors}"
    );
    assert!((0.1..0.35).contains(&free_mail), "free mail {free_mail}");
    let eighteen_months = 1_793_491_200_000 - 549 * 86_400_000;
    assert!(
        people
            .iter()
            .flat_map(|p| &p.events)
            .all(|e| e.at >= eighteen_months && e.at <= 1_793_491_200_000)
    );
    let rate = |persona: Persona| {
        let group: Vec<_> = people.iter().filter(|p| p.persona == persona).collect();
        group.iter().filter(|p| p.converted).count() as f64 / group.len().max(1) as f64
    };
    assert!(
        rate(Persona::Executive) > 2.0 * rate(Persona::Student),
        "executives convert more than students"
    );
    let busy = |p: &&leadscored::fake::Person| p.events.len() >= 20;
    let engaged: Vec<_> = people.iter().filter(busy).collect();
    let quiet: Vec<_> = people.iter().filter(|p| p.events.len() < 5).collect();
    let converted = |g: &[&leadscored::fake::Person]| {
        g.iter().filter(|p| p.converted).count() as f64 / g.len().max(1) as f64
    };
    assert!(
        converted(&engaged) > converted(&quiet),
        "engaged people convert more"
    );
}

fn faulty(faults: leadscored::fake::hubspot::Faults) -> HubspotConfig {
    HubspotConfig {
        faults,
        ..config(50)
    }
}

/// A fake with 50 contacts and these faults.
async fn start_faulty(faults: leadscored::fake::hubspot::Faults) -> leadscored::fake::RunningFake {
    spawn_hubspot(FakeHubspot::new(faulty(faults)))
        .await
        .expect("fake starts")
}

/// An authorised request for the first page of contacts, without reading the body.
async fn raw_contacts(fake: &leadscored::fake::RunningFake) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/crm/v3/objects/contacts", fake.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the response head arrives")
}

#[tokio::test]
async fn injected_429s_with_and_without_retry_after() {
    use leadscored::fake::hubspot::Faults;
    for with_header in [false, true] {
        let fake = start_faulty(Faults {
            rate_429: 1.0,
            retry_after_on_429: with_header,
            ..Faults::default()
        })
        .await;
        let (status, headers, body) = Client::new(fake.url())
            .get("/crm/v3/objects/contacts")
            .await;
        assert_eq!(status, 429);
        assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
        assert_eq!(headers.contains_key("retry-after"), with_header);
    }
}

#[tokio::test]
async fn injected_server_errors_bad_bodies_resets_and_slowness() {
    use leadscored::fake::hubspot::Faults;
    let fake = start_faulty(Faults {
        rate_5xx: 1.0,
        ..Faults::default()
    })
    .await;
    let (status, _, _) = Client::new(fake.url())
        .get("/crm/v3/objects/contacts")
        .await;
    assert!([500, 502, 503, 504].contains(&status), "{status}");

    let fake = start_faulty(Faults {
        rate_malformed: 1.0,
        ..Faults::default()
    })
    .await;
    let response = raw_contacts(&fake).await;
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("a complete body");
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "the body is cut: {text}"
    );

    let fake = start_faulty(Faults {
        rate_reset: 1.0,
        ..Faults::default()
    })
    .await;
    let response = raw_contacts(&fake).await;
    assert!(
        response.bytes().await.is_err(),
        "the connection is reset mid-body"
    );

    let slow = Faults {
        rate_slow: 1.0,
        slow: std::time::Duration::from_secs(5),
        ..Faults::default()
    };
    let fake = start_faulty(slow).await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(200))
        .build()
        .expect("client");
    let outcome = client
        .get(format!("{}/crm/v3/objects/contacts", fake.url()))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(outcome.is_err_and(|e| e.is_timeout()));

    let stats: Value = reqwest::get(format!("{}/__fake/stats", fake.url()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["faults"]["slow"], 1);
}

#[tokio::test]
async fn injected_record_errors_make_partial_batches() {
    use leadscored::fake::hubspot::Faults;
    let fake = start_faulty(Faults {
        rate_record_error: 0.5,
        ..Faults::default()
    })
    .await;
    let client = Client::new(fake.url());
    let inputs: Vec<Value> = (1..=40)
        .map(|id| json!({ "id": id.to_string(), "properties": { "jobtitle": "CEO" } }))
        .collect();
    let (status, _, body) = client
        .post(
            "/crm/v3/objects/contacts/batch/update",
            json!({ "inputs": inputs }),
        )
        .await;
    assert_eq!(status, 207);
    let ok = body["results"].as_array().map_or(0, Vec::len);
    let failed = body["numErrors"].as_u64().unwrap_or(0) as usize;
    assert_eq!(ok + failed, 40);
    assert!((8..=32).contains(&failed), "about half fail: {failed}");
}

#[tokio::test]
async fn search_lags_behind_writes_and_bulk_imports_share_a_timestamp() {
    use leadscored::fake::hubspot::Faults;
    let faults = Faults {
        search_lag: std::time::Duration::from_secs(3600),
        bulk_import: 30,
        ..Faults::default()
    };
    let fake = start_faulty(faults).await;
    let client = Client::new(fake.url());
    let (_, _, first) = client
        .get("/crm/v3/objects/contacts/1?properties=lastmodifieddate")
        .await;
    let stamp: jiff::Timestamp = first["properties"]["lastmodifieddate"]
        .as_str()
        .expect("date")
        .parse()
        .expect("iso");
    let same = json!({ "filterGroups": [{ "filters": [{ "propertyName": "lastmodifieddate", "operator": "EQ", "value": stamp.as_millisecond().to_string() }] }], "limit": 100 });
    let (_, _, body) = client
        .post("/crm/v3/objects/contacts/search", same.clone())
        .await;
    assert_eq!(body["total"], 30, "the bulk import shares one timestamp");

    let (status, _, _) = client
        .post(
            "/crm/v3/objects/contacts/batch/update",
            json!({ "inputs": [{ "id": "40", "properties": { "jobtitle": "CFO" } }] }),
        )
        .await;
    assert_eq!(status, 200);
    let recent = json!({ "filterGroups": [{ "filters": [{ "propertyName": "lastmodifieddate", "operator": "GT", "value": "1793491200000" }] }] });
    let (_, _, body) = client
        .post("/crm/v3/objects/contacts/search", recent.clone())
        .await;
    assert_eq!(body["total"], 0, "search does not see the write yet");
    let response = reqwest::Client::new()
        .post(format!("{}/__fake/catch-up-search", fake.url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 204);
    let (_, _, body) = client.post("/crm/v3/objects/contacts/search", recent).await;
    assert_eq!(body["total"], 1);
    assert_eq!(body["results"][0]["id"], "40");
}

#[tokio::test]
async fn oauth_tokens_expire_and_refresh() {
    use leadscored::fake::hubspot::Faults;
    let expiring = Faults {
        token_ttl: Some(std::time::Duration::ZERO),
        ..Faults::default()
    };
    let fake = start_faulty(expiring).await;
    let (status, _, body) = Client::new(fake.url())
        .get("/crm/v3/objects/contacts")
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["category"], "EXPIRED_AUTHENTICATION");

    let lasting = Faults {
        token_ttl: Some(std::time::Duration::from_secs(3600)),
        ..Faults::default()
    };
    let fake = start_faulty(lasting).await;
    let http = reqwest::Client::new();
    let refreshed: Value = http
        .post(format!("{}/oauth/v1/token", fake.url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "fake-refresh-token"),
            ("client_id", "c"),
            ("client_secret", "s"),
        ])
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(refreshed["token_type"], "bearer");
    assert_eq!(refreshed["expires_in"], 3600);
    let token = refreshed["access_token"].as_str().expect("token");
    let response = http
        .get(format!("{}/crm/v3/objects/contacts", fake.url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let bad = http
        .post(format!("{}/oauth/v1/token", fake.url()))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "stolen")])
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status().as_u16(), 400);
    let body: Value = bad.json().await.expect("json");
    assert_eq!(body["status"], "BAD_REFRESH_TOKEN");
}

#[tokio::test]
async fn engagement_detail_agrees_with_the_generated_people_and_summary_properties() {
    let fake = spawn_hubspot(FakeHubspot::new(config(300)))
        .await
        .expect("fake");
    let client = Client::new(fake.url());
    let spec = PeopleSpec {
        seed: 7,
        epoch_ms: 1_793_491_200_000,
        activity: 1.0,
        companies: 0,
    };

    // A contact with page views: the web events match, newest first.
    let id = (1..=300)
        .find(|id| {
            spec.person(*id)
                .events
                .iter()
                .filter(|e| e.kind == "page_view")
                .count()
                >= 3
        })
        .expect("someone browses");
    let person = spec.person(id);
    let (status, _, body) = client
        .get(&format!(
            "/events/v3/events?objectType=contact&objectId={id}&eventType=e_visited_page&limit=100"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    let views: Vec<&leadscored::fake::people::GenEvent> = person
        .events
        .iter()
        .filter(|e| e.kind == "page_view")
        .collect();
    assert_eq!(results.len(), views.len());
    assert_eq!(
        results[0]["properties"]["hs_url"].as_str(),
        views[0].attribute.as_ref().map(|(_, url)| url.as_str())
    );
    let (_, _, contact) = client
        .get(&format!(
            "/crm/v3/objects/contacts/{id}?properties=hs_analytics_num_page_views"
        ))
        .await;
    assert_eq!(
        contact["properties"]["hs_analytics_num_page_views"],
        views.len().to_string()
    );

    // Email events by recipient.
    let (status, _, body) = client
        .get(&format!(
            "/email/public/v1/events?recipient={}&limit=1000",
            person.email
        ))
        .await;
    assert_eq!(status, 200);
    let emails = person
        .events
        .iter()
        .filter(|e| matches!(e.kind, "email_open" | "email_click" | "email_unsubscribe"))
        .count();
    assert_eq!(body["events"].as_array().map(Vec::len), Some(emails));
    assert_eq!(body["hasMore"], false);

    // Form submissions, paged, across all contacts.
    let (_, _, forms) = client.get("/marketing/v3/forms").await;
    let newsletter = forms["results"]
        .as_array()
        .expect("forms")
        .iter()
        .find(|f| f["name"] == "newsletter")
        .expect("newsletter form");
    let guid = newsletter["id"].as_str().expect("guid");
    let expected: usize = (1..=300)
        .map(|id| {
            spec.person(id)
                .events
                .iter()
                .filter(|e| matches!(&e.attribute, Some((_, f)) if f == "newsletter"))
                .count()
        })
        .sum();
    let mut seen = 0;
    let mut after = String::new();
    loop {
        let (status, _, page) = client
            .get(&format!(
                "/form-integrations/v1/submissions/forms/{guid}?limit=50&after={}",
                if after.is_empty() { "0" } else { &after }
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        for submission in page["results"].as_array().expect("results") {
            assert!(submission["submittedAt"].is_i64());
            assert_eq!(submission["values"][0]["name"], "email");
        }
        seen += page["results"].as_array().map_or(0, Vec::len);
        match page["paging"]["next"]["after"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    let (status, _, _) = client
        .get("/form-integrations/v1/submissions/forms/not-a-form")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn archived_and_merged_contacts_behave_like_hubspots() {
    use leadscored::fake::hubspot::Faults;
    let faults = Faults {
        archived_every: 10,
        merged_every: 7,
        ..Faults::default()
    };
    let fake = start_faulty(faults).await;
    let client = Client::new(fake.url());
    let mut live = Vec::new();
    let mut after = "0".to_owned();
    loop {
        let (_, _, page) = client
            .get(&format!("/crm/v3/objects/contacts?limit=7&after={after}"))
            .await;
        live.extend(
            page["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|c| c["id"].as_str().expect("id").parse::<u64>().expect("n")),
        );
        match page["paging"]["next"]["after"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    let expected: Vec<u64> = (1..=50).filter(|id| id % 10 != 0 && id % 7 != 0).collect();
    assert_eq!(
        live, expected,
        "lists skip archived and merged-away contacts, and page correctly"
    );
    let (_, _, archived) = client
        .get("/crm/v3/objects/contacts?archived=true&limit=100")
        .await;
    let ids: Vec<&str> = archived["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["10", "20", "30", "40", "50"]);
    assert_eq!(archived["results"][0]["archived"], true);
    let (status, _, _) = client.get("/crm/v3/objects/contacts/20").await;
    assert_eq!(status, 404, "an archived contact is not found");
    let (status, _, merged) = client
        .get("/crm/v3/objects/contacts/14?properties=hs_merged_object_ids")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        merged["id"], "13",
        "reading an absorbed id returns the winner"
    );
    assert_eq!(merged["properties"]["hs_merged_object_ids"], "14");
    let (status, _, body) = client
        .post(
            "/crm/v3/objects/contacts/batch/update",
            json!({ "inputs": [{ "id": "14", "properties": { "jobtitle": "CTO" } }] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"][0]["id"], "13",
        "a write to an absorbed id lands on the winner"
    );
}

#[tokio::test]
async fn the_fake_answers_as_hubspot_does_where_a_foreign_client_looked() {
    let fake = spawn_hubspot(FakeHubspot::new(HubspotConfig {
        per_ten_seconds: 4,
        ..config(200)
    }))
    .await
    .expect("fake starts");
    let client = Client::new(fake.url());

    // Repeated `properties` parameters (HubSpot's SDKs send them so) all count.
    let (status, _, one) = client
        .get("/crm/v3/objects/contacts/5?properties=email&properties=jobtitle,country")
        .await;
    assert_eq!(status, 200);
    for name in ["email", "jobtitle", "country"] {
        assert!(one["properties"].get(name).is_some(), "{name}: {one}");
    }

    // Form definitions carry every field HubSpot's schema requires.
    let (status, _, forms) = client.get("/marketing/v3/forms").await;
    assert_eq!(status, 200);
    for form in forms["results"].as_array().expect("forms") {
        for field in [
            "id",
            "name",
            "formType",
            "createdAt",
            "updatedAt",
            "archived",
            "fieldGroups",
            "configuration",
            "displayOptions",
            "legalConsentOptions",
        ] {
            assert!(form.get(field).is_some(), "{field} in {form}");
        }
    }

    // A path HubSpot does not have answers its JSON error body.
    let (status, _, body) = client.get("/crm/v3/objects/nothing-here").await;
    assert_eq!(
        (status, body["status"].as_str(), body["category"].as_str()),
        (404, Some("error"), Some("OBJECT_NOT_FOUND"))
    );

    // 429s say which category they are.
    let mut limited = None;
    for _ in 0..6 {
        let (status, _, body) = client.get("/crm/v3/objects/contacts?limit=1").await;
        if status == 429 {
            limited = Some(body);
            break;
        }
    }
    let limited = limited.expect("the ten-second limit answers 429");
    assert_eq!(limited["category"], "RATE_LIMITS", "{limited}");
    assert_eq!(limited["policyName"], "TEN_SECONDLY_ROLLING");

    // The daily count is for the account's day, in its time zone.
    let stats: Value = reqwest::get(format!("{}/__fake/stats", fake.url()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    let zone = jiff::tz::TimeZone::get(stats["account_time_zone"].as_str().expect("zone"))
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let today = zone.to_datetime(jiff::Timestamp::now()).date().to_string();
    assert_eq!(stats["daily_day"].as_str(), Some(today.as_str()), "{stats}");
}

#[tokio::test]
async fn search_takes_not_contains_token_and_free_text() {
    let fake = spawn_hubspot(FakeHubspot::new(config(300)))
        .await
        .expect("fake starts");
    let client = Client::new(fake.url());
    let count = |body: &Value| body["total"].as_u64().expect("total");
    let (status, _, all) = client
        .post("/crm/v3/objects/contacts/search", json!({ "limit": 1 }))
        .await;
    assert_eq!(status, 200);
    let (_, _, with) = client
        .post(
            "/crm/v3/objects/contacts/search",
            json!({ "limit": 1, "filterGroups": [{ "filters": [{ "propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "*gmail.com" }] }] }),
        )
        .await;
    let (status, _, without) = client
        .post(
            "/crm/v3/objects/contacts/search",
            json!({ "limit": 1, "filterGroups": [{ "filters": [{ "propertyName": "email", "operator": "NOT_CONTAINS_TOKEN", "value": "*gmail.com" }] }] }),
        )
        .await;
    assert_eq!(status, 200, "{without}");
    assert!(count(&with) > 0);
    assert_eq!(count(&with) + count(&without), count(&all));

    let (_, _, five) = client
        .get("/crm/v3/objects/contacts/5?properties=lastname")
        .await;
    let lastname = five["properties"]["lastname"].as_str().expect("lastname");
    let (status, _, found) = client
        .post(
            "/crm/v3/objects/contacts/search",
            json!({ "limit": 100, "query": lastname, "properties": ["lastname"] }),
        )
        .await;
    assert_eq!(status, 200);
    let results = found["results"].as_array().expect("results");
    assert!(results.iter().any(|r| r["id"] == "5"), "{found}");
    assert!(
        results
            .iter()
            .all(|r| r["properties"]["lastname"].as_str() == Some(lastname)),
        "{found}"
    );
}

#[tokio::test]
async fn a_missing_scope_answers_403_missing_scopes_naming_it() {
    let mut faults = leadscored::fake::hubspot::Faults::default();
    faults.apply_spec("scope=crm.lists.read").expect("spec");
    let fake = spawn_hubspot(FakeHubspot::new(HubspotConfig {
        faults,
        ..config(20)
    }))
    .await
    .expect("fake starts");
    let client = Client::new(fake.url());
    let (status, _, body) = client
        .post(
            "/crm/v3/lists/search",
            json!({ "query": "", "offset": 0, "additionalProperties": [] }),
        )
        .await;
    assert_eq!(
        (status, body["category"].as_str()),
        (403, Some("MISSING_SCOPES"))
    );
    assert_eq!(
        body["errors"][0]["context"]["requiredGranularScopes"][0],
        "crm.lists.read"
    );
    let (status, _, _) = client.get("/crm/v3/objects/contacts?limit=1").await;
    assert_eq!(status, 200, "other calls go on");
}

#[tokio::test]
async fn companies_and_lists_have_hubspots_shapes_and_follow_edits() {
    let fake = spawn_hubspot(FakeHubspot::new(config(400)))
        .await
        .expect("fake starts");
    let client = Client::new(fake.url());
    // Most contacts name a primary company; some have none.
    let (_, _, page) = client
        .get("/crm/v3/objects/contacts?limit=100&properties=associatedcompanyid")
        .await;
    let companies: Vec<String> = page["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|c| {
            c["properties"]["associatedcompanyid"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!((60..100).contains(&companies.len()), "{}", companies.len());

    // Batch read: 100 at most, unknown ids in a 207.
    let inputs: Vec<Value> = (1..=101).map(|i| json!({ "id": i.to_string() })).collect();
    let (status, _, _) = client
        .post(
            "/crm/v3/objects/companies/batch/read",
            json!({ "inputs": inputs, "properties": ["name"], "propertiesWithHistory": [] }),
        )
        .await;
    assert_eq!(status, 400, "over the batch limit");
    let (status, _, body) = client
        .post(
            "/crm/v3/objects/companies/batch/read",
            json!({ "inputs": [{ "id": companies[0] }, { "id": "99999" }], "properties": ["numberofemployees", "industry"], "propertiesWithHistory": [] }),
        )
        .await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    let employees = body["results"][0]["properties"]["numberofemployees"]
        .as_str()
        .expect("employees")
        .to_owned();

    // An edit moves the company's hs_lastmodifieddate into a search window.
    let since = jiff::Timestamp::now().as_millisecond() - 1;
    let answer = reqwest::Client::new()
        .post(format!("{}/__fake/companies/{}", fake.url(), companies[0]))
        .json(&json!({ "numberofemployees": "250" }))
        .send()
        .await
        .expect("edit");
    assert!(answer.status().is_success());
    let (status, _, found) = client
        .post(
            "/crm/v3/objects/companies/search",
            json!({ "limit": 200, "properties": ["numberofemployees"], "filterGroups": [{ "filters": [{ "propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": since.to_string() }] }] }),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(
        found["results"][0]["properties"]["numberofemployees"],
        "250"
    );
    assert_ne!(employees, "250");

    // Lists: search needs offset and additionalProperties; members page.
    let (status, _, _) = client
        .post("/crm/v3/lists/search", json!({ "query": "webinar" }))
        .await;
    assert_eq!(status, 400);
    let (status, _, lists) = client
        .post(
            "/crm/v3/lists/search",
            json!({ "query": "webinar", "offset": 0, "additionalProperties": [] }),
        )
        .await;
    assert_eq!(status, 200);
    let list = &lists["lists"][0];
    assert_eq!(list["name"], "Analytics webinar 2026");
    let size: usize = list["additionalProperties"]["hs_list_size"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("size");
    let id = list["listId"].as_str().expect("id");
    let mut members = Vec::new();
    let mut after = String::new();
    loop {
        let (status, _, page) = client
            .get(&format!("/crm/v3/lists/{id}/memberships?limit=10{after}"))
            .await;
        assert_eq!(status, 200);
        members.extend(
            page["results"]
                .as_array()
                .expect("results")
                .iter()
                .filter_map(|m| m["recordId"].as_str().map(str::to_owned)),
        );
        match page["paging"]["next"]["after"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(members.len(), size);

    // v4 associations agree with associatedcompanyid (type 1: Primary).
    let (status, _, assoc) = client
        .post(
            "/crm/v4/associations/contacts/companies/batch/read",
            json!({ "inputs": [{ "id": page["results"][0]["id"] }] }),
        )
        .await;
    assert!(status == 200 || status == 207, "{assoc}");
    if let Some(primary) = page["results"][0]["properties"]["associatedcompanyid"].as_str() {
        assert_eq!(assoc["results"][0]["to"][0]["toObjectId"], primary);
        assert_eq!(
            assoc["results"][0]["to"][0]["associationTypes"][0]["label"],
            "Primary"
        );
    }
    let (status, _, _) = client
        .get(&format!("/crm/v3/lists/{id}/memberships?limit=251"))
        .await;
    assert_eq!(status, 400, "250 a page at most");
}
