//! HubSpot webhook deliveries at `/webhooks/hubspot`: checked, read, and
//! queued for the daemon's loop, which rescores exactly those records.
//!
//! A delivery is answered at once (HubSpot retries slow answers): 401 for
//! a missing or wrong signature or a timestamp over five minutes off, 413
//! past the size limit, 400 for a body that is not a JSON array, 200 for
//! the rest — replays and events about fields the model does not read are
//! counted and ignored. Accepted events go to [`Inbox`], a bounded set of
//! ids without repeats. A full inbox drops the id and marks itself
//! overflowed: the loop then runs an incremental pass, which finds every
//! change since the watermark, so nothing is lost.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rustc_hash::FxHashSet;
use secrecy::SecretString;

use crate::config::Connection;
use crate::config::webhooks::Webhooks;
use crate::crm::Touch;
use crate::crm::hubspot::webhook::{self, ENGAGEMENT_PROPERTIES, MAX_AGE_MS, Verifier, Watch};
use crate::sync::Targets;

/// Event ids remembered against HubSpot's retries of the same event.
const EVENTS_REMEMBERED: usize = 100_000;

/// The properties a connection's webhooks should watch, contacts then
/// companies: what the model reads (never leadscored's own outputs).
pub fn watch(connection: &Connection) -> Watch {
    let outputs: FxHashSet<&str> = connection
        .outputs
        .iter()
        .map(|o| o.property.as_str())
        .collect();
    let contact_fields: FxHashSet<String> = connection
        .fields()
        .into_iter()
        .filter(|f| !outputs.contains(f.as_str()))
        .collect();
    let engagement_fields = if connection.events.is_empty() {
        FxHashSet::default()
    } else {
        ENGAGEMENT_PROPERTIES
            .iter()
            .map(|p| (*p).to_owned())
            .collect()
    };
    Watch {
        contact_fields,
        company_fields: connection.company_fields().into_iter().collect(),
        engagement_fields,
    }
}

/// Ids waiting for the next webhook pass.
#[derive(Debug, Default)]
struct Waiting {
    records: Vec<String>,
    companies: Vec<String>,
    gone: Vec<String>,
    queued: FxHashSet<Touch>,
    /// Some record waits for its engagement too.
    engagement: bool,
    overflowed: bool,
    /// When the oldest waiting change arrived.
    since: Option<Instant>,
}

/// Delivery signatures and event ids seen lately: a replay is ignored.
#[derive(Debug, Default)]
struct Seen {
    signatures: VecDeque<(i64, String)>,
    signature_set: FxHashSet<String>,
    events: VecDeque<String>,
    event_set: FxHashSet<String>,
}

impl Seen {
    /// Whether a delivery with this signature came before (within the
    /// five minutes a signature stays valid).
    fn replayed(&mut self, signature: &str, at_ms: i64, now_ms: i64) -> bool {
        while let Some((at, _)) = self.signatures.front() {
            if now_ms - at <= 2 * MAX_AGE_MS {
                break;
            }
            if let Some((_, old)) = self.signatures.pop_front() {
                self.signature_set.remove(&old);
            }
        }
        if !self.signature_set.insert(signature.to_owned()) {
            return true;
        }
        self.signatures.push_back((at_ms, signature.to_owned()));
        false
    }

    /// Whether this event id was taken before (HubSpot retries an event
    /// it thinks undelivered, with the same id).
    fn repeated(&mut self, event_id: &str) -> bool {
        if !self.event_set.insert(event_id.to_owned()) {
            return true;
        }
        self.events.push_back(event_id.to_owned());
        if self.events.len() > EVENTS_REMEMBERED
            && let Some(old) = self.events.pop_front()
        {
            self.event_set.remove(&old);
        }
        false
    }
}

/// What the loop takes from the inbox.
#[derive(Debug)]
pub struct Drained {
    pub targets: Targets,
    /// Some changes were dropped: an incremental pass must run.
    pub overflowed: bool,
    pub since: Option<Instant>,
}

