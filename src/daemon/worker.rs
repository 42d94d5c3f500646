//! One connection's life in the daemon: its connection file, state, CRM
//! client, schedules, webhook inbox and health, and the loop that runs its
//! passes one at a time.
//!
//! A worker never touches another connection's anything. It runs a pass
//! only while holding a permit of the daemon's pass semaphore (passes of
//! different connections run in parallel up to `--parallel`); waiting for
//! a permit counts as running, so a schedule that fires meanwhile is
//! skipped as it is during a pass.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_cron_scheduler::{Job, JobScheduler};

use super::labels;
use super::notify::Notifier;
use super::service::Health;
use super::webhooks;
use crate::commands::CommandError;
use crate::config::{Connection, DaemonSettings, Schedule};
use crate::crm::{Connector, CrmError};
use crate::state::State;
use crate::sync::{Pass, PassError, PassKind, Stop, Targets, run_logged_targeted};

/// What the command line overrides in every connection file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub crm_url: Option<String>,
    /// Overrides `[daemon] listen`.
    pub listen: Option<std::net::SocketAddr>,
}

/// Loads a connection file with the command line's overrides, logging what
/// check-config would warn about.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Connection, CommandError> {
    let mut connection = Connection::load(path)?;
    if let Some(url) = &overrides.crm_url {
        connection
            .override_base_url(url)
            .map_err(CommandError::Data)?;
    }
    if let Some(listen) = overrides.listen {
        connection.daemon.listen = Some(listen);
    }
    // What check-config warns about, once per load, in the journal too.
    let fed = |kind: &str| connection.events.contains_key(kind);
    for warning in connection.model.warnings(&fed) {
        tracing::warn!(at = %format!("{}:{}:{}", warning.file, warning.line, warning.column), "model: {}", warning.message);
    }
    Ok(connection)
}

/// A connection loaded and its state opened (its lock taken), before any
/// task runs: what can fail at start-up without side effects elsewhere.
pub struct Opened {
    pub name: Arc<str>,
    pub path: PathBuf,
    pub connection: Connection,
    pub state: State,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// Loads `path` and opens its state in `state_dir`, closing runs an
    /// earlier process left unfinished.
    pub fn open(
        name: Arc<str>,
        path: &Path,
        overrides: &Overrides,
        state_dir: &Path,
    ) -> Result<Opened, CommandError> {
        Opened::with(name, path, load(path, overrides)?, state_dir)
    }

    /// Opens the state of a connection already loaded from `path`.
    pub fn with(
        name: Arc<str>,
        path: &Path,
        connection: Connection,
        state_dir: &Path,
    ) -> Result<Opened, CommandError> {
        let state_path = crate::state::default_path(state_dir, path);
        let state =
            crate::state::open_store(&connection.state, &state_path, &connection.identity())?;
        let abandoned = state.close_abandoned_runs(jiff::Timestamp::now().as_millisecond())?;
        if abandoned > 0 {
            tracing::warn!(
                abandoned,
                "runs from an earlier process never finished (crash or kill); they are repeated now"
            );
        }
        Ok(Opened {
            name,
            path: path.to_owned(),
            connection,
            state,
        })
    }
}

/// What the daemon tells a worker between passes.
#[derive(Debug)]
pub enum Control {
    /// SIGHUP: read the connection file again.
    Reload,
}

/// What the daemon keeps of a running worker.
#[derive(Debug)]
pub struct Handle {
    pub health: Arc<Mutex<Health>>,
    pub inbox: Option<Arc<webhooks::Inbox>>,
    pub control: mpsc::Sender<Control>,
    pub stop: Stop,
}

/// What fires a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    Scheduled(PassKind),
}

/// One connection's schedules, as jobs on the daemon's scheduler that post
/// triggers.
struct Schedules {
    scheduler: JobScheduler,
    jobs: Vec<uuid::Uuid>,
}

