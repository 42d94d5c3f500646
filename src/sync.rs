//! One sync pass: pull → score → plan → write, joined by a bounded channel
//! so memory stays flat however large the portal. Writes go out in full
//! batches while the pull goes on; a dry run writes nothing and reports
//! every change and what it would cost.
//!
//! This is the pass the daemon will schedule; local state (watermarks,
//! last written values, echo suppression) is not kept here yet, so an
//! incremental pass takes its watermark from the caller.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::Connection;
use crate::crm::{Crm, CrmError, PullKind, PullSpec, Update, WriteReport, mapping};
use crate::engine::OutputKind;
use crate::plan::Change;

/// Pages in flight between the pull and the scorer.
const PAGES_IN_FLIGHT: usize = 4;

/// What a pass does.
#[derive(Clone, Copy, Debug)]
pub struct Pass {
    pub kind: PullKind,
    pub now: jiff::Timestamp,
    pub dry_run: bool,
}

/// One record's planned changes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordChange {
    pub id: String,
    pub changes: Vec<ChangeJson>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChangeJson {
    pub property: String,
    pub old: Option<String>,
    pub new: String,
}

impl From<Change> for ChangeJson {
    fn from(c: Change) -> Self {
        ChangeJson {
            property: c.property,
            old: c.old,
            new: c.new,
        }
    }
}

/// What a pass found and did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PassReport {
    pub dry_run: bool,
    pub pulled: u64,
    pub pull_pages: u64,
    pub detail_calls: u64,
    /// Records with at least one change.
    pub changed: u64,
    pub written: u64,
    pub failed: Vec<(String, String)>,
    pub write_calls: u64,
    /// Batch calls the changes cost (or would cost, in a dry run).
    pub write_cost: u64,
    /// Per choice output (tier, stage, grade): value → records, before
    /// (what the CRM holds) and after (what leadscored computes).
    pub before: BTreeMap<String, BTreeMap<String, u64>>,
    pub after: BTreeMap<String, BTreeMap<String, u64>>,
}

impl PassReport {
    fn absorb(&mut self, report: WriteReport) {
        self.written += report.written.len() as u64;
        self.write_calls += report.calls;
        self.failed.extend(report.failed);
    }

    /// The summary as an admin reads it.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} records pulled in {} pages ({} detail calls); {} need writes, costing {} batch calls",
            self.pulled, self.pull_pages, self.detail_calls, self.changed, self.write_cost
        );
        if self.dry_run {
            let _ = writeln!(out, "dry run: nothing was written");
        } else {
            let _ = writeln!(
                out,
                "written {} in {} calls; {} failed",
                self.written,
                self.write_calls,
                self.failed.len()
            );
            for (id, why) in self.failed.iter().take(20) {
                let _ = writeln!(out, "  failed {id}: {why}");
            }
        }
        for (property, after) in &self.after {
            let before = self.before.get(property).cloned().unwrap_or_default();
            let _ = writeln!(out, "{property} (before → after)");
            let mut values: Vec<&String> = before.keys().chain(after.keys()).collect();
            values.sort();
            values.dedup();
            for value in values {
                let _ = writeln!(
                    out,
                    "  {:<16} {:>8} → {}",
                    value,
                    before.get(value).copied().unwrap_or(0),
                    after.get(value).copied().unwrap_or(0)
                );
            }
        }
        out
    }
}

/// Runs one pass. `on_change` sees each record's planned changes as they
/// are found (a dry run's per-record report).
pub async fn run_pass<C: Crm>(
    crm: &C,
    connection: &Connection,
    pass: Pass,
    mut on_change: impl FnMut(&RecordChange),
) -> Result<PassReport, CrmError> {
    let spec = PullSpec {
        kind: pass.kind,
        fields: connection.fields(),
        event_types: connection.events.keys().cloned().collect(),
        until_ms: pass.now.as_millisecond(),
    };
    let batch_size = 100 * connection.limits.concurrency.max(1);
    let (sink, mut pages) = mpsc::channel(PAGES_IN_FLIGHT);
    let mut report = PassReport {
        dry_run: pass.dry_run,
        ..PassReport::default()
    };
    let choices: Vec<&crate::config::Output> = connection
        .outputs
        .iter()
        .filter(|o| o.kind() == OutputKind::Choice)
        .collect();
    let model = &connection.model;
    let consume = async {
        let mut pending: Vec<Update> = Vec::new();
        while let Some(page) = pages.recv().await {
            for pulled in page {
                report.pulled += 1;
                let record = mapping::to_record(model, &connection.inputs, &pulled);
                let card = model.score(&record, pass.now);
                for output in &choices {
                    let held = pulled
                        .values
                        .get(&output.property)
                        .filter(|v| !v.is_empty())
                        .cloned()
                        .unwrap_or_else(|| "(empty)".to_owned());
                    let new = output
                        .render(model, &card)
                        .unwrap_or_else(|| "(empty)".to_owned());
                    *report
                        .before
                        .entry(output.property.clone())
                        .or_default()
                        .entry(held)
                        .or_default() += 1;
                    *report
                        .after
                        .entry(output.property.clone())
                        .or_default()
                        .entry(new)
                        .or_default() += 1;
                }
                let changes =
                    crate::plan::changes(model, &connection.outputs, &pulled.values, &card);
                if changes.is_empty() {
                    continue;
                }
                report.changed += 1;
                let values = changes
                    .iter()
                    .map(|c| (c.property.clone(), c.new.clone()))
                    .collect();
                on_change(&RecordChange {
                    id: pulled.id.clone(),
                    changes: changes.into_iter().map(ChangeJson::from).collect(),
                });
                if !pass.dry_run {
                    pending.push(Update {
                        id: pulled.id,
                        values,
                    });
                }
            }
            if pending.len() >= batch_size {
                let full = std::mem::take(&mut pending);
                report.absorb(crm.write(full).await?);
            }
        }
        if !pending.is_empty() {
            report.absorb(crm.write(pending).await?);
        }
        Ok::<(), CrmError>(())
    };
    let (pulled, consumed) = tokio::join!(crm.pull(&spec, sink), consume);
    consumed?;
    let summary = pulled?;
    report.pull_pages = summary.pages;
    report.detail_calls = summary.detail_calls;
    report.write_cost = report.changed.div_ceil(100);
    Ok(report)
}
