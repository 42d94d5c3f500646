//! `setup`: create the output properties a connection writes (HubSpot:
//! number, choice with the grade ladder / tier labels / stages as options,
//! text for the summary, in leadscored's property group; Pardot: Number and
//! Text custom fields), and report existing ones that cannot take
//! leadscored's values.

use std::fmt::Write as _;

use super::CommandError;
use crate::config::{Connection, Origin};
use crate::crm::{Connector, Crm as _, SetupReport};

/// Runs setup (or only checks, when `apply` is false) and renders the report.
pub fn setup(connection: &Connection, apply: bool) -> Result<(String, SetupReport), CommandError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let specs = connection.property_specs();
    let report = runtime.block_on(async {
        let crm = Connector::new(connection)?;
        let work = async {
            let mut report = crm.setup(&specs, apply).await?;
            let (missing, warnings) = missing_inputs(&crm, connection).await?;
            report.missing_inputs = missing.into_iter().map(|m| (m.what, m.why)).collect();
            report.warnings = warnings;
            Ok::<_, crate::crm::CrmError>(report)
        };
        tokio::select! {
            report = work => report,
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
    for (what, why) in &report.missing_inputs {
        let _ = writeln!(text, "MISSING   {what}: {why}");
    }
    for warning in &report.warnings {
        let _ = writeln!(text, "warning   {warning}");
    }
    Ok((text, report))
}

/// A model input the CRM cannot feed.
#[derive(Debug)]
struct Missing {
    /// "contact property jobtitel", "list \"Customers\"".
    what: String,
    /// The model's name for it (`company.numemployes`, `list "Customers"`).
    input: String,
    why: String,
}

/// For `check-config --connection FILE --crm-url URL`: every model input
/// the CRM cannot feed, as a warning located where the model reads it.
pub fn input_warnings(
    connection: &Connection,
) -> Result<Vec<crate::model::ConfigError>, CommandError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (missing, notes) = runtime.block_on(async {
        let crm = Connector::new(connection)?;
        missing_inputs(&crm, connection).await
    })?;
    let model_file = connection.model_path.display().to_string();
    let mut out: Vec<crate::model::ConfigError> = missing
        .into_iter()
        .map(|m| {
            let message = format!("{}: {}", m.what, m.why);
            connection
                .model
                .locate_input(&m.input, message.clone())
                .unwrap_or(crate::model::ConfigError {
                    file: model_file.clone(),
                    line: 1,
                    column: 1,
                    message,
                })
        })
        .collect();
    out.extend(notes.into_iter().map(|message| crate::model::ConfigError {
        file: model_file.clone(),
        line: 1,
        column: 1,
        message,
    }));
    Ok(out)
}

/// Every model input the CRM cannot feed: fields no property of the
/// contact or company object is named, and lists no list is named — all
/// at once, each with what reads it; and warnings for what the CRM cannot
/// be asked about.
async fn missing_inputs(
    crm: &Connector,
    connection: &Connection,
) -> Result<(Vec<Missing>, Vec<String>), crate::crm::CrmError> {
    let mut warnings = Vec::new();
    let readers = connection.model.readers();
    let read_by = |input: &str| match readers.get(input) {
        Some(names) if !names.is_empty() => format!("read by {}", names.join(", ")),
        _ => "read by the model's stages or other conditions".to_owned(),
    };
    // Output properties the model also reads (the current stage) are
    // setup's own to create.
    let contact: Vec<(String, String)> = connection
        .input_fields(Origin::Contact)
        .into_iter()
        .filter(|(field, _)| !connection.outputs.iter().any(|o| o.property == *field))
        .collect();
    let company = connection.input_fields(Origin::Company);
    let names = |fields: &[(String, String)]| -> Vec<String> {
        let mut names: Vec<String> = fields.iter().map(|(f, _)| f.clone()).collect();
        names.sort();
        names.dedup();
        names
    };
    let mut out = Vec::new();
    for (object, field) in crm
        .missing_fields(&names(&contact), &names(&company))
        .await?
    {
        let fields = if object == "company" {
            &company
        } else {
            &contact
        };
        for (_, input) in fields.iter().filter(|(f, _)| *f == field) {
            out.push(Missing {
                what: format!("{object} property {field}"),
                input: input.clone(),
                why: format!(
                    "the CRM has no such {object} property; input {input} never matches ({}). Map it under [inputs], or \"off\"",
                    read_by(input)
                ),
            });
        }
    }
    let lists = connection.lists();
    if !lists.is_empty() {
        match crm.list_infos(&lists).await {
            Ok(infos) => {
                for info in infos.into_iter().filter(|i| i.id.is_none()) {
                    let input = format!("list \"{}\"", info.name);
                    out.push(Missing {
                        what: input.clone(),
                        why: format!(
                            "no contact list has this name; its conditions never match ({})",
                            read_by(&input)
                        ),
                        input,
                    });
                }
            }
            Err(crate::crm::CrmError::Unsupported(why)) => warnings.push(format!(
                "lists {}: {why}; their conditions read the lists stored with each record",
                lists.join(", ")
            )),
            Err(other) => return Err(other),
        }
    }
    Ok((out, warnings))
}
