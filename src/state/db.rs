//! The state's SQL, run on SQLite (the embedded default, one file per
//! connection) or on PostgreSQL (shared by instances, one schema per
//! connection). `State` speaks only in [`Step`]s; this module runs them.
//!
//! A statement is written once, in SQLite's dialect with `?N` parameters;
//! PostgreSQL gets the same text with `$N`, or its own text where the
//! dialects differ. Every value crossing this seam is an integer or text
//! ([`Arg`], [`Cell`]), which is all the state stores.
//!
//! PostgreSQL runs on a thread of its own (the `postgres` client blocks on
//! a runtime of its own, which must not run inside the daemon's), one
//! session per connection. That session holds the connection's advisory
//! lock, so the lock goes when the session goes (kill -9 included), and
//! every writing job first checks the connection's fencing token in the
//! same transaction: a stale owner's write is refused.

use std::collections::HashMap;
use std::sync::mpsc;

use rusqlite::types::{ToSqlOutput, ValueRef};

/// One statement: SQLite's text (`?N` parameters) and PostgreSQL's where
/// it is not the same text with `$N`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sql {
    pub sqlite: &'static str,
    pub postgres: Option<&'static str>,
}

/// A statement both dialects read alike.
pub(crate) const fn sql(text: &'static str) -> Sql {
    Sql {
        sqlite: text,
        postgres: None,
    }
}

/// A statement each dialect spells its own way.
pub(crate) const fn dialects(sqlite: &'static str, postgres: &'static str) -> Sql {
    Sql {
        sqlite,
        postgres: Some(postgres),
    }
}

impl Sql {
    /// PostgreSQL's text: its own, or SQLite's with `$N` for `?N`.
    fn postgres_text(&self) -> String {
        match self.postgres {
            Some(text) => text.to_owned(),
            None => self.sqlite.replace('?', "$"),
        }
    }
}

/// A parameter: the state binds only integers and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<u64> for Arg {
    fn from(v: u64) -> Self {
        Arg::Int(Some(i64::try_from(v).unwrap_or(i64::MAX)))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(Some(v.clone()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(str::to_owned))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}

/// Parameters for a statement: `args![a, b]`.
macro_rules! args {
    ($($arg:expr),* $(,)?) => { vec![$($crate::state::db::Arg::from($arg)),*] };
}
pub(crate) use args;

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Arg::Int(Some(v)) => ValueRef::Integer(*v),
            Arg::Text(Some(v)) => ValueRef::Text(v.as_bytes()),
            Arg::Int(None) | Arg::Text(None) => ValueRef::Null,
        }))
    }
}

/// A value read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
}

impl Cell {
    pub fn int(&self) -> i64 {
        self.opt_int().unwrap_or(0)
    }

    pub fn opt_int(&self) -> Option<i64> {
        match self {
            Cell::Int(v) => Some(*v),
            Cell::Text(t) => t.parse().ok(),
            Cell::Null => None,
        }
    }

    pub fn text(self) -> String {
        self.opt_text().unwrap_or_default()
    }

    pub fn opt_text(self) -> Option<String> {
        match self {
            Cell::Text(t) => Some(t),
            Cell::Int(v) => Some(v.to_string()),
            Cell::Null => None,
        }
    }
}

pub(crate) type Row = Vec<Cell>;

/// Reads a row's cells left to right; past its end, NULL.
pub(crate) struct Cells(std::vec::IntoIter<Cell>);

impl Cells {
    pub fn of(row: Row) -> Cells {
        Cells(row.into_iter())
    }

    pub fn take(&mut self) -> Cell {
        self.0.next().unwrap_or(Cell::Null)
    }
}

/// The first cell of the first row, if any.
pub(crate) fn first_cell(rows: Vec<Row>) -> Option<Cell> {
    rows.into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
}

/// A `(text, integer)` row: a key and its count.
pub(crate) fn key_count(row: Row) -> (String, i64) {
    let mut cells = Cells::of(row);
    (cells.take().text(), cells.take().int())
}

