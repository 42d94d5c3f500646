//! HubSpot webhooks: the v3 signature against a vector computed outside
//! the product (openssl), what each delivery means, the daemon's endpoint
//! refusing what it must (and staying up), and whole flows — an edit in
//! the fake HubSpot reaches the contact's score within seconds, and a
//! queue that overflows falls back to an incremental pass with nothing
//! lost. Pardot's short schedules are held to the daily budget.

use std::time::{Duration, Instant};

use leadscored::config::{Connection, LoadError};
use leadscored::crm::Touch;
use leadscored::crm::hubspot::webhook::{Refusal, Verifier, Watch, decode_uri, read};
use leadscored::fake::hubspot::webhooks::FakeWebhooks;
use leadscored::fake::{FakeHubspot, RunningFake, spawn_hubspot};
use secrecy::SecretString;

use super::daemon::{
    FAST, daemon_child, eventually, free_port, get, left_to_write, signal, wait_with_timeout,
    write_connection,
};
use super::hubspot_flows::fake_config;

const SECRET: &str = "s3cret-app";
const URL: &str = "https://leads.example.com/webhooks/hubspot";
const BODY: &str =
    r#"[{"eventId":1,"subscriptionType":"contact.creation","objectId":101,"portalId":40000011}]"#;
const AT: i64 = 1_764_460_800_000;
/// `printf '%s' "POST$URL$BODY$AT" | openssl dgst -sha256 -hmac "$SECRET" -binary | base64`
const SIGNATURE: &str = "M9OkSoFg7Baz8Y00LRt0q6p+CL0JCiiRj0dZggMIYBQ=";

fn verifier(url: &str) -> Verifier {
    Verifier::new(SecretString::from(SECRET.to_owned()), url)
}

#[test]
fn the_v3_signature_is_hubspots() {
    let at = AT.to_string();
    let ok = verifier(URL).verify(
        "POST",
        Some(SIGNATURE),
        Some(&at),
        BODY.as_bytes(),
        AT + 1_000,
    );
    assert_eq!(ok, Ok(AT));
    // HubSpot decodes these characters in the URI before signing.
    let encoded = "https%3A%2F%2Fleads.example.com%2Fwebhooks%2Fhubspot";
    assert_eq!(decode_uri(encoded), URL);
    assert_eq!(decode_uri("a%2fb%20c%"), "a/b%20c%");
    let ok = verifier(encoded).verify("POST", Some(SIGNATURE), Some(&at), BODY.as_bytes(), AT);
    assert_eq!(ok, Ok(AT));

    /// What, target URL, signature, timestamp, body, now, the refusal.
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
        i64,
        Refusal,
    );
    let cases: [Case<'_>; 9] = [
        (
            "body changed",
            URL,
            Some(SIGNATURE),
            Some(&at),
            "[]",
            AT,
            Refusal::BadSignature,
        ),
        (
            "other URL",
            "https://evil.example.com/webhooks/hubspot",
            Some(SIGNATURE),
            Some(&at),
            BODY,
            AT,
            Refusal::BadSignature,
        ),
        (
            "other timestamp",
            URL,
            Some(SIGNATURE),
            Some("1764460800001"),
            BODY,
            AT,
            Refusal::BadSignature,
        ),
        (
            "not Base64",
            URL,
            Some("###"),
            Some(&at),
            BODY,
            AT,
            Refusal::BadSignature,
        ),
        (
            "no signature",
            URL,
            None,
            Some(&at),
            BODY,
            AT,
            Refusal::Unsigned,
        ),
        (
            "no timestamp",
            URL,
            Some(SIGNATURE),
            None,
            BODY,
            AT,
            Refusal::Unsigned,
        ),
        (
            "timestamp in seconds text",
            URL,
            Some(SIGNATURE),
            Some("yesterday"),
            BODY,
            AT,
            Refusal::BadTimestamp,
        ),
        (
            "over five minutes old",
            URL,
            Some(SIGNATURE),
            Some(&at),
            BODY,
            AT + 300_001,
            Refusal::Expired { seconds: 300 },
        ),
        (
            "from the future",
            URL,
            Some(SIGNATURE),
            Some(&at),
            BODY,
            AT - 301_000,
            Refusal::Ahead { seconds: 301 },
        ),
    ];
    for (what, url, signature, timestamp, body, now, refusal) in cases {
        let got = verifier(url).verify("POST", signature, timestamp, body.as_bytes(), now);
        assert_eq!(got, Err(refusal), "{what}");
    }
    let got = verifier(URL).verify("PUT", Some(SIGNATURE), Some(&at), BODY.as_bytes(), AT);
    assert_eq!(got, Err(Refusal::BadSignature), "another method");
}

