//! `explain`: why one record has the score, grade, tier and stage it has —
//! from JSON lines, or a CRM record as the local state last saw it (no CRM
//! call), with what leadscored holds in the CRM and would write next.

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::Path;

use jiff::Timestamp;

use super::CommandError;
use crate::config::Connection;
use crate::engine::{AccountCard, explain_account, explain_with};
use crate::model::Model;

/// Finds record `id` in JSON-lines `input` and explains its scorecard.
pub fn explain(
    model: &Model,
    now: Timestamp,
    input: impl BufRead,
    id: &str,
    verbose: bool,
    lines: super::Lines,
) -> Result<String, CommandError> {
    let mut skipped = None;
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        let text = line.trim();
        if text.is_empty() || !text.contains(id) {
            continue;
        }
        if lines == super::Lines::Companies {
            let account = match model.parse_account(text) {
                Ok(account) => account,
                Err(e) => {
                    skipped = Some(format!("line {}: {e}", index + 1));
                    continue;
                }
            };
            if account.company.id() == id {
                let mut cards = AccountCard::default();
                model.score_account_into(&account.company, &account.people, now, &mut cards);
                return Ok(explain_account(model, &account, &cards, now, verbose));
            }
            continue;
        }
        let record = match model.parse_record(text) {
            Ok(record) => record,
            Err(e) => {
                skipped = Some(format!("line {}: {e}", index + 1));
                continue;
            }
        };
        if record.id() == id {
            let card = model.score(&record, now);
            return Ok(explain_with(model, &record, &card, now, verbose));
        }
    }
    let hint = skipped
        .map(|s| format!(" (a malformed line mentions it: {s})"))
        .unwrap_or_default();
    Err(CommandError::Data(format!(
        "no record with id {id:?} in the input{hint}"
    )))
}

/// Explains CRM record `id` from the connection's local state: its inputs
/// as last pulled (with leadscored's writes since), scored at `now`, then
/// each output's value in the CRM and, where it differs, what the next
/// pass writes. Makes no CRM call.
pub fn explain_stored(
    connection: &Connection,
    state_path: &Path,
    id: &str,
    now: Timestamp,
    verbose: bool,
) -> Result<String, CommandError> {
    let state =
        crate::state::open_store_read_only(&connection.state, state_path, &connection.identity())?
            .ok_or_else(|| {
                CommandError::Data(format!(
                    "no local state at {}: run a sync for this connection first",
                    state_path.display()
                ))
            })?;
    let (mut pulled, _) = state.record(id)?.ok_or_else(|| {
        CommandError::Data(format!(
            "{} record {id:?} is not in the local state {} (not pulled yet, or not in the CRM)",
            connection.crm.kind.as_str(),
            state_path.display()
        ))
    })?;
    let model = &connection.model;
    let company = state.context(&mut pulled)?;
    let record =
        crate::crm::mapping::to_record(model, &connection.inputs, &pulled, company.as_ref());
    // With company scores, the record is scored with its company, and
    // the company from its stored people, as a pass does.
    let account = crate::sync::account_from_state(connection, &state, &pulled, now)?;
    let card = match &account {
        Some((_, person)) => person.clone(),
        None => model.score(&record, now),
    };
    let mut out = explain_with(model, &record, &card, now, verbose);
    if let (Some((company, _)), Some(id)) = (&account, pulled.company_id()) {
        let line = crate::engine::brief(model, company, crate::model::Object::Company);
        let _ = writeln!(
            out,
            "\nIts company {id}, scored from its stored people:{line}"
        );
    }
    let _ = writeln!(
        out,
        "\nIn {} (as last pulled, with leadscored's writes since):",
        connection.crm.kind.as_str()
    );
    for output in &connection.outputs {
        let held = pulled
            .values
            .get(&output.property)
            .map(String::as_str)
            .unwrap_or("");
        let next = output.render(model, &card).unwrap_or_default();
        let shown = |v: &str| {
            if v.is_empty() {
                "(empty)".to_owned()
            } else {
                v.to_owned()
            }
        };
        let planned =
            crate::plan::changes(model, std::slice::from_ref(output), &pulled.values, &card);
        let _ = if planned.is_empty() {
            writeln!(out, "  {}: {}", output.property, shown(held))
        } else {
            writeln!(
                out,
                "  {}: {} → {} at the next pass",
                output.property,
                shown(held),
                shown(&next)
            )
        };
    }
    Ok(out)
}
