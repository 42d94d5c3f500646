//! `sync --once`: one pass of pull → score → plan → write against the
//! connection's CRM; with `--dry-run`, nothing is written and every
//! planned change is printed (old → new per record) with a summary.

use std::io::Write;

use super::CommandError;
use crate::config::{Connection, CrmKind};
use crate::crm::hubspot::Hubspot;
use crate::sync::{Pass, PassReport, RecordChange, run_pass};

/// Runs one pass, printing each record's changes to `out` (a line of text
/// or of JSON each) and then the summary.
pub fn sync_once(
    connection: &Connection,
    pass: Pass,
    json: bool,
    mut out: impl Write,
) -> Result<PassReport, CommandError> {
    if connection.crm.kind == CrmKind::Pardot {
        return Err(CommandError::Data(
            "sync with Pardot is not available yet (the Pardot connector is planned)".to_owned(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut write_error: Option<std::io::Error> = None;
    let report = runtime.block_on(async {
        let crm = Hubspot::new(connection)?;
        run_pass(&crm, connection, pass, |change: &RecordChange| {
            if write_error.is_some() {
                return;
            }
            let result = if json {
                serde_json::to_writer(&mut out, change)
                    .map_err(std::io::Error::other)
                    .and_then(|()| out.write_all(b"\n"))
            } else {
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
            };
            if let Err(e) = result {
                write_error = Some(e);
            }
        })
        .await
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
