//! `leadscored run`: the daemon admins run under systemd.
//!
//! Start-up loads the connection (a bad one exits 78 before anything is
//! touched), opens the local state (taking its lock: one daemon per
//! connection), builds the CRM client, binds `/healthz` and `/metrics`,
//! starts the schedules, and only then tells systemd `READY=1`. It runs an
//! incremental pass at once, then as scheduled.
//!
//! One loop owns the state and runs passes one at a time; a schedule that
//! fires while a pass runs is skipped and logged. SIGTERM (or Ctrl-C)
//! stops the pass at its next safe point and exits; SIGHUP reloads the
//! connection — an invalid new one is logged and the old keeps running. A
//! spent daily budget pauses the daemon until the reset (no calls, no
//! spinning), then it resumes with an incremental pass.
//!
//! With `[webhooks]`, HubSpot's deliveries queue the records they name
//! ([`webhooks::Inbox`]); the same loop runs a webhook pass for them
//! between scheduled passes (never beside one), after gathering for
//! `gather_ms`. A schedule that fires during a webhook pass waits for it.

pub mod notify;
pub mod service;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::commands::CommandError;
use crate::config::{Connection, DaemonSettings, Schedule};
use crate::crm::{Connector, CrmError};
use crate::state::State;
use crate::sync::{Pass, PassError, PassKind, Stop, Targets, run_logged_targeted};
use notify::Notifier;
use service::{Health, Shared};

/// What `leadscored run` is given.
#[derive(Clone, Debug)]
pub struct Options {
    pub connection: PathBuf,
    pub crm_url: Option<String>,
    pub state_dir: PathBuf,
    /// Overrides `[daemon] listen`.
    pub listen: Option<std::net::SocketAddr>,
}

/// Stops `stop` on SIGTERM or SIGINT (a task on the current runtime).
pub fn stop_on_signals(stop: Stop) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot listen for SIGTERM/SIGINT");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping at the next safe point"),
            _ = int.recv() => tracing::info!("interrupted: stopping at the next safe point"),
        }
        stop.stop();
    });
}

fn load(options: &Options) -> Result<Connection, CommandError> {
    let mut connection = Connection::load(&options.connection)?;
    if let Some(url) = &options.crm_url {
        connection
            .override_base_url(url)
            .map_err(CommandError::Data)?;
    }
    if let Some(listen) = options.listen {
        connection.daemon.listen = Some(listen);
    }
    // What check-config warns about, once per load, in the journal too.
    let fed = |kind: &str| connection.events.contains_key(kind);
    for warning in connection.model.warnings(&fed) {
        tracing::warn!(at = %format!("{}:{}:{}", warning.file, warning.line, warning.column), "model: {}", warning.message);
    }
    Ok(connection)
}