#[test]
fn each_kind_of_event_asks_for_what_it_means() {
    let watch = Watch {
        contact_fields: ["jobtitle", "associatedcompanyid"]
            .map(str::to_owned)
            .into_iter()
            .collect(),
        company_fields: ["industry"].map(str::to_owned).into_iter().collect(),
        engagement_fields: ["recent_conversion_date"]
            .map(str::to_owned)
            .into_iter()
            .collect(),
    };
    let contact = |id: &str| Touch::Contact(id.to_owned());
    let engaged = |id: &str| Touch::Engaged(id.to_owned());
    let gone = |id: &str| Touch::Gone(id.to_owned());
    let cases: Vec<(&str, &str, Vec<Touch>)> = vec![
        (
            "creation",
            r#"{"eventId":1,"subscriptionType":"contact.creation","objectId":11}"#,
            vec![engaged("11")],
        ),
        (
            "a field the model reads",
            r#"{"eventId":2,"subscriptionType":"contact.propertyChange","objectId":12,"propertyName":"jobtitle","propertyValue":"CEO"}"#,
            vec![contact("12")],
        ),
        (
            "a field it does not read",
            r#"{"eventId":3,"subscriptionType":"contact.propertyChange","objectId":13,"propertyName":"leadscored_score"}"#,
            vec![],
        ),
        (
            "deletion",
            r#"{"eventId":4,"subscriptionType":"contact.deletion","objectId":14}"#,
            vec![gone("14")],
        ),
        (
            "privacy deletion",
            r#"{"eventId":5,"subscriptionType":"contact.privacyDeletion","objectId":15}"#,
            vec![gone("15")],
        ),
        (
            "merge",
            r#"{"eventId":6,"subscriptionType":"contact.merge","objectId":16,"primaryObjectId":16,"mergedObjectIds":[17,"18"]}"#,
            vec![engaged("16"), gone("17"), gone("18")],
        ),
        (
            "merge into a new record",
            r#"{"eventId":7,"subscriptionType":"contact.merge","primaryObjectId":20,"newObjectId":21,"mergedObjectIds":[20,22]}"#,
            vec![engaged("20"), engaged("21"), gone("22")],
        ),
        (
            "restore",
            r#"{"eventId":8,"subscriptionType":"contact.restore","objectId":23}"#,
            vec![engaged("23")],
        ),
        (
            "moved to a company",
            r#"{"eventId":9,"subscriptionType":"contact.associationChange","associationType":"CONTACT_TO_COMPANY","fromObjectId":24,"toObjectId":900}"#,
            vec![contact("24")],
        ),
        (
            "company side of the move",
            r#"{"eventId":10,"subscriptionType":"company.associationChange","associationType":"COMPANY_TO_CONTACT","fromObjectId":900,"toObjectId":24}"#,
            vec![],
        ),
        (
            "a company field the model reads",
            r#"{"eventId":11,"subscriptionType":"company.propertyChange","objectId":900,"propertyName":"industry"}"#,
            vec![Touch::Company("900".to_owned())],
        ),
        (
            "a company field it does not",
            r#"{"eventId":12,"subscriptionType":"company.propertyChange","objectId":900,"propertyName":"name"}"#,
            vec![],
        ),
        (
            "new developer platform",
            r#"{"eventId":13,"subscriptionType":"object.propertyChange","objectTypeId":"0-1","objectId":25,"propertyName":"jobtitle"}"#,
            vec![contact("25")],
        ),
        (
            "a deal",
            r#"{"eventId":14,"subscriptionType":"deal.creation","objectId":26}"#,
            vec![],
        ),
        (
            "an id that is not one",
            r#"{"eventId":15,"subscriptionType":"contact.creation","objectId":"12; DROP TABLE"}"#,
            vec![],
        ),
        ("not an object", r#""contact.creation""#, vec![]),
    ];
    for (what, event, touches) in cases {
        let body = format!("[{event}]");
        let read = read(body.as_bytes(), &watch).expect(what);
        assert_eq!(read.len(), 1, "{what}");
        assert_eq!(read[0].touches, touches, "{what}");
    }
    for bad in ["", "{}", "[1,", "null", "{\"eventId\":1}"] {
        assert!(read(bad.as_bytes(), &watch).is_err(), "{bad:?} is refused");
    }
}

/// What the daemon's endpoint is sent, signed as HubSpot signs.
struct Sender {
    client: reqwest::Client,
    endpoint: String,
    /// The URL HubSpot is configured with (the daemon checks against it).
    target: String,
}

impl Sender {
    async fn post(&self, body: &str, age_ms: i64, secret: &str) -> (u16, String) {
        let at = (jiff::Timestamp::now().as_millisecond() - age_ms).to_string();
        let signature = sign(secret, &self.target, body, &at);
        self.send(body, Some(&signature), Some(&at)).await
    }

    async fn send(&self, body: &str, signature: Option<&str>, at: Option<&str>) -> (u16, String) {
        let mut request = self
            .client
            .post(&self.endpoint)
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("X-HubSpot-Signature-v3", signature);
        }
        if let Some(at) = at {
            request = request.header("X-HubSpot-Request-Timestamp", at);
        }
        let answer = request.send().await.expect("the daemon answers");
        let status = answer.status().as_u16();
        (status, answer.text().await.unwrap_or_default())
    }
}

