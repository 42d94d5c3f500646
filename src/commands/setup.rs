//! `setup`: create the output properties a connection writes (HubSpot:
//! number, choice with the grade ladder / tier labels / stages as options,
//! text for the summary, in leadscored's property group; Pardot: Number and
//! Text custom fields), and report existing ones that cannot take
//! leadscored's values.

use std::fmt::Write as _;

use super::CommandError;
use crate::config::Connection;
use crate::crm::{Connector, Crm as _, SetupReport};

/// Runs setup (or only checks, when `apply` is false) and renders the report.
pub fn setup(connection: &Connection, apply: bool) -> Result<(String, SetupReport), CommandError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let specs = connection.property_specs();
    let report = runtime.block_on(async {
        let crm = Connector::new(connection)?;
        tokio::select! {
            report = crm.setup(&specs, apply) => report,
            never = super::progress::show(crm.http(), "setup", None) => match never {},
        }
    })?;
    let mut text = String::new();
    for name in &report.created {
        let _ = writeln!(text, "created   {name}");
    }
    for name in &report.existing {
        let _ = writeln!(text, "ok        {name}");
    }
    for name in &report.missing {
        let _ = writeln!(
            text,
            "missing   {name} (run setup without --check to create it)"
        );
    }
    for (name, why) in &report.conflicts {
        let _ = writeln!(text, "CONFLICT  {name}: {why}");
    }
    Ok((text, report))
}