impl Schedules {
    async fn start(
        scheduler: &JobScheduler,
        name: Option<Arc<str>>,
        settings: &DaemonSettings,
        triggers: mpsc::Sender<Trigger>,
        busy: Arc<AtomicBool>,
    ) -> Result<Schedules, CommandError> {
        let fail = |e: tokio_cron_scheduler::JobSchedulerError| {
            CommandError::Data(format!("cannot start the schedules: {e}"))
        };
        let mut jobs = Vec::new();
        for (schedule, kind) in [
            (&settings.incremental, PassKind::Incremental),
            (&settings.rescore, PassKind::Rescore),
        ] {
            let triggers = triggers.clone();
            let busy = busy.clone();
            let name = name.clone();
            let fire = move |_, _| {
                let post = || {
                    if busy.load(Ordering::SeqCst) {
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
                match &name {
                    Some(name) => labels::sync_scope(name.clone(), post),
                    None => post(),
                }
            };
            let job = match schedule {
                Schedule::Cron(expr) => Job::new(expr.as_str(), fire),
                Schedule::Every(every) => Job::new_repeated(*every, fire),
                Schedule::Off => continue,
            };
            jobs.push(scheduler.add(job.map_err(fail)?).await.map_err(fail)?);
        }
        Ok(Schedules {
            scheduler: scheduler.clone(),
            jobs,
        })
    }

    async fn stop(self) {
        for job in &self.jobs {
            if let Err(e) = self.scheduler.remove(job).await {
                tracing::debug!(error = %e, "removing a schedule");
            }
        }
    }
}

/// Which connection works which CRM account (portal id), so that two files
/// naming the same portal never both run passes in one daemon.
#[derive(Clone, Debug, Default)]
pub struct Portals {
    held: Arc<Mutex<std::collections::HashMap<String, Arc<str>>>>,
}

impl Portals {
    /// Claims `portal` for `name`; the name already holding it, if another.
    fn claim(&self, portal: &str, name: &Arc<str>) -> Result<(), Arc<str>> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match held.get(portal) {
            Some(other) if other != name => Err(other.clone()),
            Some(_) => Ok(()),
            None => {
                held.insert(portal.to_owned(), name.clone());
                Ok(())
            }
        }
    }

    /// Lets go of whatever `name` holds.
    fn release(&self, name: &Arc<str>) {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, holder| holder != name);
    }
}

/// What every worker of a daemon shares.
#[derive(Clone)]
pub struct Shared {
    pub overrides: Overrides,
    pub scheduler: JobScheduler,
    /// Permits for passes in parallel.
    pub passes: Arc<Semaphore>,
    /// systemd's status line is the worker's own only when it is the
    /// daemon's one connection.
    pub notifier: Option<Arc<Notifier>>,
    /// Label metrics and logs with the connection's name (many connections).
    pub labelled: bool,
    /// The portals the daemon's connections work.
    pub portals: Portals,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("passes", &self.passes)
            .field("labelled", &self.labelled)
            .finish_non_exhaustive()
    }
}

