//! The daemon's local HTTP endpoint: `/healthz` (ok, or degraded with
//! reasons), `/metrics` (Prometheus text, from the `metrics` recorder
//! the daemon installs) and, with `[webhooks]`, `/webhooks/hubspot`.
//!
//! Serving many connections (`run --connections`), `/healthz` answers for
//! all of them (degraded when any is, each connection's own status and
//! reasons in `connections`), `/healthz/{connection}` for one, and each
//! connection takes its webhooks at `/webhooks/hubspot/{connection}`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

/// What `/healthz` judges by; the daemon updates it after every run.
#[derive(Clone, Debug)]
pub struct Health {
    pub started: jiff::Timestamp,
    pub last_success: Option<jiff::Timestamp>,
    pub last_outcome: Option<String>,
    /// Set while the CRM refuses our credentials.
    pub auth_failure: Option<String>,
    /// Set while the daily budget is spent: when the next run may start.
    pub budget_until: Option<jiff::Timestamp>,
    pub stale_after: Duration,
    pub running: bool,
    /// Set while the local state cannot be written (a full disk, a
    /// damaged file): every pass fails until an admin acts.
    pub state_failure: Option<String>,
    /// The working pass's progress deadline (the current connector's).
    pub progress: Option<crate::crm::http::Progress>,
    /// How long the last pass took, in seconds.
    pub last_seconds: Option<f64>,
    /// Passes finished since start.
    pub passes: u64,
    /// Set when the connection file could not be loaded at start (many
    /// connections: the others run; SIGHUP tries again), or while another
    /// connection works the same CRM account.
    pub config_failure: Option<String>,
    /// Set while another instance works this connection (shared state in
    /// PostgreSQL): this one stands by and claims it when it is free.
    pub standby: Option<String>,
}

impl Health {
    pub fn new(started: jiff::Timestamp, stale_after: Duration) -> Health {
        Health {
            started,
            last_success: None,
            last_outcome: None,
            auth_failure: None,
            budget_until: None,
            stale_after,
            running: false,
            state_failure: None,
            progress: None,
            last_seconds: None,
            passes: 0,
            config_failure: None,
            standby: None,
        }
    }

    /// A connection another instance works (or whose share is taken).
    pub fn standby(started: jiff::Timestamp, why: &str) -> Health {
        Health {
            standby: Some(why.to_owned()),
            ..Health::new(started, Duration::from_secs(90 * 60))
        }
    }

    /// A connection whose file could not be loaded.
    pub fn failed(started: jiff::Timestamp, why: &str) -> Health {
        Health {
            config_failure: Some(format!("connection file not loaded: {why}")),
            ..Health::new(started, Duration::from_secs(90 * 60))
        }
    }

    /// Reasons the daemon is degraded at `now` (none: healthy).
    pub fn reasons(&self, now: jiff::Timestamp) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(why) = &self.config_failure {
            out.push(why.clone());
            return out;
        }
        if self.standby.is_some() {
            // Another instance answers for it.
            return out;
        }
        if let Some(why) = &self.auth_failure {
            out.push(format!("authentication failing: {why}"));
        }
        if let Some(why) = &self.state_failure {
            out.push(format!("local state failing: {why}"));
        }
        if let Some(late) = self
            .progress
            .as_ref()
            .filter(|_| self.running)
            .and_then(|p| p.overdue(now))
        {
            out.push(format!(
                "the running pass has shown no progress for {} s past what it was waiting for (stuck)",
                late.as_secs()
            ));
        }
        if let Some(until) = self.budget_until.filter(|u| *u > now) {
            out.push(format!("daily API budget exhausted until {until}"));
        }
        let stale = jiff::SignedDuration::try_from(self.stale_after).unwrap_or_default();
        match self.last_success {
            Some(at) if now.duration_since(at) > stale => out.push(format!(
                "last successful run at {at}, more than {} minutes ago",
                self.stale_after.as_secs() / 60
            )),
            None if now.duration_since(self.started) > stale => out.push(format!(
                "no successful run in the {} minutes since start",
                self.stale_after.as_secs() / 60
            )),
            _ => {}
        }
        out
    }
}

#[derive(Serialize)]
struct HealthBody {
    status: &'static str,
    reasons: Vec<String>,
    last_success: Option<String>,
    last_outcome: Option<String>,
    running: bool,
    /// Passes finished since start.
    passes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seconds: Option<f64>,
    /// Why another instance works this connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    standby: Option<String>,
}

