//! Fault injection shared by the fakes: which fault (if any) a request
//! gets, drawn from the configured rates with the fake's own seeded random
//! numbers, and the body surgery for malformed and reset responses.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::response::Response;

use super::people::Rng;

/// Faults the fake injects, by rate (0.0–1.0 per request) or as settings.
/// Random choices come from the seed, so a run is reproducible.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer 429 (HubSpot's `TEN_SECONDLY_ROLLING`, Pardot's error 66)
    /// regardless of the real limits.
    pub rate_429: f64,
    /// Whether those 429s carry `Retry-After` (HubSpot's CRM 429s may not).
    pub retry_after_on_429: bool,
    /// Answer 500, 502, 503 or 504.
    pub rate_5xx: f64,
    /// Answer 200 with the JSON body cut in half.
    pub rate_malformed: f64,
    /// Send half the body, then reset the connection.
    pub rate_reset: f64,
    /// Delay the answer by `slow`.
    pub rate_slow: f64,
    pub slow: Duration,
    /// Reject each written record (a batch-update input, a PATCH) with a
    /// validation error at this rate.
    pub rate_record_error: f64,
    /// Writes become visible to search only after this long.
    pub search_lag: Duration,
    /// The first N records share one `lastmodifieddate` / `updatedAt`, as after a bulk import.
    pub bulk_import: u64,
    /// Every Nth record is archived (0: none). HubSpot: gone from lists,
    /// search and reads, listed only with `archived=true`. Pardot: in the
    /// recycle bin, listed only with `deleted=true|all`.
    pub archived_every: u64,
    /// Every Nth contact was merged into the one before it (0: none):
    /// reading its id returns the winner, which lists it in
    /// `hs_merged_object_ids`; lists and search show only the winner.
    pub merged_every: u64,
    /// OAuth mode: access tokens expire this long after they are issued
    /// (HubSpot: 401 `EXPIRED_AUTHENTICATION`, refresh at `/oauth/v1/token`;
    /// Pardot: 401, refresh at `/services/oauth2/token`).
    pub token_ttl: Option<Duration>,
    /// Error answers quote the request's `Authorization` header, as a
    /// misconfigured proxy or a debugging error page does.
    pub echo_auth: bool,
    /// Every write (HubSpot's batch update; Pardot's PATCH and imports)
    /// answers this status: 500 for an outage of the write side, 401 for
    /// a token revoked mid-pass.
    pub fail_writes: Option<u16>,
    /// Scopes the token lacks (HubSpot): calls that need one answer 403
    /// `MISSING_SCOPES` naming it, as for an app installed without it.
    pub missing_scopes: Vec<String>,
    /// HubSpot: the contact list answers its first page to every request,
    /// with the same `after` cursor and an extra contact whose id is the
    /// OpenAPI example `"string"` — a broken proxy, or an API mock
    /// answering its example.
    pub stuck_cursor: bool,
}

impl Faults {
    /// Takes rates from `429=0.1,5xx=0.05,reset=0.02,malformed=0.02,slow=0.05`
    /// (`record` rejects written records; `slow_ms` sets how slow;
    /// `scope=crm.lists.read` takes a scope from the token).
    pub fn apply_spec(&mut self, spec: &str) -> Result<(), String> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("--faults: {part:?} is not NAME=RATE"))?;
            if name.trim() == "scope" {
                self.missing_scopes.push(value.trim().to_owned());
                continue;
            }
            let value: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("--faults: {part:?}: {value:?} is not a number"))?;
            let rate = || {
                if (0.0..=1.0).contains(&value) {
                    Ok(value)
                } else {
                    Err(format!("--faults: {part:?}: a rate is between 0 and 1"))
                }
            };
            match name.trim() {
                "429" => self.rate_429 = rate()?,
                "5xx" => self.rate_5xx = rate()?,
                "reset" => self.rate_reset = rate()?,
                "malformed" => self.rate_malformed = rate()?,
                "slow" => self.rate_slow = rate()?,
                "record" => self.rate_record_error = rate()?,
                "slow_ms" if value >= 0.0 => self.slow = Duration::from_secs_f64(value / 1000.0),
                "stuck" => self.stuck_cursor = value > 0.0,
                "writes" if (400.0..600.0).contains(&value) => {
                    self.fail_writes = Some(value as u16);
                }
                other => {
                    return Err(format!(
                        "--faults: unknown fault {other:?}; known: 429, 5xx, reset, malformed, slow, record, slow_ms, writes (a status), stuck (1: a contact list that repeats its cursor), scope (a scope the token lacks)"
                    ));
                }
            }
        }
        if self.rate_slow > 0.0 && self.slow.is_zero() {
            self.slow = Duration::from_secs(2);
        }
        Ok(())
    }
}

