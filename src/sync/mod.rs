//! The sync engine: one pass of pull → score → plan → write, joined by a
//! bounded channel so memory stays flat however large the portal, with the
//! local [`State`] around it.
//!
//! A pass pulls (everything, or what changed since the watermark), scores
//! and plans each record against what the CRM holds, writes in full
//! batches while the pull goes on, and records every outcome in the state.
//! After the pull it retries records whose writes failed, and a rescore
//! pass then rescores every other stored record from its stored inputs
//! (decay and time windows move scores with no CRM change). Only then does
//! the watermark move: a pass cut short — error, SIGTERM, kill -9 — is
//! simply repeated, and repeating it writes only what is still missing.
//!
//! Records the CRM returns exactly as leadscored last saw them (typically
//! the echo of our own write) keep their stored events: no detail calls,
//! and no write unless time alone moved the score. Companies a pass
//! touched are scored last (`companies`), when the model scores them.

mod companies;
pub use companies::account_from_state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use crate::config::{Connection, EventSource, Output};
use crate::crm::http::PROGRESS_SLACK;
use crate::crm::mapping::CompanyValues;
use crate::crm::{
    Crm, CrmCompany, CrmError, CrmEvent, CrmRecord, PullKind, PullSpec, StreamEvent, StreamSpec,
    Update, WriteReport, email_key, mapping, redact,
};
use crate::engine::OutputKind;
use crate::plan::Change;
use crate::state::{RunLog, State, StateError, StreamsMark, WriteOutcome, Written};

/// Pages in flight between the pull and the scorer.
const PAGES_IN_FLIGHT: usize = 4;
/// The longest the engagement streams go unread while passes choose
/// per-record detail.
const STREAMS_AT_LEAST_EVERY_MS: i64 = 86_400_000;
/// Stored records read per step of a rescore.
const RESCORE_PAGE: usize = 1_000;
/// A failed record is retried by incremental passes this many times; after
/// that only by rescore and full passes.
pub const RETRIES: u32 = 10;

/// Which records a pass looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PassKind {
    /// Records changed since the watermark (everything on a first run),
    /// then failed records again.
    Incremental,
    /// An incremental pass, then every other stored record rescored from
    /// its stored inputs: the nightly run that applies decay.
    Rescore,
    /// Every record pulled afresh (with its event detail).
    Full,
    /// Exactly the records a CRM's webhooks named ([`Targets`]): read by
    /// id, scored, written. The watermark stays where it is.
    Webhook,
}

/// What a webhook pass reads again, and forgets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// Records to read by id.
    pub records: Vec<String>,
    /// Companies to read again; their stored people are rescored.
    pub companies: Vec<String>,
    /// Records deleted or merged away in the CRM: dropped from the state.
    pub gone: Vec<String>,
    /// Some record's engagement moved (or it is new): engagement is read
    /// (as streams or per record, whichever costs less). Otherwise the
    /// records keep the engagement the state holds, at no call.
    pub engagement: bool,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.companies.is_empty() && self.gone.is_empty()
    }
}

impl PassKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PassKind::Incremental => "incremental",
            PassKind::Rescore => "rescore",
            PassKind::Full => "full",
            PassKind::Webhook => "webhook",
        }
    }
}

/// What a pass does.
#[derive(Clone, Copy, Debug)]
pub struct Pass {
    pub kind: PassKind,
    pub now: jiff::Timestamp,
    pub dry_run: bool,
    /// Pull records changed since this moment (epoch ms) instead of since
    /// the watermark.
    pub since: Option<i64>,
}

/// A request to stop at the next safe point (SIGTERM): between pages and
/// batches; a batch on the wire finishes.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<StopInner>);