impl HealthBody {
    fn of(health: &Health, now: jiff::Timestamp) -> HealthBody {
        // Reasons quote CRM answers: scrub whatever secret they may carry.
        let reasons: Vec<String> = health
            .reasons(now)
            .into_iter()
            .map(crate::crm::redact::string)
            .collect();
        HealthBody {
            status: match (&health.standby, reasons.is_empty()) {
                (_, false) => "degraded",
                (Some(_), true) => "standby",
                (None, true) => "ok",
            },
            reasons,
            last_success: health.last_success.map(|t| t.to_string()),
            last_outcome: health.last_outcome.clone(),
            running: health.running,
            passes: health.passes,
            last_seconds: health.last_seconds,
            standby: health.standby.clone(),
        }
    }

    fn code(&self) -> StatusCode {
        if self.reasons.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// The health of every connection the daemon serves, by name.
#[derive(Clone, Debug, Default)]
pub struct Board {
    entries: Arc<RwLock<BTreeMap<String, Entry>>>,
}

#[derive(Clone, Debug)]
struct Entry {
    health: Arc<Mutex<Health>>,
    inbox: Option<Arc<super::webhooks::Inbox>>,
}

impl Board {
    /// Adds or replaces a connection.
    pub fn insert(
        &self,
        name: &str,
        health: Arc<Mutex<Health>>,
        inbox: Option<Arc<super::webhooks::Inbox>>,
    ) {
        self.write()
            .insert(name.to_owned(), Entry { health, inbox });
    }

    pub fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    /// Every connection's health, by name.
    pub fn healths(&self) -> Vec<(String, Health)> {
        self.read()
            .iter()
            .map(|(name, entry)| (name.clone(), lock(&entry.health).clone()))
            .collect()
    }

    fn inbox(&self, name: &str) -> Option<Arc<super::webhooks::Inbox>> {
        self.read().get(name).and_then(|e| e.inbox.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn lock(health: &Mutex<Health>) -> std::sync::MutexGuard<'_, Health> {
    health
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the endpoint serves from.
#[derive(Clone, Debug)]
pub struct Shared {
    pub board: Board,
    pub metrics: PrometheusHandle,
    /// Serving a directory of connections (else one connection, whose
    /// health is the whole answer, as before).
    pub many: bool,
}

async fn healthz(AxumState(shared): AxumState<Shared>) -> Response {
    let now = jiff::Timestamp::now();
    let healths = shared.board.healths();
    if !shared.many {
        let Some((_, health)) = healths.first() else {
            return (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response();
        };
        let body = HealthBody::of(health, now);
        return (body.code(), axum::Json(body)).into_response();
    }
    let connections: BTreeMap<String, HealthBody> = healths
        .iter()
        .map(|(name, health)| (name.clone(), HealthBody::of(health, now)))
        .collect();
    let degraded: Vec<&str> = connections
        .iter()
        .filter(|(_, b)| !b.reasons.is_empty())
        .map(|(n, _)| n.as_str())
        .collect();
    let reasons = if degraded.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "{} of {} connections degraded: {}",
            degraded.len(),
            connections.len(),
            degraded.join(", ")
        )]
    };
    let code = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if reasons.is_empty() { "ok" } else { "degraded" },
        "reasons": reasons,
        "running": connections.values().filter(|b| b.running).count(),
        "connections": connections,
    });
    (code, axum::Json(body)).into_response()
}

async fn connection_healthz(
    AxumState(shared): AxumState<Shared>,
    Path(name): Path<String>,
) -> Response {
    let now = jiff::Timestamp::now();
    match shared.board.healths().into_iter().find(|(n, _)| *n == name) {
        Some((_, health)) => {
            let body = HealthBody::of(&health, now);
            (body.code(), axum::Json(body)).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such connection").into_response(),
    }
}

/// A connection's webhook deliveries (many connections).
async fn connection_webhooks(
    AxumState(shared): AxumState<Shared>,
    Path(name): Path<String>,
    method: axum::http::Method,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    match shared.board.inbox(&name) {
        Some(inbox) => {
            let receive = super::webhooks::receive(AxumState(inbox), method, headers, body);
            super::labels::scope(name.into(), receive).await
        }
        None => (StatusCode::NOT_FOUND, "no connection takes webhooks here").into_response(),
    }
}

async fn metrics(AxumState(shared): AxumState<Shared>) -> Response {
    shared.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}

/// Serves until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Shared,
    inbox: Option<Arc<super::webhooks::Inbox>>,
    stop: crate::sync::Stop,
) -> std::io::Result<()> {
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics));
    if shared.many {
        app = app
            .route("/healthz/{connection}", get(connection_healthz))
            .route(
                &format!("{}/{{connection}}", crate::config::webhooks::PATH),
                axum::routing::post(connection_webhooks),
            );
    }
    let mut app = app.with_state(shared);
    if let Some(inbox) = inbox {
        app = app.merge(
            Router::new()
                .route(
                    crate::config::webhooks::PATH,
                    axum::routing::post(super::webhooks::receive),
                )
                .with_state(inbox),
        );
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.stopped().await })
        .await
}
