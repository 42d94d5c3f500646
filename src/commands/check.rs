//! `check-config`: validate a model, run its embedded test cases, and say
//! what it contains. The daemon validates with the same code path.

use std::fmt::Write as _;
use std::path::Path;

use super::{CommandError, load_model};
use crate::engine::Scorecard;
use crate::model::{ConfigError, Expectation, Model};

/// What `check-config` found in a model that compiled.
#[derive(Debug)]
pub struct CheckOutcome {
    /// The model summary, its warnings and one line per embedded test case.
    pub report: String,
    pub failed: usize,
    pub total: usize,
    pub warnings: usize,
}

impl CheckOutcome {
    /// Turns failing cases (and, when `strict`, warnings) into the error
    /// the command exits with.
    pub fn into_result(self, strict: bool) -> Result<String, (String, CommandError)> {
        if self.failed > 0 {
            Err((
                self.report,
                CommandError::CasesFailed {
                    failed: self.failed,
                    total: self.total,
                },
            ))
        } else if strict && self.warnings > 0 {
            Err((self.report, CommandError::StrictWarnings(self.warnings)))
        } else {
            Ok(self.report)
        }
    }
}

/// Validates the model at `path` and runs its embedded cases. `connection`
/// says which event types are fed (none without one); `more` are warnings
/// found outside the model (inputs the CRM does not have).
pub fn check_config(
    path: &Path,
    connection: Option<&crate::config::Connection>,
    more: Vec<ConfigError>,
) -> Result<CheckOutcome, CommandError> {
    let model = load_model(path)?;
    let fed = |kind: &str| connection.is_some_and(|c| c.events.contains_key(kind));
    let mut warnings = model.warnings(&fed);
    warnings.extend(more);
    let mut report = model.summary();
    for warning in &warnings {
        let _ = write!(
            report,
            "\n{}:{}:{}: warning: {}",
            warning.file, warning.line, warning.column, warning.message
        );
    }
    if !warnings.is_empty() {
        let _ = write!(
            report,
            "\n{} warning{}",
            warnings.len(),
            if warnings.len() == 1 { "" } else { "s" }
        );
    }
    let (failed, total) = run_cases(&model, &mut report);
    if failed == 0 {
        let _ = write!(report, "\nconfig ok");
    }
    Ok(CheckOutcome {
        report,
        failed,
        total,
        warnings: warnings.len(),
    })
}

/// Runs every embedded case, appending one line per case (and one per
/// mismatch) to `report`. Returns (failed, total).
pub fn run_cases(model: &Model, report: &mut String) -> (usize, usize) {
    let cases = model.cases();
    if cases.is_empty() {
        report.push_str("\n  no embedded test cases");
        return (0, 0);
    }
    let mut failed = 0;
    let mut account = crate::engine::AccountCard::default();
    for case in cases {
        let mismatches = if !case.company {
            let card = model.score(&case.record, case.now);
            check_case(model, case.record.id(), &case.expectations, &card)
        } else {
            model.score_account_into(&case.record, &case.people, case.now, &mut account);
            let mut out = Vec::new();
            for expectation in &case.expectations {
                let (id, card) = match &expectation.person {
                    None => (case.record.id(), &account.company),
                    Some(person) => match case.people.iter().position(|p| p.id() == person) {
                        Some(i) => (person.as_str(), &account.people[i]),
                        None => continue,
                    },
                };
                let mut found = check_case(model, id, std::slice::from_ref(expectation), card);
                if let Some(person) = &expectation.person {
                    for line in &mut found {
                        *line = format!("{person}: {line}");
                    }
                }
                out.extend(found);
            }
            out
        };
        if mismatches.is_empty() {
            let _ = write!(report, "\n  test \"{}\" ok", case.name);
        } else {
            failed += 1;
            let _ = write!(report, "\n  test \"{}\" FAILED", case.name);
            for m in mismatches {
                let _ = write!(report, "\n    {m}");
            }
        }
    }
    let _ = write!(
        report,
        "\n  {} of {} test cases passed",
        cases.len() - failed,
        cases.len()
    );
    (failed, cases.len())
}

