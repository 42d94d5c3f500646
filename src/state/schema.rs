//! The state's schema per database, one entry per version: entry `n`
//! moves version `n` to `n + 1`. SQLite keeps its version in
//! `PRAGMA user_version`, PostgreSQL in `leadscored.connections`.

/// The schema, one entry per version; entry `n` moves version `n` to `n+1`.
pub(crate) const MIGRATIONS: &[&str] = &[
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

/// The same tables in PostgreSQL, in the connection's own schema (the
/// session's search path). Text keys sort byte-wise (`COLLATE "C"`), as
/// SQLite's do, so paging by id visits records in the same order.
pub(crate) const POSTGRES_MIGRATIONS: &[&str] = &[
    // 1: everything SQLite's versions 1 to 5 hold.
    "CREATE TABLE meta (key TEXT COLLATE \"C\" PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE records (
         id TEXT COLLATE \"C\" PRIMARY KEY,
         seen_ms BIGINT NOT NULL,
         inputs TEXT NOT NULL,
         written TEXT,
         company TEXT COLLATE \"C\",
         email TEXT COLLATE \"C\"
     );
     CREATE INDEX records_seen ON records (seen_ms);
     CREATE INDEX records_company ON records (company) WHERE company IS NOT NULL;
     CREATE INDEX records_email ON records (email) WHERE email IS NOT NULL;
     CREATE TABLE failed (
         id TEXT COLLATE \"C\" PRIMARY KEY,
         reason TEXT NOT NULL,
         attempts BIGINT NOT NULL,
         first_ms BIGINT NOT NULL,
         last_ms BIGINT NOT NULL
     );
     CREATE TABLE runs (
         id BIGSERIAL PRIMARY KEY,
         run_id TEXT NOT NULL,
         kind TEXT NOT NULL,
         started_ms BIGINT NOT NULL,
         ended_ms BIGINT,
         outcome TEXT,
         pulled BIGINT NOT NULL DEFAULT 0,
         changed BIGINT NOT NULL DEFAULT 0,
         written BIGINT NOT NULL DEFAULT 0,
         failed BIGINT NOT NULL DEFAULT 0,
         calls BIGINT NOT NULL DEFAULT 0,
         watermark_ms BIGINT,
         message TEXT
     );
     CREATE TABLE budget (day TEXT COLLATE \"C\" PRIMARY KEY, calls BIGINT NOT NULL);
     CREATE TABLE companies (
         id TEXT COLLATE \"C\" PRIMARY KEY,
         seen_ms BIGINT NOT NULL,
         inputs TEXT NOT NULL
     );
     CREATE TABLE lists (
         name TEXT COLLATE \"C\" PRIMARY KEY,
         list_id TEXT NOT NULL,
         change_key TEXT NOT NULL
     );
     CREATE TABLE list_members (
         list TEXT COLLATE \"C\" NOT NULL,
         record TEXT COLLATE \"C\" NOT NULL,
         PRIMARY KEY (list, record)
     );
     CREATE INDEX list_members_record ON list_members (record);
     CREATE TABLE events (
         key TEXT COLLATE \"C\" NOT NULL,
         id TEXT COLLATE \"C\" NOT NULL,
         kind TEXT COLLATE \"C\" NOT NULL,
         at_ms BIGINT NOT NULL,
         attributes TEXT NOT NULL,
         PRIMARY KEY (key, id, kind)
     );
     CREATE TABLE company_outputs (id TEXT COLLATE \"C\" PRIMARY KEY, written TEXT NOT NULL);",
];