#[derive(Debug, Default)]
struct StopInner {
    stopped: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    /// Resolves once [`Stop::stop`] was called.
    pub async fn stopped(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// Why a pass did not finish.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Crm(#[from] CrmError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("stopped before the pass finished; the watermark stays where it was")]
    Stopped,
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

impl PassError {
    /// The same error, naming the state file where a state error did not.
    pub fn at(self, path: &std::path::Path) -> PassError {
        match self {
            PassError::State(error) => PassError::State(error.at(path)),
            other => other,
        }
    }
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
    pub kind: Option<PassKind>,
    pub dry_run: bool,
    /// `full` or `since <time>`.
    pub pull: String,
    pub pulled: u64,
    pub pull_pages: u64,
    pub detail_calls: u64,
    /// Pulled records found as leadscored last saw them (echoes of its
    /// own writes, mostly): no detail fetched.
    pub unchanged: u64,
    /// Stored records rescored without a pull (failed retries and rescore).
    pub rescored: u64,
    /// Records with at least one change.
    pub changed: u64,
    pub written: u64,
    pub failed: Vec<(String, String)>,
    pub write_calls: u64,
    /// About how many calls the changes cost (or would cost, in a dry
    /// run), as the CRM's connector reckons it.
    pub write_cost: u64,
    /// The watermark the pass leaves (epoch ms), when it moved.
    pub watermark: Option<i64>,
    /// The model or its outputs changed since the last pass, so every
    /// stored record was rescored (and what moved written).
    pub model_changed: bool,
    /// Every request the pass sent, retries included.
    pub requests: u64,
    /// Companies read (batch reads and the search for changed ones).
    pub companies: u64,
    /// Companies changed since the last pass.
    pub companies_changed: u64,
    /// Companies scored from their people (company scores).
    pub accounts_scored: u64,
    /// Companies whose outputs changed, and those written.
    pub accounts_changed: u64,
    pub accounts_written: u64,
    /// Lists whose members were read (the others had not changed).
    pub lists_read: u64,
    /// Stored records rescored because their company or a list
    /// membership changed while the record itself did not.
    pub moved: u64,
    /// What a person should know (a list the model names that the CRM
    /// does not have, lists this CRM cannot read).
    pub warnings: Vec<String>,
    /// How engagement was read: `streams`, `per record`, or empty when
    /// the model reads none.
    pub events: String,
    /// Calls the engagement streams took, and the occurrences they read.
    pub stream_calls: u64,
    pub stream_events: u64,
    /// The estimates the choice was made on: streams, and per-record
    /// detail for the records the pass expected (`None`: unknown); after
    /// a pass that read streams, what per-record detail would have cost
    /// for the records it pulled.
    pub stream_estimate: Option<u64>,
    pub detail_estimate: Option<u64>,
    /// Stored records rescored because a stream brought them a new
    /// occurrence while the record itself did not change.
    pub engaged: u64,
    /// Answers that said we went too fast (429), and how long our own
    /// limiters held requests back, in milliseconds.
    pub throttled: u64,
    pub waited_ms: u64,
    /// Per choice output (tier, stage, grade): value → records, before
    /// (what the CRM holds) and after (what leadscored computes).
    pub before: BTreeMap<String, BTreeMap<String, u64>>,
    pub after: BTreeMap<String, BTreeMap<String, u64>>,
}

impl PassReport {
    /// Calls the pass made: every request it sent (retries and the
    /// account check included) where counted, else the sum of its parts.
    pub fn calls(&self) -> u64 {
        self.requests
            .max(self.pull_pages + self.detail_calls + self.stream_calls + self.write_calls)
    }

    /// The summary as an admin reads it.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "pull {}: {} records in {} pages ({} detail calls, {} unchanged since last seen); {} rescored from local state",
            self.pull,
            self.pulled,
            self.pull_pages,
            self.detail_calls,
            self.unchanged,
            self.rescored
        );
        match self.events.as_str() {
            "streams" => {
                let _ = writeln!(
                    out,
                    "engagement: {} occurrences read as streams in {} calls{}; {} stored records rescored for new engagement",
                    self.stream_events,
                    self.stream_calls,
                    self.detail_estimate
                        .map(|d| format!(" (per-record detail would have cost about {d})"))
                        .unwrap_or_default(),
                    self.engaged
                );
            }
            "per record" => {
                let _ = writeln!(
                    out,
                    "engagement: read per record in {} calls{}",
                    self.detail_calls,
                    self.stream_estimate
                        .map(|s| format!(" (streams would have cost about {s})"))
                        .unwrap_or_default()
                );
            }
            _ => {}
        }
        if self.companies > 0 || self.companies_changed > 0 {
            let _ = writeln!(
                out,
                "companies: {} read, {} changed since the last pass",
                self.companies, self.companies_changed
            );
        }
        if self.accounts_scored > 0 {
            let _ = writeln!(
                out,
                "company scores: {} companies scored from their people; {} need writes{}",
                self.accounts_scored,
                self.accounts_changed,
                if self.dry_run {
                    String::new()
                } else {
                    format!(", {} written", self.accounts_written)
                }
            );
        }
        if self.lists_read > 0 || self.moved > 0 {
            let _ = writeln!(
                out,
                "lists: {} read (the others unchanged); {} stored records rescored for a company or list change",
                self.lists_read, self.moved
            );
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        let _ = writeln!(
            out,
            "requests: {} (retries included); {} answered 429; our limiters waited {:.1} s",
            self.calls(),
            self.throttled,
            self.waited_ms as f64 / 1000.0
        );
        if self.model_changed {
            let _ = writeln!(
                out,
                "the model or its outputs changed since the last pass: every stored record was rescored"
            );
        }
        let _ = writeln!(
            out,
            "{} records need writes, costing about {} write calls",
            self.changed, self.write_cost
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

/// What stored inputs were pulled for: the fields and event sources. Inputs
/// stored under another fingerprint lack something the model now reads,
/// so the next pass pulls everything afresh.
pub fn fingerprint(connection: &Connection) -> String {
    let mut parts: Vec<String> = connection.fields();
    parts.extend(
        connection
            .company_fields()
            .into_iter()
            .map(|f| format!("company.{f}")),
    );
    for (name, source) in &connection.events {
        let source = match source {
            EventSource::HubspotForms => "forms".to_owned(),
            EventSource::HubspotEmail(t) => format!("email{t:?}"),
            EventSource::HubspotWeb(t) => format!("web{t:?}"),
            EventSource::PardotActivity {
                types,
                with,
                without,
            } => format!("activity{types:?}{with:?}{without:?}"),
        };
        parts.push(format!("{name}={source}"));
    }
    parts.join(",")
}

/// What stored scores were computed with: the model file and the outputs.
/// When it changes (a reload, a deploy), the next pass rescores every
/// stored record from its stored inputs and writes what moved.
pub fn model_fingerprint(connection: &Connection) -> String {
    let outputs = format!("{:?}", connection.outputs);
    format!(
        "{:016x}-{:016x}",
        connection.model.fingerprint(),
        crate::model::fnv1a(outputs.as_bytes())
    )
}

/// The pass in progress: the scorer's side of the pipeline.
struct Worker<'a, C: Crm> {
    crm: &'a C,
    connection: &'a Connection,
    state: Option<&'a mut State>,
    pass: Pass,
    choices: Vec<&'a Output>,
    failed_before: FxHashSet<String>,
    pending: Vec<(Update, Written)>,
    batch_size: usize,
    report: PassReport,
    /// Companies at hand: read this pass, or looked up in the state.
    companies: FxHashMap<String, Arc<CompanyValues>>,
    /// The model's lists and their members, when this CRM's lists are read.
    memberships: Option<Arc<Memberships>>,
    /// Whether this CRM's events are kept in the state's event store
    /// (read as streams or per record alike).
    streams_on: bool,
    /// Occurrences a dry run read from the streams (nothing is saved).
    streamed: FxHashMap<String, Vec<CrmEvent>>,
    /// Keys (record ids, `email:` addresses) that got a new occurrence.
    touched: FxHashSet<String>,
    /// The model scores companies: the companies of scored records are
    /// scored at the end of the pass.
    accounts: bool,
    /// Companies whose people this pass scored.
    touched_companies: FxHashSet<String>,
    /// Company scorecards the people of this pass were scored with.
    company_cards: FxHashMap<String, Arc<crate::Scorecard>>,
    /// People's scorecards need their company's: their rules or stages
    /// read `company_score`, or a contact output is a company score's.
    people_need_company: bool,
    /// People whose rules read their company's score wait for the
    /// company stage (saved in the state, scored once with their
    /// company's final score) instead of being planned as pulled.
    defer_people: bool,
}

/// Whether a contact's scorecard needs its company's: a contact rule or
/// stage reads `company_score`, or a contact output writes a company
/// score's value onto the contact.
fn people_need_company(connection: &Connection) -> bool {
    let model = &connection.model;
    model.reads_company_score()
        || connection.outputs.iter().any(|o| {
            o.value
                .score()
                .is_some_and(|i| model.score_object(i) == crate::model::Object::Company)
        })
}

/// Each list the model names, with its members (record ids).
type Memberships = Vec<(String, FxHashSet<String>)>;

/// Companies kept in memory at most, when the state holds them too.
const COMPANIES_CACHED: usize = 20_000;
/// Companies read in one batch (HubSpot's batch read maximum).
const COMPANY_BATCH: usize = 100;
/// Pulled records held back at most while their companies wait for a
/// full batch.
const HELD_FOR_COMPANIES: usize = 2_000;

/// A pulled page, with the companies first read for it.
struct Page {
    records: Vec<CrmRecord>,
    companies: Vec<CrmCompany>,
}

impl<'a, C: Crm> Worker<'a, C> {
    /// Scores and plans records; `ours` is what leadscored wrote to each
    /// since it was pulled (empty for fresh pulls).
    fn plan(
        &mut self,
        records: Vec<(CrmRecord, Written)>,
        on_change: &mut impl FnMut(&RecordChange),
    ) -> Result<Vec<String>, PassError> {
        let connection = self.connection;
        let model = &connection.model;
        metrics::counter!("leadscored_records_scored_total").increment(records.len() as u64);
        let mut settled = Vec::new();
        for (mut pulled, ours) in records {
            let company_id = pulled
                .company_id()
                .filter(|_| self.accounts)
                .map(str::to_owned);
            if let Some(id) = &company_id {
                self.touched_companies.insert(id.clone());
                if self.defer_people && self.state.is_some() {
                    continue;
                }
            }
            self.apply_lists(&mut pulled);
            let company = self.company_of(&pulled);
            let record = mapping::to_record(model, &connection.inputs, &pulled, company.as_deref());
            let card = match company_id.filter(|_| self.people_need_company) {
                Some(id) => {
                    let company_card = self.company_card(&id)?;
                    let mut card = crate::Scorecard::default();
                    model.score_with_company(
                        &record,
                        Some(&company_card),
                        self.pass.now,
                        &mut card,
                    );
                    card
                }
                None => model.score(&record, self.pass.now),
            };
            let changes =
                crate::plan::changes(model, &self.connection.outputs, &pulled.values, &card);
            for output in &self.choices {
                let held = pulled
                    .values
                    .get(&output.property)
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .unwrap_or_else(|| "(empty)".to_owned());
                // After: what the CRM will hold, under the output's
                // overwrite policy (a value sales set may be kept).
                let after = match changes.iter().find(|c| c.property == output.property) {
                    Some(change) if !change.new.is_empty() => change.new.clone(),
                    Some(_) => "(empty)".to_owned(),
                    None => held.clone(),
                };
                *self
                    .report
                    .before
                    .entry(output.property.clone())
                    .or_default()
                    .entry(held)
                    .or_default() += 1;
                *self
                    .report
                    .after
                    .entry(output.property.clone())
                    .or_default()
                    .entry(after)
                    .or_default() += 1;
            }
            if changes.is_empty() {
                if self.failed_before.contains(&pulled.id) {
                    settled.push(pulled.id);
                }
                continue;
            }
            self.report.changed += 1;
            let mut written = ours;
            let mut values = BTreeMap::new();
            for change in &changes {
                values.insert(change.property.clone(), change.new.clone());
                written.insert(change.property.clone(), change.new.clone());
            }
            on_change(&RecordChange {
                id: pulled.id.clone(),
                changes: changes.into_iter().map(ChangeJson::from).collect(),
            });
            if !self.pass.dry_run {
                self.pending.push((
                    Update {
                        id: pulled.id,
                        values,
                    },
                    written,
                ));
            }
        }
        Ok(settled)
    }

    /// Puts the model's lists a record is in on it, when lists are read.
    fn apply_lists(&self, record: &mut CrmRecord) {
        if let Some(memberships) = &self.memberships {
            record.lists = memberships
                .iter()
                .filter(|(_, members)| members.contains(&record.id))
                .map(|(name, _)| name.clone())
                .collect();
        }
    }

    /// The values of a record's company: read this pass, or stored.
    fn company_of(&mut self, record: &CrmRecord) -> Option<Arc<CompanyValues>> {
        let id = record.company_id()?.to_owned();
        self.company_by_id(&id)
    }

    /// A company's values by id: read this pass, or stored.
    fn company_by_id(&mut self, id: &str) -> Option<Arc<CompanyValues>> {
        if self.company_fields_empty() {
            return None;
        }
        if let Some(found) = self.companies.get(id) {
            return Some(found.clone());
        }
        let stored = self.state.as_deref()?.company(id).ok().flatten()?;
        let stored = Arc::new(stored);
        self.cache_company(id.to_owned(), stored.clone());
        Some(stored)
    }

    fn company_fields_empty(&self) -> bool {
        !self
            .connection
            .inputs
            .iter()
            .any(|i| i.origin == crate::config::Origin::Company)
    }

    /// Keeps a company at hand; the cache is bounded when the state holds
    /// every company too (a dry run keeps all: nothing is saved).
    fn cache_company(&mut self, id: String, values: Arc<CompanyValues>) {
        if self.companies.len() >= COMPANIES_CACHED && !self.pass.dry_run {
            self.companies.clear();
        }
        self.companies.insert(id, values);
    }

    /// Saves and keeps companies read this pass.
    fn take_companies(&mut self, companies: Vec<CrmCompany>) -> Result<(), PassError> {
        if companies.is_empty() {
            return Ok(());
        }
        if !self.pass.dry_run
            && let Some(state) = self.state.as_deref_mut()
        {
            state.save_companies(&companies)?;
        }
        for company in companies {
            self.cache_company(company.id, Arc::new(company.values));
        }
        Ok(())
    }

    /// The next batch to write: the pending updates when a full batch (or,
    /// with `all`, any) is waiting.
    fn take_batch(&mut self, all: bool) -> Option<Vec<(Update, Written)>> {
        if self.pending.is_empty() || (!all && self.pending.len() < self.batch_size) {
            return None;
        }
        if all {
            return Some(std::mem::take(&mut self.pending));
        }
        // Whole CRM batches only: the rest waits for the next page.
        let unit = self.crm.write_batch().unwrap_or(100).max(1);
        let whole = self.pending.len() - self.pending.len() % unit;
        let rest = self.pending.split_off(whole);
        Some(std::mem::replace(&mut self.pending, rest))
    }

    /// Sends a batch; the returned future borrows only the CRM, so pages
    /// keep being pulled and planned while it is on the wire.
    fn start_write(&self, batch: Vec<(Update, Written)>) -> Writing<'a> {
        let crm = self.crm;
        Box::pin(async move {
            let (updates, written): (Vec<Update>, Vec<Written>) = batch.into_iter().unzip();
            let ids: Vec<String> = updates.iter().map(|u| u.id.clone()).collect();
            let report = crm.write(updates).await;
            (ids, written, report)
        })
    }

    /// Records a finished write in the report and the state.
    fn record(&mut self, done: WriteDone) -> Result<(), PassError> {
        let (ids, written, report) = done;
        let report = report?;
        metrics::counter!("leadscored_records_written_total")
            .increment(report.written.len() as u64);
        metrics::counter!("leadscored_records_failed_total").increment(report.failed.len() as u64);
        // What the CRM said about a refused record may quote anything.
        let failed: Vec<(String, String)> = report
            .failed
            .into_iter()
            .map(|(id, why)| (id, redact::string(why)))
            .collect();
        // Counted before the state is touched: a state that fails now
        // still leaves a report of what reached the CRM.
        self.report.written += report.written.len() as u64;
        self.report.write_calls += report.calls;
        self.report.failed.extend(failed.iter().cloned());
        if let Some(state) = self.state.as_deref_mut() {
            let written_by_id: FxHashMap<&str, &Written> =
                ids.iter().map(String::as_str).zip(written.iter()).collect();
            let stamps: FxHashMap<&str, i64> = report
                .stamps
                .iter()
                .map(|(id, at)| (id.as_str(), *at))
                .collect();
            let outcomes: Vec<WriteOutcome<'_>> = report
                .written
                .iter()
                .filter_map(|id| {
                    Some(WriteOutcome {
                        id,
                        written: written_by_id.get(id.as_str())?,
                        stamp: stamps.get(id.as_str()).copied(),
                    })
                })
                .collect();
            state.save_writes(&outcomes, &failed, &[], self.pass.now.as_millisecond())?;
        }
        self.save_calls()?;
        Ok(())
    }

    /// Records that these records need no write any more (they leave the
    /// failed list).
    fn settle(&mut self, settled: &[String]) -> Result<(), PassError> {
        if let (false, Some(state)) = (settled.is_empty(), self.state.as_deref_mut()) {
            state.save_writes(&[], &[], settled, self.pass.now.as_millisecond())?;
        }
        Ok(())
    }

    /// Keeps the calls spent today in the state, where every later process
    /// (and a restart after kill -9) counts them against the daily limit.
    fn save_calls(&self) -> Result<(), PassError> {
        if let Some(state) = self.state.as_deref().filter(|_| !self.pass.dry_run) {
            let (day, calls) = self.crm.http().calls_today();
            state.save_calls(&day.to_string(), calls)?;
        }
        Ok(())
    }

    /// Tells the progress watch the pass is alive.
    fn alive(&self) {
        self.crm.http().progress.expect_within(PROGRESS_SLACK);
    }

    /// Writes everything pending and records it (between stages).
    async fn flush(&mut self) -> Result<(), PassError> {
        if let Some(batch) = self.take_batch(true) {
            let done = self.start_write(batch).await;
            self.record(done)?;
        }
        Ok(())
    }

    /// Keeps a page of stream occurrences: in the state (whose keys got
    /// a new one are remembered), or in memory for a dry run.
    fn take_stream_page(&mut self, page: Vec<StreamEvent>) -> Result<(), PassError> {
        self.alive();
        match self.state.as_deref_mut() {
            Some(state) if !self.pass.dry_run => {
                self.touched.extend(state.save_events(&page)?);
            }
            _ => {
                for found in page {
                    self.touched.insert(found.key.clone());
                    self.streamed
                        .entry(found.key)
                        .or_default()
                        .push(found.event);
                }
            }
        }
        Ok(())
    }

    /// Adds a record's stored occurrences (and those a dry run read) to
    /// the events it came with, each occurrence once.
    fn attach_events(&self, record: &mut CrmRecord) -> Result<(), PassError> {
        if !self.streams_on {
            return Ok(());
        }
        let email = record.values.get("email").map(String::as_str);
        let mut found = match self.state.as_deref() {
            Some(state) => state.events_of(&record.id, email)?,
            None => Vec::new(),
        };
        for key in [Some(record.id.clone()), email.map(email_key)]
            .into_iter()
            .flatten()
        {
            if let Some(events) = self.streamed.get(&key) {
                found.extend(events.iter().cloned());
            }
        }
        record.add_events(found);
        Ok(())
    }

    /// Takes a pulled page: refuses records with values no CRM property
    /// holds, keeps unchanged records' stored events, saves the page,
    /// then scores and plans it.
    fn take_page(
        &mut self,
        page: Vec<CrmRecord>,
        on_change: &mut impl FnMut(&RecordChange),
    ) -> Result<Vec<String>, PassError> {
        self.alive();
        self.report.pulled += page.len() as u64;
        self.crm
            .http()
            .stats
            .records
            .fetch_add(page.len() as u64, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("leadscored_records_pulled_total").increment(page.len() as u64);
        let longest = self.crm.max_value_chars();
        let (mut page, refused): (Vec<CrmRecord>, Vec<CrmRecord>) = page
            .into_iter()
            .partition(|r| oversized(r, longest).is_none());
        let refused: Vec<(String, String)> = refused
            .iter()
            .filter_map(|r| {
                let (property, chars) = oversized(r, longest)?;
                tracing::warn!(record = %r.id, property, chars, "a pulled value is longer than any CRM property holds; the record is refused, not stored");
                Some((
                    r.id.clone(),
                    format!(
                        "property {property} came back with {chars} characters, more than the CRM's {longest}; not stored or scored"
                    ),
                ))
            })
            .collect();
        if let Some(state) = self.state.as_deref_mut() {
            for record in page.iter_mut().filter(|r| r.detail_skipped) {
                self.report.unchanged += 1;
                if let Some((stored, _)) = state.record(&record.id)? {
                    record.events = stored.events;
                }
            }
            if self.streams_on && !self.pass.dry_run {
                // Detail read per record joins the event store, where a
                // stream's copy of the same occurrence is the same row.
                let detail: Vec<StreamEvent> = page
                    .iter_mut()
                    .filter(|r| !r.detail_skipped)
                    .flat_map(|r| {
                        let key = r.id.clone();
                        std::mem::take(&mut r.events)
                            .into_iter()
                            .map(move |event| StreamEvent {
                                key: key.clone(),
                                event,
                            })
                    })
                    .collect();
                state.save_events(&detail)?;
            }
            if !self.pass.dry_run {
                let left = state.save_pulled(&page)?;
                if self.accounts {
                    // Companies that lost a person are scored again too.
                    self.touched_companies.extend(left);
                }
                if !refused.is_empty() {
                    state.save_writes(&[], &refused, &[], self.pass.now.as_millisecond())?;
                }
            }
        }
        self.report.failed.extend(refused);
        self.save_calls()?;
        for record in &mut page {
            self.attach_events(record)?;
        }
        let records = page.into_iter().map(|r| (r, Written::new())).collect();
        self.plan(records, on_change)
    }

    /// Scores stored records (no pull) and writes what moved.
    async fn rescore(
        &mut self,
        mut records: Vec<(CrmRecord, Written)>,
        on_change: &mut impl FnMut(&RecordChange),
    ) -> Result<(), PassError> {
        self.alive();
        for (record, _) in &mut records {
            self.attach_events(record)?;
        }
        self.report.rescored += records.len() as u64;
        let settled = self.plan(records, on_change)?;
        self.settle(&settled)?;
        if let Some(batch) = self.take_batch(false) {
            let done = self.start_write(batch).await;
            self.record(done)?;
        }
        Ok(())
    }
}

/// The first value of `record` longer than `longest` characters: its
/// property and length.
fn oversized(record: &CrmRecord, longest: usize) -> Option<(String, usize)> {
    record
        .values
        .iter()
        // Bytes first: a value has at least as many bytes as characters.
        .filter(|(_, v)| v.len() > longest)
        .map(|(k, v)| (k, v.chars().count()))
        .find(|(_, chars)| *chars > longest)
        .map(|(k, chars)| (k.clone(), chars))
}

/// A write's ids, what leadscored will have written to each, and the answer.
type WriteDone = (Vec<String>, Vec<Written>, Result<WriteReport, CrmError>);
/// A write on the wire.
type Writing<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = WriteDone> + Send + 'a>>;

/// What a pass settled on before pulling.
struct Prepared {
    fingerprint: String,
    model: String,
    pull_kind: PullKind,
    /// The stored inputs were pulled for the current fields and sources.
    usable: bool,
    /// The model or outputs changed since stored records were scored.
    model_changed: bool,
    failed_before: FxHashSet<String>,
    spec: PullSpec,
    related: Related,
    events: Option<EventPlan>,
    /// Companies whose deleted people were forgotten: scored again.
    left_companies: Vec<String>,
}

/// How a pass reads engagement, and why.
struct EventPlan {
    /// Read as streams (else per record, with the pull).
    streams: bool,
    spec: StreamSpec,
    /// What the streams will have covered when the pass is done.
    mark: StreamsMark,
    stream_estimate: Option<u64>,
    detail_estimate: Option<u64>,
}

/// Decides how this pass reads engagement: the streams (back to the
/// model's horizon on a first read, else from where the last read ended
/// minus the overlap) or per-record detail, by estimated calls.
#[allow(clippy::too_many_arguments)]
fn plan_events<C: Crm>(
    crm: &C,
    connection: &Connection,
    state: Option<&State>,
    pass: Pass,
    pull_kind: PullKind,
    usable: bool,
    until_ms: i64,
    expected_ids: u64,
) -> Result<Option<EventPlan>, PassError> {
    let types: Vec<String> = connection.events.keys().cloned().collect();
    if types.is_empty() || !crm.streams() {
        return Ok(None);
    }
    let overlap = connection.limits.search_overlap.as_millis() as i64;
    let stored = match state {
        Some(state) if usable && pass.kind != PassKind::Full => state.streams_mark()?,
        _ => None,
    };
    let mut from_ms = BTreeMap::new();
    let mut reach = BTreeMap::new();
    for kind in &types {
        let horizon = connection.horizon(kind);
        let earliest = horizon.map_or(i64::MIN, |h| until_ms.saturating_sub(h));
        // What was read before covers its reach up to its end: read only
        // the rest (a model that now looks further back reads further).
        let from = match stored.as_ref() {
            Some(mark) if mark.reach.get(kind).is_some_and(|r| *r <= earliest) => {
                earliest.max(mark.until_ms - overlap)
            }
            _ => earliest,
        };
        let reached = stored
            .as_ref()
            .and_then(|m| m.reach.get(kind).copied())
            .map_or(from, |r| r.min(from));
        from_ms.insert(kind.clone(), from);
        reach.insert(kind.clone(), reached);
    }
    // Per-record detail costs calls for every record the pull brings:
    // all of them on a full pull, about as many as recent incremental
    // passes brought on an incremental one.
    let expected_records = match (pull_kind, state) {
        (PullKind::Ids, _) => Some(expected_ids),
        (PullKind::Full, Some(state)) => Some(state.count()?).filter(|n| *n > 0),
        (PullKind::Since(_), Some(state)) => {
            let recent: Vec<u64> = state
                .runs(10)?
                .iter()
                .filter(|r| {
                    r.kind == PassKind::Incremental.as_str()
                        && r.outcome.as_deref().is_some_and(|o| o.starts_with("ok"))
                })
                .map(|r| r.pulled)
                .collect();
            // The median: a first sync among them does not count.
            let mut recent = recent;
            recent.sort_unstable();
            recent.get(recent.len() / 2).copied()
        }
        _ => None,
    };
    let detail_estimate = expected_records.map(|n| n * crm.detail_calls_per_record(&types));
    // Streams cost a call per stream at least, and a call per page of the
    // occurrences in the window: as many as the window before it held.
    let window_start = from_ms.values().copied().min().unwrap_or(until_ms);
    let stream_estimate = match (stored.as_ref(), state) {
        (Some(_), Some(state)) if window_start > i64::MIN => {
            let span = until_ms.saturating_sub(window_start);
            let before = state.events_between(window_start.saturating_sub(span), window_start)?;
            Some(crm.stream_count(&types) + before / crm.stream_page().max(1))
        }
        _ => None,
    };
    // Per-record detail sees only records whose modified time moved: the
    // streams are read at least once a day (and on rescore passes), so an
    // occurrence that left its contact unmodified waits a day at most.
    let stale = stored
        .as_ref()
        .is_none_or(|mark| until_ms - mark.until_ms > STREAMS_AT_LEAST_EVERY_MS)
        || pass.kind == PassKind::Rescore;
    let streams = match connection.limits.event_reads {
        crate::config::EventReads::Streams => true,
        crate::config::EventReads::PerRecord => false,
        crate::config::EventReads::Auto => match (stream_estimate, detail_estimate) {
            _ if stale => true,
            (Some(streams), Some(detail)) => streams <= detail,
            // No history of passes: per-record detail is two calls a
            // record, streams a call per thousand events.
            _ => true,
        },
    };
    tracing::info!(
        streams,
        stream_estimate,
        detail_estimate,
        "engagement read {}",
        if streams { "as streams" } else { "per record" }
    );
    Ok(Some(EventPlan {
        streams,
        spec: StreamSpec { from_ms, until_ms },
        mark: StreamsMark { until_ms, reach },
        stream_estimate,
        detail_estimate,
    }))
}

/// What a pass learns before its pull about the objects around records:
/// companies and lists.
#[derive(Default)]
struct Related {
    /// Company properties the model reads (none: no company calls).
    company_fields: Vec<String>,
    /// Companies whose stored values are current: the pull reads only
    /// the others.
    known_companies: Arc<FxHashSet<String>>,
    /// Companies changed since the last pass (already saved, unless dry).
    changed_companies: Vec<CrmCompany>,
    memberships: Option<Arc<Memberships>>,
    /// Records that joined or left a list since the last pass.
    list_moved: FxHashSet<String>,
    lists_read: u64,
    warnings: Vec<String>,
}

/// Reads what changed around the records: companies modified since the
/// watermark (an incremental pass), and the model's lists — each resolved
/// by name, its members read again only when the CRM says it changed.
#[allow(clippy::too_many_arguments)]
async fn prepare_related<C: Crm>(
    crm: &C,
    connection: &Connection,
    mut state: Option<&mut State>,
    pass: Pass,
    pull_kind: PullKind,
    usable: bool,
    until_ms: i64,
    targets: Option<&Targets>,
) -> Result<Related, PassError> {
    let mut related = Related {
        company_fields: connection.company_fields(),
        ..Related::default()
    };
    let writable = !pass.dry_run;
    if let Some(targets) = targets {
        return targeted_related(crm, connection, state, writable, usable, targets, related).await;
    }
    if !related.company_fields.is_empty()
        && usable
        && state.is_some()
        && let PullKind::Since(since) = pull_kind
    {
        let overlap = connection.limits.search_overlap.as_millis() as i64;
        let changed = crm
            .changed_companies(since - overlap, until_ms, &related.company_fields)
            .await?;
        tracing::info!(
            changed = changed.len(),
            "companies changed since the last pass"
        );
        keep_changed_companies(state.as_deref_mut(), writable, changed, &mut related)?;
    }
    let names = connection.lists();
    if names.is_empty() {
        return Ok(related);
    }
    let infos = match crm.list_infos(&names).await {
        Ok(infos) => infos,
        Err(CrmError::Unsupported(why)) => {
            related.warnings.push(format!(
                "the model's list conditions ({}) read the lists stored with each record: {why}",
                names.join(", ")
            ));
            return Ok(related);
        }
        Err(other) => return Err(other.into()),
    };
    let mut memberships = Memberships::new();
    for info in infos {
        let Some(id) = info.id else {
            let warning = format!(
                "list {:?} does not exist in the CRM: its list conditions match no one",
                info.name
            );
            tracing::warn!(list = %info.name, "{warning}");
            related.warnings.push(warning);
            memberships.push((info.name, FxHashSet::default()));
            continue;
        };
        let stored = match state.as_deref() {
            Some(state) if usable => state.list(&info.name)?,
            _ => None,
        };
        let current = stored.as_ref() == Some(&(id.clone(), info.change_key.clone()))
            && pass.kind != PassKind::Full;
        let members = match (current, state.as_deref()) {
            (true, Some(state)) => state.list_members(&info.name)?,
            _ => {
                related.lists_read += 1;
                let members: FxHashSet<String> = crm.list_members(&id).await?.into_iter().collect();
                let before = match state.as_deref() {
                    Some(state) if usable => state.list_members(&info.name)?,
                    _ => FxHashSet::default(),
                };
                related
                    .list_moved
                    .extend(members.symmetric_difference(&before).cloned());
                if writable && let Some(state) = state.as_deref_mut() {
                    state.save_list(&info.name, &id, &info.change_key, &members)?;
                }
                members
            }
        };
        memberships.push((info.name, members));
    }
    related.memberships = Some(Arc::new(memberships));
    Ok(related)
}

/// Companies read before the pull: known from then on (with every stored
/// one), saved unless the pass is a dry run, and their stored people
/// rescored after the pull.
fn keep_changed_companies(
    state: Option<&mut State>,
    writable: bool,
    changed: Vec<CrmCompany>,
    related: &mut Related,
) -> Result<(), PassError> {
    if let Some(state) = state {
        let mut known = state.company_ids()?;
        known.extend(changed.iter().map(|c| c.id.clone()));
        related.known_companies = Arc::new(known);
        if writable {
            state.save_companies(&changed)?;
        }
    }
    related.changed_companies = changed;
    Ok(())
}

/// What a webhook pass knows around its records: the companies the
/// webhooks named, read again (their stored people are rescored), and the
/// lists as the state holds them (the next scheduled pass reads lists).
async fn targeted_related<C: Crm>(
    crm: &C,
    connection: &Connection,
    mut state: Option<&mut State>,
    writable: bool,
    usable: bool,
    targets: &Targets,
    mut related: Related,
) -> Result<Related, PassError> {
    if !related.company_fields.is_empty() && usable {
        let changed = if targets.companies.is_empty() {
            Vec::new()
        } else {
            crm.companies(&targets.companies, &related.company_fields)
                .await?
        };
        keep_changed_companies(state.as_deref_mut(), writable, changed, &mut related)?;
    }
    let names = connection.lists();
    if let Some(state) = state.as_deref().filter(|_| usable && !names.is_empty()) {
        let mut memberships = Memberships::new();
        for name in names {
            let members = state.list_members(&name)?;
            memberships.push((name, members));
        }
        related.memberships = Some(Arc::new(memberships));
    }
    Ok(related)
}

/// Checks the account, counts earlier calls, and decides what to pull.
async fn prepare<C: Crm>(
    crm: &C,
    connection: &Connection,
    mut state: Option<&mut State>,
    pass: Pass,
    targets: Option<&Targets>,
) -> Result<Prepared, PassError> {
    // The account first: a state made for another portal is refused
    // before a single record is pulled, let alone written.
    if let Some(state) = state.as_deref_mut() {
        // Calls earlier processes spent today count before this one's first.
        let (day, _) = crm.http().calls_today();
        crm.http()
            .count_earlier_calls(day, state.calls_on(&day.to_string())?);
        match crm.identity().await? {
            Some(portal) => state.claim_portal(&portal)?,
            None => tracing::debug!(
                "the CRM does not name its account; the connection's identity stands for it"
            ),
        }
    }
    let fingerprint = fingerprint(connection);
    let model = model_fingerprint(connection);
    // Inputs stored for another field set or other event sources are stale:
    // start over, and from then on store inputs under the new fingerprint,
    // so that a pass cut short (by the daily limit, a crash) is resumed.
    if let Some(state) = state.as_deref_mut()
        && !pass.dry_run
        && state.fingerprint()?.as_deref() != Some(fingerprint.as_str())
    {
        state.restart_inputs(&fingerprint)?;
    }
    let (watermark, usable, model_changed, failed_before) = match state.as_deref() {
        Some(state) => {
            let usable = state.fingerprint()?.as_deref() == Some(fingerprint.as_str());
            let failed: FxHashSet<String> =
                state.failed()?.into_iter().map(|(id, _, _)| id).collect();
            let model_changed = state.model_fingerprint()?.as_deref() != Some(model.as_str());
            (
                state.watermark()?.filter(|_| usable),
                usable,
                model_changed,
                failed,
            )
        }
        None => (None, false, false, FxHashSet::default()),
    };
    let pull_kind = match (pass.kind, pass.since.or(watermark)) {
        (PassKind::Webhook, _) => PullKind::Ids,
        (PassKind::Full, _) | (_, None) => PullKind::Full,
        (_, Some(since)) => PullKind::Since(since),
    };
    let mut left_companies = Vec::new();
    if let (Some(targets), Some(state)) = (targets, state.as_deref_mut())
        && !pass.dry_run
        && !targets.gone.is_empty()
    {
        left_companies = state.forget(&targets.gone)?;
        tracing::info!(
            forgotten = targets.gone.len(),
            "records deleted or merged away in the CRM are forgotten"
        );
    }
    let known = match (pull_kind, state.as_deref()) {
        (PullKind::Ids, Some(state)) if usable => {
            let slack = connection.limits.search_overlap.as_millis() as i64 + 60_000;
            state.seen_since(watermark.unwrap_or(0) - slack)?
        }
        (PullKind::Since(since), Some(state)) if usable => {
            let slack = connection.limits.search_overlap.as_millis() as i64 + 60_000;
            state.seen_since(since - slack)?
        }
        // A first sync that was cut short: what it stored is not pulled in
        // detail again (a full pass asks for fresh detail on purpose).
        (PullKind::Full, Some(state)) if usable && pass.kind != PassKind::Full => {
            state.seen_since(0)?
        }
        _ => FxHashMap::default(),
    };
    // A `--now` ahead of the clock scores as of then, but the pull (and
    // the watermark it leaves) never reaches past what the CRM has seen.
    let until_ms = pass
        .now
        .as_millisecond()
        .min(jiff::Timestamp::now().as_millisecond());
    let events = plan_events(
        crm,
        connection,
        state.as_deref(),
        pass,
        pull_kind,
        usable,
        until_ms,
        targets.map_or(0, |t| t.records.len() as u64),
    )?;
    let related = prepare_related(
        crm, connection, state, pass, pull_kind, usable, until_ms, targets,
    )
    .await?;
    let mut events = events;
    let stored_only = targets.is_some_and(|t| !t.engagement);
    if stored_only && let Some(plan) = events.as_mut() {
        // Only fields changed: the stored engagement stands.
        plan.streams = false;
    }
    let event_types = match &events {
        Some(plan) if plan.streams => Vec::new(),
        Some(_) if stored_only => Vec::new(),
        _ => connection.events.keys().cloned().collect(),
    };
    let mut fields = connection.fields();
    if events.is_some() && !fields.iter().any(|f| f == "email") {
        // Streams name email recipients by address.
        fields.push("email".to_owned());
    }
    Ok(Prepared {
        events,
        related,
        left_companies,
        fingerprint,
        model,
        pull_kind,
        usable,
        model_changed,
        failed_before,
        spec: PullSpec {
            kind: pull_kind,
            fields,
            event_types,
            until_ms,
            known: Arc::new(known),
            ids: Arc::new(targets.map(|t| t.records.clone()).unwrap_or_default()),
        },
    })
}

/// Runs the pull and the consumer side by side. When the consumer fails
/// (a write refused for good, the state on a full disk), the pull is
/// dropped at once: it would otherwise wait forever on a full channel.
/// When the pull fails, the consumer drains what was sent, records the
/// write on the wire, and ends as the channel closes; then the pull's
/// error is the pass's.
async fn pipeline<T>(
    pull: impl std::future::Future<Output = Result<T, CrmError>>,
    consume: impl std::future::Future<Output = Result<(), PassError>>,
) -> Result<T, PassError> {
    tokio::pin!(pull);
    tokio::pin!(consume);
    let mut pulled = None;
    loop {
        tokio::select! {
            result = &mut pull, if pulled.is_none() => pulled = Some(result),
            consumed = &mut consume => {
                consumed?;
                break;
            }
        }
    }
    let pulled = match pulled {
        Some(result) => result,
        None => pull.await,
    };
    Ok(pulled?)
}

/// Runs one pass. `state` is required unless `pass.dry_run` (a dry run
/// without state plans as if nothing had been seen). `on_change` sees each
/// record's planned changes as they are found.
pub async fn run_pass<C: Crm>(
    crm: &C,
    connection: &Connection,
    state: Option<&mut State>,
    pass: Pass,
    stop: &Stop,
    on_change: impl FnMut(&RecordChange),
) -> Result<PassReport, PassError> {
    let (report, result) = run_pass_reporting(crm, connection, state, pass, stop, on_change).await;
    result.map(|()| report)
}

/// Runs one pass like [`run_pass`], and returns what it did also when it
/// failed (the run log counts what a failed pass wrote).
pub async fn run_pass_reporting<C: Crm>(
    crm: &C,
    connection: &Connection,
    state: Option<&mut State>,
    pass: Pass,
    stop: &Stop,
    on_change: impl FnMut(&RecordChange),
) -> (PassReport, Result<(), PassError>) {
    run_targeted_reporting(crm, connection, state, pass, None, stop, on_change).await
}

/// Runs one pass like [`run_pass_reporting`]; a webhook pass reads
/// exactly `targets`.
pub async fn run_targeted_reporting<C: Crm>(
    crm: &C,
    connection: &Connection,
    mut state: Option<&mut State>,
    pass: Pass,
    targets: Option<&Targets>,
    stop: &Stop,
    mut on_change: impl FnMut(&RecordChange),
) -> (PassReport, Result<(), PassError>) {
    let targets = targets.filter(|_| pass.kind == PassKind::Webhook);
    if pass.kind == PassKind::Webhook && targets.is_none() {
        let error = PassError::Crm(CrmError::Unsupported(
            "a webhook pass needs the records to read".to_owned(),
        ));
        return (PassReport::default(), Err(error));
    }
    let empty = PassReport {
        kind: Some(pass.kind),
        dry_run: pass.dry_run,
        ..PassReport::default()
    };
    crm.http().progress.restart();
    let sent = || {
        crm.http()
            .stats
            .calls
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let sent_before = sent();
    let prepared = match prepare(crm, connection, state.as_deref_mut(), pass, targets).await {
        Ok(prepared) => prepared,
        Err(error) => {
            let report = PassReport {
                requests: sent().saturating_sub(sent_before),
                ..empty
            };
            return (report, Err(error));
        }
    };
    let mut worker = Worker {
        crm,
        connection,
        state,
        pass,
        choices: connection
            .outputs
            .iter()
            .filter(|o| o.kind() == OutputKind::Choice)
            .collect(),
        failed_before: prepared.failed_before.clone(),
        pending: Vec::new(),
        batch_size: crm
            .write_batch()
            .unwrap_or(100 * connection.limits.concurrency.max(1)),
        companies: prepared
            .related
            .changed_companies
            .iter()
            .map(|c| (c.id.clone(), Arc::new(c.values.clone())))
            .collect(),
        memberships: prepared.related.memberships.clone(),
        streams_on: prepared.events.is_some(),
        streamed: FxHashMap::default(),
        touched: FxHashSet::default(),
        accounts: connection.model.has_company_scores(),
        touched_companies: if connection.model.has_company_scores() {
            prepared.left_companies.iter().cloned().collect()
        } else {
            FxHashSet::default()
        },
        company_cards: FxHashMap::default(),
        people_need_company: people_need_company(connection),
        defer_people: people_need_company(connection) && !pass.dry_run,
        report: PassReport {
            events: match &prepared.events {
                Some(plan) if plan.streams => "streams".to_owned(),
                // A webhook pass for changed fields: engagement as stored.
                Some(_) if prepared.spec.event_types.is_empty() => "stored".to_owned(),
                Some(_) => "per record".to_owned(),
                None if connection.events.is_empty() => String::new(),
                None => "per record".to_owned(),
            },
            stream_estimate: prepared.events.as_ref().and_then(|p| p.stream_estimate),
            detail_estimate: prepared.events.as_ref().and_then(|p| p.detail_estimate),
            companies: prepared.related.changed_companies.len() as u64,
            companies_changed: prepared.related.changed_companies.len() as u64,
            lists_read: prepared.related.lists_read,
            warnings: prepared.related.warnings.clone(),
            pull: match prepared.pull_kind {
                PullKind::Full => "full".to_owned(),
                PullKind::Since(ms) => format!(
                    "since {}",
                    jiff::Timestamp::from_millisecond(ms).unwrap_or_default()
                ),
                PullKind::Ids => format!("{} by id", prepared.spec.ids.len()),
            },
            ..empty
        },
    };
    let throttled = || {
        crm.http()
            .stats
            .throttled
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let waited = || {
        crm.http()
            .stats
            .waited_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let (throttled_before, waited_before) = (throttled(), waited());
    let result = run_stages(&mut worker, &prepared, stop, &mut on_change).await;
    worker.report.requests = sent().saturating_sub(sent_before);
    worker.report.throttled = throttled().saturating_sub(throttled_before);
    worker.report.waited_ms = waited().saturating_sub(waited_before);
    // Whatever happened, the calls spent count against today's budget.
    if let Err(error) = worker.save_calls() {
        tracing::debug!(%error, "could not record today's calls in the state");
    }
    (worker.report, result)
}

/// The stages of a pass: pull and write, retry and rescore from the
/// state, then move the watermark.
async fn run_stages<C: Crm>(
    worker: &mut Worker<'_, C>,
    prepared: &Prepared,
    stop: &Stop,
    on_change: &mut impl FnMut(&RecordChange),
) -> Result<(), PassError> {
    let engaged = read_streams(worker, prepared, stop).await?;
    let seen = pull_and_write(worker, prepared, stop, on_change).await?;
    if worker.report.events == "streams" {
        // What reading this pass's records per contact would have cost
        // (records found as last seen need no detail).
        let types: Vec<String> = worker.connection.events.keys().cloned().collect();
        let fresh = worker.report.pulled - worker.report.unchanged;
        worker.report.detail_estimate = Some(fresh * worker.crm.detail_calls_per_record(&types));
    }
    // Stored records not pulled again: failed ones retried, and all of
    // them rescored on a rescore pass or when the model changed.
    let from_state = prepared.usable && prepared.pull_kind != PullKind::Full;
    // A webhook pass leaves a changed model to the next scheduled pass.
    let webhook = worker.pass.kind == PassKind::Webhook;
    let model_rescore = from_state && prepared.model_changed && worker.state.is_some() && !webhook;
    let rescore_all = worker.pass.kind == PassKind::Rescore || model_rescore;
    worker.report.model_changed = model_rescore;
    if model_rescore {
        tracing::info!("the model or its outputs changed: every stored record is rescored");
    }
    if from_state {
        retry_failed(worker, &seen, stop, on_change).await?;
        if rescore_all {
            rescore_stored(worker, &seen, stop, on_change).await?;
        } else {
            rescore_moved(worker, &prepared.related, &engaged, &seen, stop, on_change).await?;
        }
        worker.flush().await?;
    }
    companies::score_companies(worker, stop, on_change).await?;
    worker.flush().await?;
    let pass = worker.pass;
    if !pass.dry_run
        && pass.since.is_none()
        && let Some(state) = worker.state.as_deref_mut()
    {
        // A full pull scored everything with this model; a rescore did too.
        let model = if prepared.pull_kind == PullKind::Full || (from_state && rescore_all) {
            prepared.model.clone()
        } else {
            state.model_fingerprint()?.unwrap_or_default()
        };
        if let Some(plan) = prepared.events.as_ref().filter(|p| p.streams) {
            state.set_streams_mark(&plan.mark)?;
        }
        // A webhook pass read a few records, not everything changed since
        // the watermark: the watermark stays.
        if !webhook {
            state.finish_pull(prepared.spec.until_ms, &prepared.fingerprint, &model)?;
            worker.report.watermark = Some(prepared.spec.until_ms);
        }
    }
    worker.report.write_cost = worker.crm.write_cost(worker.report.changed);
    Ok(())
}

/// Reads the companies of pulled records between the pull and the
/// scorer: each company once per pass, in full batches — records whose
/// company is not at hand wait (at most [`HELD_FOR_COMPANIES`]) until a
/// batch fills or the pull ends. Returns how many companies it read.
async fn resolve_companies<C: Crm>(
    crm: &C,
    related: &Related,
    mut pulled: mpsc::Receiver<Vec<CrmRecord>>,
    sink: mpsc::Sender<Page>,
) -> Result<u64, CrmError> {
    let mut read: u64 = 0;
    let mut fetched: FxHashSet<String> = FxHashSet::default();
    let mut wanted: Vec<String> = Vec::new();
    let mut waiting_for: FxHashSet<String> = FxHashSet::default();
    let mut held: Vec<CrmRecord> = Vec::new();
    loop {
        let page = pulled.recv().await;
        let done = page.is_none();
        if let Some(page) = page {
            if related.company_fields.is_empty() {
                let page = Page {
                    records: page,
                    companies: Vec::new(),
                };
                sink.send(page).await.map_err(|_| CrmError::Stopped)?;
                continue;
            }
            for record in &page {
                if let Some(id) = record.company_id()
                    && !related.known_companies.contains(id)
                    && !fetched.contains(id)
                    && waiting_for.insert(id.to_owned())
                {
                    wanted.push(id.to_owned());
                }
            }
            held.extend(page);
        }
        let take = if done || held.len() >= HELD_FOR_COMPANIES {
            wanted.len()
        } else {
            wanted.len() / COMPANY_BATCH * COMPANY_BATCH
        };
        let mut companies = Vec::new();
        if take > 0 {
            let ids: Vec<String> = wanted.drain(..take).collect();
            for id in &ids {
                waiting_for.remove(id);
                fetched.insert(id.clone());
            }
            companies = crm.companies(&ids, &related.company_fields).await?;
            read += companies.len() as u64;
        }
        let (ready, still): (Vec<CrmRecord>, Vec<CrmRecord>) = std::mem::take(&mut held)
            .into_iter()
            .partition(|r| r.company_id().is_none_or(|id| !waiting_for.contains(id)));
        held = still;
        if !ready.is_empty() || !companies.is_empty() {
            let page = Page {
                records: ready,
                companies,
            };
            sink.send(page).await.map_err(|_| CrmError::Stopped)?;
        }
        if done {
            return Ok(read);
        }
    }
}

/// Reads the engagement streams before the pull, into the state's event
/// store (a dry run keeps them in memory): the pull's records then find
/// their occurrences there. Returns the stored records that got a new
/// occurrence (on an incremental pass; a full pull scores everyone).
async fn read_streams<C: Crm>(
    worker: &mut Worker<'_, C>,
    prepared: &Prepared,
    stop: &Stop,
) -> Result<Vec<String>, PassError> {
    let Some(plan) = prepared.events.as_ref().filter(|p| p.streams) else {
        return Ok(Vec::new());
    };
    let crm = worker.crm;
    let (sink, pages) = mpsc::channel::<Vec<StreamEvent>>(PAGES_IN_FLIGHT);
    let consume = async {
        let mut pages = pages;
        while let Some(page) = pages.recv().await {
            worker.take_stream_page(page)?;
        }
        Ok(())
    };
    let read = async {
        tokio::select! {
            read = crm.stream_events(&plan.spec, sink) => read,
            () = stop.stopped() => Err(CrmError::Stopped),
        }
    };
    let summary = match pipeline(read, consume).await {
        Err(PassError::Crm(CrmError::Stopped)) if stop.is_stopped() => {
            return Err(PassError::Stopped);
        }
        other => other?,
    };
    worker.report.stream_calls = summary.calls;
    worker.report.stream_events = summary.events;
    tracing::info!(
        events = summary.events,
        calls = summary.calls,
        "engagement streams read"
    );
    let touched: Vec<String> = worker.touched.drain().collect();
    match (prepared.pull_kind, worker.state.as_deref()) {
        (PullKind::Since(_), Some(state)) if prepared.usable => {
            Ok(state.records_of_keys(&touched)?)
        }
        _ => Ok(Vec::new()),
    }
}

/// Pulls and writes side by side; returns the ids pulled when a later
/// stage must skip them (incremental pulls, which are small).
async fn pull_and_write<C: Crm>(
    worker: &mut Worker<'_, C>,
    prepared: &Prepared,
    stop: &Stop,
    on_change: &mut impl FnMut(&RecordChange),
) -> Result<FxHashSet<String>, PassError> {
    let crm = worker.crm;
    let mut seen: FxHashSet<String> = FxHashSet::default();
    let keep_seen = matches!(prepared.pull_kind, PullKind::Since(_) | PullKind::Ids);
    let (raw_sink, raw_pages) = mpsc::channel::<Vec<CrmRecord>>(PAGES_IN_FLIGHT);
    let (sink, pages) = mpsc::channel::<Page>(PAGES_IN_FLIGHT);
    let consume = async {
        // The receiver lives in this future: when it ends, so does the
        // channel, and a pull still sending stops.
        let mut pages = pages;
        let mut writing: Option<Writing<'_>> = None;
        loop {
            // Backpressure: with a full batch waiting behind the one on the
            // wire, let that one finish before taking more pages.
            if worker.pending.len() >= 2 * worker.batch_size
                && let Some(write) = writing.take()
            {
                worker.record(write.await)?;
            }
            if writing.is_none()
                && let Some(batch) = worker.take_batch(false)
            {
                writing = Some(worker.start_write(batch));
            }
            let page = tokio::select! {
                biased;
                () = stop.stopped() => {
                    // A batch on the wire finishes and is recorded.
                    if let Some(write) = writing.take() {
                        worker.record(write.await)?;
                    }
                    return Err(PassError::Stopped);
                }
                done = async {
                    match writing.as_mut() {
                        Some(write) => write.await,
                        None => std::future::pending().await,
                    }
                } => {
                    writing = None;
                    worker.record(done)?;
                    continue;
                }
                page = pages.recv() => page,
            };
            let Some(page) = page else { break };
            if keep_seen {
                seen.extend(page.records.iter().map(|r| r.id.clone()));
            }
            worker.take_companies(page.companies)?;
            let settled = worker.take_page(page.records, on_change)?;
            worker.settle(&settled)?;
        }
        if let Some(write) = writing.take() {
            worker.record(write.await)?;
        }
        Ok(())
    };
    // A stop abandons the pull at once (it only reads); writes already on
    // the wire finish in `consume`.
    let related = &prepared.related;
    let pull = async {
        let both = async {
            let (summary, companies) = tokio::try_join!(
                crm.pull(&prepared.spec, raw_sink),
                resolve_companies(crm, related, raw_pages, sink)
            )?;
            Ok((summary, companies))
        };
        tokio::select! {
            pulled = both => pulled,
            () = stop.stopped() => Err(CrmError::Stopped),
        }
    };
    let (summary, companies) = pipeline(pull, consume).await?;
    worker.report.companies += companies;
    worker.flush().await?;
    worker.report.pull_pages = summary.pages;
    worker.report.detail_calls = summary.detail_calls;
    Ok(seen)
}

/// Failed records the pull did not bring back get another try from their
/// stored inputs (incremental passes, a bounded number of times).
async fn retry_failed<C: Crm>(
    worker: &mut Worker<'_, C>,
    seen: &FxHashSet<String>,
    stop: &Stop,
    on_change: &mut impl FnMut(&RecordChange),
) -> Result<(), PassError> {
    let retry: Vec<String> = match worker.state.as_deref() {
        Some(state) if worker.pass.kind == PassKind::Incremental => state
            .failed_ids(RETRIES)?
            .into_iter()
            .filter(|id| !seen.contains(id))
            .collect(),
        _ => Vec::new(),
    };
    rescore_ids(worker, &retry, stop, on_change).await?;
    Ok(())
}

/// Rescores these stored records, a page at a time; returns how many
/// were found in the state.
async fn rescore_ids<C: Crm>(
    worker: &mut Worker<'_, C>,
    ids: &[String],
    stop: &Stop,
    on_change: &mut impl FnMut(&RecordChange),
) -> Result<u64, PassError> {
    let mut found = 0;
    for chunk in ids.chunks(RESCORE_PAGE) {
        if stop.is_stopped() {
            return Err(PassError::Stopped);
        }
        let mut records = Vec::new();
        if let Some(state) = worker.state.as_deref() {
            for id in chunk {
                records.extend(state.record(id)?);
            }
        }
        found += records.len() as u64;
        worker.rescore(records, on_change).await?;
    }
    Ok(found)
}

/// Stored records the pull did not bring back whose company changed, or
/// which joined or left a list: rescored from their stored inputs with
/// the company's new values and the lists as they are now — no contact
/// is read again.
async fn rescore_moved<C: Crm>(
    worker: &mut Worker<'_, C>,
    related: &Related,
    engaged: &[String],
    seen: &FxHashSet<String>,
    stop: &Stop,
    on_change: &mut impl FnMut(&RecordChange),
) -> Result<(), PassError> {
    let Some(state) = worker.state.as_deref() else {
        return Ok(());
    };
    let changed: Vec<String> = related
        .changed_companies
        .iter()
        .map(|c| c.id.clone())
        .collect();
    let mut ids: Vec<String> = state.records_of_companies(&changed)?;
    ids.extend(related.list_moved.iter().cloned());
    let engaged: FxHashSet<&String> = engaged.iter().filter(|id| !seen.contains(*id)).collect();
    worker.report.engaged = engaged.len() as u64;
    ids.extend(engaged.into_iter().cloned());
    ids.sort();
    ids.dedup();
    ids.retain(|id| !seen.contains(id));
    worker.report.moved += rescore_ids(worker, &ids, stop, on_change).await?;
    Ok(())
}

/// Every stored record the pull did not bring back, rescored from its
/// stored inputs (decay and windows move scores with no CRM change; a new
/// model moves them too).
async fn rescore_stored<C: Crm>(
    worker: &mut Worker<'_, C>,
    seen: &FxHashSet<String>,
    stop: &Stop,
    on_change: &mut impl FnMut(&RecordChange),
) -> Result<(), PassError> {
    let mut after = String::new();
    loop {
        if stop.is_stopped() {
            return Err(PassError::Stopped);
        }
        let Some(state) = worker.state.as_deref() else {
            return Ok(());
        };
        let batch = state.records_after(&after, RESCORE_PAGE)?;
        let Some((last, _)) = batch.last() else {
            return Ok(());
        };
        after = last.id.clone();
        let records: Vec<(CrmRecord, Written)> = batch
            .into_iter()
            .filter(|(r, _)| !seen.contains(&r.id))
            .collect();
        worker.rescore(records, on_change).await?;
    }
}

/// A run id: the start time and a random tail, short enough for logs.
pub fn run_id(now: jiff::Timestamp) -> String {
    format!("{:x}-{:04x}", now.as_second(), fastrand::u16(..))
}

/// How a run ended, in a word (the run log, `STATUS=`, metrics).
pub fn outcome(result: &Result<PassReport, PassError>) -> &'static str {
    match result {
        Ok(report) if report.failed.is_empty() => "ok",
        Ok(_) => "ok-with-failures",
        Err(PassError::Stopped) => "stopped",
        Err(PassError::Crm(CrmError::BudgetExhausted { .. })) => "budget-exhausted",
        Err(PassError::Crm(
            CrmError::Auth(_) | CrmError::MissingScope(_) | CrmError::Credentials(_),
        )) => "auth-failed",
        Err(PassError::Crm(_)) => "crm-error",
        Err(PassError::State(StateError::Foreign { .. })) => "wrong-account",
        Err(PassError::State(_)) => "state-error",
    }
}

/// Runs a pass inside a `run` span with a run id, and logs it in the
/// state's run log (dry runs are not logged: they change nothing). The log
/// counts what a pass did also when it failed or the budget stopped it.
pub async fn run_logged<C: Crm>(
    crm: &C,
    connection: &Connection,
    state: &mut State,
    pass: Pass,
    stop: &Stop,
    on_change: impl FnMut(&RecordChange),
) -> Result<PassReport, PassError> {
    run_logged_targeted(crm, connection, state, pass, None, stop, on_change).await
}

/// [`run_logged`] for a pass that may read given records
/// ([`PassKind::Webhook`]).
pub async fn run_logged_targeted<C: Crm>(
    crm: &C,
    connection: &Connection,
    state: &mut State,
    pass: Pass,
    targets: Option<&Targets>,
    stop: &Stop,
    on_change: impl FnMut(&RecordChange),
) -> Result<PassReport, PassError> {
    use tracing::Instrument as _;
    let id = run_id(pass.now);
    let span = tracing::info_span!("run", run_id = %id, kind = pass.kind.as_str());
    async {
        let started = jiff::Timestamp::now();
        let row = if pass.dry_run || state.read_only() {
            None
        } else {
            Some(state.begin_run(&id, pass.kind.as_str(), started.as_millisecond())?)
        };
        tracing::info!(dry_run = pass.dry_run, "run started");
        let (report, result) = run_targeted_reporting(
            crm,
            connection,
            Some(&mut *state),
            pass,
            targets,
            stop,
            on_change,
        )
        .await;
        let result = result.map(|()| report.clone());
        let ended = jiff::Timestamp::now();
        let word = outcome(&result);
        let log = RunLog {
            run_id: id.clone(),
            kind: pass.kind.as_str().to_owned(),
            started_ms: started.as_millisecond(),
            ended_ms: Some(ended.as_millisecond()),
            outcome: Some(word.to_owned()),
            pulled: report.pulled,
            changed: report.changed,
            written: report.written,
            failed: report.failed.len() as u64,
            calls: report.calls(),
            watermark_ms: report.watermark,
            message: result.as_ref().err().map(|e| redact::string(e.to_string())),
        };
        match &result {
            Ok(report) => {
                tracing::info!(
                    outcome = word,
                    pulled = report.pulled,
                    unchanged = report.unchanged,
                    rescored = report.rescored,
                    changed = report.changed,
                    written = report.written,
                    failed = report.failed.len(),
                    calls = report.calls(),
                    seconds = (ended - started).as_secs_f64(),
                    "run finished"
                );
            }
            Err(error) => {
                tracing::warn!(
                    outcome = word,
                    error = %redact::text(&error.to_string()),
                    pulled = report.pulled,
                    written = report.written,
                    calls = report.calls(),
                    "run did not finish"
                );
            }
        }
        if let Some(row) = row
            && let Err(error) = state.end_run(row, &log)
        {
            // The pass's own error says more than the log's failure.
            if result.is_ok() {
                return Err(error.into());
            }
            tracing::warn!(error = %error, "the run log could not be written");
        }
        result
    }
    .instrument(span)
    .await
}
