//! The HTTP machinery every connector shares: one reqwest client (rustls,
//! gzip, timeouts, a descriptive User-Agent), governor rate limiters per
//! CRM limit, a rolling window that shrinks when the CRM's headers show
//! another integration spending the same budget, a daily budget guard that
//! leaves headroom, bounded concurrency, and retries — `Retry-After` first,
//! else exponential backoff with full jitter, a bounded number of times,
//! never for a 4xx other than 429.
//!
//! What a status means differs per CRM; connectors pass a [`Dialect`]
//! that classifies answers.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use super::CrmError;
use super::auth::{Tokens, without_url};
use crate::config::{CrmSettings, Limits};

/// Which limit a call counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    General,
    /// HubSpot search: its own per-second limit, no rate-limit headers.
    Search,
}

/// How large an answer a call may get before it is cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// A page, a batch, a definition list: `[limits] max_answer_mb`.
    Page,
    /// An export-like file: `[limits] max_export_mb`.
    Export,
}

/// How long a working pass may go without a sign of life beyond what it
/// is known to be waiting for (a request in flight, a retry's sleep).
pub const PROGRESS_SLACK: Duration = Duration::from_secs(60);

/// When a working pass must next show progress: every request, answer,
/// retry sleep and pipeline step pushes the deadline out by what it may
/// take. A pass past its deadline is stuck: `/healthz` degrades and the
/// watchdog stops vouching for the daemon.
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<AtomicI64>);

impl Progress {
    /// The pass must show progress again within `within` (a later deadline
    /// already set stays).
    pub fn expect_within(&self, within: Duration) {
        let at = jiff::Timestamp::now().as_millisecond() + within.as_millis() as i64;
        self.0.fetch_max(at, Ordering::Relaxed);
    }

    /// Starts a pass's watch afresh: progress within [`PROGRESS_SLACK`].
    pub fn restart(&self) {
        let at = jiff::Timestamp::now().as_millisecond() + PROGRESS_SLACK.as_millis() as i64;
        self.0.store(at, Ordering::Relaxed);
    }

    /// How long past its deadline the pass is at `now` (none: on time).
    pub fn overdue(&self, now: jiff::Timestamp) -> Option<Duration> {
        let late = now.as_millisecond() - self.0.load(Ordering::Relaxed);
        (late > 0).then(|| Duration::from_millis(late as u64))
    }
}

/// What an answer means for the request that got it.
#[derive(Debug)]
pub enum Verdict {
    /// Success (including HubSpot's 207); the body is the caller's.
    Done,
    /// Try again after this long (or the backoff, when `None`).
    Retry {
        after: Option<Duration>,
        reason: String,
        /// A rate-limit answer: the window is smaller than we thought.
        throttled: bool,
    },
    /// The access token expired: refresh it and try once more.
    Refresh,
    /// Stop: the run cannot go on (auth, scope, budget).
    Fatal(CrmError),
    /// The CRM refused this request; the caller decides (per-record errors).
    Rejected(String),
}

/// What an answer's headers say about the limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The interval limit and what is left of it.
    pub window: Option<(u32, u32)>,
    /// Calls left today for the whole account.
    pub daily_remaining: Option<u64>,
    /// The account's daily limit, when the CRM states it.
    pub daily_limit: Option<u64>,
}

/// How one CRM's answers are read.
pub trait Dialect: Send + Sync {
    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict;

    fn observe(&self, _headers: &HeaderMap) -> Observed {
        Observed::default()
    }
}

