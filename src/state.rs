//! Local state, one SQLite file per connection (WAL, `bundled`): the sync
//! watermark, every record's scoring inputs as last pulled (so a full
//! rescore needs no re-pull), the values leadscored last wrote, records
//! whose write failed (reason and attempts), and a run log.
//!
//! Invariants:
//! - The watermark moves only when a pass has written, or recorded as
//!   failed, everything it pulled (the engine calls [`State::finish_pull`]
//!   last). A crash before that repeats the pass; repeating is idempotent.
//! - A record's `seen_ms` is the CRM's modified time when leadscored last
//!   saw the record as it is: pulled, or just written by us (the time the
//!   CRM gave back). A later pull with the same modified time is an echo.
//! - One process holds a connection's state at a time: an exclusive lock
//!   on `<file>.lock`, released by the OS even on kill -9. Read-only opens
//!   (dry runs) take no lock.
//! - The schema is versioned (`PRAGMA user_version`) and migrated forward
//!   in one transaction; a file from a newer leadscored is refused.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::crm::mapping::CompanyValues;
use crate::crm::{CrmCompany, CrmEvent, CrmRecord, StreamEvent, email_key};

/// The schema, one entry per version; entry `n` moves version `n` to `n+1`.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
     CREATE TABLE records (
         id TEXT PRIMARY KEY,
         seen_ms INTEGER NOT NULL,
         inputs TEXT NOT NULL,
         written TEXT
     ) WITHOUT ROWID;
     CREATE INDEX records_seen ON records (seen_ms);
     CREATE TABLE failed (
         id TEXT PRIMARY KEY,
         reason TEXT NOT NULL,
         attempts INTEGER NOT NULL,
         first_ms INTEGER NOT NULL,
         last_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE runs (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         run_id TEXT NOT NULL,
         kind TEXT NOT NULL,
         started_ms INTEGER NOT NULL,
         ended_ms INTEGER,
         outcome TEXT,
         pulled INTEGER NOT NULL DEFAULT 0,
         changed INTEGER NOT NULL DEFAULT 0,
         written INTEGER NOT NULL DEFAULT 0,
         failed INTEGER NOT NULL DEFAULT 0,
         calls INTEGER NOT NULL DEFAULT 0,
         watermark_ms INTEGER,
         message TEXT
     );",
    // 2: calls spent per account day, shared by every process on this
    // state (the daily limit holds across restarts and one-off runs).
    "CREATE TABLE budget (day TEXT PRIMARY KEY, calls INTEGER NOT NULL) WITHOUT ROWID;",
    // 3: companies (the values the model reads from them), each record's
    // company, and the model's lists with their members.
    "CREATE TABLE companies (
         id TEXT PRIMARY KEY,
         seen_ms INTEGER NOT NULL,
         inputs TEXT NOT NULL
     ) WITHOUT ROWID;
     ALTER TABLE records ADD COLUMN company TEXT;
     CREATE INDEX records_company ON records (company) WHERE company IS NOT NULL;
     CREATE TABLE lists (
         name TEXT PRIMARY KEY,
         list_id TEXT NOT NULL,
         change_key TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE list_members (
         list TEXT NOT NULL,
         record TEXT NOT NULL,
         PRIMARY KEY (list, record)
     ) WITHOUT ROWID;
     CREATE INDEX list_members_record ON list_members (record);",
    // 4: engagement read as streams, by the record's id or its email
    // address, once per CRM occurrence id; each record's email address.
    "CREATE TABLE events (
         key TEXT NOT NULL,
         id TEXT NOT NULL,
         kind TEXT NOT NULL,
         at_ms INTEGER NOT NULL,
         attributes TEXT NOT NULL,
         PRIMARY KEY (key, id, kind)
     ) WITHOUT ROWID;
     ALTER TABLE records ADD COLUMN email TEXT;
     CREATE INDEX records_email ON records (email) WHERE email IS NOT NULL;",
    // 5: what leadscored last wrote to each company's output properties.
    "CREATE TABLE company_outputs (
         id TEXT PRIMARY KEY,
         written TEXT NOT NULL
     ) WITHOUT ROWID;",
];

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
    #[error("state {path}: {what}: {source}{hint}", hint = full_disk_hint(source))]
    Db {
        path: PathBuf,
        /// What was being done, with the record id where there is one.
        what: String,
        source: Box<rusqlite::Error>,
    },
    #[error("state database: {0}{hint}", hint = full_disk_hint(.0))]
    Sql(#[from] rusqlite::Error),
}

