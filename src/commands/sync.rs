//! `sync --once`: one pass against the connection's CRM, with its local
//! state (the same state the daemon keeps; a daemon holding it makes this
//! wait its turn: runs never overlap). With `--dry-run`, nothing is
//! written — not to the CRM, not to the state — and every planned change
//! is printed (old → new per record) with a summary.

use std::io::Write;
use std::path::Path;

use super::CommandError;
use crate::config::Connection;
use crate::crm::Connector;
use crate::sync::{Pass, PassReport, RecordChange, Stop, run_logged, run_pass};

/// Prints one record's planned changes as a line of text or of JSON.
pub(crate) fn print_change(
    out: &mut impl Write,
    change: &RecordChange,
    json: bool,
) -> std::io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, change).map_err(std::io::Error::other)?;
        return out.write_all(b"\n");
    }
    let parts: Vec<String> = change
        .changes
        .iter()
        .map(|c| {
            format!(
                "{}: {} → {}",
                c.property,
                c.old.as_deref().unwrap_or("(empty)"),
                if c.new.is_empty() { "(empty)" } else { &c.new }
            )
        })
        .collect();
    writeln!(out, "{}  {}", change.id, parts.join("; "))
}

/// Runs one pass, printing each record's changes to `out` and then the
/// summary. SIGTERM or Ctrl-C stops it at the next safe point.
pub fn sync_once(
    connection: &Connection,
    state_path: &Path,
    pass: Pass,
    json: bool,
    mut out: impl Write,
) -> Result<PassReport, CommandError> {
    let opened = if pass.dry_run {
        crate::state::open_store_read_only(&connection.state, state_path, &connection.identity())
    } else {
        crate::state::open_store(&connection.state, state_path, &connection.identity()).map(Some)
    };
    let mut state = opened.map_err(|e| e.at(state_path))?;
    if let Some(state) = state.as_ref().filter(|s| !s.read_only()) {
        state
            .close_abandoned_runs(jiff::Timestamp::now().as_millisecond())
            .map_err(|e| e.at(state_path))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut write_error: Option<std::io::Error> = None;
    let report = runtime.block_on(async {
        let stop = Stop::default();
        crate::daemon::stop_on_signals(stop.clone());
        let crm = Connector::new(connection)?;
        let on_change = |change: &RecordChange| {
            if write_error.is_none()
                && let Err(e) = print_change(&mut out, change, json)
            {
                write_error = Some(e);
            }
        };
        if pass.dry_run {
            eprintln!(
                "dry run: this pass reads from the CRM as a real one does (list or search pages, and event detail for records not seen before, from the daily budget) and writes nothing, neither to the CRM nor to the local state"
            );
        }
        let total = match (&state, pass.kind) {
            (Some(state), crate::sync::PassKind::Full) => state.count().ok().filter(|n| *n > 0),
            _ => None,
        };
        let work = async {
            match state.as_mut() {
                Some(state) => run_logged(&crm, connection, state, pass, &stop, on_change).await,
                None => run_pass(&crm, connection, None, pass, &stop, on_change).await,
            }
        };
        let result = tokio::select! {
            result = work => result,
            never = super::progress::show(crate::crm::Crm::http(&crm), "sync", total) => match never {},
        };
        Ok::<_, CommandError>(result.map_err(|e| e.at(state_path))?)
    })?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    if json {
        let summary = serde_json::json!({ "summary": &report });
        serde_json::to_writer(&mut out, &summary).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
    } else {
        out.write_all(report.text().as_bytes())?;
    }
    out.flush()?;
    Ok(report)
}