/// Counters a run reports and `/metrics` will export.
#[derive(Debug, Default)]
pub struct Stats {
    pub calls: AtomicU64,
    /// Records the sync took from pulls (progress displays).
    pub records: AtomicU64,
    /// Requests waiting for our own rate limiter right now.
    pub waiting: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    /// Milliseconds spent waiting on our own limiters.
    pub waited_ms: AtomicU64,
    by_endpoint: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Stats {
    fn count(&self, endpoint: &str, status: u16) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            "leadscored_crm_requests_total",
            "endpoint" => endpoint.to_owned(),
            "status" => status.to_string()
        )
        .increment(1);
        let mut map = self
            .by_endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry((endpoint.to_owned(), status)).or_default() += 1;
    }

    /// Calls by endpoint and HTTP status (0: no answer).
    pub fn by_endpoint(&self) -> BTreeMap<(String, u16), u64> {
        self.by_endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Counts one down when dropped (however the wait ends).
struct Decrement<'a>(&'a AtomicU64);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Our own sends in the last interval, and how many the CRM lets us make.
#[derive(Debug)]
struct Window {
    interval: Duration,
    /// Requests we may send per interval (shrinks when others share it).
    allowed: u32,
    nominal: u32,
    sent: VecDeque<Instant>,
}

impl Window {
    /// How long a send counts against us: the CRM's interval plus a little,
    /// so latency jitter cannot make the CRM still count a send we dropped.
    fn horizon(&self) -> Duration {
        self.interval + (self.interval / 40).max(Duration::from_millis(100))
    }

    fn expire(&mut self, now: Instant) {
        let horizon = self.horizon();
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= horizon)
        {
            self.sent.pop_front();
        }
    }

    /// Takes a slot now, or says how long until one frees.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.expire(now);
        if (self.sent.len() as u32) < self.allowed {
            self.sent.push_back(now);
            return Ok(());
        }
        let oldest = self.sent.front().copied().unwrap_or(now);
        Err((oldest + self.horizon()).saturating_duration_since(now))
    }

    /// Adapts to what the CRM says is left in its window.
    fn observe(&mut self, max: u32, remaining: u32, now: Instant) {
        self.expire(now);
        // Our sends the CRM still counts: those inside its exact interval.
        let ours = self
            .sent
            .iter()
            .filter(|t| now.duration_since(**t) < self.interval)
            .count() as u32;
        let others = max.saturating_sub(remaining).saturating_sub(ours);
        let fair = max.min(self.nominal).saturating_sub(others).max(1);
        if fair != self.allowed {
            tracing::debug!(
                allowed = fair,
                others,
                "rate window adapted to the CRM's remaining calls"
            );
        }
        self.allowed = fair;
    }
}

/// Daily budget bookkeeping.
#[derive(Debug)]
struct Budget {
    limit: u64,
    headroom: f64,
    timezone: jiff::tz::TimeZone,
    day: jiff::civil::Date,
    /// Calls we made today.
    ours: u64,
    /// What the CRM last said is left (all integrations together).
    reported_remaining: Option<u64>,
    /// The daily limit the CRM states. The smaller of it and the
    /// configured one holds: an edition's limit may be lower than its
    /// tier's default, and a configured limit may be kept low on purpose.
    reported_limit: Option<u64>,
    /// When the CRM last reported what is left.
    reported_at: Option<Instant>,
    /// How long a spent-budget report just after midnight stands before
    /// the next probe.
    probe: Duration,
}

impl Budget {
    fn today(&self) -> jiff::civil::Date {
        jiff::Timestamp::now()
            .to_zoned_datetime(self.timezone.clone())
            .date()
    }

    fn resume_at(&self) -> jiff::Timestamp {
        let tomorrow = self.today().tomorrow().unwrap_or(self.today());
        tomorrow
            .to_zoned_datetime(self.timezone.clone())
            .map(|z| z.timestamp())
            .unwrap_or_else(|_| jiff::Timestamp::now())
    }

    /// Today's limit, the share kept for other integrations, and what is
    /// spent: the CRM's count covers every integration, ours covers us
    /// before the CRM has said anything.
    fn standing(&self) -> (u64, u64, u64) {
        if self.day != self.today() {
            return (self.limit, self.reserve(self.limit), 0);
        }
        let limit = self
            .reported_limit
            .map_or(self.limit, |l| l.min(self.limit));
        let spent = match self.reported_remaining {
            Some(remaining) => limit.saturating_sub(remaining).max(self.ours),
            None => self.ours,
        };
        (limit, self.reserve(limit), spent)
    }

