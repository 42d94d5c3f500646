//! `leadscored run`: the daemon admins run under systemd.
//!
//! Start-up loads the connection (a bad one exits 78 before anything is
//! touched), opens the local state (taking its lock: one daemon per
//! connection), builds the CRM client and the schedules, binds `/healthz`
//! and `/metrics`, and only then tells systemd `READY=1`. It runs an
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
//!
//! `run --connections DIR` serves every connection file in a directory
//! from one process ([`fleet`]): each connection is a [`worker::Worker`]
//! with its own CRM client, limits, budget, schedules and state; passes of
//! different connections run in parallel up to `--parallel`; SIGHUP
//! re-reads the directory. Metrics carry a `connection` label
//! ([`labels`]).

pub mod fleet;
pub mod labels;
pub mod notify;
pub mod service;
pub mod webhooks;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::commands::CommandError;
use crate::sync::Stop;
use notify::Notifier;
use service::{Board, Shared};
use worker::{Control, Opened, Overrides, Worker};

/// What a daemon serves: one connection file, or every one in a directory.
#[derive(Clone, Debug)]
pub enum Source {
    Connection(PathBuf),
    Directory(PathBuf),
}

/// What `leadscored run` is given.
#[derive(Clone, Debug)]
pub struct Options {
    pub source: Source,
    pub crm_url: Option<String>,
    pub state_dir: PathBuf,
    /// Overrides `[daemon] listen` (with a directory: where the daemon
    /// listens; default 127.0.0.1:9187).
    pub listen: Option<std::net::SocketAddr>,
    /// Passes of different connections in parallel, at most.
    pub parallel: usize,
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

/// Runs the daemon until SIGTERM.
pub fn run(options: Options) -> Result<(), CommandError> {
    match options.source.clone() {
        Source::Connection(path) => run_one(&options, &path),
        Source::Directory(dir) => fleet::run(&options, &dir),
    }
}

/// The daemon's runtime: its threads do the passes' scoring and the
/// state's writes besides waiting on the CRM.
fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, CommandError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(2))
        .enable_all()
        .build()?)
}

/// Installs the metrics recorder (labelling each connection's metrics)
/// and describes the metrics.
fn install_metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(labels::Labelled::new(recorder)).is_err() {
        tracing::debug!("a metrics recorder was already installed");
    }
    describe_metrics();
    handle
}

/// Binds `/healthz`, `/metrics` and the webhook routes on `addr`.
async fn listen(
    addr: std::net::SocketAddr,
    shared: Shared,
    inbox: Option<Arc<webhooks::Inbox>>,
    stop: Stop,
) -> Result<(), CommandError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        CommandError::Data(format!(
            "cannot listen on {addr} for /healthz and /metrics: {e} (set [daemon] listen, or \"off\")"
        ))
    })?;
    tracing::info!(%addr, "serving /healthz and /metrics");
    tokio::spawn(async move {
        if let Err(e) = service::serve(listener, shared, inbox, stop).await {
            tracing::error!(error = %e, "the HTTP endpoint stopped");
        }
    });
    Ok(())
}

/// One connection file: a bad one exits 78 before anything is touched.
fn run_one(options: &Options, path: &std::path::Path) -> Result<(), CommandError> {
    let overrides = Overrides {
        crm_url: options.crm_url.clone(),
        listen: options.listen,
    };
    let name: Arc<str> = path
        .file_stem()
        .map_or_else(|| "leadscored".into(), |s| s.to_string_lossy().into());
    let opened = Opened::open(name.clone(), path, &overrides, &options.state_dir)?;
    runtime(2)?.block_on(async move {
        let notifier = Arc::new(Notifier::from_env());
        let handle = install_metrics();
        let stop = Stop::default();
        stop_on_signals(stop.clone());
        let scheduler = new_scheduler().await?;
        let listen_at = opened.connection.daemon.listen;
        let shared = worker::Shared {
            overrides,
            scheduler: scheduler.clone(),
            passes: Arc::new(tokio::sync::Semaphore::new(1)),
            notifier: Some(notifier.clone()),
            labelled: false,
            portals: worker::Portals::default(),
        };
        let (worker, handle_of) = Worker::start(opened, shared, stop.clone()).await?;
        let board = Board::default();
        board.insert(&name, handle_of.health.clone(), None);
        if let Some(addr) = listen_at {
            let shared = Shared {
                board: board.clone(),
                metrics: handle,
                many: false,
            };
            listen(addr, shared, handle_of.inbox.clone(), stop.clone()).await?;
        }
        if let Some(every) = notifier.watchdog() {
            spawn_watchdog(every, notifier.clone(), board.clone());
        }
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let control = handle_of.control.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                if control.send(Control::Reload).await.is_err() {
                    break;
                }
            }
        });
        tracing::info!("leadscored is running");
        worker.serve().await;
        notifier.stopping();
        shutdown_scheduler(scheduler).await;
        // A worker that lost its claim on shared state stopped the daemon:
        // that is no clean stop. Exit 75 so systemd starts it again, to
        // stand by until the connection is free.
        let lost = handle_of
            .health
            .lock()
            .map(|health| health.standby.clone())
            .unwrap_or_default();
        if let Some(why) = lost {
            return Err(CommandError::Stopped(format!(
                "the claim on this connection's shared state is lost ({why}); exiting to be started again"
            )));
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// The one scheduler every connection's schedules are jobs on.
async fn new_scheduler() -> Result<tokio_cron_scheduler::JobScheduler, CommandError> {
    let fail = |e: tokio_cron_scheduler::JobSchedulerError| {
        CommandError::Data(format!("cannot start the schedules: {e}"))
    };
    let scheduler = tokio_cron_scheduler::JobScheduler::new()
        .await
        .map_err(fail)?;
    scheduler.start().await.map_err(fail)?;
    Ok(scheduler)
}

async fn shutdown_scheduler(mut scheduler: tokio_cron_scheduler::JobScheduler) {
    if let Err(e) = scheduler.shutdown().await {
        tracing::debug!(error = %e, "scheduler shutdown");
    }
}

/// Pings systemd's watchdog while every running pass keeps its progress
/// deadline (every request, answer, retry sleep and pipeline step pushes
/// it out); a pass past its deadline is stuck, the pings stop at once, and
/// systemd restarts the daemon, which resumes the pass. With many
/// connections one stuck pass restarts them all: each resumes as after
/// any restart.
fn spawn_watchdog(every: Duration, notifier: Arc<Notifier>, board: Board) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every / 2);
        let mut warned = false;
        loop {
            tick.tick().await;
            let now = jiff::Timestamp::now();
            let stuck = board.healths().into_iter().find_map(|(name, health)| {
                let late = health.progress.as_ref()?.overdue(now)?;
                health.running.then_some((name, late))
            });
            match stuck {
                None => {
                    warned = false;
                    notifier.ping();
                }
                Some((connection, late)) if !warned => {
                    warned = true;
                    tracing::error!(
                        %connection,
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
