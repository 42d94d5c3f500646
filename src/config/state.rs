//! `[state]`: where a connection keeps its state. Absent, a SQLite file in
//! the state directory; with `url`, its own schema in a PostgreSQL
//! database that several instances share.

use serde::Deserialize;
use toml::Spanned;

use super::SecretSource;
use super::raw::RawSecret;
use crate::model::diagnostics::Diagnostics;

/// `[state]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    pub url: Spanned<String>,
    pub password: Option<Spanned<RawSecret>>,
}

/// Where the state lives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StateStore {
    /// `<state dir>/<connection>.sqlite3` (the default).
    #[default]
    File,
    /// PostgreSQL: `postgres://user@host:port/database` (or a Unix socket
    /// directory as `host=/run/postgresql`), the password read from its
    /// source, never from the file.
    Postgres {
        url: String,
        password: Option<SecretSource>,
    },
}

pub(crate) fn state(d: &mut Diagnostics<'_>, raw: Option<RawState>) -> StateStore {
    let Some(raw) = raw else {
        return StateStore::File;
    };
    let url = raw.url.get_ref().trim().to_owned();
    let span = raw.url.span();
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        d.error(
            &span,
            "[state] url: expected postgres://user@host:port/database (leave [state] out to keep a SQLite file per connection)",
        );
        return StateStore::File;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && userinfo.contains(':')
    {
        d.error(
            &span,
            "[state] url holds a password: remove it and give password = { credential = \"...\" } (or env, or file); secrets never go in this file",
        );
        return StateStore::File;
    }
    if url.contains("password=") {
        d.error(
            &span,
            "[state] url holds a password parameter: give password = { credential = \"...\" } instead",
        );
        return StateStore::File;
    }
    let password = raw
        .password
        .as_ref()
        .and_then(|p| super::secret(d, p, "[state] password"));
    StateStore::Postgres { url, password }
}