    fn reserve(&self, limit: u64) -> u64 {
        (limit as f64 * self.headroom).ceil() as u64
    }

    /// Counts one call, or refuses when the budget minus headroom is spent.
    /// Starts a new account day when the clock has passed midnight.
    fn roll_day(&mut self) {
        let today = self.today();
        if today != self.day {
            self.day = today;
            self.ours = 0;
            self.reported_remaining = None;
        }
    }

    fn take(&mut self) -> Result<(), CrmError> {
        self.roll_day();
        let (limit, reserve, spent) = self.standing();
        if spent + reserve < limit {
            self.ours += 1;
            if let Some(remaining) = self.reported_remaining.as_mut() {
                *remaining = remaining.saturating_sub(1);
            }
            return Ok(());
        }
        // Our midnight and the CRM's reset are seconds apart: a report of a
        // spent budget soon after midnight may be yesterday's. Once it is
        // old enough, one call probes whether the CRM has reset.
        let by_report =
            self.reported_remaining.is_some() && self.ours < limit.saturating_sub(reserve);
        let stale = self
            .reported_at
            .is_some_and(|at| at.elapsed() >= self.probe);
        if by_report && stale && in_probe_window(&self.timezone) {
            self.reported_remaining = None;
            self.reported_at = None;
            self.ours += 1;
            return Ok(());
        }
        Err(CrmError::BudgetExhausted {
            used: spent,
            limit,
            resume_at: if by_report {
                daily_resume(&self.timezone, self.probe)
            } else {
                self.resume_at()
            },
        })
    }
}

/// How long after the account's midnight a spent budget is taken for a
/// CRM counter that has not reset yet (and probed again).
const PROBE_WINDOW_HOURS: i8 = 2;

/// Whether `now` is within [`PROBE_WINDOW_HOURS`] after the account's
/// midnight.
fn in_probe_window(zone: &jiff::tz::TimeZone) -> bool {
    jiff::Timestamp::now()
        .to_zoned_datetime(zone.clone())
        .hour()
        < PROBE_WINDOW_HOURS
}

/// When to try again after the CRM said its daily limit is met: the next
/// midnight in the account's zone, or — soon after that midnight, when the
/// CRM's counter may lag ours by seconds or minutes — a probe after
/// `probe` (`[limits] daily_reset_probe_secs`), so a late reset costs
/// minutes, not a day.
pub fn daily_resume(zone: &jiff::tz::TimeZone, probe: Duration) -> jiff::Timestamp {
    if in_probe_window(zone) {
        let probe = jiff::SignedDuration::try_from(probe).unwrap_or_default();
        return jiff::Timestamp::now()
            .checked_add(probe)
            .unwrap_or_else(|_| jiff::Timestamp::now());
    }
    next_midnight(zone)
}

/// The next midnight in the account's zone: when a daily API limit resets.
pub fn next_midnight(zone: &jiff::tz::TimeZone) -> jiff::Timestamp {
    jiff::Timestamp::now()
        .to_zoned_datetime(zone.clone())
        .date()
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned_datetime(zone.clone()).ok())
        .map_or_else(jiff::Timestamp::now, |z| z.timestamp())
}

/// A request to send.
#[derive(Debug)]
pub struct Call<'a> {
    pub method: reqwest::Method,
    /// Path and query, appended to the base URL.
    pub path: &'a str,
    pub query: &'a [(&'a str, String)],
    pub body: Body<'a>,
    pub lane: Lane,
    /// How large the answer may be.
    pub size: Size,
    /// The endpoint's name in stats and errors (no ids).
    pub endpoint: &'a str,
}

/// What a call sends.
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    None,
    Json(&'a serde_json::Value),
    /// A multipart form (rebuilt for every attempt).
    Multipart(&'a [Part<'a>]),
}