/// One connection's loop (see the module docs).
pub struct Worker {
    name: Arc<str>,
    path: PathBuf,
    shared: Shared,
    connection: Connection,
    state: State,
    crm: Arc<Connector>,
    health: Arc<Mutex<Health>>,
    /// A scheduled pass runs or waits for a permit: schedules that fire
    /// now are skipped (a webhook pass only delays them).
    scheduled: Arc<AtomicBool>,
    stop: Stop,
    triggers: mpsc::Sender<Trigger>,
    incoming: mpsc::Receiver<Trigger>,
    control: mpsc::Receiver<Control>,
    schedules: Option<Schedules>,
    /// No pass starts before this (the daily budget is spent).
    paused_until: Option<jiff::Timestamp>,
    /// Webhook deliveries waiting for a pass.
    inbox: Option<Arc<webhooks::Inbox>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Builds the worker of an opened connection: its CRM client, health,
    /// webhook inbox and schedules. Nothing runs until [`Worker::serve`].
    pub async fn start(
        opened: Opened,
        shared: Shared,
        stop: Stop,
    ) -> Result<(Worker, Handle), CommandError> {
        let Opened {
            name,
            path,
            connection,
            state,
        } = opened;
        let crm = Arc::new(Connector::new(&connection)?);
        let mut health = Health::new(jiff::Timestamp::now(), connection.daemon.stale_after);
        health.progress = Some(crm.http().progress.clone());
        let health = Arc::new(Mutex::new(health));
        let inbox = match &connection.webhooks {
            Some(settings) => {
                let secret = crate::crm::auth::read_secret(&settings.secret)?;
                let inbox = webhooks::Inbox::new(settings, secret, webhooks::watch(&connection));
                inbox.set_portal(state.portal()?);
                tracing::info!(url = %settings.url, queue = settings.queue, "taking HubSpot webhooks");
                Some(Arc::new(inbox))
            }
            None => None,
        };
        let scheduled = Arc::new(AtomicBool::new(false));
        let (triggers, incoming) = mpsc::channel(4);
        let label = shared.labelled.then(|| name.clone());
        let schedules = Schedules::start(
            &shared.scheduler,
            label,
            &connection.daemon,
            triggers.clone(),
            scheduled.clone(),
        )
        .await?;
        let (control_tx, control) = mpsc::channel(4);
        let handle = Handle {
            health: health.clone(),
            inbox: inbox.clone(),
            control: control_tx,
            stop: stop.clone(),
        };
        let worker = Worker {
            name,
            path,
            shared,
            connection,
            state,
            crm,
            health,
            scheduled,
            stop,
            triggers,
            incoming,
            control,
            schedules: Some(schedules),
            paused_until: None,
            inbox,
        };
        Ok((worker, handle))
    }

    /// Runs an incremental pass at once, then passes as scheduled, until
    /// the worker's stop; then removes its schedules.
    pub async fn serve(mut self) {
        tracing::info!(
            incremental = %self.connection.daemon.incremental,
            rescore = %self.connection.daemon.rescore,
            state = %self.state.path().display(),
            "connection is running"
        );
        record_distribution(&self.connection, &self.state);
        if let Some(notifier) = &self.shared.notifier {
            notifier.ready("started; first run now");
        }
        self.run(PassKind::Incremental, None).await;
        loop {
            let inbox = self.inbox.clone();
            let delivered = async move {
                match inbox {
                    Some(inbox) => inbox.ready().await,
                    None => std::future::pending().await,
                }
            };
            let paused_until = self.paused_until;
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
                () = self.stop.stopped() => break,
                Some(Control::Reload) = self.control.recv() => self.reload().await,
                () = resume => {
                    tracing::info!("the daily budget has reset; resuming");
                    self.paused_until = None;
                    self.run(PassKind::Incremental, None).await;
                }
                () = delivered, if self.paused_until.is_none() => self.webhook_pass().await,
                Some(Trigger::Scheduled(kind)) = self.incoming.recv() => {
                    match self.paused_until {
                        Some(until) => {
                            tracing::info!(kind = kind.as_str(), %until, "scheduled run skipped: the daily budget is spent");
                            metrics::counter!("leadscored_runs_skipped_total", "kind" => kind.as_str()).increment(1);
                        }
                        None => self.run(kind, None).await,
                    }
                }
            }
        }
        if let Some(schedules) = self.schedules.take() {
            schedules.stop().await;
        }
        self.shared.portals.release(&self.name);
        tracing::info!("connection stopped");
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

