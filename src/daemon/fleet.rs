//! `leadscored run --connections DIR`: every connection file in a
//! directory, served from one process.
//!
//! Every `*.toml` directly in DIR is a connection, named by its file stem
//! (models and secrets live elsewhere, e.g. in a subdirectory). Each gets
//! a [`Worker`] task with its own CRM client, rate limits, daily budget,
//! schedules and state file (`<state-dir>/<name>.sqlite3`); a slow or
//! failing portal holds only its own permit while its pass runs. A file
//! that does not load at start is reported on `/healthz` and skipped; the
//! others run.
//!
//! SIGHUP re-reads the directory: new files start, files gone stop at
//! their pass's next safe point, and every other connection reloads as a
//! single daemon does (a bad new version keeps the old one running). The
//! daemon listens on `--listen` (default 127.0.0.1:9187); each file's
//! `[daemon] listen` is not used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::Instrument as _;

use super::labels;
use super::notify::Notifier;
use super::service::{Board, Health, Shared};
use super::worker::{self, Control, Handle, Opened, Overrides, Worker};
use super::{Options, install_metrics, listen, new_scheduler, runtime, shutdown_scheduler};
use crate::commands::CommandError;
use crate::sync::Stop;

/// Where the daemon listens serving a directory, unless `--listen` says.
const DEFAULT_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 9187);

/// The connection files in `dir`: `*.toml` directly in it, by name.
pub fn connection_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, CommandError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CommandError::NoInput {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let is_file = entry
            .file_type()
            .is_ok_and(|t| t.is_file() || t.is_symlink());
        if is_file && !name.starts_with('.') && path.extension().is_some_and(|e| e == "toml") {
            files.insert(name.to_owned(), path.clone());
        }
    }
    Ok(files)
}

/// A running connection.
struct Member {
    handle: Handle,
    join: tokio::task::JoinHandle<()>,
}

struct Fleet {
    dir: PathBuf,
    state_dir: PathBuf,
    shared: worker::Shared,
    board: Board,
    members: BTreeMap<String, Member>,
    /// Connections removed whose pass has not reached a safe point yet.
    stopping: BTreeMap<String, tokio::task::JoinHandle<()>>,
    /// Connections whose file did not load (tried again on SIGHUP).
    failed: BTreeMap<String, String>,
}

/// Serves every connection in `dir` until SIGTERM.
pub fn run(options: &Options, dir: &Path) -> Result<(), CommandError> {
    let files = connection_files(dir)?;
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let overrides = Overrides {
        crm_url: options.crm_url.clone(),
        listen: None,
    };
    let addr = options
        .listen
        .unwrap_or_else(|| std::net::SocketAddr::from(DEFAULT_LISTEN));
    runtime(threads)?.block_on(async move {
        let notifier = Arc::new(Notifier::from_env());
        let metrics = install_metrics();
        let stop = Stop::default();
        super::stop_on_signals(stop.clone());
        let scheduler = new_scheduler().await?;
        let board = Board::default();
        let mut fleet = Fleet {
            dir: dir.to_owned(),
            state_dir: options.state_dir.clone(),
            shared: worker::Shared {
                overrides,
                scheduler: scheduler.clone(),
                passes: Arc::new(tokio::sync::Semaphore::new(options.parallel.max(1))),
                notifier: None,
                labelled: true,
                portals: worker::Portals::default(),
            },
            board: board.clone(),
            members: BTreeMap::new(),
            stopping: BTreeMap::new(),
            failed: BTreeMap::new(),
        };
        let shared = Shared {
            board: board.clone(),
            metrics,
            many: true,
        };
        listen(addr, shared, None, stop.clone()).await?;
        fleet.apply(files).await;
        if let Some(every) = notifier.watchdog() {
            super::spawn_watchdog(every, notifier.clone(), board.clone());
        }
        tracing::info!(
            dir = %dir.display(),
            connections = fleet.members.len(),
            not_loaded = fleet.failed.len(),
            parallel = options.parallel,
            "leadscored is running"
        );
        notifier.ready(&fleet.status());
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        loop {
            tokio::select! {
                () = stop.stopped() => break,
                _ = hangups.recv() => {
                    notifier.reloading();
                    match connection_files(&fleet.dir) {
                        Ok(files) => fleet.apply(files).await,
                        Err(error) => tracing::error!(%error, "the connections directory was not re-read; every connection keeps running"),
                    }
                    notifier.ready(&fleet.status());
                }
            }
        }
        notifier.stopping();
        fleet.stop_all().await;
        shutdown_scheduler(scheduler).await;
        tracing::info!("stopped");
        Ok(())
    })
}