fn check_case(
    model: &Model,
    record_id: &str,
    expectations: &[Expectation],
    card: &Scorecard,
) -> Vec<String> {
    let json = crate::engine::CardJson {
        model,
        record_id,
        card,
    }
    .to_value();
    let mut out = Vec::new();
    for expectation in expectations {
        let actual = &json["scores"][&expectation.score];
        compare(&mut out, expectation, actual, card);
    }
    out
}

fn compare(out: &mut Vec<String>, e: &Expectation, actual: &serde_json::Value, card: &Scorecard) {
    let score = &e.score;
    for (field, wanted) in [
        ("fit", e.fit),
        ("engagement", e.engagement),
        ("total", e.total),
    ] {
        if let Some(wanted) = wanted {
            let got = actual[field].as_f64().unwrap_or(f64::NAN);
            if (got - wanted).abs() > 1e-9 {
                out.push(format!("{score}.{field}: expected {wanted}, got {got}"));
            }
        }
    }
    let text = |field: &str| actual[field].as_str().map(str::to_owned);
    if let Some(grade) = e.grade {
        let got = card.grade();
        if got != Some(grade) {
            out.push(format!(
                "{score}.grade: expected {grade}, got {}",
                got.map_or("none".to_owned(), |g| g.to_string())
            ));
        }
    }
    for (field, wanted) in [
        ("tier", &e.tier),
        ("matrix", &e.matrix),
        ("stage", &e.stage),
    ] {
        if let Some(wanted) = wanted {
            let got = text(field);
            if !got
                .as_deref()
                .is_some_and(|g| g.eq_ignore_ascii_case(wanted))
            {
                out.push(format!(
                    "{score}.{field}: expected {wanted:?}, got {}",
                    got.map_or("none".to_owned(), |g| format!("{g:?}"))
                ));
            }
        }
    }
    if let Some(wanted) = e.disqualified
        && card.is_disqualified() != wanted
    {
        out.push(format!(
            "disqualified: expected {wanted}, got {}",
            card.is_disqualified()
        ));
    }
}