/// One statement to run, with its parameters.
#[derive(Debug)]
pub(crate) enum Step {
    /// Run once; the number of rows it changed.
    Exec(Sql, Vec<Arg>),
    /// Run once for each parameter set; each one's changed rows.
    Each(Sql, Vec<Vec<Arg>>),
    /// The rows it returns.
    Query(Sql, Vec<Arg>),
    /// Run once for each parameter set; each one's rows.
    QueryEach(Sql, Vec<Vec<Arg>>),
    /// Statements without parameters (schema changes), as one script.
    Script(String),
}

impl Step {
    /// Whether it may change the state (then it is fenced): every step but
    /// a query, and a query that is an `INSERT … RETURNING` or the like.
    pub fn writes(&self) -> bool {
        match self {
            Step::Exec(..) | Step::Each(..) | Step::Script(_) => true,
            Step::Query(sql, _) | Step::QueryEach(sql, _) => {
                let verb = sql.sqlite.trim_start();
                ["INSERT", "UPDATE", "DELETE"].iter().any(|w| {
                    verb.get(..w.len())
                        .is_some_and(|v| v.eq_ignore_ascii_case(w))
                })
            }
        }
    }
}

/// What a step gave back.
#[derive(Debug)]
pub(crate) enum Done {
    Count(u64),
    Counts(Vec<u64>),
    Rows(Vec<Row>),
    RowsEach(Vec<Vec<Row>>),
}

impl Done {
    pub fn rows(self) -> Vec<Row> {
        match self {
            Done::Rows(rows) => rows,
            Done::RowsEach(each) => each.into_iter().flatten().collect(),
            Done::Count(_) | Done::Counts(_) => Vec::new(),
        }
    }

    pub fn rows_each(self) -> Vec<Vec<Row>> {
        match self {
            Done::RowsEach(each) => each,
            other => vec![other.rows()],
        }
    }

    pub fn counts(self) -> Vec<u64> {
        match self {
            Done::Counts(counts) => counts,
            Done::Count(n) => vec![n],
            Done::Rows(_) | Done::RowsEach(_) => Vec::new(),
        }
    }

    pub fn count(self) -> u64 {
        self.counts().iter().sum()
    }
}

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", describe_postgres(.0))]
    Postgres(#[from] postgres::Error),
    #[error(
        "another instance took this connection over (this instance's fencing token {mine} is stale); nothing more is written by this one"
    )]
    Fenced { mine: i64 },
    #[error("the PostgreSQL session is gone ({0}); the connection is released and reopened")]
    Gone(String),
}

impl DbError {
    /// A word of advice for the errors an admin can fix on the machine.
    pub fn hint(&self) -> &'static str {
        let DbError::Sqlite(error) = self else {
            return "";
        };
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

    /// The connection was taken over or its session lost: the state must
    /// be reopened (and the lock claimed again) before any more work.
    pub fn lost(&self) -> bool {
        match self {
            DbError::Fenced { .. } | DbError::Gone(_) => true,
            DbError::Postgres(e) => e.is_closed(),
            DbError::Sqlite(_) => false,
        }
    }
}

/// PostgreSQL's message, with the server's detail where it gave one (never
/// the connection string: it is not part of the error).
fn describe_postgres(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("PostgreSQL: {} ({detail})", db.message()),
            None => format!("PostgreSQL: {}", db.message()),
        },
        None => format!("PostgreSQL: {error}"),
    }
}

/// Runs steps on SQLite, in one transaction when `transaction`.
pub(crate) fn run_sqlite(
    db: &rusqlite::Connection,
    steps: Vec<Step>,
    transaction: bool,
) -> Result<Vec<Done>, DbError> {
    let tx = if transaction {
        Some(db.unchecked_transaction()?)
    } else {
        None
    };
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        out.push(match step {
            Step::Exec(sql, args) => {
                let mut statement = db.prepare_cached(sql.sqlite)?;
                Done::Count(statement.execute(rusqlite::params_from_iter(args.iter()))? as u64)
            }
            Step::Each(sql, sets) => {
                let mut statement = db.prepare_cached(sql.sqlite)?;
                let mut counts = Vec::with_capacity(sets.len());
                for args in sets {
                    counts.push(statement.execute(rusqlite::params_from_iter(args.iter()))? as u64);
                }
                Done::Counts(counts)
            }
            Step::Query(sql, args) => {
                let mut statement = db.prepare_cached(sql.sqlite)?;
                Done::Rows(sqlite_rows(&mut statement, &args)?)
            }
            Step::QueryEach(sql, sets) => {
                let mut statement = db.prepare_cached(sql.sqlite)?;
                let mut each = Vec::with_capacity(sets.len());
                for args in sets {
                    each.push(sqlite_rows(&mut statement, &args)?);
                }
                Done::RowsEach(each)
            }
            Step::Script(text) => {
                db.execute_batch(&text)?;
                Done::Count(0)
            }
        });
    }
    if let Some(tx) = tx {
        tx.commit()?;
    }
    Ok(out)
}