impl StateError {
    /// The same error, naming the state file where it did not yet.
    pub fn at(self, path: &Path) -> StateError {
        match self {
            StateError::Sql(source) => StateError::Db {
                path: path.to_owned(),
                what: "using the state".to_owned(),
                source: Box::new(source),
            },
            other => other,
        }
    }
}

/// A word of advice for the errors an admin can fix on the machine.
fn full_disk_hint(error: &rusqlite::Error) -> &'static str {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => {
            " (free disk space; nothing was lost: the next pass repeats this one)"
        }
        Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied) => {
            " (the state directory must be writable by leadscored)"
        }
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            " (the state file is damaged: move it aside and the next pass rebuilds it with a full pull)"
        }
        _ => "",
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

/// A connection's local state.
#[derive(Debug)]
pub struct State {
    db: Connection,
    path: PathBuf,
    read_only: bool,
    /// Held for the state's lifetime; the OS drops it with the process.
    _lock: Option<File>,
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
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut state = State {
            db,
            path: path.to_owned(),
            read_only: false,
            _lock: Some(lock),
        };
        state.migrate()?;
        state.claim(identity)?;
        Ok(state)
    }

    /// Opens existing state to read (a dry run beside a running daemon);
    /// `None` when there is none yet.
    pub fn open_read_only(path: &Path, identity: &str) -> Result<Option<State>, StateError> {
        if !path.exists() {
            return Ok(None);
        }
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StateError::Open {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        let state = State {
            db,
            path: path.to_owned(),
            read_only: true,
            _lock: None,
        };
        let version: i64 = state
            .db
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version as usize != MIGRATIONS.len() {
            return Err(StateError::Open {
                path: path.to_owned(),
                message: format!(
                    "schema version {version}; run a sync or the daemon once to migrate it"
                ),
            });
        }
        state.check_identity(identity)?;
        Ok(Some(state))
    }

    /// Gives the page cache back (SQLite's `shrink_memory`): a daemon
    /// serving many connections calls it after each pass, so only the
    /// connections whose pass runs hold a cache.
    pub fn release_memory(&self) {
        if let Err(error) = self.db.execute_batch("PRAGMA shrink_memory") {
            tracing::debug!(%error, "shrink_memory");
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Turns a database error into one naming this state and `what`.
    fn db_error(&self, what: String) -> impl FnOnce(rusqlite::Error) -> StateError + use<> {
        let path = self.path.clone();
        move |source| StateError::Db {
            path,
            what,
            source: Box::new(source),
        }
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let version: i64 = self
            .db
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version as usize > MIGRATIONS.len() {
            return Err(StateError::TooNew {
                path: self.path.clone(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        let tx = self.db.transaction()?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        }
        tx.commit()?;
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
            .db
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StateError> {
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
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
            .db
            .query_row("SELECT calls FROM budget WHERE day = ?1", [day], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map_err(self.db_error("reading the daily budget".to_owned()))?
            .unwrap_or(0) as u64)
    }

    /// Records that `calls` were spent on `day` (never less than recorded),
    /// forgetting days more than a week old.
    pub fn save_calls(&self, day: &str, calls: u64) -> Result<(), StateError> {
        if self.read_only {
            return Ok(());
        }
        self.db
            .execute(
                "INSERT INTO budget (day, calls) VALUES (?1, ?2)
                 ON CONFLICT (day) DO UPDATE SET calls = max(calls, excluded.calls)",
                params![day, calls as i64],
            )
            .map_err(self.db_error("saving the daily budget".to_owned()))?;
        self.db
            .execute("DELETE FROM budget WHERE day < date(?1, '-7 days')", [day])
            .map_err(self.db_error("saving the daily budget".to_owned()))?;
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
        let tx = self.db.transaction()?;
        tx.execute("DELETE FROM meta WHERE key = 'watermark_ms'", [])?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('fingerprint', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [fingerprint],
        )?;
        tx.execute("UPDATE records SET seen_ms = -1", [])?;
        // Companies and list members read for other fields or lists.
        tx.execute("DELETE FROM companies", [])?;
        tx.execute("DELETE FROM lists", [])?;
        tx.execute("DELETE FROM list_members", [])?;
        // Engagement read for other event sources.
        tx.execute("DELETE FROM events", [])?;
        tx.execute("DELETE FROM meta WHERE key = 'streams_ms'", [])?;
        tx.commit()?;
        Ok(())
    }

    /// Saves pulled companies (the values the model reads from them).
    pub fn save_companies(&mut self, companies: &[CrmCompany]) -> Result<(), StateError> {
        if companies.is_empty() {
            return Ok(());
        }
        let fail = |what: String| self.db_error(what);
        let failed = fail("saving pulled companies".to_owned());
        let tx = self.db.transaction().map_err(failed)?;
        {
            let mut statement = tx.prepare_cached(
                "INSERT INTO companies (id, seen_ms, inputs) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET seen_ms = excluded.seen_ms, inputs = excluded.inputs",
            )?;
            for company in companies {
                let values = serde_json::to_string(&company.values).unwrap_or_default();
                statement.execute(params![company.id, company.modified_ms, values])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A stored company's values.
    pub fn company(&self, id: &str) -> Result<Option<CompanyValues>, StateError> {
        let mut statement = self
            .db
            .prepare_cached("SELECT inputs FROM companies WHERE id = ?1")?;
        let row: Option<String> = statement
            .query_row([id], |r| r.get(0))
            .optional()
            .map_err(self.db_error(format!("reading stored company {id}")))?;
        Ok(row.and_then(|text| serde_json::from_str(&text).ok()))
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
        let has_lists: bool = self
            .db
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM lists)")?
            .query_row([], |r| r.get(0))?;
        if has_lists {
            let mut statement = self
                .db
                .prepare_cached("SELECT list FROM list_members WHERE record = ?1 ORDER BY list")?;
            let rows = statement.query_map([&record.id], |r| r.get::<_, String>(0))?;
            record.lists = rows.collect::<Result<_, _>>()?;
        }
        self.company_of(record)
    }

    /// What leadscored last wrote to a company's output properties.
    pub fn company_written(&self, id: &str) -> Result<BTreeMap<String, String>, StateError> {
        let mut statement = self
            .db
            .prepare_cached("SELECT written FROM company_outputs WHERE id = ?1")?;
        let row: Option<String> = statement
            .query_row([id], |r| r.get(0))
            .optional()
            .map_err(self.db_error(format!("reading what was written to company {id}")))?;
        Ok(row
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
        let failed = self.db_error("saving what was written to companies".to_owned());
        let tx = self.db.transaction().map_err(failed)?;
        {
            let mut statement = tx.prepare_cached(
                "INSERT INTO company_outputs (id, written) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET written = excluded.written",
            )?;
            for (id, values) in written {
                let text = serde_json::to_string(values).unwrap_or_default();
                statement.execute(params![id, text])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every stored company id.
    pub fn company_ids(&self) -> Result<FxHashSet<String>, StateError> {
        let mut statement = self.db.prepare_cached("SELECT id FROM companies")?;
        let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = FxHashSet::default();
        for row in rows {
            out.insert(row?);
        }
        Ok(out)
    }

    /// Every company some stored record belongs to.
    pub fn record_companies(&self) -> Result<Vec<String>, StateError> {
        let mut statement = self.db.prepare_cached(
            "SELECT DISTINCT company FROM records WHERE company IS NOT NULL ORDER BY company",
        )?;
        let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stored records whose company is one of `companies`.
    pub fn records_of_companies(&self, companies: &[String]) -> Result<Vec<String>, StateError> {
        let mut statement = self
            .db
            .prepare_cached("SELECT id FROM records WHERE company = ?1")?;
        let mut out = Vec::new();
        for company in companies {
            let rows = statement.query_map([company], |r| r.get::<_, String>(0))?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    /// A list as last read: its CRM id and change key.
    pub fn list(&self, name: &str) -> Result<Option<(String, String)>, StateError> {
        let mut statement = self
            .db
            .prepare_cached("SELECT list_id, change_key FROM lists WHERE name = ?1")?;
        Ok(statement
            .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// A list's stored members.
    pub fn list_members(&self, name: &str) -> Result<FxHashSet<String>, StateError> {
        let mut statement = self
            .db
            .prepare_cached("SELECT record FROM list_members WHERE list = ?1")?;
        let rows = statement.query_map([name], |r| r.get::<_, String>(0))?;
        let mut out = FxHashSet::default();
        for row in rows {
            out.insert(row?);
        }
        Ok(out)
    }

    /// Replaces a list's stored members and change key.
    pub fn save_list(
        &mut self,
        name: &str,
        list_id: &str,
        change_key: &str,
        members: &FxHashSet<String>,
    ) -> Result<(), StateError> {
        let failed = self.db_error(format!("saving the members of list {name:?}"));
        let tx = self.db.transaction().map_err(failed)?;
        tx.execute("DELETE FROM list_members WHERE list = ?1", [name])?;
        {
            let mut statement =
                tx.prepare_cached("INSERT INTO list_members (list, record) VALUES (?1, ?2)")?;
            for member in members {
                statement.execute(params![name, member])?;
            }
        }
        tx.execute(
            "INSERT INTO lists (name, list_id, change_key) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET list_id = excluded.list_id, change_key = excluded.change_key",
            params![name, list_id, change_key],
        )?;
        tx.commit()?;
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
        let fail = self.db_error("finishing the pass".to_owned());
        let tx = self.db.transaction().map_err(fail)?;
        for (key, value) in [
            ("watermark_ms", watermark.to_string()),
            ("fingerprint", fingerprint.to_owned()),
            ("model", model.to_owned()),
        ] {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
        }
        tx.commit()?;
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
        let fail = self.db_error(format!("saving {} engagement events", events.len()));
        let tx = self.db.transaction().map_err(fail)?;
        let mut fresh: Vec<String> = Vec::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (key, id, kind, at_ms, attributes) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for found in events {
                let event = &found.event;
                let attributes = serde_json::to_string(&event.attributes).unwrap_or_default();
                let added = insert.execute(params![
                    found.key,
                    event.id,
                    event.kind,
                    event.at_ms,
                    attributes
                ])?;
                if added > 0 && fresh.last() != Some(&found.key) {
                    fresh.push(found.key.clone());
                }
            }
        }
        tx.commit()?;
        fresh.sort();
        fresh.dedup();
        Ok(fresh)
    }

    /// The stored occurrences of a record: those stored under its id and
    /// under its email address, each occurrence once.
    pub fn events_of(&self, id: &str, email: Option<&str>) -> Result<Vec<CrmEvent>, StateError> {
        let mut statement = self.db.prepare_cached(
            "SELECT id, kind, at_ms, attributes FROM events WHERE key = ?1 OR key = ?2",
        )?;
        let by_email = email.map(email_key).unwrap_or_default();
        let rows = statement
            .query_map(params![id, by_email], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(self.db_error(format!("reading the events of record {id}")))?;
        let mut seen: FxHashSet<(String, String)> = FxHashSet::default();
        let mut out = Vec::new();
        for row in rows {
            let (event_id, kind, at_ms, attributes) = row?;
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
        let mut by_id = self
            .db
            .prepare_cached("SELECT id FROM records WHERE id = ?1")?;
        let mut by_email = self
            .db
            .prepare_cached("SELECT id FROM records WHERE email = ?1")?;
        let mut out = Vec::new();
        for key in keys {
            let statement = if key.starts_with("email:") {
                &mut by_email
            } else {
                &mut by_id
            };
            let rows = statement.query_map([key], |r| r.get::<_, String>(0))?;
            for row in rows {
                out.push(row?);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Stored occurrences by event type.
    pub fn event_counts(&self) -> Result<BTreeMap<String, u64>, StateError> {
        let mut statement = self
            .db
            .prepare_cached("SELECT kind, count(*) FROM events GROUP BY kind")?;
        let rows =
            statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (kind, count) = row?;
            out.insert(kind, count as u64);
        }
        Ok(out)
    }

    /// How many stored occurrences lie in `[from_ms, until_ms]` (to
    /// estimate what reading a stream window costs).
    pub fn events_between(&self, from_ms: i64, until_ms: i64) -> Result<u64, StateError> {
        Ok(self.db.query_row(
            "SELECT count(*) FROM events WHERE at_ms >= ?1 AND at_ms <= ?2",
            params![from_ms, until_ms],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Records seen at or after `since_ms`: id → modified time then. A pull
    /// that finds a record at that same time finds it as we left it.
    pub fn seen_since(&self, since_ms: i64) -> Result<FxHashMap<String, i64>, StateError> {
        let mut statement = self
            .db
            .prepare_cached("SELECT id, seen_ms FROM records WHERE seen_ms >= ?1")?;
        let rows = statement.query_map([since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let mut out = FxHashMap::default();
        for row in rows {
            let (id, ms) = row?;
            out.insert(id, ms);
        }
        Ok(out)
    }

    /// A record's stored inputs (values with what leadscored wrote since),
    /// and what it wrote.
    pub fn record(&self, id: &str) -> Result<Option<(CrmRecord, Written)>, StateError> {
        let mut statement = self
            .db
            .prepare_cached("SELECT inputs, written FROM records WHERE id = ?1")?;
        let row: Option<(String, Option<String>)> = statement
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(self.db_error(format!("reading stored record {id}")))?;
        Ok(row.and_then(|(inputs, written)| stored(id.to_owned(), &inputs, written.as_deref())))
    }

    /// Stored records after `after` in id order, at most `limit`, for a
    /// rescore. Rows that no longer decode are skipped (the next full pull
    /// replaces them).
    pub fn records_after(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(CrmRecord, Written)>, StateError> {
        let mut statement = self.db.prepare_cached(
            "SELECT id, inputs, written FROM records WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![after, limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, inputs, written) = row?;
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
        let mut out = BTreeMap::new();
        let mut statement = self.db.prepare_cached(
            "SELECT coalesce(nullif(coalesce(json_extract(written, ?1), json_extract(inputs, ?2)), ''), '(empty)') AS value,
                    count(*)
             FROM records GROUP BY value",
        )?;
        for property in properties {
            let key = serde_json::to_string(property).unwrap_or_default();
            let rows = statement
                .query_map(params![format!("$.{key}"), format!("$.v.{key}")], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(self.db_error(format!("counting values of {property}")))?;
            let counts: &mut BTreeMap<String, u64> = out.entry((*property).to_owned()).or_default();
            for row in rows {
                let (value, count) = row?;
                counts.insert(value, count as u64);
            }
        }
        Ok(out)
    }

    /// How many records are stored.
    pub fn count(&self) -> Result<u64, StateError> {
        Ok(self
            .db
            .query_row("SELECT count(*) FROM records", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Saves a page of pulled records (their inputs, as the CRM has them
    /// now; earlier writes are in those values), and returns the companies
    /// some of them left (their scores lost a person).
    pub fn save_pulled(&mut self, records: &[CrmRecord]) -> Result<Vec<String>, StateError> {
        let path = self.path.clone();
        let failed = |what: String| {
            let path = path.clone();
            move |source| StateError::Db {
                path,
                what,
                source: Box::new(source),
            }
        };
        let tx = self
            .db
            .transaction()
            .map_err(failed("saving pulled records".to_owned()))?;
        let mut left = Vec::new();
        {
            let mut before = tx
                .prepare_cached("SELECT company FROM records WHERE id = ?1")
                .map_err(failed("saving pulled records".to_owned()))?;
            for record in records {
                let old: Option<String> = before
                    .query_row([&record.id], |r| r.get(0))
                    .optional()
                    .map_err(failed(format!("reading stored record {}", record.id)))?
                    .flatten();
                if let Some(old) = old.filter(|old| Some(old.as_str()) != record.company_id()) {
                    left.push(old);
                }
            }
            let mut statement = tx
                .prepare_cached(
                    "INSERT INTO records (id, seen_ms, inputs, written, company, email) VALUES (?1, ?2, ?3, NULL, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET
                     seen_ms = excluded.seen_ms, inputs = excluded.inputs, written = NULL,
                     company = excluded.company, email = excluded.email",
                )
                .map_err(failed("saving pulled records".to_owned()))?;
            for record in records {
                statement
                    .execute(params![
                        record.id,
                        record.modified_ms,
                        encode(record),
                        record.company_id(),
                        record.values.get("email").map(|e| email_key(e))
                    ])
                    .map_err(failed(format!("saving pulled record {}", record.id)))?;
            }
        }
        tx.commit()
            .map_err(failed(format!("saving {} pulled records", records.len())))?;
        Ok(left)
    }

    /// Drops records the CRM deleted or merged away: their stored inputs,
    /// failures and per-record occurrences, so no later pass rescores or
    /// writes them. Returns the companies they belonged to.
    pub fn forget(&mut self, ids: &[String]) -> Result<Vec<String>, StateError> {
        let fail = self.db_error(format!("forgetting {} deleted records", ids.len()));
        let tx = self.db.transaction().map_err(fail)?;
        let mut left = Vec::new();
        {
            let mut company = tx.prepare_cached("SELECT company FROM records WHERE id = ?1")?;
            for id in ids {
                let old: Option<Option<String>> =
                    company.query_row([id], |r| r.get(0)).optional()?;
                left.extend(old.flatten());
            }
            let mut records = tx.prepare_cached("DELETE FROM records WHERE id = ?1")?;
            let mut failed = tx.prepare_cached("DELETE FROM failed WHERE id = ?1")?;
            let mut events = tx.prepare_cached("DELETE FROM events WHERE key = ?1")?;
            let mut members = tx.prepare_cached("DELETE FROM list_members WHERE record = ?1")?;
            for id in ids {
                records.execute([id])?;
                failed.execute([id])?;
                events.execute([id])?;
                members.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(left)
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
        let fail = self.db_error(format!(
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
        ));
        let tx = self.db.transaction().map_err(fail)?;
        {
            let mut wrote = tx.prepare_cached(
                "UPDATE records SET written = ?2, seen_ms = coalesce(?3, seen_ms) WHERE id = ?1",
            )?;
            let mut clear = tx.prepare_cached("DELETE FROM failed WHERE id = ?1")?;
            for outcome in written {
                let json = serde_json::to_string(outcome.written).unwrap_or_default();
                wrote.execute(params![outcome.id, json, outcome.stamp])?;
                clear.execute([outcome.id])?;
            }
            for id in settled {
                clear.execute([id])?;
            }
            let mut fail = tx.prepare_cached(
                "INSERT INTO failed (id, reason, attempts, first_ms, last_ms) VALUES (?1, ?2, 1, ?3, ?3)
                 ON CONFLICT (id) DO UPDATE SET
                     reason = excluded.reason, attempts = attempts + 1, last_ms = excluded.last_ms",
            )?;
            for (id, reason) in failed {
                fail.execute(params![id, reason, now_ms])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Failed records still worth retrying (fewer than `max_attempts`).
    pub fn failed_ids(&self, max_attempts: u32) -> Result<Vec<String>, StateError> {
        let mut statement = self
            .db
            .prepare_cached("SELECT id FROM failed WHERE attempts < ?1 ORDER BY id")?;
        let rows = statement.query_map([max_attempts], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every failed record: id, reason, attempts.
    pub fn failed(&self) -> Result<Vec<(String, String, u32)>, StateError> {
        let mut statement = self
            .db
            .prepare_cached("SELECT id, reason, attempts FROM failed ORDER BY id")?;
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Starts a run log line; returns its row.
    pub fn begin_run(&self, run_id: &str, kind: &str, started_ms: i64) -> Result<i64, StateError> {
        self.db.execute(
            "INSERT INTO runs (run_id, kind, started_ms) VALUES (?1, ?2, ?3)",
            params![run_id, kind, started_ms],
        )?;
        Ok(self.db.last_insert_rowid())
    }

    /// Ends a run log line.
    pub fn end_run(&self, row: i64, log: &RunLog) -> Result<(), StateError> {
        self.db.execute(
            "UPDATE runs SET ended_ms = ?2, outcome = ?3, pulled = ?4, changed = ?5,
                 written = ?6, failed = ?7, calls = ?8, watermark_ms = ?9, message = ?10
             WHERE id = ?1",
            params![
                row,
                log.ended_ms,
                log.outcome,
                log.pulled as i64,
                log.changed as i64,
                log.written as i64,
                log.failed as i64,
                log.calls as i64,
                log.watermark_ms,
                log.message
            ],
        )?;
        // The log keeps the last 10,000 runs (months of 15-minute runs).
        self.db.execute(
            "DELETE FROM runs WHERE id <= (SELECT max(id) FROM runs) - 10000",
            [],
        )?;
        Ok(())
    }

    /// The last `limit` runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunLog>, StateError> {
        let mut statement = self.db.prepare_cached(
            "SELECT run_id, kind, started_ms, ended_ms, outcome, pulled, changed, written,
                    failed, calls, watermark_ms, message
             FROM runs ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = statement.query_map([limit as i64], |r| {
            Ok(RunLog {
                run_id: r.get(0)?,
                kind: r.get(1)?,
                started_ms: r.get(2)?,
                ended_ms: r.get(3)?,
                outcome: r.get(4)?,
                pulled: r.get::<_, i64>(5)? as u64,
                changed: r.get::<_, i64>(6)? as u64,
                written: r.get::<_, i64>(7)? as u64,
                failed: r.get::<_, i64>(8)? as u64,
                calls: r.get::<_, i64>(9)? as u64,
                watermark_ms: r.get(10)?,
                message: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Runs that started and never ended (a crash or kill): marked so, at
    /// start-up.
    pub fn close_abandoned_runs(&self, now_ms: i64) -> Result<usize, StateError> {
        Ok(self.db.execute(
            "UPDATE runs SET ended_ms = ?1, outcome = 'abandoned' WHERE ended_ms IS NULL",
            [now_ms],
        )?)
    }
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
