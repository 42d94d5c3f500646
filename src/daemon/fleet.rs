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
//!
//! Connections whose `[state]` is in PostgreSQL are shared with the other
//! instances serving the same files: every [`CLAIM_EVERY`] this one counts
//! the instances connected to the database, lets go of connections beyond
//! its share (connections ÷ instances, rounded up) after their pass, and
//! claims free ones up to it; the rest stand by (`/healthz` says so, not
//! degraded). A worker whose claim is lost stops and stands by again.

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

/// How often an instance that shares state in PostgreSQL counts the
/// instances and claims connections up to its share: the longest a
/// connection whose instance died waits for another.
const CLAIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// A running connection.
struct Member {
    path: PathBuf,
    handle: Handle,
    join: tokio::task::JoinHandle<()>,
    /// Its state is in PostgreSQL, shared with other instances.
    shared_state: bool,
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
    /// Connections in shared state that this instance does not work now
    /// (another does, or this one's share is full): claimed when free.
    standby: BTreeMap<String, PathBuf>,
    /// Connections given up to stay within the share, until their pass
    /// reaches a safe point and their claim is let go.
    releasing: BTreeMap<String, (PathBuf, tokio::task::JoinHandle<()>)>,
    /// This instance's session in the shared database, once a connection
    /// keeps its state there.
    presence: Option<crate::state::Presence>,
    /// Where the shared state is (the first connection that names one):
    /// the presence is joined again from it after the database was away.
    shared_store: Option<crate::config::StateStore>,
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
            standby: BTreeMap::new(),
            releasing: BTreeMap::new(),
            presence: None,
            shared_store: None,
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
        let mut claims = tokio::time::interval(CLAIM_EVERY);
        claims.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.stopped() => break,
                _ = claims.tick(), if fleet.shared_store.is_some() => fleet.rebalance().await,
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
        self.standby.retain(|name, _| files.contains_key(name));
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
        self.gauges();
    }

    fn gauges(&self) {
        metrics::gauge!("leadscored_connections").set(self.members.len() as f64);
        metrics::gauge!("leadscored_connections_not_loaded").set(self.failed.len() as f64);
        metrics::gauge!("leadscored_connections_standby").set(self.standby.len() as f64);
    }

    /// Shared state: counts the instances, lets go of connections beyond
    /// this instance's share (ceil(connections ÷ instances)) and claims
    /// free ones up to it. Workers that lost their claim stand by again.
    async fn rebalance(&mut self) {
        let ended: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join.is_finished())
            .map(|(name, _)| name.clone())
            .collect();
        for name in ended {
            if let Some(member) = self.members.remove(&name) {
                self.stand_by(
                    name,
                    member.path,
                    "the claim was lost; claimed again when free",
                );
            }
        }
        let released: Vec<String> = self
            .releasing
            .iter()
            .filter(|(_, (_, join))| join.is_finished())
            .map(|(name, _)| name.clone())
            .collect();
        for name in released {
            if let Some((path, _)) = self.releasing.remove(&name) {
                self.stand_by(name, path, "released to another instance's share");
            }
        }
        if self.presence.is_none()
            && let Some(store) = &self.shared_store
        {
            match crate::state::Presence::join(store) {
                Ok(presence) => self.presence = presence,
                Err(error) => {
                    tracing::warn!(%error, "the shared state's database is not reachable; claims wait");
                    self.unreachable(&error.to_string());
                    return;
                }
            }
        }
        let Some(presence) = &self.presence else {
            return;
        };
        let instances = match presence.instances() {
            Ok(n) => n as usize,
            Err(error) => {
                tracing::warn!(%error, "cannot count the instances sharing the state; claims wait");
                // Joined again at the next round (the database may be back).
                self.presence = None;
                self.unreachable(&error.to_string());
                return;
            }
        };
        let held: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.shared_state)
            .map(|(name, _)| name.clone())
            .collect();
        let total = held.len() + self.standby.len() + self.releasing.len();
        let share = total.div_ceil(instances.max(1));
        if held.len() > share {
            for name in held.iter().rev().take(held.len() - share) {
                if let Some(member) = self.members.remove(name) {
                    tracing::info!(connection = %name, share, instances, "over this instance's share; letting it go after its pass");
                    member.handle.stop.stop();
                    self.releasing
                        .insert(name.clone(), (member.path, member.join));
                }
            }
        } else {
            let mut room = share - held.len();
            // Instances start at different places, so they rarely race
            // for the same connection.
            let names: Vec<(String, PathBuf)> = self
                .standby
                .iter()
                .map(|(n, p)| (n.clone(), p.clone()))
                .collect();
            let offset = if names.is_empty() {
                0
            } else {
                fastrand::usize(..names.len())
            };
            for (name, path) in names.iter().cycle().skip(offset).take(names.len()) {
                if room == 0 {
                    break;
                }
                if self.open(name.clone(), path, true).await {
                    room -= 1;
                }
            }
        }
        self.gauges();
    }

    /// The shared database cannot be reached: no instance may be working
    /// the connections this one stands by for, so they are degraded (not
    /// standing by) until a round claims them again.
    fn unreachable(&mut self, why: &str) {
        let why = crate::crm::redact::string(format!(
            "the shared state's database is not reachable: {why}"
        ));
        for name in self.standby.keys() {
            let mut health = Health::new(
                jiff::Timestamp::now(),
                std::time::Duration::from_secs(90 * 60),
            );
            health.state_failure = Some(why.clone());
            self.board
                .insert(name, Arc::new(std::sync::Mutex::new(health)), None);
        }
    }

    /// Records that another instance works `name` (or will).
    fn stand_by(&mut self, name: String, path: PathBuf, why: &str) {
        self.board.insert(
            &name,
            Arc::new(std::sync::Mutex::new(Health::standby(
                jiff::Timestamp::now(),
                why,
            ))),
            None,
        );
        self.standby.insert(name, path);
    }

    /// Starts one connection; a file that does not load is reported. A
    /// connection in shared state stands by until a claim round.
    async fn start(&mut self, name: String, path: &Path) {
        if let Some(join) = self.stopping.remove(&name) {
            // The same file came back before its old worker let go of
            // the state: wait for it.
            let _ = join.await;
        }
        self.open(name, path, false).await;
    }

    /// Loads and opens a connection, and starts its worker; with shared
    /// state only when `claim` (else it stands by). True when it runs.
    async fn open(&mut self, name: String, path: &Path, claim: bool) -> bool {
        let label: Arc<str> = name.as_str().into();
        let span = tracing::info_span!("connection", name = %name);
        let (presence, shared_store) = (&mut self.presence, &mut self.shared_store);
        let (overrides, state_dir, shared) =
            (&self.shared.overrides, &self.state_dir, self.shared.clone());
        let started = async {
            let connection = worker::load(path, overrides)?;
            let shared_state = connection.state != crate::config::StateStore::File;
            if shared_state {
                if shared_store.is_none() {
                    *shared_store = Some(connection.state.clone());
                }
                if presence.is_none() {
                    *presence = crate::state::Presence::join(&connection.state)?;
                }
                if !claim {
                    return Ok(None);
                }
            }
            let opened = Opened::with(label.clone(), path, connection, state_dir)?;
            let (worker, handle) = Worker::start(opened, shared, Stop::default()).await?;
            Ok::<_, CommandError>(Some((worker, handle, shared_state)))
        }
        .instrument(span.clone());
        match labels::scope(label.clone(), started).await {
            Ok(Some((worker, handle, shared_state))) => {
                self.failed.remove(&name);
                self.standby.remove(&name);
                self.board
                    .insert(&name, handle.health.clone(), handle.inbox.clone());
                let join = tokio::spawn(labels::scope(label, worker.serve().instrument(span)));
                if shared_state {
                    tracing::info!(connection = %name, "claimed; this instance works it now");
                }
                self.members.insert(
                    name,
                    Member {
                        path: path.to_owned(),
                        handle,
                        join,
                        shared_state,
                    },
                );
                true
            }
            Ok(None) => {
                self.failed.remove(&name);
                self.stand_by(
                    name,
                    path.to_owned(),
                    "state shared in PostgreSQL: claimed at the next round if free and within this instance's share",
                );
                false
            }
            Err(CommandError::State(crate::state::StateError::Locked { .. }))
                if self.shared_store.is_some() =>
            {
                self.failed.remove(&name);
                self.stand_by(
                    name,
                    path.to_owned(),
                    "another instance works this connection",
                );
                false
            }
            Err(CommandError::State(error)) if self.shared_store.is_some() => {
                // The shared database is away (or refused this session):
                // degraded, and claimed again at a later round.
                let why = crate::crm::redact::string(error.to_string());
                tracing::error!(connection = %name, error = %why, "the shared state cannot be opened; trying again at the next round");
                let mut health = Health::new(
                    jiff::Timestamp::now(),
                    std::time::Duration::from_secs(90 * 60),
                );
                health.state_failure = Some(why);
                self.board
                    .insert(&name, Arc::new(std::sync::Mutex::new(health)), None);
                self.failed.remove(&name);
                self.standby.insert(name, path.to_owned());
                false
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
                self.standby.remove(&name);
                self.failed.insert(name, why);
                false
            }
        }
    }

    /// A line for systemd's status.
    fn status(&self) -> String {
        let standby = if self.standby.is_empty() {
            String::new()
        } else {
            format!(", standing by for {}", self.standby.len())
        };
        if self.failed.is_empty() {
            format!("serving {} connections{standby}", self.members.len())
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
        for (_, (_, join)) in std::mem::take(&mut self.releasing) {
            let _ = join.await;
        }
        for (_, member) in std::mem::take(&mut self.members) {
            let _ = member.join.await;
        }
        for (_, join) in std::mem::take(&mut self.stopping) {
            let _ = join.await;
        }
    }
}