impl Fleet {
    /// Brings the running connections in line with `files`.
    async fn apply(&mut self, files: BTreeMap<String, PathBuf>) {
        let gone: Vec<String> = self
            .members
            .keys()
            .filter(|name| !files.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(member) = self.members.remove(&name) {
                tracing::info!(connection = %name, "connection file removed; stopping it at its next safe point");
                member.handle.stop.stop();
                self.stopping.insert(name.clone(), member.join);
            }
            self.board.remove(&name);
        }
        self.failed.retain(|name, _| files.contains_key(name));
        self.stopping.retain(|_, join| !join.is_finished());
        for (name, path) in files {
            match self.members.get(&name) {
                Some(member) => {
                    if member.handle.control.try_send(Control::Reload).is_err() {
                        tracing::info!(connection = %name, "a reload is already waiting");
                    }
                }
                None => self.start(name, &path).await,
            }
        }
        metrics::gauge!("leadscored_connections").set(self.members.len() as f64);
        metrics::gauge!("leadscored_connections_not_loaded").set(self.failed.len() as f64);
    }

    /// Starts one connection; a file that does not load is reported.
    async fn start(&mut self, name: String, path: &Path) {
        if let Some(join) = self.stopping.remove(&name) {
            // The same file came back before its old worker let go of
            // the state: wait for it.
            let _ = join.await;
        }
        let label: Arc<str> = name.as_str().into();
        let span = tracing::info_span!("connection", name = %name);
        let started = async {
            let opened =
                Opened::open(label.clone(), path, &self.shared.overrides, &self.state_dir)?;
            Worker::start(opened, self.shared.clone(), Stop::default()).await
        }
        .instrument(span.clone());
        match labels::scope(label.clone(), started).await {
            Ok((worker, handle)) => {
                self.failed.remove(&name);
                self.board
                    .insert(&name, handle.health.clone(), handle.inbox.clone());
                let join = tokio::spawn(labels::scope(label, worker.serve().instrument(span)));
                self.members.insert(name, Member { handle, join });
            }
            Err(error) => {
                let why = crate::crm::redact::string(error.to_string());
                tracing::error!(connection = %name, error = %why, "connection not started; the others run");
                self.board.insert(
                    &name,
                    Arc::new(std::sync::Mutex::new(Health::failed(
                        jiff::Timestamp::now(),
                        &why,
                    ))),
                    None,
                );
                self.failed.insert(name, why);
            }
        }
    }

    /// A line for systemd's status.
    fn status(&self) -> String {
        if self.failed.is_empty() {
            format!("serving {} connections", self.members.len())
        } else {
            format!(
                "serving {} connections; {} not loaded ({})",
                self.members.len(),
                self.failed.len(),
                self.failed.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    }

    /// Stops every connection at its next safe point and waits for them.
    async fn stop_all(&mut self) {
        for member in self.members.values() {
            member.handle.stop.stop();
        }
        for (_, member) in std::mem::take(&mut self.members) {
            let _ = member.join.await;
        }
        for (_, join) in std::mem::take(&mut self.stopping) {
            let _ = join.await;
        }
    }
}
