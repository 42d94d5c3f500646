//! The daemon's local HTTP endpoint: `/healthz` (ok, or degraded with
//! reasons), `/metrics` (Prometheus text, from the `metrics` recorder
//! the daemon installs) and, with `[webhooks]`, `/webhooks/hubspot`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxumState;
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
        }
    }

    /// Reasons the daemon is degraded at `now` (none: healthy).
    pub fn reasons(&self, now: jiff::Timestamp) -> Vec<String> {
        let mut out = Vec::new();
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
struct HealthBody<'a> {
    status: &'a str,
    reasons: Vec<String>,
    last_success: Option<String>,
    last_outcome: Option<&'a str>,
    running: bool,
}

/// What the endpoint serves from.
#[derive(Clone, Debug)]
pub struct Shared {
    pub health: Arc<Mutex<Health>>,
    pub metrics: PrometheusHandle,
}

async fn healthz(AxumState(shared): AxumState<Shared>) -> Response {
    let health = shared
        .health
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    // Reasons quote CRM answers: scrub whatever secret they may carry.
    let reasons: Vec<String> = health
        .reasons(jiff::Timestamp::now())
        .into_iter()
        .map(crate::crm::redact::string)
        .collect();
    let (code, status) = if reasons.is_empty() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded")
    };
    let body = HealthBody {
        status,
        reasons,
        last_success: health.last_success.map(|t| t.to_string()),
        last_outcome: health.last_outcome.as_deref(),
        running: health.running,
    };
    (code, axum::Json(body)).into_response()
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
        .route("/metrics", get(metrics))
        .with_state(shared);
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
