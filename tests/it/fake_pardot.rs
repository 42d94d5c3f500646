//! The fake Pardot behaves like Account Engagement v5 where a sync depends
//! on it: `fields`, `orderBy`, filters and page tokens (with the record
//! limit and `Pardot-Warning: 203`), PATCH, visitor activities, custom
//! fields, the business-unit header, concurrency (66), the daily budget
//! (122), OAuth, faults, saved state, and the same people as the fake
//! HubSpot.

use std::collections::BTreeSet;

use leadscored::fake::pardot::Faults;
use leadscored::fake::{
    FakeHubspot, FakePardot, HubspotConfig, PardotConfig, RunningFake, spawn_hubspot, spawn_pardot,
};
use serde_json::{Value, json};

fn config(prospects: u64) -> PardotConfig {
    PardotConfig {
        prospects,
        seed: 7,
        ..PardotConfig::default()
    }
}

async fn start(config: PardotConfig) -> (RunningFake, Client) {
    let token = config.token.clone();
    let unit = config.business_unit_id.clone();
    let fake = spawn_pardot(FakePardot::new(config))
        .await
        .expect("fake starts");
    let client = Client {
        http: reqwest::Client::new(),
        base: fake.url(),
        token,
        unit,
    };
    (fake, client)
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    unit: String,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Client {
    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request
            .bearer_auth(&self.token)
            .header("Pardot-Business-Unit-Id", &self.unit)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path_and_query: &str) -> Reply {
        self.send(self.http.get(format!("{}{path_and_query}", self.base)))
            .await
    }

    async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(self.http.patch(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    /// Follows page tokens from a first query; returns every value, the
    /// number of pages, and whether the last page carried the 203 warning.
    async fn walk(&self, first: &str, fields: &str) -> (Vec<Value>, usize, bool) {
        let mut values = Vec::new();
        let mut pages = 0;
        let mut reply = self.get(first).await;
        loop {
            assert_eq!(reply.status, 200, "{}", reply.body);
            pages += 1;
            values.extend(reply.body["values"].as_array().cloned().unwrap_or_default());
            match reply.body["nextPageToken"].as_str() {
                Some(token) => {
                    let path = first.split('?').next().unwrap_or_default();
                    reply = self
                        .get(&format!("{path}?fields={fields}&nextPageToken={token}"))
                        .await;
                }
                None => {
                    let warned = reply
                        .headers
                        .get("pardot-warning")
                        .is_some_and(|v| v == "203");
                    return (values, pages, warned);
                }
            }
        }
    }
}

fn ids(values: &[Value]) -> Vec<u64> {
    values
        .iter()
        .map(|v| v["id"].as_u64().expect("id"))
        .collect()
}

#[tokio::test]
async fn token_paging_walks_every_prospect_exactly_once_in_both_orders() {
    let (_fake, client) = start(config(2_345)).await;
    let (values, pages, warned) = client
        .walk(
            "/api/v5/objects/prospects?fields=id,email&orderBy=id&limit=1000",
            "id,email",
        )
        .await;
    assert_eq!(pages, 3);
    assert!(!warned);
    assert_eq!(ids(&values), (1..=2_345).collect::<Vec<_>>());

    let (values, _, _) = client
        .walk(
            "/api/v5/objects/prospects?fields=id,updatedAt&orderBy=updatedAt%20ASC&limit=700",
            "id,updatedAt",
        )
        .await;
    let seen: BTreeSet<u64> = ids(&values).into_iter().collect();
    assert_eq!(values.len(), 2_345, "no prospect served twice");
    assert_eq!(seen.len(), 2_345);
    let times: Vec<&str> = values
        .iter()
        .map(|v| v["updatedAt"].as_str().expect("updatedAt"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "sorted by updatedAt"
    );
}

#[tokio::test]
async fn a_query_is_cut_off_at_the_record_limit_with_warning_203() {
    let (_fake, client) = start(PardotConfig {
        token_record_limit: 1_000,
        faults: Faults {
            // 300 prospects share one updatedAt, as after an import.
            bulk_import: 300,
            ..Faults::default()
        },
        ..config(2_500)
    })
    .await;
    let fields = "id,updatedAt";
    let (first, pages, warned) = client
        .walk(
            &format!("/api/v5/objects/prospects?fields={fields}&orderBy=updatedAt&limit=400"),
            fields,
        )
        .await;
    assert!(warned, "the cut-off page says Pardot-Warning: 203");
    assert_eq!(first.len(), 1_000);
    assert_eq!(
        pages, 3,
        "400 + 400 + 200: the last page stops at the limit"
    );

    // Restarting from the last updatedAt (inclusive) reaches the rest; the
    // overlap at that timestamp is served again and de-duplicated by id.
    let mut seen: BTreeSet<u64> = ids(&first).into_iter().collect();
    let mut restarts = 0;
    let mut last = first.last().expect("a last record")["updatedAt"]
        .as_str()
        .expect("time")
        .to_owned();
    loop {
        restarts += 1;
        let since = last.replace('+', "%2B");
        let (values, _, warned) = client
            .walk(
                &format!(
                    "/api/v5/objects/prospects?fields={fields}&orderBy=updatedAt&limit=1000&updatedAtAfterOrEqualTo={since}"
                ),
                fields,
            )
            .await;
        seen.extend(ids(&values));
        last = values.last().expect("a last record")["updatedAt"]
            .as_str()
            .expect("time")
            .to_owned();
        if !warned {
            break;
        }
        assert!(restarts < 10, "restarts make progress");
    }
    assert_eq!(seen, (1..=2_500).collect::<BTreeSet<_>>());
}

#[tokio::test]
async fn query_rules_fields_limit_tokens_and_filters() {
    let (_fake, client) = start(config(50)).await;
    let missing = client.get("/api/v5/objects/prospects?limit=5").await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["code"], 5);
    assert!(
        missing.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("fields"))
    );

    let too_many = client
        .get("/api/v5/objects/prospects?fields=id&limit=1001")
        .await;
    assert_eq!(too_many.status, 400);

    let unknown = client
        .get("/api/v5/objects/prospects?fields=id,nonsense")
        .await;
    assert_eq!(unknown.status, 400);

    let default = client.get("/api/v5/objects/prospects?fields=id").await;
    assert_eq!(default.body["values"].as_array().map(Vec::len), Some(50));

    let first = client
        .get("/api/v5/objects/prospects?fields=id&limit=10")
        .await;
    let token = first.body["nextPageToken"].as_str().expect("a token");
    let mixed = client
        .get(&format!(
            "/api/v5/objects/prospects?fields=id&limit=10&nextPageToken={token}"
        ))
        .await;
    assert_eq!(mixed.status, 400, "only fields may go with a token");
    let url = first.body["nextPageUrl"].as_str().expect("a next URL");
    let next = client.get(url).await;
    assert_eq!(
        ids(next.body["values"].as_array().expect("values")),
        (11..=20).collect::<Vec<_>>()
    );

    let bounded = client
        .get("/api/v5/objects/prospects?fields=id&idGreaterThan=40&idLessThanOrEqualTo=45")
        .await;
    assert_eq!(
        ids(bounded.body["values"].as_array().expect("values")),
        vec![41, 42, 43, 44, 45]
    );

    let newest_first = client
        .get("/api/v5/objects/prospects?fields=id&orderBy=id%20DESC&limit=3")
        .await;
    assert_eq!(
        ids(newest_first.body["values"].as_array().expect("values")),
        vec![50, 49, 48]
    );
}

#[tokio::test]
async fn business_unit_header_and_bearer_token_are_required() {
    let (fake, client) = start(config(5)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v5/objects/prospects?fields=id", fake.url());
    let no_unit = http
        .get(&url)
        .bearer_auth(&client.token)
        .send()
        .await
        .expect("reply");
    assert_eq!(no_unit.status().as_u16(), 400);
    let body: Value = no_unit.json().await.expect("json");
    assert_eq!(body["code"], 181);

    let bad_token = http
        .get(&url)
        .bearer_auth("wrong")
        .header("Pardot-Business-Unit-Id", &client.unit)
        .send()
        .await
        .expect("reply");
    assert_eq!(bad_token.status().as_u16(), 401);
    let body: Value = bad_token.json().await.expect("json");
    assert_eq!(body["code"], 184);
}

#[tokio::test]
async fn more_than_five_concurrent_requests_get_error_66() {
    let (fake, client) = start(PardotConfig {
        faults: Faults {
            rate_slow: 1.0,
            slow: std::time::Duration::from_millis(1500),
            ..Faults::default()
        },
        ..config(20)
    })
    .await;
    let client = std::sync::Arc::new(client);
    let calls = (0..8).map(|_| {
        let client = std::sync::Arc::clone(&client);
        tokio::spawn(async move { client.get("/api/v5/objects/prospects?fields=id").await })
    });
    let replies = futures_util::future::join_all(calls).await;
    let mut ok = 0;
    let mut rejected = 0;
    for reply in replies {
        let reply = reply.expect("task");
        match reply.status {
            200 => ok += 1,
            429 => {
                assert_eq!(reply.body["code"], 66);
                rejected += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, rejected), (5, 3));
    let stats: Value = reqwest::get(format!("{}/__fake/stats", fake.url()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["rejected_concurrency"], 3);
}

#[tokio::test]
async fn the_daily_budget_ends_with_error_122_until_reset_and_usage_is_reported() {
    let (fake, client) = start(PardotConfig {
        daily: 3,
        ..config(5)
    })
    .await;
    let with_usage = client
        .send(
            client
                .http
                .get(format!(
                    "{}/api/v5/objects/prospects?fields=id",
                    client.base
                ))
                .header("X-Return-Api-Usage", "1"),
        )
        .await;
    assert_eq!(
        with_usage
            .headers
            .get("x-api-usage")
            .and_then(|v| v.to_str().ok()),
        Some("1/3")
    );
    for _ in 0..2 {
        assert_eq!(
            client
                .get("/api/v5/objects/prospects?fields=id")
                .await
                .status,
            200
        );
    }
    let spent = client.get("/api/v5/objects/prospects?fields=id").await;
    assert_eq!(spent.status, 429);
    assert_eq!(spent.body["code"], 122);
    reqwest::Client::new()
        .post(format!("{}/__fake/reset-daily", fake.url()))
        .send()
        .await
        .expect("reset");
    assert_eq!(
        client
            .get("/api/v5/objects/prospects?fields=id")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn patch_writes_custom_fields_with_types_and_moves_updated_at() {
    let (_fake, client) = start(config(30)).await;
    let created = client
        .post(
            "/api/v5/objects/custom-fields",
            json!({"name": "Lead score", "fieldId": "Lead_Score", "type": "Number"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    client
        .post(
            "/api/v5/objects/custom-fields",
            json!({"name": "Lead tier", "fieldId": "Lead_Tier", "type": "Text"}),
        )
        .await;
    let listed = client
        .get("/api/v5/objects/custom-fields?fields=id,fieldId,type")
        .await;
    assert_eq!(listed.body["values"].as_array().map(Vec::len), Some(2));

    let before = client
        .get("/api/v5/objects/prospects/12?fields=updatedAt,Lead_Score__c")
        .await;
    assert_eq!(before.body["Lead_Score__c"], Value::Null);
    let written = client
        .patch(
            "/api/v5/objects/prospects/12?fields=Lead_Score__c,Lead_Tier__c,updatedAt",
            json!({"Lead_Score__c": 87, "Lead_Tier__c": "High"}),
        )
        .await;
    assert_eq!(written.status, 200, "{}", written.body);
    assert_eq!(written.body["Lead_Score__c"], 87);
    assert_eq!(written.body["Lead_Tier__c"], "High");
    assert!(written.body["updatedAt"].as_str() > before.body["updatedAt"].as_str());

    // The write moves it to the end of an updatedAt query.
    let since = written.body["updatedAt"]
        .as_str()
        .expect("time")
        .replace('+', "%2B");
    let changed = client
        .get(&format!(
            "/api/v5/objects/prospects?fields=id&orderBy=updatedAt&updatedAtAfterOrEqualTo={since}"
        ))
        .await;
    assert_eq!(
        ids(changed.body["values"].as_array().expect("values")),
        vec![12]
    );

    for (body, why) in [
        (json!({"grade": "A"}), "grade is read-only"),
        (json!({"Lead_Score__c": "lots"}), "a number field"),
        (json!({"Undefined_Field__c": 1}), "an undefined field"),
    ] {
        let rejected = client.patch("/api/v5/objects/prospects/12", body).await;
        assert_eq!(rejected.status, 400, "{why}");
        assert_eq!(rejected.body["code"], 5, "{why}");
    }
    let missing = client
        .patch("/api/v5/objects/prospects/31", json!({"Lead_Score__c": 1}))
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["code"], 3);
}

#[tokio::test]
async fn visitor_activities_carry_type_codes_and_page_once() {
    let (_fake, client) = start(config(60)).await;
    let fields = "id,prospectId,type,typeName,details,formId,fileId,createdAt";
    let (values, pages, _) = client
        .walk(
            &format!("/api/v5/objects/visitor-activities?fields={fields}&limit=100"),
            fields,
        )
        .await;
    assert!(pages > 2, "{} activities in {pages} pages", values.len());
    let activity_ids = ids(&values);
    assert!(
        activity_ids.windows(2).all(|w| w[0] < w[1]),
        "ascending, no repeats"
    );
    let people = leadscored::fake::PeopleSpec {
        seed: 7,
        epoch_ms: PardotConfig::default().epoch_ms,
        activity: 1.0,
        companies: 0,
    };
    // Every event but meetings, and a visit opening every second page view.
    let expected: usize = (1..=60)
        .map(|id| {
            let events = people.person(id).events;
            let views = events.iter().filter(|e| e.kind == "page_view").count();
            events.iter().filter(|e| e.kind != "meeting").count() + views.div_ceil(2)
        })
        .sum();
    assert_eq!(values.len(), expected, "every activity once");
    for value in &values {
        let (code, name) = (value["type"].as_u64().expect("type"), &value["typeName"]);
        let expected_name = match code {
            1 => "Click",
            2 => "View",
            4 => "Success",
            11 => "Open",
            12 => "Unsubscribe Page",
            17 => "Click (Third Party)",
            20 => "Visit",
            21 => "Custom URL click",
            24 => "Attended Webinar",
            other => panic!("unexpected type {other}"),
        };
        assert_eq!(name, expected_name);
        if code == 4 {
            assert!(value["formId"].is_u64());
        }
    }
    let one = client
        .get(&format!(
            "/api/v5/objects/visitor-activities?fields={fields}&prospectId=9&type=2"
        ))
        .await;
    for value in one.body["values"].as_array().expect("values") {
        assert_eq!(value["prospectId"], 9);
        assert_eq!(value["type"], 2);
    }
}

#[tokio::test]
async fn salesforce_oauth_issues_tokens_that_expire() {
    let ttl = std::time::Duration::from_millis(300);
    let (fake, mut client) = start(PardotConfig {
        faults: Faults {
            token_ttl: Some(ttl),
            ..Faults::default()
        },
        ..config(5)
    })
    .await;
    let defaults = PardotConfig::default();
    let token_url = format!("{}/services/oauth2/token", fake.url());
    let http = reqwest::Client::new();
    let refused: Value = http
        .post(&token_url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", defaults.client_id.as_str()),
            ("client_secret", defaults.client_secret.as_str()),
            ("refresh_token", "stale"),
        ])
        .send()
        .await
        .expect("reply")
        .json()
        .await
        .expect("json");
    assert_eq!(refused["error"], "invalid_grant");
    for grant in ["refresh_token", "client_credentials"] {
        let issued: Value = http
            .post(&token_url)
            .form(&[
                ("grant_type", grant),
                ("client_id", defaults.client_id.as_str()),
                ("client_secret", defaults.client_secret.as_str()),
                ("refresh_token", defaults.refresh_token.as_str()),
            ])
            .send()
            .await
            .expect("reply")
            .json()
            .await
            .expect("json");
        assert_eq!(issued["token_type"], "Bearer");
        client.token = issued["access_token"].as_str().expect("token").to_owned();
        assert_eq!(
            client
                .get("/api/v5/objects/prospects?fields=id")
                .await
                .status,
            200
        );
    }
    tokio::time::sleep(ttl + std::time::Duration::from_millis(50)).await;
    let expired = client.get("/api/v5/objects/prospects?fields=id").await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.body["code"], 184);
}

#[tokio::test]
async fn injected_faults_server_errors_and_record_errors() {
    let (_fake, client) = start(PardotConfig {
        faults: Faults {
            rate_5xx: 1.0,
            ..Faults::default()
        },
        ..config(5)
    })
    .await;
    let reply = client.get("/api/v5/objects/prospects?fields=id").await;
    assert!([500, 502, 503, 504].contains(&reply.status));
    assert!(reply.body.is_string(), "gateways answer with HTML");

    let (_fake, client) = start(PardotConfig {
        faults: Faults {
            rate_record_error: 1.0,
            ..Faults::default()
        },
        ..config(5)
    })
    .await;
    let reply = client
        .patch("/api/v5/objects/prospects/2", json!({"score": 10}))
        .await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn writes_survive_a_restart_through_the_state_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pardot.json");
    let first = FakePardot::new(config(10));
    let (running, client) = {
        let running = spawn_pardot(first.clone()).await.expect("fake starts");
        let defaults = config(10);
        let client = Client {
            http: reqwest::Client::new(),
            base: running.url(),
            token: defaults.token,
            unit: defaults.business_unit_id,
        };
        (running, client)
    };
    client
        .post(
            "/api/v5/objects/custom-fields",
            json!({"name": "Tier", "fieldId": "Tier", "type": "Text"}),
        )
        .await;
    client
        .patch(
            "/api/v5/objects/prospects/4",
            json!({"Tier__c": "High", "score": 120}),
        )
        .await;
    assert!(first.save_state(&path).expect("saved"));
    assert!(
        !first.save_state(&path).expect("nothing new"),
        "saves only changes"
    );
    drop(running);

    let second = FakePardot::new(config(10));
    second.load_state(&path).expect("loads");
    let (_running, client) = {
        let running = spawn_pardot(second).await.expect("fake starts");
        let base = running.url();
        (running, Client { base, ..client })
    };
    let read = client
        .get("/api/v5/objects/prospects/4?fields=Tier__c,score")
        .await;
    assert_eq!(read.body["Tier__c"], "High");
    assert_eq!(read.body["score"], 120);

    let other = FakePardot::new(PardotConfig {
        seed: 8,
        ..config(10)
    });
    let refused = other.load_state(&path).expect_err("another seed's state");
    assert!(refused.contains("seed 7"), "{refused}");
}

#[tokio::test]
async fn prospects_are_the_same_people_as_hubspot_contacts() {
    let (_fake, client) = start(config(40)).await;
    let hubspot = spawn_hubspot(FakeHubspot::new(HubspotConfig {
        contacts: 40,
        seed: 7,
        ..HubspotConfig::default()
    }))
    .await
    .expect("fake starts");
    let (prospects, _, _) = client
        .walk(
            "/api/v5/objects/prospects?fields=id,email,jobTitle&limit=1000",
            "id,email,jobTitle",
        )
        .await;
    let contacts: Value = reqwest::Client::new()
        .get(format!(
            "{}/crm/v3/objects/contacts?limit=100&properties=email,jobtitle",
            hubspot.url()
        ))
        .bearer_auth(HubspotConfig::default().token)
        .send()
        .await
        .expect("reply")
        .json()
        .await
        .expect("json");
    let contacts = contacts["results"].as_array().expect("results");
    assert_eq!(contacts.len(), prospects.len());
    for (contact, prospect) in contacts.iter().zip(&prospects) {
        assert_eq!(
            contact["id"].as_str(),
            Some(prospect["id"].to_string().as_str())
        );
        assert_eq!(contact["properties"]["email"], prospect["email"]);
        assert_eq!(contact["properties"]["jobtitle"], prospect["jobTitle"]);
    }
}
