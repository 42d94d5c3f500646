//! A connection's state: the sync watermark, every record's scoring inputs
//! as last pulled (so a full rescore needs no re-pull), the values
//! leadscored last wrote, records whose write failed (reason and
//! attempts), and a run log. Kept in one SQLite file per connection (WAL,
//! `bundled`; the default), or in the connection's own schema of a
//! PostgreSQL database that several instances share (`[state] url`).
//! Every method is written once, as statements `db` runs on either.
//!
//! Invariants:
//! - The watermark moves only when a pass has written, or recorded as
//!   failed, everything it pulled (the engine calls [`State::finish_pull`]
//!   last). A crash before that repeats the pass; repeating is idempotent.
//! - A record's `seen_ms` is the CRM's modified time when leadscored last
//!   saw the record as it is: pulled, or just written by us (the time the
//!   CRM gave back). A later pull with the same modified time is an echo.
//! - One process holds a connection's state at a time: an exclusive lock
//!   on `<file>.lock`, released by the OS even on kill -9; in PostgreSQL an
//!   advisory lock held by the connection's session, with a fencing token
//!   every write checks (a stale owner's write is refused). Read-only
//!   opens (dry runs) take no lock.
//! - The schema is versioned (`PRAGMA user_version`, or the connection's
//!   row in `leadscored.connections`) and migrated forward in one
//!   transaction; a state from a newer leadscored is refused.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use rustc_hash::{FxHashMap, FxHashSet};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use crate::config::{SecretSource, StateStore};

use crate::crm::mapping::CompanyValues;
use crate::crm::{CrmCompany, CrmEvent, CrmRecord, StreamEvent, email_key};

mod db;
mod schema;

pub use db::DbError;
use db::{
    Arg, Cell, Cells, Done, Postgres, Row, Sql, Step, args, dialects, first_cell, key_count, sql,
};
use schema::{MIGRATIONS, POSTGRES_MIGRATIONS};

/// Why the state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error(
        "state {path} is in use by another leadscored (a daemon or a sync); runs never overlap"
    )]
    Locked { path: PathBuf },
    #[error("state {path} belongs to {found}, not to this connection ({expected})")]
    Foreign {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "state {path} was written by a newer leadscored (schema {found}, this one knows {known})"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("state {path}: {what}: {source}{hint}", hint = source.hint())]
    Db {
        path: PathBuf,
        /// What was being done, with the record id where there is one.
        what: String,
        source: Box<DbError>,
    },
}

impl StateError {
    /// The same error, naming the state where it did not yet (every error
    /// names it now; kept for the callers that add it).
    pub fn at(self, _path: &Path) -> StateError {
        self
    }

    /// Another instance took the connection over, or the session that held
    /// it is gone: the state must be reopened before any more work.
    pub fn lost(&self) -> bool {
        matches!(self, StateError::Db { source, .. } if source.lost())
    }
}

/// A stored event: model type, time (epoch ms), attributes.
type StoredEvent = (String, i64, Vec<(String, String)>);

/// A record as stored: what a rescore needs.
#[derive(Serialize, Deserialize)]
struct Stored {
    /// Modified time as pulled.
    m: i64,
    v: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    e: Vec<StoredEvent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    l: Vec<String>,
}

fn encode(record: &CrmRecord) -> String {
    let stored = Stored {
        m: record.modified_ms,
        v: record.values.clone(),
        e: record
            .events
            .iter()
            .map(|e| (e.kind.clone(), e.at_ms, e.attributes.clone()))
            .collect(),
        l: record.lists.clone(),
    };
    serde_json::to_string(&stored).unwrap_or_default()
}

/// A stored row as the record a rescore sees (pulled values overlaid with
/// what leadscored wrote since) and what leadscored wrote.
fn stored(id: String, inputs: &str, written: Option<&str>) -> Option<(CrmRecord, Written)> {
    let stored: Stored = serde_json::from_str(inputs).ok()?;
    let ours: Written = written
        .and_then(|w| serde_json::from_str(w).ok())
        .unwrap_or_default();
    let mut values = stored.v;
    values.extend(ours.iter().map(|(k, v)| (k.clone(), v.clone())));
    let record = CrmRecord {
        id,
        modified_ms: stored.m,
        values,
        events: stored
            .e
            .into_iter()
            .map(|(kind, at_ms, attributes)| CrmEvent {
                id: String::new(),
                kind,
                at_ms,
                attributes,
            })
            .collect(),
        lists: stored.l,
        detail_skipped: false,
    };
    Some((record, ours))
}

/// How far the engagement streams have been read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamsMark {
    /// Every occurrence up to this moment (epoch ms) is stored.
    pub until_ms: i64,
    /// Per event type, back to when (`i64::MIN`: all history).
    pub reach: BTreeMap<String, i64>,
}

/// Property → value leadscored last wrote.
pub type Written = BTreeMap<String, String>;

/// One finished write, as the state records it.
#[derive(Debug)]
pub struct WriteOutcome<'a> {
    pub id: &'a str,
    /// Everything leadscored has written to the record since it was last
    /// pulled (earlier writes and this one).
    pub written: &'a Written,
    /// The CRM's modified time after the write, when it said.
    pub stamp: Option<i64>,
}

/// One line of the run log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunLog {
    pub run_id: String,
    pub kind: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub outcome: Option<String>,
    pub pulled: u64,
    pub changed: u64,
    pub written: u64,
    pub failed: u64,
    pub calls: u64,
    pub watermark_ms: Option<i64>,
    pub message: Option<String>,
}

/// Where the state's statements run.
#[derive(Debug)]
enum Backend {
    Sqlite(Connection),
    Postgres(Postgres),
}

/// A connection's state: a SQLite file of its own, or its schema in a
/// shared PostgreSQL database.
#[derive(Debug)]
pub struct State {
    db: Backend,
    /// The file, or `postgres://host/db (connection NAME)`: what errors name.
    path: PathBuf,
    read_only: bool,
    /// Held for the state's lifetime; the OS drops it with the process.
    _lock: Option<File>,
}

/// A connection's state in PostgreSQL.
#[derive(Clone, Copy, Debug)]
pub struct PostgresTarget<'a> {
    /// `postgres://user@host:port/database` (no password: see `password`).
    pub url: &'a str,
    pub password: Option<&'a SecretSource>,
    /// The connection's name (its file's stem); its schema is found by it.
    pub connection: &'a str,
}