/// What a connection file sets up, for `check-config --connection`.
pub fn connection_summary(path: &Path, connection: &crate::config::Connection) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let crm = &connection.crm;
    let _ = writeln!(out, "connection {} is valid", path.display());
    let _ = writeln!(
        out,
        "  CRM          {} at {} (time zone {})",
        crm.kind.as_str(),
        crm.base_url,
        crm.timezone
    );
    let interval = match connection.limits.per_ten_seconds {
        0 => "no interval limit".to_owned(),
        n => format!("{n} calls per {:?}", connection.limits.interval),
    };
    let _ = writeln!(
        out,
        "  limits       {interval}, {} concurrent, {} a day ({}% left to others)",
        connection.limits.concurrency,
        connection.limits.daily,
        (connection.limits.daily_headroom * 100.0).round()
    );
    let events: Vec<&str> = connection
        .events
        .keys()
        .map(String::as_str)
        .filter(|k| !k.starts_with(crate::config::DERIVED_PREFIX))
        .collect();
    let derived: Vec<String> = connection
        .inputs
        .iter()
        .filter_map(|i| {
            let how = match i.derived.as_ref()?.how {
                crate::config::DeriveHow::Count => "count",
                crate::config::DeriveHow::Latest => "latest",
            };
            Some(format!("{} ({how})", i.name))
        })
        .collect();
    let _ = writeln!(
        out,
        "  reads        {} fields, events: {}{}",
        connection.fields().len(),
        events.join(", "),
        if derived.is_empty() {
            String::new()
        } else {
            format!("; from events: {}", derived.join(", "))
        }
    );
    if !connection.events.is_empty() {
        let reach: Vec<String> = connection
            .events
            .keys()
            .map(|kind| {
                let name = kind
                    .strip_prefix(crate::config::DERIVED_PREFIX)
                    .map_or_else(|| kind.clone(), |input| format!("{input} (input)"));
                match connection.horizon(kind) {
                    None => format!("{name} all history"),
                    Some(ms) => format!("{name} {} days", (ms + 86_399_999) / 86_400_000),
                }
            })
            .collect();
        let how = match (crm.kind, connection.limits.event_reads) {
            (crate::config::CrmKind::Pardot, _) => {
                "visitor activities by id range".to_owned()
            }
            (_, crate::config::EventReads::Auto) => {
                "as streams by type and time window, or per changed contact when that costs fewer calls".to_owned()
            }
            (_, crate::config::EventReads::Streams) => {
                "as streams by type and time window".to_owned()
            }
            (_, crate::config::EventReads::PerRecord) => "per changed contact".to_owned(),
        };
        let _ = writeln!(
            out,
            "  horizon      {} — how far back a first sync reads engagement ({how})",
            reach.join(", ")
        );
    }
    let from = |origin: crate::config::Origin| -> String {
        let mut fields: Vec<String> = connection
            .input_fields(origin)
            .into_iter()
            .map(|(field, input)| {
                if field == input || format!("company.{field}") == input {
                    field
                } else {
                    format!("{field} ({input})")
                }
            })
            .collect();
        fields.sort();
        fields.dedup();
        fields.join(", ")
    };
    let object = match crm.kind {
        crate::config::CrmKind::Hubspot => "contact ",
        crate::config::CrmKind::Pardot => "prospect",
    };
    let _ = writeln!(
        out,
        "  {object}     {}",
        from(crate::config::Origin::Contact)
    );
    let company = from(crate::config::Origin::Company);
    if !company.is_empty() {
        let _ = writeln!(
            out,
            "  company      {company} — from the contact's primary company ({}), read in batches of 100",
            crate::config::COMPANY_ID
        );
    }
    if let Some(accounts) = &connection.accounts {
        let keys: Vec<String> = accounts
            .group_by
            .iter()
            .map(|k| format!("{} ({})", k.as_str(), k.field()))
            .collect();
        let _ = writeln!(
            out,
            "  accounts     prospects grouped by the first they have of {}; company scores go onto every prospect of the account",
            keys.join(", ")
        );
    }
    let lists = connection.lists();
    if !lists.is_empty() {
        match crm.kind {
            crate::config::CrmKind::Hubspot => {
                let _ = writeln!(
                    out,
                    "  lists        {} — resolved by name every pass; `setup --check` confirms they exist",
                    lists.join(", ")
                );
            }
            crate::config::CrmKind::Pardot => {
                let _ = writeln!(
                    out,
                    "  warning      the model's lists ({}) are not read from Pardot yet: their conditions match no one",
                    lists.join(", ")
                );
            }
        }
    }
    let outputs: Vec<&str> = connection
        .outputs
        .iter()
        .map(|o| o.property.as_str())
        .collect();
    let _ = writeln!(out, "  writes       {}", outputs.join(", "));
    if !connection.company_outputs.is_empty() {
        let outputs: Vec<&str> = connection
            .company_outputs
            .iter()
            .map(|o| o.property.as_str())
            .collect();
        let _ = writeln!(
            out,
            "  company      writes {} — to each scored company, in batches of 100, where changed",
            outputs.join(", ")
        );
    }
    let daemon = &connection.daemon;
    let _ = writeln!(
        out,
        "  schedules    incremental {}, rescore {}",
        daemon.incremental, daemon.rescore
    );
    let _ = writeln!(
        out,
        "  endpoint     {}",
        daemon.listen.map_or_else(
            || "off".to_owned(),
            |a| format!("http://{a}/healthz, /metrics")
        )
    );
    if let crate::config::StateStore::Postgres { url, password } = &connection.state {
        let _ = writeln!(
            out,
            "  state        PostgreSQL {url} (password from {}), shared with every instance serving this file",
            password
                .as_ref()
                .map_or_else(|| "the server's own rules".to_owned(), ToString::to_string)
        );
    }
    let _ = writeln!(out, "  model        {}\n", connection.model_path.display());
    out
}