/// Runs the daemon until SIGTERM.
pub fn run(options: Options) -> Result<(), CommandError> {
    let connection = load(&options)?;
    let path = crate::state::default_path(&options.state_dir, &options.connection);
    let state = State::open(&path, &connection.identity())?;
    let abandoned = state.close_abandoned_runs(jiff::Timestamp::now().as_millisecond())?;
    if abandoned > 0 {
        tracing::warn!(
            abandoned,
            "runs from an earlier process never finished (crash or kill); they are repeated now"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(Daemon::start(options, connection, state))
}

/// What fires a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    Scheduled(PassKind),
}

/// The schedules, as jobs that post triggers.
struct Schedules {
    scheduler: JobScheduler,
}

impl Schedules {
    async fn start(
        settings: &DaemonSettings,
        triggers: mpsc::Sender<Trigger>,
        running: Arc<AtomicBool>,
    ) -> Result<Schedules, CommandError> {
        let fail = |e: tokio_cron_scheduler::JobSchedulerError| {
            CommandError::Data(format!("cannot start the schedules: {e}"))
        };
        let scheduler = JobScheduler::new().await.map_err(fail)?;
        for (schedule, kind) in [
            (&settings.incremental, PassKind::Incremental),
            (&settings.rescore, PassKind::Rescore),
        ] {
            let triggers = triggers.clone();
            let running = running.clone();
            let fire = move |_, _| {
                if running.load(Ordering::SeqCst) {
                    tracing::info!(
                        kind = kind.as_str(),
                        "scheduled run skipped: a run is in progress"
                    );
                    metrics::counter!("leadscored_runs_skipped_total", "kind" => kind.as_str())
                        .increment(1);
                } else if triggers.try_send(Trigger::Scheduled(kind)).is_err() {
                    tracing::info!(
                        kind = kind.as_str(),
                        "scheduled run skipped: runs are queued"
                    );
                }
            };
            let job = match schedule {
                Schedule::Cron(expr) => Job::new(expr.as_str(), fire),
                Schedule::Every(every) => Job::new_repeated(*every, fire),
                Schedule::Off => continue,
            };
            scheduler.add(job.map_err(fail)?).await.map_err(fail)?;
        }
        scheduler.start().await.map_err(fail)?;
        Ok(Schedules { scheduler })
    }

    async fn stop(mut self) {
        if let Err(e) = self.scheduler.shutdown().await {
            tracing::debug!(error = %e, "scheduler shutdown");
        }
    }
}

struct Daemon {
    options: Options,
    connection: Connection,
    state: State,
    crm: Arc<Connector>,
    /// The connector the watchdog watches (replaced on reload).
    current: Arc<Mutex<Arc<Connector>>>,
    notifier: Arc<Notifier>,
    health: Arc<Mutex<Health>>,
    running: Arc<AtomicBool>,
    /// A scheduled pass runs: schedules that fire now are skipped (a
    /// webhook pass only delays them).
    scheduled: Arc<AtomicBool>,
    stop: Stop,
    triggers: mpsc::Sender<Trigger>,
    schedules: Option<Schedules>,
    /// No pass starts before this (the daily budget is spent).
    paused_until: Option<jiff::Timestamp>,
    /// Webhook deliveries waiting for a pass.
    inbox: Option<Arc<webhooks::Inbox>>,
}

impl Daemon {
    async fn start(
        options: Options,
        connection: Connection,
        state: State,
    ) -> Result<(), CommandError> {
        let notifier = Arc::new(Notifier::from_env());
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::debug!("a metrics recorder was already installed");
        }
        describe_metrics();
        let stop = Stop::default();
        stop_on_signals(stop.clone());
        let crm = Arc::new(Connector::new(&connection)?);
        let health = Arc::new(Mutex::new(Health::new(
            jiff::Timestamp::now(),
            connection.daemon.stale_after,
        )));
        health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .progress = Some(crm.http().progress.clone());
        let inbox = match &connection.webhooks {
            Some(settings) => {
                let secret = crate::crm::auth::read_secret(&settings.secret)?;
                let inbox = webhooks::Inbox::new(settings, secret, webhooks::watch(&connection));
                inbox.set_portal(state.portal()?);
                tracing::info!(url = %settings.url, queue = settings.queue, "taking HubSpot webhooks at {}", crate::config::webhooks::PATH);
                Some(Arc::new(inbox))
            }
            None => None,
        };
        if let Some(addr) = connection.daemon.listen {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                CommandError::Data(format!(
                    "cannot listen on {addr} for /healthz and /metrics: {e} (set [daemon] listen, or \"off\")"
                ))
            })?;
            tracing::info!(%addr, "serving /healthz and /metrics");
            let shared = Shared {
                health: health.clone(),
                metrics: handle,
            };
            let stop = stop.clone();
            let inbox = inbox.clone();
            tokio::spawn(async move {
                if let Err(e) = service::serve(listener, shared, inbox, stop).await {
                    tracing::error!(error = %e, "the HTTP endpoint stopped");
                }
            });
        }
        let running = Arc::new(AtomicBool::new(false));
        let scheduled = Arc::new(AtomicBool::new(false));
        let (triggers, mut incoming) = mpsc::channel(4);
        let schedules =
            Schedules::start(&connection.daemon, triggers.clone(), scheduled.clone()).await?;
        let current = Arc::new(Mutex::new(crm.clone()));
        if let Some(every) = notifier.watchdog() {
            spawn_watchdog(every, notifier.clone(), running.clone(), current.clone());
        }
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut daemon = Daemon {
            options,
            connection,
            state,
            crm,
            current,
            notifier,
            health,
            running,
            scheduled,
            stop,
            triggers,
            schedules: Some(schedules),
            paused_until: None,
            inbox,
        };
        tracing::info!(
            incremental = %daemon.connection.daemon.incremental,
            rescore = %daemon.connection.daemon.rescore,
            state = %daemon.state.path().display(),
            "leadscored is running"
        );
        record_distribution(&daemon.connection, &daemon.state);
        daemon.notifier.ready("started; first run now");
        daemon.run(PassKind::Incremental, None).await;
        loop {
            let inbox = daemon.inbox.clone();
            let delivered = async move {
                match inbox {
                    Some(inbox) => inbox.ready().await,
                    None => std::future::pending().await,
                }
            };
            let paused_until = daemon.paused_until;
            let resume = async move {
                match paused_until {
                    Some(at) => {
                        let wait = at.duration_since(jiff::Timestamp::now());
                        tokio::time::sleep(wait.unsigned_abs()).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = daemon.stop.stopped() => break,
                _ = hangups.recv() => daemon.reload().await,
                () = resume => {
                    tracing::info!("the daily budget has reset; resuming");
                    daemon.paused_until = None;
                    daemon.run(PassKind::Incremental, None).await;
                }
                () = delivered, if daemon.paused_until.is_none() => daemon.webhook_pass().await,
                Some(Trigger::Scheduled(kind)) = incoming.recv() => {
                    match daemon.paused_until {
                        Some(until) => {
                            tracing::info!(kind = kind.as_str(), %until, "scheduled run skipped: the daily budget is spent");
                            metrics::counter!("leadscored_runs_skipped_total", "kind" => kind.as_str()).increment(1);
                        }
                        None => daemon.run(kind, None).await,
                    }
                }
            }
        }
        daemon.notifier.stopping();
        if let Some(schedules) = daemon.schedules.take() {
            schedules.stop().await;
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// Runs a pass for what webhooks queued, after waiting `gather_ms`
    /// for more to join it. A queue that overflowed runs an incremental
    /// pass instead (it finds every change since the watermark), and so
    /// does a state that has no first sync yet.
    async fn webhook_pass(&mut self) {
        let Some(inbox) = self.inbox.clone() else {
            return;
        };
        let gather = self
            .connection
            .webhooks
            .as_ref()
            .map_or(Duration::ZERO, |w| w.gather);
        tokio::select! {
            () = tokio::time::sleep(gather) => {}
            () = self.stop.stopped() => return,
        }
        let drained = inbox.drain();
        let first_sync = matches!(self.state.watermark(), Ok(None));
        if drained.overflowed || first_sync {
            if !drained.targets.gone.is_empty()
                && let Err(error) = self.state.forget(&drained.targets.gone)
            {
                tracing::warn!(%error, "could not forget records deleted in the CRM");
            }
            tracing::info!(
                overflowed = drained.overflowed,
                "webhooks: an incremental pass picks up every change"
            );
            self.run(PassKind::Incremental, None).await;
        } else if !drained.targets.is_empty() {
            self.run(PassKind::Webhook, Some(&drained.targets)).await;
        }
        if let Some(since) = drained.since {
            metrics::histogram!("leadscored_webhook_latency_seconds")
                .record(since.elapsed().as_secs_f64());
        }
    }

    /// Runs one pass and records how it went.
    async fn run(&mut self, kind: PassKind, targets: Option<&Targets>) {
        if self.stop.is_stopped() {
            return;
        }
        let webhook = kind == PassKind::Webhook;
        self.scheduled.store(!webhook, Ordering::SeqCst);
        self.running.store(true, Ordering::SeqCst);
        self.lock_health().running = true;
        let pass = Pass {
            kind,
            now: jiff::Timestamp::now(),
            dry_run: false,
            since: None,
        };
        let started = std::time::Instant::now();
        let result = run_logged_targeted(
            &*self.crm,
            &self.connection,
            &mut self.state,
            pass,
            targets,
            &self.stop,
            |_| {},
        )
        .await
        .map_err(|e| e.at(self.state.path()));
        let seconds = started.elapsed().as_secs_f64();
        let word = crate::sync::outcome(&result);
        metrics::histogram!("leadscored_run_duration_seconds", "kind" => kind.as_str())
            .record(seconds);
        metrics::counter!("leadscored_runs_total", "kind" => kind.as_str(), "outcome" => word)
            .increment(1);
        metrics::gauge!("leadscored_daily_budget_left").set(self.crm.http().budget_left() as f64);
        let now = jiff::Timestamp::now();
        if let Err(PassError::Crm(CrmError::BudgetExhausted { resume_at, .. })) = &result {
            self.paused_until = Some(*resume_at);
        }
        let status = {
            let mut health = self
                .health
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            health.running = false;
            health.last_outcome = Some(word.to_owned());
            match &result {
                Ok(report) => {
                    health.last_success = Some(now);
                    health.auth_failure = None;
                    health.state_failure = None;
                    health.budget_until = None;
                    metrics::gauge!("leadscored_last_success_timestamp_seconds")
                        .set(now.as_second() as f64);
                    format!(
                        "last run {} at {}: {}; pulled {}, written {}, failed {}",
                        kind.as_str(),
                        now.round(jiff::Unit::Second).unwrap_or(now),
                        word,
                        report.pulled,
                        report.written,
                        report.failed.len()
                    )
                }
                Err(PassError::Crm(CrmError::BudgetExhausted { resume_at, .. })) => {
                    health.budget_until = Some(*resume_at);
                    format!("daily API budget spent; waiting until {resume_at}")
                }
                Err(error) => {
                    if let PassError::Crm(
                        CrmError::Auth(why)
                        | CrmError::MissingScope(why)
                        | CrmError::Credentials(why),
                    ) = error
                    {
                        health.auth_failure = Some(crate::crm::redact::string(why.clone()));
                    }
                    if let PassError::State(state_error) = error {
                        health.state_failure =
                            Some(crate::crm::redact::string(state_error.to_string()));
                    }
                    crate::crm::redact::string(format!(
                        "last run {} at {}: {word}: {error}",
                        kind.as_str(),
                        now
                    ))
                }
            }
        };
        self.running.store(false, Ordering::SeqCst);
        self.scheduled.store(false, Ordering::SeqCst);
        if let Some(inbox) = &self.inbox {
            // The first pass claims the portal: events from others are ignored.
            inbox.set_portal(self.state.portal().ok().flatten());
        }
        // Counting every record is for scheduled passes, not every few seconds.
        if !webhook {
            record_distribution(&self.connection, &self.state);
        }
        self.notifier.status(&status);
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// SIGHUP: the new configuration replaces the old only if it is valid
    /// and talks to the same CRM account.
    async fn reload(&mut self) {
        self.notifier.reloading();
        let outcome = self.try_reload().await;
        match &outcome {
            Ok(()) => {
                tracing::info!(
                    model = %self.connection.model_path.display(),
                    "configuration reloaded; the next run uses it"
                );
                metrics::counter!("leadscored_config_reloads_total", "result" => "ok").increment(1);
            }
            Err(error) => {
                tracing::error!(
                    error = %error,
                    "the new configuration was not applied; the old one keeps running"
                );
                metrics::counter!("leadscored_config_reloads_total", "result" => "failed")
                    .increment(1);
            }
        }
        let status = match outcome {
            Ok(()) => "configuration reloaded".to_owned(),
            Err(e) => format!("reload failed, old configuration kept: {e}"),
        };
        self.notifier.ready(&status);
    }

    async fn try_reload(&mut self) -> Result<(), CommandError> {
        let new = load(&self.options)?;
        if new.identity() != self.connection.identity() {
            return Err(CommandError::Data(format!(
                "the new configuration talks to another CRM account ({}, was {}); restart the service to switch",
                new.identity(),
                self.connection.identity()
            )));
        }
        let crm = Arc::new(Connector::new(&new)?);
        let webhook_secret = match (&self.inbox, &new.webhooks) {
            (Some(_), Some(settings)) => Some(crate::crm::auth::read_secret(&settings.secret)?),
            (None, None) => None,
            _ => {
                tracing::warn!("[webhooks] is switched on or off only at restart");
                None
            }
        };
        if new.daemon.listen != self.connection.daemon.listen {
            tracing::warn!("[daemon] listen changes only at restart");
        }
        if new.daemon.incremental != self.connection.daemon.incremental
            || new.daemon.rescore != self.connection.daemon.rescore
        {
            let schedules =
                Schedules::start(&new.daemon, self.triggers.clone(), self.scheduled.clone())
                    .await?;
            if let Some(old) = self.schedules.replace(schedules) {
                old.stop().await;
            }
        }
        {
            let mut health = self.lock_health();
            health.stale_after = new.daemon.stale_after;
            health.progress = Some(crm.http().progress.clone());
        }
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = crm.clone();
        if let (Some(inbox), Some(settings), Some(secret)) =
            (&self.inbox, &new.webhooks, webhook_secret)
        {
            inbox.reload(settings, secret, webhooks::watch(&new));
        }
        self.crm = crm;
        self.connection = new;
        Ok(())
    }
}

/// Records per value of each tier, stage and grade output, from the
/// state: what the CRM holds after our writes. Set at start-up and after
/// every pass, so the gauges are there before the first full pass.
fn record_distribution(connection: &Connection, state: &State) {
    let properties: Vec<&str> = connection
        .outputs
        .iter()
        .filter(|o| o.kind() == crate::engine::OutputKind::Choice)
        .map(|o| o.property.as_str())
        .collect();
    match state.distribution(&properties) {
        Ok(distribution) => {
            for (property, values) in distribution {
                for (value, count) in values {
                    metrics::gauge!(
                        "leadscored_records",
                        "property" => property.clone(),
                        "value" => value
                    )
                    .set(count as f64);
                }
            }
        }
        Err(error) => tracing::warn!(%error, "could not count records per tier and grade"),
    }
}

/// Pings systemd's watchdog while the daemon is idle or its pass keeps
/// its progress deadline (every request, answer, retry sleep and pipeline
/// step pushes it out); a pass past its deadline is stuck, the pings stop
/// at once, and systemd restarts the daemon, which resumes the pass.
fn spawn_watchdog(
    every: Duration,
    notifier: Arc<Notifier>,
    running: Arc<AtomicBool>,
    current: Arc<Mutex<Arc<Connector>>>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every / 2);
        let mut warned = false;
        loop {
            tick.tick().await;
            let overdue = current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .http()
                .progress
                .overdue(jiff::Timestamp::now());
            match overdue.filter(|_| running.load(Ordering::SeqCst)) {
                None => {
                    warned = false;
                    notifier.ping();
                }
                Some(late) if !warned => {
                    warned = true;
                    tracing::error!(
                        seconds = late.as_secs(),
                        "the running pass shows no progress; watchdog pings stopped"
                    );
                }
                Some(_) => {}
            }
        }
    });
}

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "leadscored_crm_requests_total",
        "CRM requests by endpoint and HTTP status (0: no answer)"
    );
    describe_counter!("leadscored_crm_retries_total", "CRM requests sent again");
    describe_counter!(
        "leadscored_crm_throttled_total",
        "Answers that said to slow down (429)"
    );
    describe_counter!(
        "leadscored_rate_limit_waits_total",
        "Requests that waited for our own rate limiter"
    );
    describe_counter!(
        "leadscored_rate_limit_wait_seconds_total",
        "Time spent waiting for our own rate limiter"
    );
    describe_counter!("leadscored_records_pulled_total", "Records pulled");
    describe_counter!("leadscored_records_scored_total", "Records scored");
    describe_counter!("leadscored_records_written_total", "Records written");
    describe_counter!(
        "leadscored_records_failed_total",
        "Records whose write the CRM refused"
    );
    describe_counter!("leadscored_runs_total", "Passes by kind and outcome");
    describe_counter!(
        "leadscored_runs_skipped_total",
        "Scheduled passes skipped (one in progress, or the budget spent)"
    );
    describe_counter!("leadscored_config_reloads_total", "SIGHUP reloads");
    describe_histogram!("leadscored_run_duration_seconds", "Pass duration");
    describe_counter!(
        "leadscored_webhook_deliveries_total",
        "Webhook deliveries by outcome (accepted, replayed, unsigned, expired, ahead, bad_signature, bad_timestamp, malformed, too_large)"
    );
    describe_counter!(
        "leadscored_webhook_events_total",
        "Webhook events by outcome (taken, ignored, repeated, other_portal)"
    );
    describe_counter!(
        "leadscored_webhook_dropped_total",
        "Webhook changes dropped by a full queue (an incremental pass picks them up)"
    );
    describe_gauge!("leadscored_webhook_queue", "Ids waiting for a webhook pass");
    describe_histogram!(
        "leadscored_webhook_latency_seconds",
        "From the first queued change to the end of its webhook pass"
    );
    describe_gauge!(
        "leadscored_last_success_timestamp_seconds",
        "When the last pass succeeded (Unix time)"
    );
    describe_gauge!(
        "leadscored_daily_budget_left",
        "CRM calls left today, after the headroom for other integrations"
    );
    describe_gauge!(
        "leadscored_records",
        "Records per value of each tier, stage and grade output (last full pass)"
    );
}
