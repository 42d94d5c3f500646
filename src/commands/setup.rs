//! `setup`: create the output properties a connection writes (number,
//! choice with the grade ladder / tier labels / stages as options, text for
//! the summary) in leadscored's property group, and report existing
//! properties that cannot take leadscored's values.

use std::fmt::Write as _;

use super::CommandError;
use crate::config::{Connection, CrmKind};
use crate::crm::hubspot::Hubspot;
use crate::crm::{Crm as _, SetupReport};

/// Runs setup (or only checks, when `apply` is false) and renders the report.
pub fn setup(connection: &Connection, apply: bool) -> Result<(String, SetupReport), CommandError> {
    if connection.crm.kind == CrmKind::Pardot {
        return Err(CommandError::Data(
            "setup for Pardot is not available yet: create the custom fields in Account Engagement"
                .to_owned(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let specs = connection.property_specs();
    let report = runtime.block_on(async {
        let crm = Hubspot::new(connection)?;
        crm.setup(&specs, apply).await
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