fn sqlite_rows(
    statement: &mut rusqlite::CachedStatement<'_>,
    args: &[Arg],
) -> rusqlite::Result<Vec<Row>> {
    let columns = statement.column_count();
    let mut rows = statement.query(rusqlite::params_from_iter(args.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut cells = Vec::with_capacity(columns);
        for i in 0..columns {
            cells.push(match row.get_ref(i)? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(v) => Cell::Int(v),
                ValueRef::Real(v) => Cell::Int(v as i64),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Cell::Text(String::from_utf8_lossy(t).into_owned())
                }
            });
        }
        out.push(cells);
    }
    Ok(out)
}

/// Prepared statements by their text.
type StatementKey = (&'static str, Option<&'static str>);

/// A job for the PostgreSQL thread.
enum Job {
    Run {
        steps: Vec<Step>,
        transaction: bool,
        /// Checks the fencing token first (in the same transaction).
        writes: bool,
        reply: mpsc::SyncSender<Result<Vec<Done>, DbError>>,
    },
    /// From now on, every writing job checks that connection `id` still
    /// has fencing token `token`.
    Fence { id: i64, token: i64 },
}

/// One PostgreSQL session on a thread of its own.
pub(crate) struct Postgres {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Postgres { .. }")
    }
}

impl Postgres {
    /// Opens a session with `config` (its password already set) on a
    /// thread of its own.
    pub fn connect(config: postgres::Config) -> Result<Postgres, DbError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, connected) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("leadscored-postgres".to_owned())
            .spawn(move || {
                let client = match config.connect(postgres::NoTls) {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        client
                    }
                    Err(e) => {
                        let _ = ready.send(Err(DbError::from(e)));
                        return;
                    }
                };
                serve(client, queue);
            })
            .map_err(|e| DbError::Gone(format!("cannot start its thread: {e}")))?;
        connected
            .recv()
            .map_err(|_| DbError::Gone("its thread stopped".to_owned()))??;
        Ok(Postgres { jobs })
    }

    pub fn run(
        &self,
        steps: Vec<Step>,
        transaction: bool,
        writes: bool,
    ) -> Result<Vec<Done>, DbError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.jobs
            .send(Job::Run {
                steps,
                transaction,
                writes,
                reply,
            })
            .map_err(|_| DbError::Gone("its thread stopped".to_owned()))?;
        answer
            .recv()
            .map_err(|_| DbError::Gone("its thread stopped".to_owned()))?
    }

    pub fn fence(&self, id: i64, token: i64) {
        let _ = self.jobs.send(Job::Fence { id, token });
    }
}

/// The PostgreSQL thread: runs jobs until the state drops its sender.
fn serve(client: postgres::Client, queue: mpsc::Receiver<Job>) {
    let mut statements: HashMap<StatementKey, postgres::Statement> = HashMap::new();
    let mut fence: Option<(i64, i64)> = None;
    // `Err(why)` once the session lost its claim: it is closed at once (so
    // its lock goes) and never works again; the state is reopened, with a
    // new session and claim.
    let mut client: Result<postgres::Client, String> = Ok(client);
    while let Ok(job) = queue.recv() {
        match job {
            Job::Fence { id, token } => fence = Some((id, token)),
            Job::Run {
                steps,
                transaction,
                writes,
                reply,
            } => {
                let result = match &mut client {
                    Err(why) => Err(DbError::Gone(why.clone())),
                    Ok(session) => run_postgres(
                        session,
                        &mut statements,
                        steps,
                        transaction || (writes && fence.is_some()),
                        fence.filter(|_| writes),
                    ),
                };
                if let Err(e) = &result
                    && e.lost()
                {
                    client = Err(e.to_string());
                }
                let _ = reply.send(result);
            }
        }
    }
}