    /// Runs one pass (once a permit is free) and records how it went.
    async fn run(&mut self, kind: PassKind, targets: Option<&Targets>) {
        if self.stop.is_stopped() {
            return;
        }
        if !self.holds_portal() {
            return;
        }
        let webhook = kind == PassKind::Webhook;
        self.scheduled.store(!webhook, Ordering::SeqCst);
        let passes = self.shared.passes.clone();
        let permit = tokio::select! {
            permit = passes.acquire_owned() => permit.ok(),
            () = self.stop.stopped() => None,
        };
        let Some(_permit) = permit else {
            self.scheduled.store(false, Ordering::SeqCst);
            return;
        };
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
        if let Err(PassError::State(error)) = &result
            && error.lost()
        {
            // Shared state: another instance took the connection over (or
            // the session holding it is gone). This worker stops; the
            // daemon stands by for the connection and claims it again
            // when it is free.
            tracing::warn!(%error, "the claim on this connection is lost; stopping its worker");
            self.lock_health().standby = Some(error.to_string());
            self.stop.stop();
        }
        let status = self.record_outcome(kind, word, seconds, now, &result);
        self.scheduled.store(false, Ordering::SeqCst);
        if let Some(inbox) = &self.inbox {
            // The first pass claims the portal: events from others are ignored.
            inbox.set_portal(self.state.portal().ok().flatten());
        }
        self.holds_portal();
        // Counting every record is for scheduled passes, not every few seconds.
        if !webhook {
            record_distribution(&self.connection, &self.state);
        }
        if self.shared.labelled {
            // Idle connections hold no page cache (many connections).
            self.state.release_memory();
        }
        if let Some(notifier) = &self.shared.notifier {
            notifier.status(&status);
        }
    }

    /// Updates the health from a pass's result; the status line for systemd.
    fn record_outcome(
        &self,
        kind: PassKind,
        word: &str,
        seconds: f64,
        now: jiff::Timestamp,
        result: &Result<crate::sync::PassReport, PassError>,
    ) -> String {
        let mut health = self.lock_health();
        health.running = false;
        health.last_outcome = Some(word.to_owned());
        health.last_seconds = Some(seconds);
        health.passes += 1;
        match result {
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
                    CrmError::Auth(why) | CrmError::MissingScope(why) | CrmError::Credentials(why),
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
    }

    /// Whether this connection may work its portal: false (and its health
    /// says why) while another connection of this daemon works the same
    /// one. A portal is known from the first pass on; two new files for
    /// one portal are caught after their first passes.
    fn holds_portal(&self) -> bool {
        let Ok(Some(portal)) = self.state.portal() else {
            return true;
        };
        match self.shared.portals.claim(&portal, &self.name) {
            Ok(()) => {
                let mut health = self.lock_health();
                if health.config_failure.take().is_some() {
                    tracing::info!(%portal, "the other connection for this portal is gone; passes resume");
                }
                true
            }
            Err(other) => {
                let why = format!(
                    "CRM account {portal} is already worked by connection {other}; this connection runs no pass while it is (remove one of the two files)"
                );
                let mut health = self.lock_health();
                if health.config_failure.is_none() {
                    tracing::error!(%portal, %other, "{why}");
                }
                health.config_failure = Some(why);
                false
            }
        }
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// SIGHUP: the new configuration replaces the old only if it is valid
    /// and talks to the same CRM account.
    async fn reload(&mut self) {
        if let Some(notifier) = &self.shared.notifier {
            notifier.reloading();
        }
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
                    file = %self.path.display(),
                    "the new configuration was not applied; the old one keeps running"
                );
                metrics::counter!("leadscored_config_reloads_total", "result" => "failed")
                    .increment(1);
            }
        }
        if let Some(notifier) = &self.shared.notifier {
            let status = match outcome {
                Ok(()) => "configuration reloaded".to_owned(),
                Err(e) => format!("reload failed, old configuration kept: {e}"),
            };
            notifier.ready(&status);
        }
    }

    async fn try_reload(&mut self) -> Result<(), CommandError> {
        let new = load(&self.path, &self.shared.overrides)?;
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
        if new.daemon.listen != self.connection.daemon.listen && !self.shared.labelled {
            tracing::warn!("[daemon] listen changes only at restart");
        }
        if new.daemon.incremental != self.connection.daemon.incremental
            || new.daemon.rescore != self.connection.daemon.rescore
        {
            let label = self.shared.labelled.then(|| self.name.clone());
            let schedules = Schedules::start(
                &self.shared.scheduler,
                label,
                &new.daemon,
                self.triggers.clone(),
                self.scheduled.clone(),
            )
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