/// One part of a multipart form.
#[derive(Clone, Copy, Debug)]
pub struct Part<'a> {
    pub name: &'a str,
    /// Sent as a file upload with this name.
    pub file_name: Option<&'a str>,
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

fn form(parts: &[Part<'_>]) -> Result<reqwest::multipart::Form, CrmError> {
    let mut form = reqwest::multipart::Form::new();
    for part in parts {
        let mut one = reqwest::multipart::Part::bytes(part.bytes.to_vec())
            .mime_str(part.content_type)
            .map_err(|e| CrmError::Credentials(format!("multipart part {}: {e}", part.name)))?;
        if let Some(file_name) = part.file_name {
            one = one.file_name(file_name.to_owned());
        }
        form = form.part(part.name.to_owned(), one);
    }
    Ok(form)
}

/// A decoded answer.
#[derive(Debug)]
pub struct Reply<T> {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: T,
}

/// The reqwest client for these timeouts, one per process: connections
/// with the same timeouts share its pool of HTTP connections (and its TLS
/// roots), so a daemon serving hundreds of portals on one host holds about
/// as many open connections and buffers as requests in flight, not a pool
/// per portal. Each request carries its own token.
fn shared_client(connect: Duration, request: Duration) -> Result<reqwest::Client, CrmError> {
    static CLIENTS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<(Duration, Duration), reqwest::Client>>,
    > = std::sync::OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(client) = clients.get(&(connect, request)) {
        return Ok(client.clone());
    }
    let client = reqwest::Client::builder()
        // The process id tells instances apart in a CRM's (or the fake's)
        // request log, as when several share connections.
        .user_agent(format!(
            "leadscored/{} (lead scoring sync; +https://github.com/leadscored/leadscored; pid {})",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        ))
        .connect_timeout(connect)
        .timeout(request)
        .gzip(true)
        .build()
        .map_err(|e| CrmError::Protocol {
            endpoint: "client".to_owned(),
            message: without_url(&e),
        })?;
    clients.insert((connect, request), client.clone());
    Ok(client)
}

/// The shared client of one connection.
pub struct Http {
    client: reqwest::Client,
    base_url: String,
    tokens: Tokens,
    dialect: Box<dyn Dialect>,
    limits: Limits,
    extra_headers: HeaderMap,
    general: Option<DefaultDirectRateLimiter>,
    search: Option<DefaultDirectRateLimiter>,
    window: Option<Mutex<Window>>,
    /// The exact rolling second of the search lane: the limiter alone lets
    /// a burst and its refill land in one second.
    search_window: Option<Mutex<Window>>,
    budget: Mutex<Budget>,
    slots: Semaphore,
    pub stats: Stats,
    /// Pushed out by every request, answer and retry sleep.
    pub progress: Progress,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("base_url", &self.base_url)
            .field("limits", &self.limits)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// A governor limiter: `per` requests per `period`, with a burst of the
/// whole allowance (HubSpot counts a rolling window, so a burst is fine);
/// the exact rolling window in [`Window`] keeps any `period` at or under
/// the limit when the burst and the refill meet.
fn limiter(per: u32, period: Duration) -> Option<DefaultDirectRateLimiter> {
    let per = NonZeroU32::new(per)?;
    let quota = Quota::with_period(period / per.get())?.allow_burst(per);
    Some(RateLimiter::direct(quota))
}

impl Http {
    pub fn new(
        crm: &CrmSettings,
        limits: &Limits,
        tokens: Tokens,
        dialect: Box<dyn Dialect>,
        extra_headers: HeaderMap,
    ) -> Result<Http, CrmError> {
        let client = shared_client(limits.connect_timeout, limits.request_timeout)?;
        let timezone =
            crate::config::account_zone(&crm.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let today = jiff::Timestamp::now()
            .to_zoned_datetime(timezone.clone())
            .date();
        let per_ten = limits.per_ten_seconds;
        Ok(Http {
            client,
            base_url: crm.base_url.clone(),
            tokens,
            dialect,
            extra_headers,
            general: limiter(per_ten, limits.interval),
            search: limiter(limits.search_per_second, Duration::from_secs(1)),
            window: (per_ten > 0).then(|| {
                Mutex::new(Window {
                    interval: limits.interval,
                    allowed: per_ten,
                    nominal: per_ten,
                    sent: VecDeque::new(),
                })
            }),
            search_window: (limits.search_per_second > 0).then(|| {
                Mutex::new(Window {
                    interval: Duration::from_secs(1),
                    allowed: limits.search_per_second,
                    nominal: limits.search_per_second,
                    sent: VecDeque::new(),
                })
            }),
            budget: Mutex::new(Budget {
                limit: limits.daily,
                headroom: limits.daily_headroom,
                timezone,
                day: today,
                ours: 0,
                reported_remaining: None,
                reported_limit: None,
                reported_at: None,
                probe: limits.daily_reset_probe,
            }),
            slots: Semaphore::new(limits.concurrency.max(1)),
            limits: limits.clone(),
            stats: Stats::default(),
            progress: Progress::default(),
        })
    }

    /// Calls left today before the headroom kept for other integrations.
    pub fn budget_left(&self) -> u64 {
        let budget = self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (limit, reserve, spent) = budget.standing();
        limit.saturating_sub(reserve).saturating_sub(spent)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The account's day and the calls this connection made in it (those
    /// earlier processes made included, once told by
    /// [`Http::count_earlier_calls`]).
    pub fn calls_today(&self) -> (jiff::civil::Date, u64) {
        let mut budget = self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        budget.roll_day();
        (budget.day, budget.ours)
    }

    /// Counts calls that earlier processes made on `day` (from the state),
    /// so a daily limit holds across restarts and one-off runs.
    pub fn count_earlier_calls(&self, day: jiff::civil::Date, calls: u64) {
        let (today, _) = self.calls_today();
        if day != today {
            return;
        }
        let mut budget = self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        budget.ours = budget.ours.max(calls);
    }

    /// Tells the budget what the CRM reports is left today, and the daily
    /// limit when it states one.
    pub fn report_daily(&self, remaining: u64, limit: Option<u64>) {
        let mut budget = self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        budget.reported_remaining = Some(remaining);
        budget.reported_at = Some(Instant::now());
        if limit.is_some() {
            budget.reported_limit = limit;
        }
    }

    /// Requests the rate window lets out per interval now (after what the
    /// CRM's headers said), when there is a window.
    pub fn window_allowed(&self) -> Option<u32> {
        self.window.as_ref().map(|w| {
            w.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .allowed
        })
    }

    /// Tells the rate window what the CRM reports is left in its interval.
    pub fn report_window(&self, max: u32, remaining: u32) {
        if let Some(window) = &self.window {
            window
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .observe(max, remaining, Instant::now());
        }
    }

    async fn wait_for_slot(&self, lane: Lane) {
        let started = Instant::now();
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        let _waited = Decrement(&self.stats.waiting);
        let limiter = match lane {
            Lane::Search => &self.search,
            Lane::General => &self.general,
        };
        if let Some(limiter) = limiter {
            limiter.until_ready().await;
        }
        // A search takes a slot of its own second and, since HubSpot does
        // not say whether searches count against the ten-second window
        // too, one of that window as well: safe either way.
        let windows: &[&Option<Mutex<Window>>] = match lane {
            Lane::Search => &[&self.window, &self.search_window],
            Lane::General => &[&self.window],
        };
        for window in windows.iter().filter_map(|w| w.as_ref()) {
            loop {
                let wait = window
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take(Instant::now());
                match wait {
                    Ok(()) => break,
                    Err(wait) => tokio::time::sleep(wait).await,
                }
            }
        }
        let waited = started.elapsed().as_millis() as u64;
        self.stats.waited_ms.fetch_add(waited, Ordering::Relaxed);
        if waited > 0 {
            metrics::counter!("leadscored_rate_limit_waits_total").increment(1);
            metrics::counter!("leadscored_rate_limit_wait_seconds_total")
                .increment(waited.div_ceil(1000));
        }
    }

    /// Sleeps before a retry, telling the progress watch how long.
    async fn sleep(&self, wait: Duration) {
        self.progress.expect_within(wait + PROGRESS_SLACK);
        tokio::time::sleep(wait).await;
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .limits
            .backoff_base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
        let cap = exp.min(self.limits.backoff_max);
        // Full jitter: anywhere between zero and the exponential bound.
        cap.mul_f64(fastrand::f64())
    }

    /// Sends a call with retries and decodes a JSON answer. A rejected
    /// request comes back as [`CrmError::Rejected`] with the CRM's body.
    pub async fn json<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<Reply<T>, CrmError> {
        self.decoded(call, |bytes| {
            serde_json::from_slice::<T>(bytes)
                .map_err(|e| format!("the answer is not the documented JSON: {e}"))
        })
        .await
    }

    /// Sends a call with retries and decodes the answer with `decode`; an
    /// answer it cannot decode (a cut or garbled body) is asked for again.
    pub async fn decoded<T>(
        &self,
        call: &Call<'_>,
        decode: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<Reply<T>, CrmError> {
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        let mut last = String::new();
        while attempt < self.limits.max_attempts {
            if attempt > 0 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("leadscored_crm_retries_total").increment(1);
            }
            attempt += 1;
            self.budget
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()?;
            // A request may take its timeout, and its slot may wait for
            // the rate window and a token refresh before it goes.
            self.progress.expect_within(
                self.limits.interval
                    + self.limits.connect_timeout
                    + 2 * self.limits.request_timeout
                    + PROGRESS_SLACK,
            );
            self.wait_for_slot(call.lane).await;
            let (token, generation) = self.tokens.get(&self.client).await?;
            let permit = self.slots.acquire().await.map_err(|_| CrmError::Stopped)?;
            let mut request = self
                .client
                .request(
                    call.method.clone(),
                    format!("{}{}", self.base_url, call.path),
                )
                .headers(self.extra_headers.clone())
                .bearer_auth(token.expose_secret());
            if !call.query.is_empty() {
                request = request.query(call.query);
            }
            match call.body {
                Body::None => {}
                Body::Json(body) => request = request.json(body),
                Body::Multipart(parts) => request = request.multipart(form(parts)?),
            }
            let sent = request.send().await;
            let limit = match call.size {
                Size::Page => self.limits.max_answer_bytes,
                Size::Export => self.limits.max_export_bytes,
            };
            let (status, headers, bytes) = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    match read_bounded(response, limit).await {
                        Ok(bytes) => (status, headers, bytes),
                        Err(BodyError::TooLarge) => {
                            drop(permit);
                            self.stats.count(call.endpoint, status);
                            return Err(CrmError::Protocol {
                                endpoint: call.endpoint.to_owned(),
                                message: format!(
                                    "the answer is larger than {} bytes; refused (raise [limits] {} if the CRM really sends that much)",
                                    limit,
                                    match call.size {
                                        Size::Page => "max_answer_mb",
                                        Size::Export => "max_export_mb",
                                    }
                                ),
                            });
                        }
                        Err(BodyError::Broken(e)) => {
                            drop(permit);
                            self.stats.count(call.endpoint, status);
                            last = format!("the answer broke off: {}", without_url(&e));
                            self.sleep(self.backoff(attempt)).await;
                            continue;
                        }
                    }
                }
                Err(e) => {
                    drop(permit);
                    self.stats.count(call.endpoint, 0);
                    last = if e.is_timeout() {
                        "timed out".to_owned()
                    } else {
                        without_url(&e)
                    };
                    tracing::debug!(endpoint = call.endpoint, attempt, error = %last, "request failed; retrying");
                    self.sleep(self.backoff(attempt)).await;
                    continue;
                }
            };
            // What the CRM sent back may quote our own secrets (a proxy's
            // error page echoing the Authorization header): scrub them
            // before anything reads, keeps or repeats the answer.
            let bytes = super::redact::bytes(&bytes);
            self.progress.expect_within(PROGRESS_SLACK);
            drop(permit);
            self.stats.count(call.endpoint, status);
            let observed = self.dialect.observe(&headers);
            if let Some((max, remaining)) = observed.window {
                self.report_window(max, remaining);
            }
            if let Some(remaining) = observed.daily_remaining {
                self.report_daily(remaining, observed.daily_limit.filter(|l| *l > 0));
            }
            match self.dialect.classify(status, &headers, &bytes) {
                Verdict::Done => match decode(&bytes) {
                    Ok(body) => {
                        return Ok(Reply {
                            status,
                            headers,
                            body,
                        });
                    }
                    Err(why) => {
                        // A cut or garbled body: the request may be sent again.
                        last = why;
                        self.sleep(self.backoff(attempt)).await;
                    }
                },
                Verdict::Retry {
                    after,
                    reason,
                    throttled,
                } => {
                    if throttled {
                        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("leadscored_crm_throttled_total").increment(1);
                        // A search 429 says nothing of the ten-second
                        // window that writes share: only its lane slows.
                        let lane_window = match call.lane {
                            Lane::Search => &self.search_window,
                            Lane::General => &self.window,
                        };
                        if let Some(window) = lane_window {
                            let mut window = window
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            window.allowed = (window.allowed * 9 / 10).max(1);
                        }
                    }
                    let wait = after.unwrap_or_else(|| self.backoff(attempt));
                    tracing::debug!(endpoint = call.endpoint, attempt, %reason, wait_ms = wait.as_millis() as u64, "retrying");
                    last = reason;
                    self.sleep(wait).await;
                }
                Verdict::Refresh if !refreshed && self.tokens.refreshable() => {
                    refreshed = true;
                    self.tokens.expired(&self.client, generation).await?;
                    // The retry after a refresh does not count as an attempt.
                    attempt -= 1;
                }
                Verdict::Refresh if self.tokens.refreshable() => {
                    return Err(CrmError::Auth(
                        "the CRM rejected the access token as expired, also right after a refresh"
                            .to_owned(),
                    ));
                }
                Verdict::Refresh => {
                    return Err(CrmError::Auth(
                        "the CRM rejected the access token, and a static token cannot be refreshed: issue a new one (or use OAuth)"
                            .to_owned(),
                    ));
                }
                Verdict::Fatal(error) => return Err(error),
                Verdict::Rejected(message) => {
                    return Err(CrmError::Rejected {
                        endpoint: call.endpoint.to_owned(),
                        status,
                        message,
                        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
                    });
                }
            }
        }
        Err(CrmError::Unavailable {
            endpoint: call.endpoint.to_owned(),
            attempts: attempt,
            last,
        })
    }
}

/// Why an answer body could not be read.
enum BodyError {
    /// Longer than the limit (stated or found while reading).
    TooLarge,
    /// The connection broke, or the request timed out, mid-body.
    Broken(reqwest::Error),
}

/// Reads an answer body, at most `limit` bytes: a longer one (or one that
/// never ends) is refused as soon as it passes the limit, so memory stays
/// bounded whatever the server sends. The client's request timeout bounds
/// the time.
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|stated| stated > limit as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::with_capacity(
        response
            .content_length()
            .map_or(8 * 1024, |n| n as usize)
            .min(limit),
    );
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Broken)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` in seconds (the HTTP-date form is treated as absent).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

/// A header as a number.
pub fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Builds a header map from name/value pairs, skipping invalid ones.
pub fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.insert(HeaderName::from_static(name), value);
        }
    }
    map
}