/// Runs a fake's gate, then (with [`Faults::echo_auth`]) quotes the
/// request's `Authorization` header in an error answer.
pub(crate) async fn echoing_auth<F>(
    echo: bool,
    request: axum::extract::Request,
    gate: impl FnOnce(axum::extract::Request) -> F,
) -> Response
where
    F: std::future::Future<Output = Response>,
{
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = gate(request).await;
    echo_authorization(echo, authorization.as_deref(), response).await
}

/// With [`Faults::echo_auth`], an error answer (status 400 or more) gets
/// the request's `Authorization` header quoted in its message.
async fn echo_authorization(
    echo: bool,
    authorization: Option<&str>,
    response: Response,
) -> Response {
    let Some(authorization) = authorization.filter(|_| echo && response.status().as_u16() >= 400)
    else {
        return response;
    };
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let quote = format!("request was sent with Authorization: {authorization}");
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut object)) => {
            let message = object
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("error")
                .to_owned();
            object.insert(
                "message".to_owned(),
                serde_json::Value::String(format!("{message} ({quote})")),
            );
            serde_json::to_vec(&object).unwrap_or_default()
        }
        _ => {
            let mut text = bytes.to_vec();
            text.extend_from_slice(format!("\n<!-- {quote} -->").as_bytes());
            text
        }
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// A fault chosen for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    TooMany,
    ServerError(u16),
    Malformed,
    Reset,
    Slow,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::TooMany => "429",
            Self::ServerError(_) => "5xx",
            Self::Malformed => "malformed",
            Self::Reset => "reset",
            Self::Slow => "slow",
        }
    }
}

/// Draws at most one fault for a request by the configured rates, and
/// counts it in `served`.
pub(crate) fn roll(
    faults: &Faults,
    rng: &mut Rng,
    served: &mut BTreeMap<&'static str, u64>,
) -> Option<Fault> {
    let table = [
        (faults.rate_429, Fault::TooMany),
        (faults.rate_5xx, Fault::ServerError(500)),
        (faults.rate_malformed, Fault::Malformed),
        (faults.rate_reset, Fault::Reset),
        (faults.rate_slow, Fault::Slow),
    ];
    if table.iter().all(|(rate, _)| *rate <= 0.0) {
        return None;
    }
    let mut draw = rng.unit();
    for (rate, fault) in table {
        if draw < rate {
            let fault = match fault {
                Fault::ServerError(_) => Fault::ServerError(*rng.pick(&[500, 502, 503, 504])),
                other => other,
            };
            *served.entry(fault.name()).or_default() += 1;
            return Some(fault);
        }
        draw -= rate;
    }
    None
}

/// Keeps the status and headers but sends only the first half of the body:
/// as a complete (malformed) body, or followed by a connection reset.
pub(crate) async fn cut_body(response: Response, reset: bool) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let body = if reset {
        use futures_util::StreamExt as _;
        let first = futures_util::stream::iter([Ok::<_, std::io::Error>(half)]);
        let then_reset = futures_util::stream::once(async {
            // Let the first half reach the client before the connection drops.
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fault: connection reset",
            ))
        });
        axum::body::Body::from_stream(first.chain(then_reset))
    } else {
        axum::body::Body::from(half)
    };
    Response::from_parts(parts, body)
}

/// Runs `next` behind a fault that lets the request through: delays a slow
/// one, cuts the body of a malformed or reset one.
pub(crate) async fn pass_through(
    fault: Option<Fault>,
    slow: Duration,
    next: impl std::future::Future<Output = Response>,
) -> Response {
    if fault == Some(Fault::Slow) {
        tokio::time::sleep(slow).await;
    }
    let response = next.await;
    match fault {
        Some(Fault::Malformed) => cut_body(response, false).await,
        Some(Fault::Reset) => cut_body(response, true).await,
        _ => response,
    }
}
