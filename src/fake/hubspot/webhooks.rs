//! The fake HubSpot's webhook deliveries, as HubSpot sends them: when a
//! contact changes, one `contact.propertyChange` event per changed
//! property (only subscribed properties, when a list is given), batched up
//! to 100 events a request, at most 10 requests in flight, signed with
//! `X-HubSpot-Signature-v3` (HMAC-SHA256 of method, target URL, body and
//! timestamp with the app secret, Base64) and `X-HubSpot-Request-Timestamp`,
//! and retried with growing delays on a failed connection, a timeout
//! (five seconds) or any 4xx or 5xx answer, up to 10 times. Only loopback
//! target URLs are accepted.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// How the fake sends webhooks.
#[derive(Clone, Debug)]
pub struct FakeWebhooks {
    /// The target URL (loopback only).
    pub url: String,
    /// The app's client secret, which signs deliveries.
    pub secret: String,
    pub app_id: u64,
    /// Only these properties' changes are sent (none: every property).
    pub properties: Option<BTreeSet<String>>,
    /// Retries after the first attempt (HubSpot: 10).
    pub retries: u32,
    /// The first retry's delay; each next one doubles (HubSpot spreads its
    /// retries over a day; tests shrink this).
    pub retry_base: Duration,
    /// How long an answer may take (HubSpot: 5 s).
    pub timeout: Duration,
}

impl FakeWebhooks {
    pub fn new(url: &str, secret: &str) -> Result<FakeWebhooks, String> {
        let loopback = ["http://127.0.0.1:", "http://[::1]:", "http://localhost:"]
            .iter()
            .any(|p| url.starts_with(p));
        if !loopback || url.contains('%') {
            return Err(format!(
                "webhook URL {url:?}: the fake sends webhooks to a plain loopback URL only (http://127.0.0.1:PORT/...)"
            ));
        }
        Ok(FakeWebhooks {
            url: url.to_owned(),
            secret: secret.to_owned(),
            app_id: 4_242_424,
            properties: None,
            retries: 10,
            retry_base: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        })
    }
}

/// Events waiting to be sent, and what was sent.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    waiting: VecDeque<Value>,
    next_event_id: u64,
}

/// Delivery counts for `/__fake/stats`.
#[derive(Debug, Default)]
pub(super) struct Sent {
    pub deliveries: AtomicU64,
    pub events: AtomicU64,
    pub attempts: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub given_up: AtomicU64,
}

impl Sent {
    pub fn json(&self) -> Value {
        json!({
            "deliveries": self.deliveries.load(Ordering::Relaxed),
            "events": self.events.load(Ordering::Relaxed),
            "attempts": self.attempts.load(Ordering::Relaxed),
            "failed_attempts": self.failed_attempts.load(Ordering::Relaxed),
            "given_up": self.given_up.load(Ordering::Relaxed),
        })
    }
}

impl Outbox {
    /// Adds one `contact.propertyChange` per subscribed property written.
    pub fn contact_changed<'a>(
        &mut self,
        config: &FakeWebhooks,
        portal: u64,
        id: u64,
        values: impl Iterator<Item = (&'a String, &'a String)>,
        source: &str,
    ) {
        let now = jiff::Timestamp::now().as_millisecond();
        for (name, value) in values {
            if config
                .properties
                .as_ref()
                .is_some_and(|p| !p.contains(name))
            {
                continue;
            }
            self.next_event_id += 1;
            self.waiting.push_back(json!({
                "eventId": 1_000_000 + self.next_event_id,
                "subscriptionId": 700_001,
                "portalId": portal,
                "appId": config.app_id,
                "occurredAt": now,
                "subscriptionType": "contact.propertyChange",
                "attemptNumber": 0,
                "objectId": id,
                "propertyName": name,
                "propertyValue": value,
                "changeSource": source,
                "sourceId": "userId:1",
            }));
        }
    }

    fn take(&mut self, most: usize) -> Vec<Value> {
        let n = most.min(self.waiting.len());
        self.waiting.drain(..n).collect()
    }
}

/// The v3 signature of one request.
fn sign(secret: &str, url: &str, body: &[u8], timestamp: &str) -> String {
    use base64::Engine as _;
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    for part in [
        b"POST".as_slice(),
        url.as_bytes(),
        body,
        timestamp.as_bytes(),
    ] {
        mac.update(part);
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Sends what the outbox gathers until the fake is dropped: a request as
/// soon as events wait, up to 100 events each and 10 in flight.
pub(super) fn start(fake: super::FakeHubspot, config: FakeWebhooks) {
    let wake = fake.wake.clone();
    let sent = fake.sent.clone();
    let weak = Arc::downgrade(&fake.inner);
    drop(fake);
    tokio::spawn(async move {
        let client = match reqwest::Client::builder().timeout(config.timeout).build() {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "the fake cannot send webhooks");
                return;
            }
        };
        let in_flight = Arc::new(tokio::sync::Semaphore::new(10));
        let config = Arc::new(config);
        loop {
            let batch = {
                let Some(inner) = weak.upgrade() else { return };
                let mut inner = inner
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                inner.outbox.take(100)
            };
            if batch.is_empty() {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let (client, config, sent) = (client.clone(), config.clone(), sent.clone());
            tokio::spawn(async move {
                deliver(&client, &config, &sent, batch).await;
                drop(permit);
            });
        }
    });
}

async fn deliver(
    client: &reqwest::Client,
    config: &FakeWebhooks,
    sent: &Sent,
    mut batch: Vec<Value>,
) {
    sent.deliveries.fetch_add(1, Ordering::Relaxed);
    sent.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
    for attempt in 0..=config.retries {
        for event in &mut batch {
            event["attemptNumber"] = json!(attempt);
        }
        let body = serde_json::to_vec(&batch).unwrap_or_default();
        let timestamp = jiff::Timestamp::now().as_millisecond().to_string();
        let signature = sign(&config.secret, &config.url, &body, &timestamp);
        sent.attempts.fetch_add(1, Ordering::Relaxed);
        let answer = client
            .post(&config.url)
            .header("Content-Type", "application/json")
            .header("X-HubSpot-Signature-v3", signature)
            .header("X-HubSpot-Request-Timestamp", timestamp)
            .body(body)
            .send()
            .await;
        match answer {
            Ok(answer) if answer.status().is_success() => return,
            _ => {
                sent.failed_attempts.fetch_add(1, Ordering::Relaxed);
            }
        }
        if attempt < config.retries {
            let delay = config.retry_base * 2u32.saturating_pow(attempt.min(16));
            tokio::time::sleep(delay.min(Duration::from_secs(3_600))).await;
        }
    }
    sent.given_up.fetch_add(1, Ordering::Relaxed);
}