/// HubSpot's v3 signature, written out here (not the product's code).
fn sign(secret: &str, url: &str, body: &str, at: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("POST{url}{body}{at}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn webhooks_section(port: u16, secret_file: &std::path::Path, extra: &str) -> String {
    format!(
        "incremental = \"every 1h\"\nrescore = \"off\"\n\n[webhooks]\nurl = \"http://127.0.0.1:{port}/webhooks/hubspot\"\nsecret = {{ file = {:?} }}\n{extra}",
        secret_file.display().to_string()
    )
}

async fn fake_with_webhooks(contacts: u64, port: u16) -> RunningFake {
    let mut config = fake_config(contacts);
    let mut hooks = FakeWebhooks::new(&format!("http://127.0.0.1:{port}/webhooks/hubspot"), SECRET)
        .expect("loopback URL");
    hooks.retry_base = Duration::from_millis(200);
    config.webhooks = Some(hooks);
    let fake = spawn_hubspot(FakeHubspot::new(config)).await.expect("fake");
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = super::hubspot_flows::connection(&fake.url(), FAST, &dir);
    use leadscored::crm::Crm as _;
    leadscored::crm::hubspot::Hubspot::new(&connection)
        .expect("connector")
        .setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    fake
}

async fn json(url: &str) -> serde_json::Value {
    reqwest::get(url)
        .await
        .expect("answers")
        .json()
        .await
        .expect("json")
}

/// Waits for `check`, showing the daemon's log if it never comes.
async fn within<F, Fut>(limit: Duration, log: &std::path::Path, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            started.elapsed() < limit,
            "timed out; the daemon's log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sum of a metric's samples (lines starting with `prefix`).
async fn metric_sum(url: &str, prefix: &str) -> f64 {
    let text = get(url).await.expect("metrics").1;
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn first_run(port: u16) {
    let health = format!("http://127.0.0.1:{port}/healthz");
    eventually("a healthy first run", Duration::from_secs(60), || async {
        matches!(get(&health).await, Some((200, body)) if body.contains("\"last_outcome\":\"ok\""))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_huge_or_broken_deliveries_are_refused_and_the_daemon_stays_up() {
    let fake = super::daemon::fake(fake_config(50)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("app-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("secret");
    let port = free_port();
    let section = webhooks_section(port, &secret, "max_body_kb = 4\n");
    let path = write_connection(dir.path(), &fake.url(), FAST, &section, "UTC");
    let log = dir.path().join("daemon.log");
    let mut child = daemon_child(&path, port, dir.path(), &log);
    first_run(port).await;
    let sender = Sender {
        client: reqwest::Client::new(),
        endpoint: format!("http://127.0.0.1:{port}/webhooks/hubspot"),
        target: format!("http://127.0.0.1:{port}/webhooks/hubspot"),
    };
    let event = r#"[{"eventId":77,"portalId":40000011,"subscriptionType":"contact.propertyChange","objectId":3,"propertyName":"jobtitle"}]"#;
    let unknown = r#"[{"eventId":78,"subscriptionType":"deal.creation","objectId":3},{"eventId":79,"subscriptionType":"contact.propertyChange","objectId":3,"propertyName":"leadscored_score"}]"#;
    let huge = format!(
        "[{}]",
        vec![r#"{"eventId":1,"subscriptionType":"deal.creation","objectId":1}"#; 100].join(",")
    );
    let now = jiff::Timestamp::now().as_millisecond().to_string();
    assert_eq!(sender.send(event, None, None).await.0, 401, "unsigned");
    assert_eq!(
        sender.send(event, Some("AAAA"), Some(&now)).await.0,
        401,
        "forged"
    );
    assert_eq!(
        sender.post(event, 0, "another-secret").await.0,
        401,
        "wrong secret"
    );
    assert_eq!(
        sender.post(event, 6 * 60_000, SECRET).await.0,
        401,
        "six minutes old"
    );
    assert_eq!(
        sender.post(&huge, 0, SECRET).await.0,
        413,
        "over max_body_kb"
    );
    assert_eq!(
        sender.post("[{\"eventId\":", 0, SECRET).await.0,
        400,
        "malformed"
    );
    let (status, body) = sender.post(unknown, 0, SECRET).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ignored\":2"), "{body}");
    // A replay of the same delivery (same signature) is taken once.
    let at = jiff::Timestamp::now().as_millisecond().to_string();
    let signature = sign(SECRET, &sender.target, event, &at);
    let (status, first) = sender.send(event, Some(&signature), Some(&at)).await;
    assert_eq!(status, 200);
    assert!(first.contains("\"events\":1"), "{first}");
    let (status, again) = sender.send(event, Some(&signature), Some(&at)).await;
    assert_eq!(status, 200);
    assert!(again.contains("\"events\":0"), "{again}");

    let metrics = get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .1;
    for outcome in [
        "unsigned",
        "bad_signature",
        "expired",
        "too_large",
        "malformed",
        "replayed",
        "accepted",
    ] {
        let line = format!("leadscored_webhook_deliveries_total{{outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    assert!(metrics.contains("leadscored_webhook_events_total{outcome=\"ignored\"} 2"));
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        read_log().contains("webhook delivery refused"),
        "{}",
        read_log()
    );
    assert!(!read_log().contains(SECRET), "the secret is never logged");
    assert!(matches!(
        get(&format!("http://127.0.0.1:{port}/healthz")).await,
        Some((200, _))
    ));
    signal(&child, "TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", read_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_in_hubspot_reaches_the_score_within_seconds() {
    let port = free_port();
    let fake = fake_with_webhooks(300, port).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("app-secret");
    std::fs::write(&secret, SECRET).expect("secret");
    let section = webhooks_section(port, &secret, "gather_ms = 200\n");
    let path = write_connection(dir.path(), &fake.url(), FAST, &section, "UTC");
    let connection = Connection::load(&path).expect("loads");
    let log = dir.path().join("daemon.log");
    let mut child = daemon_child(&path, port, dir.path(), &log);
    first_run(port).await;
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let calls_before = metric_sum(&metrics_url, "leadscored_crm_requests_total").await;
    // Someone in sales gives ten contacts a new job title.
    let client = reqwest::Client::new();
    let mut before = Vec::new();
    for id in (7..300).step_by(29) {
        let contact = json(&format!("{}/__fake/contacts/{id}", fake.url())).await;
        before.push((id, contact["properties"]["leadscored_score"].clone()));
        let title = if id % 2 == 0 {
            "Student assistant"
        } else {
            "CEO and founder"
        };
        let answer = client
            .post(format!("{}/__fake/contacts/{id}", fake.url()))
            .json(&serde_json::json!({ "properties": { "jobtitle": title } }))
            .send()
            .await
            .expect("edit");
        assert!(answer.status().is_success());
    }
    let edited = Instant::now();
    within(Duration::from_secs(10), &log, || async {
        left_to_write(&connection).await == 0
    })
    .await;
    let took = edited.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    // A changed field needs no engagement reads: a batch read and a batch
    // write per webhook pass, and the echoes of our writes cost nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = metric_sum(&metrics_url, "leadscored_crm_requests_total").await - calls_before;
    let passes = metric_sum(&metrics_url, "leadscored_runs_total{kind=\"webhook\"").await;
    assert!(passes >= 1.0);
    assert!(
        calls <= 2.0 * passes,
        "{calls} calls for {passes} webhook passes"
    );
    let mut moved = 0;
    for (id, old) in &before {
        let contact = json(&format!("{}/__fake/contacts/{id}", fake.url())).await;
        moved += usize::from(&contact["properties"]["leadscored_score"] != old);
    }
    assert!(moved >= 8, "the edits moved the scores ({moved} of 10)");

    // The daemon's own writes come back as webhooks too: they are ignored
    // (leadscored's outputs are not inputs), so nothing is written twice.
    let stats = json(&format!("{}/__fake/stats", fake.url())).await;
    assert_eq!(stats["webhooks"]["given_up"], 0, "{stats}");
    let metrics = get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .1;
    assert!(
        metrics.contains("leadscored_runs_total{kind=\"webhook\",outcome=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("leadscored_webhook_events_total{outcome=\"ignored\"}"),
        "{metrics}"
    );
    let written =
        |stats: &serde_json::Value| stats["requests"]["contacts written"].as_u64().unwrap_or(0);
    let settled = written(&stats);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = json(&format!("{}/__fake/stats", fake.url())).await;
    assert_eq!(written(&later), settled, "echoes write nothing");

    signal(&child, "TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", read_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_falls_back_to_an_incremental_pass_and_loses_nothing() {
    let port = free_port();
    let fake = fake_with_webhooks(300, port).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("app-secret");
    std::fs::write(&secret, SECRET).expect("secret");
    let section = webhooks_section(port, &secret, "queue = 3\ngather_ms = 1500\n");
    let path = write_connection(dir.path(), &fake.url(), FAST, &section, "UTC");
    let connection = Connection::load(&path).expect("loads");
    let log = dir.path().join("daemon.log");
    let mut child = daemon_child(&path, port, dir.path(), &log);
    first_run(port).await;
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let client = reqwest::Client::new();
    for id in (5..300).step_by(23) {
        client
            .post(format!("{}/__fake/contacts/{id}", fake.url()))
            .json(&serde_json::json!({ "properties": { "jobtitle": "VP of growth" } }))
            .send()
            .await
            .expect("edit");
    }
    within(Duration::from_secs(20), &log, || async {
        left_to_write(&connection).await == 0
    })
    .await;
    let metrics = get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .1;
    assert!(
        metrics.contains("leadscored_webhook_dropped_total"),
        "{metrics}"
    );
    assert!(read_log().contains("queue is full"), "{}", read_log());
    signal(&child, "TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", read_log());
}

#[test]
fn webhooks_are_for_hubspot_and_pardot_schedules_fit_the_budget() {
    let errors = |source: &str| match Connection::parse(
        "c.toml",
        source,
        &crate::root().join("config"),
        None,
    ) {
        Ok(_) => Vec::new(),
        Err(LoadError::Invalid(errors)) => errors
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
            .collect(),
        Err(other) => panic!("{other}"),
    };
    let pardot = |daemon: &str| {
        format!(
            "model = \"b2b.toml\"\n[crm]\nkind = \"pardot\"\naccount_tier = \"growth\"\nbusiness_unit_id = \"0Uv000000000001AAA\"\ntoken = {{ env = \"T\" }}\n[[output]]\nproperty = \"Lead_Score__c\"\nvalue = \"contact.total\"\n[daemon]\n{daemon}"
        )
    };
    // Growth: 25,000 calls a day, 10 % headroom: 22,500 for leadscored.
    let every_minute = errors(&pardot("incremental = \"every 1m\"\n"));
    assert_eq!(every_minute, Vec::<String>::new());
    let every_ten_seconds = errors(&pardot("incremental = \"every 10s\"\n"));
    assert_eq!(every_ten_seconds.len(), 1, "{every_ten_seconds:?}");
    assert!(
        every_ten_seconds[0].starts_with("11:15: incremental: every 10s starts 8640 passes a day"),
        "{every_ten_seconds:?}"
    );
    assert!(
        every_ten_seconds[0].contains("(\"every 16s\" or longer)"),
        "{every_ten_seconds:?}"
    );
    let cron = errors(&pardot("incremental = \"*/5 * * * * *\"\n"));
    assert!(cron[0].contains("17280 passes a day"), "{cron:?}");
    let webhooks = errors(
        &(pardot("")
            + "[webhooks]\nurl = \"https://x.example.com/webhooks/hubspot\"\nsecret = { env = \"S\" }\n"),
    );
    assert!(
        webhooks[0].contains("only HubSpot sends webhooks"),
        "{webhooks:?}"
    );

    let hubspot = "model = \"b2b.toml\"\n[crm]\nkind = \"hubspot\"\ntoken = { env = \"T\" }\n[[output]]\nproperty = \"ls_score\"\nvalue = \"contact.total\"\n";
    let bad = errors(&format!(
        "{hubspot}[daemon]\nlisten = \"off\"\n[webhooks]\nurl = \"leads.example.com\"\nsecret = {{ env = \"S\", file = \"f\" }}\nqueue = 0\n"
    ));
    assert_eq!(bad.len(), 4, "every problem at once: {bad:?}");
    let good = Connection::parse(
        "c.toml",
        &format!("{hubspot}[webhooks]\nurl = \"https://leads.example.com/webhooks/hubspot\"\nsecret = {{ credential = \"hubspot-app-secret\" }}\n"),
        &crate::root().join("config"),
        None,
    )
    .expect("loads");
    let webhooks = good.webhooks.expect("webhooks");
    assert_eq!(webhooks.queue, 100_000);
    assert_eq!(webhooks.gather, Duration::from_secs(1));
    assert_eq!(webhooks.max_body, 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_signs_batches_and_retries_failed_deliveries() {
    use std::sync::{Arc, Mutex};
    // A receiver that fails its first two answers, then takes everything.
    /// A delivery's signature, timestamp and body.
    type Delivery = (String, String, Vec<u8>);
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<Delivery>>>);
    async fn receive(
        axum::extract::State(seen): axum::extract::State<Seen>,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::http::StatusCode {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let mut seen = seen.0.lock().expect("lock");
        seen.push((
            header("x-hubspot-signature-v3"),
            header("x-hubspot-request-timestamp"),
            body.to_vec(),
        ));
        if seen.len() <= 2 {
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        } else {
            axum::http::StatusCode::NO_CONTENT
        }
    }
    let seen = Seen::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let port = listener.local_addr().expect("address").port();
    let app = axum::Router::new()
        .route("/hooks", axum::routing::post(receive))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let target = format!("http://127.0.0.1:{port}/hooks");

    assert!(FakeWebhooks::new("https://example.com/hooks", SECRET).is_err());
    let mut hooks = FakeWebhooks::new(&target, SECRET).expect("loopback");
    hooks.retry_base = Duration::from_millis(50);
    let mut config = fake_config(500);
    config.webhooks = Some(hooks);
    let fake = FakeHubspot::new(config);
    let _running = spawn_hubspot(fake.clone()).await.expect("fake");
    // 150 changes: two deliveries (100 and 50 events).
    for id in 1..=150 {
        let values = [("jobtitle".to_owned(), format!("Title {id}"))].into();
        assert!(fake.edit_contact(id, values));
    }
    let started = Instant::now();
    while seen.0.lock().expect("lock").len() < 4 {
        assert!(started.elapsed() < Duration::from_secs(10), "deliveries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = seen.0.lock().expect("lock").clone();
    let verifier = verifier(&target);
    let mut events = std::collections::BTreeMap::new();
    for (signature, at, body) in &seen {
        let now = at.parse::<i64>().expect("epoch ms");
        assert_eq!(
            verifier.verify("POST", Some(signature), Some(at), body, now),
            Ok(now),
            "signed as HubSpot signs"
        );
        let batch: Vec<serde_json::Value> = serde_json::from_slice(body).expect("array");
        assert!(batch.len() <= 100);
        for event in batch {
            assert_eq!(event["subscriptionType"], "contact.propertyChange");
            assert_eq!(event["changeSource"], "CRM_UI");
            let id = event["eventId"].as_u64().expect("event id");
            events
                .entry(id)
                .or_insert_with(Vec::new)
                .push(event["attemptNumber"].as_u64().expect("attempt"));
        }
    }
    assert_eq!(events.len(), 150, "every change sent");
    // Two failed answers: those events came again with their attempt counted.
    let retried = events
        .values()
        .filter(|attempts| attempts.len() > 1)
        .count();
    assert!(retried >= 50, "{retried} events retried");
    assert!(
        events
            .values()
            .all(|a| a.windows(2).all(|w| w[1] == w[0] + 1))
    );
    let stats = reqwest::get(format!("{}/__fake/stats", _running.url()))
        .await
        .expect("stats")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(stats["webhooks"]["failed_attempts"], 2, "{stats}");
    assert_eq!(stats["webhooks"]["given_up"], 0, "{stats}");
}