/// Where deliveries wait for the loop.
pub struct Inbox {
    verifier: Mutex<Verifier>,
    watch: Mutex<Watch>,
    capacity: usize,
    max_body: usize,
    /// The portal the state belongs to: events from another are ignored.
    portal: Mutex<Option<String>>,
    waiting: Mutex<Waiting>,
    seen: Mutex<Seen>,
    notify: tokio::sync::Notify,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inbox {
    pub fn new(settings: &Webhooks, secret: SecretString, watch: Watch) -> Inbox {
        Inbox {
            verifier: Mutex::new(Verifier::new(secret, &settings.url)),
            watch: Mutex::new(watch),
            capacity: settings.queue,
            max_body: settings.max_body,
            portal: Mutex::new(None),
            waiting: Mutex::new(Waiting::default()),
            seen: Mutex::new(Seen::default()),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// A reload's new secret, URL and watched fields (the queue's size
    /// and the body limit change at restart).
    pub fn reload(&self, settings: &Webhooks, secret: SecretString, watch: Watch) {
        *lock(&self.verifier) = Verifier::new(secret, &settings.url);
        *lock(&self.watch) = watch;
    }

    /// The portal the state belongs to, as the state names it
    /// ("HubSpot portal 123"): events name it by its number.
    pub fn set_portal(&self, portal: Option<String>) {
        *lock(&self.portal) = portal.and_then(|p| p.rsplit(' ').next().map(str::to_owned));
    }

    /// Resolves once something waits.
    pub async fn ready(&self) {
        loop {
            if lock(&self.waiting).since.is_some() {
                return;
            }
            self.notify.notified().await;
        }
    }

    /// Takes everything waiting.
    pub fn drain(&self) -> Drained {
        let waiting = std::mem::take(&mut *lock(&self.waiting));
        metrics::gauge!("leadscored_webhook_queue").set(0.0);
        Drained {
            targets: Targets {
                records: waiting.records,
                companies: waiting.companies,
                gone: waiting.gone,
                engagement: waiting.engagement,
            },
            overflowed: waiting.overflowed,
            since: waiting.since,
        }
    }

    /// Queues touches; returns how many were new.
    fn queue(&self, touches: impl Iterator<Item = Touch>) -> (u64, u64) {
        let mut waiting = lock(&self.waiting);
        let (mut queued, mut dropped) = (0, 0);
        for touch in touches {
            // One entry per record; engagement is asked for the batch.
            let touch = match touch {
                Touch::Engaged(id) => {
                    waiting.engagement = true;
                    Touch::Contact(id)
                }
                other => other,
            };
            if waiting.queued.contains(&touch) {
                continue;
            }
            if waiting.queued.len() >= self.capacity {
                waiting.overflowed = true;
                dropped += 1;
                continue;
            }
            match &touch {
                Touch::Contact(id) | Touch::Engaged(id) => waiting.records.push(id.clone()),
                Touch::Gone(id) => waiting.gone.push(id.clone()),
                Touch::Company(id) => waiting.companies.push(id.clone()),
            }
            waiting.queued.insert(touch);
            queued += 1;
        }
        if (queued > 0 || dropped > 0) && waiting.since.is_none() {
            waiting.since = Some(Instant::now());
        }
        metrics::gauge!("leadscored_webhook_queue").set(waiting.queued.len() as f64);
        drop(waiting);
        if queued > 0 || dropped > 0 {
            self.notify.notify_one();
        }
        (queued, dropped)
    }

    /// Handles one delivery: checks, reads and queues it.
    pub fn take(
        &self,
        method: &str,
        headers: &HeaderMap,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Taken, (StatusCode, String)> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let signature = header("x-hubspot-signature-v3");
        let verified = lock(&self.verifier).verify(
            method,
            signature,
            header("x-hubspot-request-timestamp"),
            body,
            now_ms,
        );
        let at = match verified {
            Ok(at) => at,
            Err(refusal) => {
                delivery(refusal.as_str());
                return Err((StatusCode::UNAUTHORIZED, refusal.to_string()));
            }
        };
        if lock(&self.seen).replayed(signature.unwrap_or_default(), at, now_ms) {
            delivery("replayed");
            return Ok(Taken::default());
        }
        let events = webhook::read(body, &lock(&self.watch)).map_err(|e| {
            delivery("malformed");
            (StatusCode::BAD_REQUEST, e)
        })?;
        delivery("accepted");
        let portal = lock(&self.portal).clone();
        let mut taken = Taken::default();
        let mut touches = Vec::new();
        for event in events {
            let outcome = if event
                .event_id
                .as_deref()
                .is_some_and(|id| lock(&self.seen).repeated(id))
            {
                "repeated"
            } else if portal
                .as_deref()
                .is_some_and(|p| event.portal_id.as_deref().is_some_and(|e| e != p))
            {
                "other_portal"
            } else if event.touches.is_empty() {
                "ignored"
            } else {
                touches.extend(event.touches);
                "taken"
            };
            if outcome == "taken" {
                taken.events += 1;
            } else {
                taken.ignored += 1;
                tracing::debug!(kind = %event.kind, outcome, "webhook event not queued");
            }
            metrics::counter!("leadscored_webhook_events_total", "outcome" => outcome).increment(1);
        }
        let (queued, dropped) = self.queue(touches.into_iter());
        taken.queued = queued;
        taken.dropped = dropped;
        if dropped > 0 {
            metrics::counter!("leadscored_webhook_dropped_total").increment(dropped);
            tracing::warn!(
                dropped,
                capacity = self.capacity,
                "the webhook queue is full; the next incremental pass (now) picks these changes up"
            );
        }
        Ok(taken)
    }
}

fn delivery(outcome: &'static str) {
    metrics::counter!("leadscored_webhook_deliveries_total", "outcome" => outcome).increment(1);
}

/// What a delivery brought.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Taken {
    pub events: u64,
    pub ignored: u64,
    pub queued: u64,
    pub dropped: u64,
}

/// `POST /webhooks/hubspot`.
pub async fn receive(
    AxumState(inbox): AxumState<std::sync::Arc<Inbox>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match axum::body::to_bytes(body, inbox.max_body).await {
        Ok(body) => body,
        Err(_) => {
            delivery("too_large");
            tracing::warn!(
                limit = inbox.max_body,
                "webhook delivery refused: the body is larger than [webhooks] max_body_kb"
            );
            return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
        }
    };
    let now = jiff::Timestamp::now().as_millisecond();
    match inbox.take(method.as_str(), &headers, &body, now) {
        Ok(taken) => (StatusCode::OK, axum::Json(taken)).into_response(),
        Err((status, why)) => {
            tracing::warn!(status = status.as_u16(), reason = %why, "webhook delivery refused");
            (status, why).into_response()
        }
    }
}