fn run_postgres(
    client: &mut postgres::Client,
    statements: &mut HashMap<StatementKey, postgres::Statement>,
    steps: Vec<Step>,
    transaction: bool,
    fence: Option<(i64, i64)>,
) -> Result<Vec<Done>, DbError> {
    if transaction {
        client.batch_execute("BEGIN")?;
    }
    let result = run_postgres_steps(client, statements, steps, fence);
    if transaction {
        match &result {
            Ok(_) => client.batch_execute("COMMIT")?,
            Err(_) => {
                let _ = client.batch_execute("ROLLBACK");
            }
        }
    }
    result
}

fn run_postgres_steps(
    client: &mut postgres::Client,
    statements: &mut HashMap<StatementKey, postgres::Statement>,
    steps: Vec<Step>,
    fence: Option<(i64, i64)>,
) -> Result<Vec<Done>, DbError> {
    if let Some((id, token)) = fence {
        // FOR SHARE holds the row until commit: a claim (which updates
        // the token) waits for this transaction, and a transaction after
        // a claim sees the new token and is refused.
        let held = client.query_opt(
            "SELECT 1 FROM leadscored.connections WHERE id = $1 AND token = $2 FOR SHARE",
            &[&id, &token],
        )?;
        if held.is_none() {
            return Err(DbError::Fenced { mine: token });
        }
    }
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        out.push(match step {
            Step::Exec(sql, args) => {
                let statement = prepare(client, statements, sql)?;
                Done::Count(client.execute(&statement, &postgres_params(&args))?)
            }
            Step::Each(sql, sets) => {
                let statement = prepare(client, statements, sql)?;
                let mut counts = Vec::with_capacity(sets.len());
                for args in sets {
                    counts.push(client.execute(&statement, &postgres_params(&args))?);
                }
                Done::Counts(counts)
            }
            Step::Query(sql, args) => {
                let statement = prepare(client, statements, sql)?;
                let rows = client.query(&statement, &postgres_params(&args))?;
                Done::Rows(rows.iter().map(postgres_row).collect::<Result<_, _>>()?)
            }
            Step::QueryEach(sql, sets) => {
                let statement = prepare(client, statements, sql)?;
                let mut each = Vec::with_capacity(sets.len());
                for args in sets {
                    let rows = client.query(&statement, &postgres_params(&args))?;
                    each.push(rows.iter().map(postgres_row).collect::<Result<_, _>>()?);
                }
                Done::RowsEach(each)
            }
            Step::Script(text) => {
                client.batch_execute(&text)?;
                Done::Count(0)
            }
        });
    }
    Ok(out)
}

fn prepare(
    client: &mut postgres::Client,
    statements: &mut HashMap<StatementKey, postgres::Statement>,
    sql: Sql,
) -> Result<postgres::Statement, DbError> {
    let key = (sql.sqlite, sql.postgres);
    if let Some(statement) = statements.get(&key) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(&sql.postgres_text())?;
    statements.insert(key, statement.clone());
    Ok(statement)
}

fn postgres_params(args: &[Arg]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|arg| -> &(dyn postgres::types::ToSql + Sync) {
            match arg {
                Arg::Int(v) => v,
                Arg::Text(v) => v,
            }
        })
        .collect()
}

fn postgres_row(row: &postgres::Row) -> Result<Row, DbError> {
    use postgres::types::Type;
    let mut cells = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let t = column.type_();
        let cell = if *t == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map(Cell::Int)
        } else if *t == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map(|v| Cell::Int(i64::from(v)))
        } else if *t == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)?
                .map(|v| Cell::Int(i64::from(v)))
        } else if *t == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?
                .map(|v| Cell::Int(i64::from(v)))
        } else {
            row.try_get::<_, Option<String>>(i)?.map(Cell::Text)
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(cells)
}