/// Key class of the advisory locks leadscored takes ("LS"), in the high
/// half of the key; the low half is the connection's id (0: creating the
/// shared tables).
const LOCK_CLASS: i64 = 0x4C53;

fn lock_key(id: i64) -> i64 {
    (LOCK_CLASS << 32) | (id & 0xFFFF_FFFF)
}

/// A connection's schema: by its id, so any name is safe.
fn schema_name(id: i64) -> String {
    format!("leadscored_c{id}")
}

/// The shared tables: which connections exist, their schema version, and
/// their fencing token (raised by every claim).
const POSTGRES_SHARED: &str = "CREATE SCHEMA IF NOT EXISTS leadscored;
     CREATE TABLE IF NOT EXISTS leadscored.connections (
         id BIGSERIAL PRIMARY KEY,
         name TEXT COLLATE \"C\" NOT NULL UNIQUE,
         token BIGINT NOT NULL DEFAULT 0,
         owner TEXT,
         claimed_at TIMESTAMPTZ,
         schema_version BIGINT NOT NULL DEFAULT 0
     );";

/// Who this process is, for the `owner` column and `application_name`.
pub fn instance_label() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned());
    format!("{host}:{}", std::process::id())
}

impl State {
    /// Opens (creating and migrating) the state at `path` for writing,
    /// taking the connection's lock. `identity` names the CRM account;
    /// a file made for another is refused.
    pub fn open(path: &Path, identity: &str) -> Result<State, StateError> {
        let fail = |message: String| StateError::Open {
            path: path.to_owned(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        let lock_path = lock_path(path);
        // The state holds e-mail addresses: only its owner may read it,
        // whatever the umask (SQLite gives its -wal and -shm files the
        // database file's mode).
        let lock = private_file()
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| fail(format!("cannot open {}: {e}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    path: path.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(fail(format!("cannot lock {}: {e}", lock_path.display())));
            }
        }
        if !path.exists() {
            private_file()
                .write(true)
                .open(path)
                .map_err(|e| fail(format!("cannot create: {e}")))?;
        }
        let db = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| fail(e.to_string()))?;
        db.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| fail(e.to_string()))?;
        db.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| fail(e.to_string()))?;
        let mut state = State {
            db: Backend::Sqlite(db),
            path: path.to_owned(),
            read_only: false,
            _lock: Some(lock),
        };
        state.migrate_sqlite()?;
        state.claim(identity)?;
        Ok(state)
    }

    /// Opens existing state to read (a dry run beside a running daemon);
    /// `None` when there is none yet.
    pub fn open_read_only(path: &Path, identity: &str) -> Result<Option<State>, StateError> {
        if !path.exists() {
            return Ok(None);
        }
        let fail = |message: String| StateError::Open {
            path: path.to_owned(),
            message,
        };
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail(e.to_string()))?;
        db.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| fail(e.to_string()))?;
        let version: i64 = db
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| fail(e.to_string()))?;
        let state = State {
            db: Backend::Sqlite(db),
            path: path.to_owned(),
            read_only: true,
            _lock: None,
        };
        if version as usize != MIGRATIONS.len() {
            return Err(fail(format!(
                "schema version {version}; run a sync or the daemon once to migrate it"
            )));
        }
        state.check_identity(identity)?;
        Ok(Some(state))
    }

    /// Opens a connection's state in PostgreSQL for writing: its own
    /// session takes the connection's advisory lock (held until the
    /// session ends, which a killed process's does at once), raises its
    /// fencing token, creates or migrates its schema. Another instance
    /// holding it gives [`StateError::Locked`].
    pub fn open_postgres(target: PostgresTarget<'_>, identity: &str) -> Result<State, StateError> {
        let (mut state, id) = State::connect_postgres(target)?;
        let locked = state
            .query(
                sql("SELECT pg_try_advisory_lock(?1)"),
                args![lock_key(id)],
                || "claiming the connection".to_owned(),
            )?
            .pop()
            .and_then(|mut row| row.pop())
            .is_some_and(|cell| cell.int() != 0);
        if !locked {
            return Err(StateError::Locked { path: state.path });
        }
        let token = state
            .query(
                sql("UPDATE leadscored.connections SET token = token + 1, owner = ?2, claimed_at = now()
                     WHERE id = ?1 RETURNING token"),
                args![id, instance_label()],
                || "raising the fencing token".to_owned(),
            )?
            .pop()
            .and_then(|mut row| row.pop())
            .map(|cell| cell.int())
            .unwrap_or_default();
        state.migrate_postgres(id)?;
        if let Backend::Postgres(db) = &state.db {
            db.fence(id, token);
        }
        state.read_only = false;
        state.claim(identity)?;
        tracing::debug!(connection = target.connection, token, "claimed");
        Ok(state)
    }

    /// Opens a connection's state in PostgreSQL to read, without its lock;
    /// `None` when it has none yet.
    pub fn open_postgres_read_only(
        target: PostgresTarget<'_>,
        identity: &str,
    ) -> Result<Option<State>, StateError> {
        let (state, id) = State::connect_postgres(target)?;
        let version = state
            .query(
                sql("SELECT schema_version FROM leadscored.connections WHERE id = ?1"),
                args![id],
                || "reading the schema version".to_owned(),
            )?
            .pop()
            .and_then(|mut row| row.pop())
            .map(|cell| cell.int())
            .unwrap_or_default();
        if version == 0 {
            return Ok(None);
        }
        if version as usize != POSTGRES_MIGRATIONS.len() {
            return Err(StateError::Open {
                path: state.path,
                message: format!(
                    "schema version {version}; run a sync or the daemon once to migrate it"
                ),
            });
        }
        state.check_identity(identity)?;
        Ok(Some(state))
    }

    /// A session for `target`, read-only until claimed, with the shared
    /// tables in place and the connection's row and schema search path.
    fn connect_postgres(target: PostgresTarget<'_>) -> Result<(State, i64), StateError> {
        let (db, where_) = postgres_session(target.url, target.password, target.connection)?;
        let fail = |message: String| StateError::Open {
            path: where_.clone(),
            message,
        };
        let state = State {
            db: Backend::Postgres(db),
            path: where_.clone(),
            read_only: true,
            _lock: None,
        };
        let done = state.run(
            vec![
                // Instances starting together create the shared tables
                // once: the first takes this lock, the others then find
                // them.
                Step::Exec(sql("SELECT pg_advisory_xact_lock(?1)"), args![lock_key(0)]),
                Step::Script(POSTGRES_SHARED.to_owned()),
                Step::Exec(
                    sql("INSERT INTO leadscored.connections (name) VALUES (?1) ON CONFLICT (name) DO NOTHING"),
                    args![target.connection],
                ),
                Step::Query(
                    sql("SELECT id FROM leadscored.connections WHERE name = ?1"),
                    args![target.connection],
                ),
            ],
            true,
            || "preparing the shared tables".to_owned(),
        )?;
        let id = done
            .into_iter()
            .last()
            .and_then(|d| d.rows().pop())
            .and_then(|mut row| row.pop())
            .map(|cell| cell.int())
            .ok_or_else(|| {
                fail("the connection has no row in leadscored.connections".to_owned())
            })?;
        state.run(
            vec![Step::Script(format!(
                "SET search_path TO {}",
                schema_name(id)
            ))],
            false,
            || "choosing the connection's schema".to_owned(),
        )?;
        Ok((state, id))
    }

    /// Gives the page cache back (SQLite's `shrink_memory`): a daemon
    /// serving many connections calls it after each pass, so only the
    /// connections whose pass runs hold a cache.
    pub fn release_memory(&self) {
        if let Backend::Sqlite(db) = &self.db
            && let Err(error) = db.execute_batch("PRAGMA shrink_memory")
        {
            tracing::debug!(%error, "shrink_memory");
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Runs `steps` (in one transaction when `transaction`); an error
    /// names the state and `what` was being done.
    fn run(
        &self,
        steps: Vec<Step>,
        transaction: bool,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<Done>, StateError> {
        let writes = steps.iter().any(Step::writes);
        let result = match &self.db {
            Backend::Sqlite(db) => db::run_sqlite(db, steps, transaction),
            Backend::Postgres(db) => db.run(steps, transaction, writes),
        };
        result.map_err(|source| StateError::Db {
            path: self.path.clone(),
            what: what(),
            source: Box::new(source),
        })
    }

    fn query(
        &self,
        sql: Sql,
        args: Vec<Arg>,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<Row>, StateError> {
        Ok(self
            .run(vec![Step::Query(sql, args)], false, what)?
            .pop()
            .map(Done::rows)
            .unwrap_or_default())
    }

    /// The first column of the first row, if any.
    fn value(
        &self,
        sql: Sql,
        args: Vec<Arg>,
        what: impl FnOnce() -> String,
    ) -> Result<Option<Cell>, StateError> {
        Ok(first_cell(self.query(sql, args, what)?))
    }

    fn exec(
        &self,
        sql: Sql,
        args: Vec<Arg>,
        what: impl FnOnce() -> String,
    ) -> Result<u64, StateError> {
        Ok(self
            .run(vec![Step::Exec(sql, args)], false, what)?
            .pop()
            .map(Done::count)
            .unwrap_or_default())
    }

    fn migrate_sqlite(&mut self) -> Result<(), StateError> {
        let Backend::Sqlite(db) = &mut self.db else {
            return Ok(());
        };
        let fail = |e: rusqlite::Error| StateError::Db {
            path: self.path.clone(),
            what: "migrating the schema".to_owned(),
            source: Box::new(DbError::from(e)),
        };
        let version: i64 = db
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(fail)?;
        if version as usize > MIGRATIONS.len() {
            return Err(StateError::TooNew {
                path: self.path.clone(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        let tx = db.transaction().map_err(fail)?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(fail)?;
            tx.pragma_update(None, "user_version", (index + 1) as i64)
                .map_err(fail)?;
        }
        tx.commit().map_err(fail)?;
        Ok(())
    }

    /// Creates or migrates the connection's schema (under its lock, so no
    /// other instance migrates it at the same time).
    fn migrate_postgres(&mut self, id: i64) -> Result<(), StateError> {
        let version = self
            .value(
                sql("SELECT schema_version FROM leadscored.connections WHERE id = ?1"),
                args![id],
                || "reading the schema version".to_owned(),
            )?
            .map(|cell| cell.int())
            .unwrap_or_default();
        if version as usize > POSTGRES_MIGRATIONS.len() {
            return Err(StateError::TooNew {
                path: self.path.clone(),
                found: version,
                known: POSTGRES_MIGRATIONS.len(),
            });
        }
        let schema = schema_name(id);
        let mut steps = vec![Step::Script(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        ))];
        for text in POSTGRES_MIGRATIONS.iter().skip(version as usize) {
            steps.push(Step::Script((*text).to_owned()));
        }
        steps.push(Step::Exec(
            sql("UPDATE leadscored.connections SET schema_version = ?2 WHERE id = ?1"),
            args![id, POSTGRES_MIGRATIONS.len() as i64],
        ));
        self.run(steps, true, || "migrating the schema".to_owned())?;
        Ok(())
    }

    fn check_identity(&self, identity: &str) -> Result<bool, StateError> {
        match self.meta("identity")? {
            Some(found) if found != identity => Err(StateError::Foreign {
                path: self.path.clone(),
                found,
                expected: identity.to_owned(),
            }),
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    fn claim(&mut self, identity: &str) -> Result<(), StateError> {
        if !self.check_identity(identity)? {
            self.set_meta("identity", identity)?;
        }
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        Ok(self
            .value(
                sql("SELECT value FROM meta WHERE key = ?1"),
                args![key],
                || format!("reading {key}"),
            )?
            .and_then(Cell::opt_text))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StateError> {
        self.exec(SET_META, args![key, value], || format!("saving {key}"))?;
        Ok(())
    }

    /// The CRM account the state was made with, as the CRM itself named it
    /// (HubSpot's portal id, Pardot's account): recorded at first contact.
    pub fn portal(&self) -> Result<Option<String>, StateError> {
        self.meta("portal")
    }

    /// Checks that the CRM answering now is the account this state was made
    /// with, recording it at first contact (a state from before this check
    /// takes the first account it meets). A state made for another account
    /// is refused before anything is written.
    pub fn claim_portal(&mut self, portal: &str) -> Result<(), StateError> {
        match self.portal()? {
            Some(found) if found != portal => Err(StateError::Foreign {
                path: self.path.clone(),
                found,
                expected: format!(
                    "{portal}, which the CRM answers as now; point this connection at its own state (--state-dir), or the CRM URL and token at the right account"
                ),
            }),
            Some(_) => Ok(()),
            None if self.read_only => Ok(()),
            None => self.set_meta("portal", portal),
        }
    }

    /// Calls this connection spent on the account day `day` (YYYY-MM-DD),
    /// by every process that used this state.
    pub fn calls_on(&self, day: &str) -> Result<u64, StateError> {
        Ok(self
            .value(
                sql("SELECT calls FROM budget WHERE day = ?1"),
                args![day],
                || "reading the daily budget".to_owned(),
            )?
            .map(|cell| cell.int())
            .unwrap_or(0) as u64)
    }

    /// Records that `calls` were spent on `day` (never less than recorded),
    /// forgetting days more than a week old.
    pub fn save_calls(&self, day: &str, calls: u64) -> Result<(), StateError> {
        if self.read_only {
            return Ok(());
        }
        self.run(
            vec![
                Step::Exec(
                    dialects(
                        "INSERT INTO budget (day, calls) VALUES (?1, ?2)
                         ON CONFLICT (day) DO UPDATE SET calls = max(calls, excluded.calls)",
                        "INSERT INTO budget (day, calls) VALUES ($1, $2)
                         ON CONFLICT (day) DO UPDATE SET calls = greatest(budget.calls, excluded.calls)",
                    ),
                    args![day, calls],
                ),
                Step::Exec(
                    dialects(
                        "DELETE FROM budget WHERE day < date(?1, '-7 days')",
                        "DELETE FROM budget WHERE day < to_char(CAST($1 AS TEXT)::date - 7, 'YYYY-MM-DD')",
                    ),
                    args![day],
                ),
            ],
            true,
            || "saving the daily budget".to_owned(),
        )?;
        Ok(())
    }

    /// The fingerprint of the model and outputs stored records were last
    /// scored with; a changed one makes the next pass rescore them all.
    pub fn model_fingerprint(&self) -> Result<Option<String>, StateError> {
        self.meta("model")
    }

    /// Where the last complete pull reached (epoch ms): the next
    /// incremental pull starts there.
    pub fn watermark(&self) -> Result<Option<i64>, StateError> {
        Ok(self.meta("watermark_ms")?.and_then(|v| v.parse().ok()))
    }

    /// What the stored inputs were pulled for (fields and event sources);
    /// stored inputs made for another set cannot be rescored.
    pub fn fingerprint(&self) -> Result<Option<String>, StateError> {
        self.meta("fingerprint")
    }

    /// Starts over for inputs of a new `fingerprint`: the watermark goes,
    /// and no stored record counts as seen (their inputs are stale), until
    /// pulls store them again.
    pub fn restart_inputs(&mut self, fingerprint: &str) -> Result<(), StateError> {
        let plain = |text: &'static str| Step::Exec(sql(text), vec![]);
        self.run(
            vec![
                plain("DELETE FROM meta WHERE key = 'watermark_ms'"),
                Step::Exec(SET_META, args!["fingerprint", fingerprint]),
                plain("UPDATE records SET seen_ms = -1"),
                // Companies and list members read for other fields or lists.
                plain("DELETE FROM companies"),
                plain("DELETE FROM lists"),
                plain("DELETE FROM list_members"),
                // Engagement read for other event sources.
                plain("DELETE FROM events"),
                plain("DELETE FROM meta WHERE key = 'streams_ms'"),
            ],
            true,
            || "starting over for new inputs".to_owned(),
        )?;
        Ok(())
    }

    /// Saves pulled companies (the values the model reads from them).
    pub fn save_companies(&mut self, companies: &[CrmCompany]) -> Result<(), StateError> {
        if companies.is_empty() {
            return Ok(());
        }
        let rows = companies
            .iter()
            .map(|company| {
                let values = serde_json::to_string(&company.values).unwrap_or_default();
                args![&company.id, company.modified_ms, values]
            })
            .collect();
        self.run(
            vec![Step::Each(
                sql("INSERT INTO companies (id, seen_ms, inputs) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET seen_ms = excluded.seen_ms, inputs = excluded.inputs"),
                rows,
            )],
            true,
            || "saving pulled companies".to_owned(),
        )?;
        Ok(())
    }

    /// A stored company's values.
    pub fn company(&self, id: &str) -> Result<Option<CompanyValues>, StateError> {
        let row = self.value(
            sql("SELECT inputs FROM companies WHERE id = ?1"),
            args![id],
            || format!("reading stored company {id}"),
        )?;
        Ok(row
            .and_then(Cell::opt_text)
            .and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// The stored values of a record's company, when it has one stored.
    pub fn company_of(&self, record: &CrmRecord) -> Result<Option<CompanyValues>, StateError> {
        match record.company_id() {
            Some(id) => self.company(id),
            None => Ok(None),
        }
    }

    /// What scoring a stored record needs besides its own values: its
    /// lists as last read (when the state holds lists) and the occurrences
    /// the event store holds for it (streams) go into `record`, and its
    /// company's values come back.
    pub fn context(&self, record: &mut CrmRecord) -> Result<Option<CompanyValues>, StateError> {
        let email = record.values.get("email").cloned();
        let stored = self.events_of(&record.id, email.as_deref())?;
        record.add_events(stored);
        let what = || format!("reading the lists of record {}", record.id);
        let has_lists = self
            .value(sql("SELECT EXISTS (SELECT 1 FROM lists)"), vec![], what)?
            .is_some_and(|cell| cell.int() != 0);
        if has_lists {
            let rows = self.query(
                sql("SELECT list FROM list_members WHERE record = ?1 ORDER BY list"),
                args![&record.id],
                what,
            )?;
            record.lists = texts(rows);
        }
        self.company_of(record)
    }

    /// What leadscored last wrote to a company's output properties.
    pub fn company_written(&self, id: &str) -> Result<BTreeMap<String, String>, StateError> {
        let row = self.value(
            sql("SELECT written FROM company_outputs WHERE id = ?1"),
            args![id],
            || format!("reading what was written to company {id}"),
        )?;
        Ok(row
            .and_then(Cell::opt_text)
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default())
    }

    /// Records what was written to companies (after the CRM took it).
    pub fn save_company_written(
        &mut self,
        written: &[(String, BTreeMap<String, String>)],
    ) -> Result<(), StateError> {
        if written.is_empty() {
            return Ok(());
        }
        let rows = written
            .iter()
            .map(|(id, values)| args![id, serde_json::to_string(values).unwrap_or_default()])
            .collect();
        self.run(
            vec![Step::Each(
                sql("INSERT INTO company_outputs (id, written) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET written = excluded.written"),
                rows,
            )],
            true,
            || "saving what was written to companies".to_owned(),
        )?;
        Ok(())
    }

    /// Every stored company id.
    pub fn company_ids(&self) -> Result<FxHashSet<String>, StateError> {
        let rows = self.query(sql("SELECT id FROM companies"), vec![], || {
            "reading stored companies".to_owned()
        })?;
        Ok(texts(rows).into_iter().collect())
    }

    /// Every company some stored record belongs to.
    pub fn record_companies(&self) -> Result<Vec<String>, StateError> {
        let rows = self.query(
            sql("SELECT DISTINCT company FROM records WHERE company IS NOT NULL ORDER BY company"),
            vec![],
            || "reading the records' companies".to_owned(),
        )?;
        Ok(texts(rows))
    }

    /// Stored records whose company is one of `companies`.
    pub fn records_of_companies(&self, companies: &[String]) -> Result<Vec<String>, StateError> {
        let done = self.run(
            vec![Step::QueryEach(
                sql("SELECT id FROM records WHERE company = ?1"),
                companies.iter().map(|c| args![c]).collect(),
            )],
            false,
            || "reading the records of companies".to_owned(),
        )?;
        Ok(texts(done.into_iter().flat_map(Done::rows).collect()))
    }

    /// A list as last read: its CRM id and change key.
    pub fn list(&self, name: &str) -> Result<Option<(String, String)>, StateError> {
        let rows = self.query(
            sql("SELECT list_id, change_key FROM lists WHERE name = ?1"),
            args![name],
            || format!("reading list {name:?}"),
        )?;
        Ok(rows.into_iter().next().map(|row| {
            let mut cells = Cells::of(row);
            (cells.take().text(), cells.take().text())
        }))
    }

    /// A list's stored members.
    pub fn list_members(&self, name: &str) -> Result<FxHashSet<String>, StateError> {
        let rows = self.query(
            sql("SELECT record FROM list_members WHERE list = ?1"),
            args![name],
            || format!("reading the members of list {name:?}"),
        )?;
        Ok(texts(rows).into_iter().collect())
    }

    /// Replaces a list's stored members and change key.
    pub fn save_list(
        &mut self,
        name: &str,
        list_id: &str,
        change_key: &str,
        members: &FxHashSet<String>,
    ) -> Result<(), StateError> {
        self.run(
            vec![
                Step::Exec(sql("DELETE FROM list_members WHERE list = ?1"), args![name]),
                Step::Each(
                    sql("INSERT INTO list_members (list, record) VALUES (?1, ?2)"),
                    members.iter().map(|m| args![name, m]).collect(),
                ),
                Step::Exec(
                    sql("INSERT INTO lists (name, list_id, change_key) VALUES (?1, ?2, ?3)
                         ON CONFLICT (name) DO UPDATE SET list_id = excluded.list_id, change_key = excluded.change_key"),
                    args![name, list_id, change_key],
                ),
            ],
            true,
            || format!("saving the members of list {name:?}"),
        )?;
        Ok(())
    }

    /// Marks a pull complete: everything up to `watermark` is written or
    /// recorded as failed, for inputs of `fingerprint`, scored with the
    /// model of `model`.
    pub fn finish_pull(
        &mut self,
        watermark: i64,
        fingerprint: &str,
        model: &str,
    ) -> Result<(), StateError> {
        self.run(
            vec![Step::Each(
                SET_META,
                vec![
                    args!["watermark_ms", watermark.to_string()],
                    args!["fingerprint", fingerprint],
                    args!["model", model],
                ],
            )],
            true,
            || "finishing the pass".to_owned(),
        )?;
        Ok(())
    }

    /// How far the engagement streams have been read: up to when, and
    /// for each event type back to when.
    pub fn streams_mark(&self) -> Result<Option<StreamsMark>, StateError> {
        Ok(self
            .meta("streams_ms")?
            .and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Records how far the engagement streams have been read.
    pub fn set_streams_mark(&self, mark: &StreamsMark) -> Result<(), StateError> {
        self.set_meta(
            "streams_ms",
            &serde_json::to_string(mark).unwrap_or_default(),
        )
    }

    /// Stores occurrences read from a stream or with a record's detail,
    /// each once; returns the keys (record ids, `email:` addresses) that
    /// got one they did not have.
    pub fn save_events(&mut self, events: &[StreamEvent]) -> Result<Vec<String>, StateError> {
        let rows = events
            .iter()
            .map(|found| {
                let event = &found.event;
                let attributes = serde_json::to_string(&event.attributes).unwrap_or_default();
                args![&found.key, &event.id, &event.kind, event.at_ms, attributes]
            })
            .collect();
        let added = self
            .run(
                vec![Step::Each(
                    sql("INSERT INTO events (key, id, kind, at_ms, attributes) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT DO NOTHING"),
                    rows,
                )],
                true,
                || format!("saving {} engagement events", events.len()),
            )?
            .pop()
            .map(Done::counts)
            .unwrap_or_default();
        let mut fresh: Vec<String> = events
            .iter()
            .zip(added)
            .filter(|(_, added)| *added > 0)
            .map(|(found, _)| found.key.clone())
            .collect();
        fresh.sort();
        fresh.dedup();
        Ok(fresh)
    }

    /// The stored occurrences of a record: those stored under its id and
    /// under its email address, each occurrence once.
    pub fn events_of(&self, id: &str, email: Option<&str>) -> Result<Vec<CrmEvent>, StateError> {
        let by_email = email.map(email_key).unwrap_or_default();
        let rows = self.query(
            sql("SELECT id, kind, at_ms, attributes FROM events WHERE key = ?1 OR key = ?2"),
            args![id, by_email],
            || format!("reading the events of record {id}"),
        )?;
        let mut seen: FxHashSet<(String, String)> = FxHashSet::default();
        let mut out = Vec::new();
        for row in rows {
            let mut cells = Cells::of(row);
            let mut next = || cells.take();
            let (event_id, kind) = (next().text(), next().text());
            let (at_ms, attributes) = (next().int(), next().text());
            if !event_id.is_empty() && !seen.insert((event_id.clone(), kind.clone())) {
                continue;
            }
            out.push(CrmEvent {
                id: event_id,
                kind,
                at_ms,
                attributes: serde_json::from_str(&attributes).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Stored records that the keys name: by id, or by email address.
    pub fn records_of_keys(&self, keys: &[String]) -> Result<Vec<String>, StateError> {
        let (emails, ids): (Vec<&String>, Vec<&String>) =
            keys.iter().partition(|key| key.starts_with("email:"));
        let done = self.run(
            vec![
                Step::QueryEach(
                    sql("SELECT id FROM records WHERE id = ?1"),
                    ids.into_iter().map(|k| args![k]).collect(),
                ),
                Step::QueryEach(
                    sql("SELECT id FROM records WHERE email = ?1"),
                    emails.into_iter().map(|k| args![k]).collect(),
                ),
            ],
            false,
            || "finding the records of new events".to_owned(),
        )?;
        let mut out = texts(done.into_iter().flat_map(Done::rows).collect());
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Stored occurrences by event type.
    pub fn event_counts(&self) -> Result<BTreeMap<String, u64>, StateError> {
        let rows = self.query(
            sql("SELECT kind, count(*) FROM events GROUP BY kind"),
            vec![],
            || "counting stored events".to_owned(),
        )?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let (kind, count) = key_count(row);
                (kind, count as u64)
            })
            .collect())
    }

    /// How many stored occurrences lie in `[from_ms, until_ms]` (to
    /// estimate what reading a stream window costs).
    pub fn events_between(&self, from_ms: i64, until_ms: i64) -> Result<u64, StateError> {
        Ok(self
            .value(
                sql("SELECT count(*) FROM events WHERE at_ms >= ?1 AND at_ms <= ?2"),
                args![from_ms, until_ms],
                || "counting stored events".to_owned(),
            )?
            .map(|cell| cell.int())
            .unwrap_or(0) as u64)
    }

    /// Records seen at or after `since_ms`: id → modified time then. A pull
    /// that finds a record at that same time finds it as we left it.
    pub fn seen_since(&self, since_ms: i64) -> Result<FxHashMap<String, i64>, StateError> {
        let rows = self.query(
            sql("SELECT id, seen_ms FROM records WHERE seen_ms >= ?1"),
            args![since_ms],
            || "reading the records seen lately".to_owned(),
        )?;
        Ok(rows.into_iter().map(key_count).collect())
    }

    /// A record's stored inputs (values with what leadscored wrote since),
    /// and what it wrote.
    pub fn record(&self, id: &str) -> Result<Option<(CrmRecord, Written)>, StateError> {
        let rows = self.query(
            sql("SELECT inputs, written FROM records WHERE id = ?1"),
            args![id],
            || format!("reading stored record {id}"),
        )?;
        Ok(rows.into_iter().next().and_then(|row| {
            let mut cells = Cells::of(row);
            let (inputs, written) = (cells.take().text(), cells.take().opt_text());
            stored(id.to_owned(), &inputs, written.as_deref())
        }))
    }

    /// Stored records after `after` in id order, at most `limit`, for a
    /// rescore. Rows that no longer decode are skipped (the next full pull
    /// replaces them).
    pub fn records_after(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(CrmRecord, Written)>, StateError> {
        let rows = self.query(
            sql("SELECT id, inputs, written FROM records WHERE id > ?1 ORDER BY id LIMIT ?2"),
            args![after, limit as i64],
            || "reading stored records".to_owned(),
        )?;
        let mut out = Vec::new();
        for row in rows {
            let mut cells = Cells::of(row);
            let (id, inputs) = (cells.take().text(), cells.take().text());
            let written = cells.take().opt_text();
            match stored(id.clone(), &inputs, written.as_deref()) {
                Some(found) => out.push(found),
                None => tracing::warn!(record = %id, "stored inputs do not decode; skipped"),
            }
        }
        Ok(out)
    }

    /// Records per value of each of `properties`, as the CRM holds them
    /// (the values last pulled, overlaid with what leadscored wrote since);
    /// empty values count as `(empty)`.
    pub fn distribution(
        &self,
        properties: &[&str],
    ) -> Result<BTreeMap<String, BTreeMap<String, u64>>, StateError> {
        let statement = dialects(
            "SELECT coalesce(nullif(coalesce(json_extract(written, ?1), json_extract(inputs, ?2)), ''), '(empty)') AS value,
                    count(*)
             FROM records GROUP BY value",
            "SELECT coalesce(nullif(coalesce(
                        jsonb_path_query_first(written::jsonb, CAST($1 AS TEXT)::jsonpath) #>> '{}',
                        jsonb_path_query_first(inputs::jsonb, CAST($2 AS TEXT)::jsonpath) #>> '{}'), ''), '(empty)') AS value,
                    count(*)
             FROM records GROUP BY value",
        );
        let mut out = BTreeMap::new();
        for property in properties {
            // `$."name"`: a JSON path both databases read alike.
            let key = serde_json::to_string(property).unwrap_or_default();
            let rows = self.query(
                statement,
                args![format!("$.{key}"), format!("$.v.{key}")],
                || format!("counting values of {property}"),
            )?;
            let counts: &mut BTreeMap<String, u64> = out.entry((*property).to_owned()).or_default();
            for row in rows {
                let (value, count) = key_count(row);
                counts.insert(value, count as u64);
            }
        }
        Ok(out)
    }

    /// How many records are stored.
    pub fn count(&self) -> Result<u64, StateError> {
        Ok(self
            .value(sql("SELECT count(*) FROM records"), vec![], || {
                "counting stored records".to_owned()
            })?
            .map(|cell| cell.int())
            .unwrap_or(0) as u64)
    }

    /// Saves a page of pulled records (their inputs, as the CRM has them
    /// now; earlier writes are in those values), and returns the companies
    /// some of them left (their scores lost a person).
    pub fn save_pulled(&mut self, records: &[CrmRecord]) -> Result<Vec<String>, StateError> {
        let done = self.run(
            vec![
                Step::QueryEach(
                    sql("SELECT company FROM records WHERE id = ?1"),
                    records.iter().map(|r| args![&r.id]).collect(),
                ),
                Step::Each(
                    sql("INSERT INTO records (id, seen_ms, inputs, written, company, email) VALUES (?1, ?2, ?3, NULL, ?4, ?5)
                         ON CONFLICT (id) DO UPDATE SET
                             seen_ms = excluded.seen_ms, inputs = excluded.inputs, written = NULL,
                             company = excluded.company, email = excluded.email"),
                    records
                        .iter()
                        .map(|record| {
                            args![
                                &record.id,
                                record.modified_ms,
                                encode(record),
                                record.company_id(),
                                record.values.get("email").map(|e| email_key(e))
                            ]
                        })
                        .collect(),
                ),
            ],
            true,
            || match records {
                [one] => format!("saving pulled record {}", one.id),
                _ => format!(
                    "saving {} pulled records ({}…)",
                    records.len(),
                    records.first().map(|r| r.id.as_str()).unwrap_or_default()
                ),
            },
        )?;
        let before = done
            .into_iter()
            .next()
            .map(Done::rows_each)
            .unwrap_or_default();
        let mut left = Vec::new();
        for (record, rows) in records.iter().zip(before) {
            let old = first_cell(rows).and_then(Cell::opt_text);
            if let Some(old) = old.filter(|old| Some(old.as_str()) != record.company_id()) {
                left.push(old);
            }
        }
        Ok(left)
    }

    /// Drops records the CRM deleted or merged away: their stored inputs,
    /// failures and per-record occurrences, so no later pass rescores or
    /// writes them. Returns the companies they belonged to.
    pub fn forget(&mut self, ids: &[String]) -> Result<Vec<String>, StateError> {
        let each =
            |text: &'static str| Step::Each(sql(text), ids.iter().map(|id| args![id]).collect());
        let done = self.run(
            vec![
                Step::QueryEach(
                    sql("SELECT company FROM records WHERE id = ?1"),
                    ids.iter().map(|id| args![id]).collect(),
                ),
                each("DELETE FROM records WHERE id = ?1"),
                each("DELETE FROM failed WHERE id = ?1"),
                each("DELETE FROM events WHERE key = ?1"),
                each("DELETE FROM list_members WHERE record = ?1"),
            ],
            true,
            || format!("forgetting {} deleted records", ids.len()),
        )?;
        Ok(texts(
            done.into_iter().next().map(Done::rows).unwrap_or_default(),
        ))
    }

    /// Records a write's outcome: written records get their values and new
    /// modified time and leave the failed list; failed ones enter it (or
    /// count one more attempt); `settled` ones (nothing to write any more)
    /// leave it.
    pub fn save_writes(
        &mut self,
        written: &[WriteOutcome<'_>],
        failed: &[(String, String)],
        settled: &[String],
        now_ms: i64,
    ) -> Result<(), StateError> {
        let cleared = written
            .iter()
            .map(|w| args![w.id])
            .chain(settled.iter().map(|id| args![id]))
            .collect();
        self.run(
            vec![
                Step::Each(
                    sql("UPDATE records SET written = ?2, seen_ms = coalesce(?3, seen_ms) WHERE id = ?1"),
                    written
                        .iter()
                        .map(|outcome| {
                            let json = serde_json::to_string(outcome.written).unwrap_or_default();
                            args![outcome.id, json, outcome.stamp]
                        })
                        .collect(),
                ),
                Step::Each(sql("DELETE FROM failed WHERE id = ?1"), cleared),
                Step::Each(
                    sql("INSERT INTO failed (id, reason, attempts, first_ms, last_ms) VALUES (?1, ?2, 1, ?3, ?3)
                         ON CONFLICT (id) DO UPDATE SET
                             reason = excluded.reason, attempts = failed.attempts + 1, last_ms = excluded.last_ms"),
                    failed
                        .iter()
                        .map(|(id, reason)| args![id, reason, now_ms])
                        .collect(),
                ),
            ],
            true,
            || {
                format!(
                    "recording writes ({} written, {} failed: {})",
                    written.len(),
                    failed.len(),
                    written
                        .iter()
                        .map(|w| w.id)
                        .chain(failed.iter().map(|(id, _)| id.as_str()))
                        .take(5)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        )?;
        Ok(())
    }

    /// Failed records still worth retrying (fewer than `max_attempts`).
    pub fn failed_ids(&self, max_attempts: u32) -> Result<Vec<String>, StateError> {
        let rows = self.query(
            sql("SELECT id FROM failed WHERE attempts < ?1 ORDER BY id"),
            args![i64::from(max_attempts)],
            || "reading failed records".to_owned(),
        )?;
        Ok(texts(rows))
    }

    /// Every failed record: id, reason, attempts.
    pub fn failed(&self) -> Result<Vec<(String, String, u32)>, StateError> {
        let rows = self.query(
            sql("SELECT id, reason, attempts FROM failed ORDER BY id"),
            vec![],
            || "reading failed records".to_owned(),
        )?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let mut cells = Cells::of(row);
                let (id, reason) = (cells.take().text(), cells.take().text());
                let attempts = cells.take().int();
                (id, reason, u32::try_from(attempts).unwrap_or(u32::MAX))
            })
            .collect())
    }

    /// Starts a run log line; returns its row.
    pub fn begin_run(&self, run_id: &str, kind: &str, started_ms: i64) -> Result<i64, StateError> {
        let done = self.run(
            vec![Step::Query(
                sql("INSERT INTO runs (run_id, kind, started_ms) VALUES (?1, ?2, ?3) RETURNING id"),
                args![run_id, kind, started_ms],
            )],
            // A write (so it is fenced), returning the row.
            true,
            || "starting the run log".to_owned(),
        )?;
        Ok(
            first_cell(done.into_iter().next().map(Done::rows).unwrap_or_default())
                .map_or(0, |cell| cell.int()),
        )
    }

    /// Ends a run log line.
    pub fn end_run(&self, row: i64, log: &RunLog) -> Result<(), StateError> {
        self.run(
            vec![
                Step::Exec(
                    sql(
                        "UPDATE runs SET ended_ms = ?2, outcome = ?3, pulled = ?4, changed = ?5,
                             written = ?6, failed = ?7, calls = ?8, watermark_ms = ?9, message = ?10
                         WHERE id = ?1",
                    ),
                    args![
                        row,
                        log.ended_ms,
                        log.outcome.clone(),
                        log.pulled,
                        log.changed,
                        log.written,
                        log.failed,
                        log.calls,
                        log.watermark_ms,
                        log.message.clone()
                    ],
                ),
                // The log keeps the last 10,000 runs (months of 15-minute runs).
                Step::Exec(
                    sql("DELETE FROM runs WHERE id <= (SELECT max(id) FROM runs) - 10000"),
                    vec![],
                ),
            ],
            true,
            || "ending the run log".to_owned(),
        )?;
        Ok(())
    }

    /// The last `limit` runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunLog>, StateError> {
        let rows = self.query(
            sql(
                "SELECT run_id, kind, started_ms, ended_ms, outcome, pulled, changed, written,
                        failed, calls, watermark_ms, message
                 FROM runs ORDER BY id DESC LIMIT ?1",
            ),
            args![limit as i64],
            || "reading the run log".to_owned(),
        )?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let mut cells = Cells::of(row);
                let mut next = || cells.take();
                RunLog {
                    run_id: next().text(),
                    kind: next().text(),
                    started_ms: next().int(),
                    ended_ms: next().opt_int(),
                    outcome: next().opt_text(),
                    pulled: next().int() as u64,
                    changed: next().int() as u64,
                    written: next().int() as u64,
                    failed: next().int() as u64,
                    calls: next().int() as u64,
                    watermark_ms: next().opt_int(),
                    message: next().opt_text(),
                }
            })
            .collect())
    }

    /// Runs that started and never ended (a crash or kill): marked so, at
    /// start-up.
    pub fn close_abandoned_runs(&self, now_ms: i64) -> Result<usize, StateError> {
        Ok(self.exec(
            sql("UPDATE runs SET ended_ms = ?1, outcome = 'abandoned' WHERE ended_ms IS NULL"),
            args![now_ms],
            || "closing abandoned runs".to_owned(),
        )? as usize)
    }
}

/// Sets a `meta` key.
const SET_META: Sql = sql("INSERT INTO meta (key, value) VALUES (?1, ?2)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value");

/// The first column of each row, as text.
fn texts(rows: Vec<Row>) -> Vec<String> {
    rows.into_iter()
        .filter_map(|row| row.into_iter().next().and_then(Cell::opt_text))
        .collect()
}

/// A PostgreSQL session for `url` (the password from its source), named
/// `leadscored <host>:<pid>` so instances can count each other; and how
/// errors name it.
fn postgres_session(
    url: &str,
    password: Option<&SecretSource>,
    connection: &str,
) -> Result<(Postgres, PathBuf), StateError> {
    let mut config: postgres::Config = url.parse().map_err(|e| StateError::Open {
        path: PathBuf::from("[state] url"),
        message: format!("not a PostgreSQL URL: {e}"),
    })?;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(dir) => dir.display().to_string(),
        })
        .collect();
    let where_ = PathBuf::from(format!(
        "postgres {}/{} (connection {})",
        hosts.join(","),
        config.get_dbname().unwrap_or_default(),
        connection
    ));
    let fail = |message: String| StateError::Open {
        path: where_.clone(),
        message,
    };
    if config.get_password().is_some() {
        return Err(fail(
                "the [state] url holds a password; give it as password = { credential = \"...\" } (secrets never go in the file)".to_owned(),
            ));
    }
    if let Some(source) = password {
        let password = crate::crm::auth::read_secret(source)
            .map_err(|e| fail(format!("the state's password: {e}")))?;
        config.password(password.expose_secret().as_bytes());
    }
    config.application_name(&format!("leadscored {}", instance_label()));
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    // A session whose peer vanished (a dead machine) is noticed within
    // about a minute, and its lock released.
    config.keepalives_idle(std::time::Duration::from_secs(30));
    let db = Postgres::connect(config).map_err(|e| fail(format!("cannot connect: {e}")))?;
    Ok((db, where_))
}

/// This instance's presence in a shared PostgreSQL database: a session
/// of its own that lives as long as the process, so instances that share
/// connections can count each other (and share them out) with no
/// coordinator and no heartbeat table: a killed instance's sessions end,
/// and it is no longer counted.
#[derive(Debug)]
pub struct Presence {
    db: Postgres,
    path: PathBuf,
}

impl Presence {
    /// Joins the database of `store` (`None` for a SQLite store).
    pub fn join(store: &StateStore) -> Result<Option<Presence>, StateError> {
        let StateStore::Postgres { url, password } = store else {
            return Ok(None);
        };
        let (db, path) = postgres_session(url, password.as_ref(), "presence")?;
        Ok(Some(Presence { db, path }))
    }

    /// How many instances of leadscored have a session in this database
    /// now (this one included).
    pub fn instances(&self) -> Result<u64, StateError> {
        let done = self
            .db
            .run(
                vec![Step::Query(
                    sql("SELECT count(DISTINCT application_name) FROM pg_stat_activity
                         WHERE datname = current_database() AND application_name LIKE 'leadscored %'"),
                    vec![],
                )],
                false,
                false,
            )
            .map_err(|source| StateError::Db {
                path: self.path.clone(),
                what: "counting the instances".to_owned(),
                source: Box::new(source),
            })?;
        let count = first_cell(done.into_iter().next().map(Done::rows).unwrap_or_default())
            .map_or(1, |cell| cell.int());
        Ok(count.max(1) as u64)
    }
}

/// Opens a connection's state for writing where its `[state]` says: the
/// SQLite file `path`, or, with PostgreSQL, the schema of the connection
/// named by `path`'s stem (the connection file's).
pub fn open_store(store: &StateStore, path: &Path, identity: &str) -> Result<State, StateError> {
    match store {
        StateStore::File => State::open(path, identity),
        StateStore::Postgres { url, password } => State::open_postgres(
            PostgresTarget {
                url,
                password: password.as_ref(),
                connection: &store_name(path),
            },
            identity,
        ),
    }
}

/// [`open_store`] to read only; `None` when there is no state yet.
pub fn open_store_read_only(
    store: &StateStore,
    path: &Path,
    identity: &str,
) -> Result<Option<State>, StateError> {
    match store {
        StateStore::File => State::open_read_only(path, identity),
        StateStore::Postgres { url, password } => State::open_postgres_read_only(
            PostgresTarget {
                url,
                password: password.as_ref(),
                connection: &store_name(path),
            },
            identity,
        ),
    }
}

/// The connection's name in a shared database: its state file's stem.
fn store_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "leadscored".to_owned())
}

/// Options that create a file readable by its owner only.
fn private_file() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = File::options();
    options.create(true).mode(0o600);
    options
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// Where a connection's state lives: `dir/<connection file stem>.sqlite3`.
pub fn default_path(dir: &Path, connection_file: &Path) -> PathBuf {
    let stem = connection_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "leadscored".to_owned());
    dir.join(format!("{stem}.sqlite3"))
}
