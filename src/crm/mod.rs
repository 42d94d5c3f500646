//! The CRM layer: one trait, [`Crm`], with one implementation per CRM
//! (HubSpot today; Pardot fits the same shape). Scoring never knows which
//! CRM a record came from: connectors hand over [`CrmRecord`]s — field
//! values as text, engagement events with the model's type names — and
//! take back [`Update`]s.
//!
//! Wire types live only in the connector modules. The HTTP machinery that
//! every connector shares (rate limits, daily budget, retries with
//! backoff, timeouts, auth) is in `http`; credentials in `auth`; turning a
//! `CrmRecord` into a model `Record` in `mapping`.

pub mod auth;
pub mod http;
pub mod hubspot;
pub mod mapping;
pub mod pardot;
pub mod redact;

use std::collections::BTreeMap;
use std::future::Future;

use tokio::sync::mpsc;

/// One contact or prospect as pulled: field values as text (absent or
/// null fields are left out), its last-modified time, and the engagement
/// detail the model needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrmRecord {
    pub id: String,
    /// Epoch milliseconds.
    pub modified_ms: i64,
    pub values: BTreeMap<String, String>,
    pub events: Vec<CrmEvent>,
    pub lists: Vec<String>,
    /// The connector skipped event detail because the record is as
    /// leadscored last saw it ([`PullSpec::known`]); its events are in the
    /// local state.
    pub detail_skipped: bool,
}

impl CrmRecord {
    /// Adds occurrences read elsewhere (a stream, the state's event
    /// store) to the ones the record came with, each occurrence once: by
    /// its id where it has one, else by its type and time.
    pub fn add_events(&mut self, found: Vec<CrmEvent>) {
        if found.is_empty() {
            return;
        }
        let mut ids: rustc_hash::FxHashSet<(String, String)> = self
            .events
            .iter()
            .filter(|e| !e.id.is_empty())
            .map(|e| (e.id.clone(), e.kind.clone()))
            .collect();
        let plain: rustc_hash::FxHashSet<(String, i64)> = self
            .events
            .iter()
            .filter(|e| e.id.is_empty())
            .map(|e| (e.kind.clone(), e.at_ms))
            .collect();
        for event in found {
            let new = if event.id.is_empty() {
                !plain.contains(&(event.kind.clone(), event.at_ms))
            } else {
                ids.insert((event.id.clone(), event.kind.clone()))
                    && !plain.contains(&(event.kind.clone(), event.at_ms))
            };
            if new {
                self.events.push(event);
            }
        }
    }

    /// The id of the record's primary company, where the CRM keeps
    /// company facts on a separate object (HubSpot's `associatedcompanyid`).
    pub fn company_id(&self) -> Option<&str> {
        self.values
            .get(crate::config::COMPANY_ID)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// What a CRM said changed, as a webhook delivery tells it: the records
/// to read again, and the ones that are gone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Touch {
    /// A contact changed in a field the model reads, or moved to another
    /// company: read it again (its engagement is as the state holds it).
    Contact(String),
    /// A contact created, restored, the survivor of a merge, or one whose
    /// engagement moved (a form filled, an email opened, a visit): read it
    /// again with its engagement.
    Engaged(String),
    /// A contact deleted (or merged into another): forget it.
    Gone(String),
    /// A company changed in a field the model reads: its people are
    /// rescored from the state once it is read again.
    Company(String),
}

/// One company as pulled: the properties the model reads from it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrmCompany {
    pub id: String,
    /// Epoch milliseconds (`hs_lastmodifieddate`).
    pub modified_ms: i64,
    pub values: BTreeMap<String, String>,
}

/// A list the model names, as the CRM holds it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListInfo {
    /// The name the model uses.
    pub name: String,
    /// The CRM's list id; `None` when no list has this name.
    pub id: Option<String>,
    /// Changes whenever a record joins or leaves the list (HubSpot: the
    /// last added and removed times, size and version): while it stays
    /// the same, the stored members are current and nothing is read.
    pub change_key: String,
    /// Members as the CRM counts them.
    pub size: u64,
}

/// One engagement event, with the model's event type name.
#[derive(Clone, Debug, PartialEq)]
pub struct CrmEvent {
    /// The CRM's id of the occurrence, unique within its stream (empty
    /// when the CRM gives none): the same occurrence read twice, by a
    /// stream and by per-contact detail, is stored once.
    pub id: String,
    pub kind: String,
    /// Epoch milliseconds.
    pub at_ms: i64,
    /// `url`, `campaign`, `form_id`, `asset`, ...
    pub attributes: Vec<(String, String)>,
}

/// One occurrence read from an engagement stream, with the record it
/// belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamEvent {
    /// The record's id, or `email:<address>` (lowercase) where the CRM
    /// names the recipient rather than the record (HubSpot's email events
    /// and form submissions).
    pub key: String,
    pub event: CrmEvent,
}

/// The key a stream gives events it knows only by email address.
pub fn email_key(email: &str) -> String {
    format!("email:{}", email.trim().to_lowercase())
}

/// Which engagement streams to read, and from when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSpec {
    /// Model event type → the earliest occurrence worth reading (epoch
    /// ms; `i64::MIN` for all history).
    pub from_ms: BTreeMap<String, i64>,
    /// The streams' upper bound (epoch ms): the pass's end.
    pub until_ms: i64,
}

/// How a stream read went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// Occurrences handed to the sink.
    pub events: u64,
    /// Pages read.
    pub calls: u64,
}

/// Which records a pull asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullKind {
    /// Every live record.
    Full,
    /// Records modified at or after this moment (epoch ms).
    Since(i64),
    /// Exactly the records [`PullSpec::ids`] names (those that still
    /// exist), as webhooks asked.
    Ids,
}

/// What a pull fetches.
#[derive(Clone, Debug)]
pub struct PullSpec {
    pub kind: PullKind,
    /// CRM fields to request: exactly what the model and the outputs need.
    pub fields: Vec<String>,
    /// Model event types whose detail must be fetched (none: no extra calls).
    pub event_types: Vec<String>,
    /// The pull's upper bound (epoch ms): records changed later are left to
    /// the next run. The next watermark.
    pub until_ms: i64,
    /// Records leadscored has seen, id → modified time then: a record
    /// pulled at that same time is unchanged (often an echo of our own
    /// write), so its event detail is not fetched again.
    pub known: std::sync::Arc<rustc_hash::FxHashMap<String, i64>>,
    /// The records a [`PullKind::Ids`] pull reads.
    pub ids: std::sync::Arc<Vec<String>>,
}

/// How a pull went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullSummary {
    /// Records handed to the sink.
    pub records: u64,
    /// Pages (list or search calls) read.
    pub pages: u64,
    /// Calls made for event detail.
    pub detail_calls: u64,
}

/// New values for one record's output properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub id: String,
    /// Property → text; an empty text clears the property.
    pub values: BTreeMap<String, String>,
}

/// The outcome of writing updates: every id ends in exactly one list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub written: Vec<String>,
    /// The CRM's modified time after the write (epoch ms), per written id,
    /// where the answer gave it: the next pull recognises the echo.
    pub stamps: Vec<(String, i64)>,
    /// Id and the CRM's reason.
    pub failed: Vec<(String, String)>,
    pub calls: u64,
}

impl WriteReport {
    /// Adds another part of the same write.
    pub fn absorb(&mut self, other: WriteReport) {
        self.written.extend(other.written);
        self.stamps.extend(other.stamps);
        self.failed.extend(other.failed);
        self.calls += other.calls;
    }
}

/// A property leadscored writes, as `setup` creates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertySpec {
    /// The object the property is on (HubSpot contacts or companies).
    pub object: crate::model::Object,
    pub name: String,
    pub label: String,
    pub kind: crate::engine::OutputKind,
    /// For choice properties, in order.
    pub options: Vec<String>,
}

/// What `setup` found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetupReport {
    pub created: Vec<String>,
    pub existing: Vec<String>,
    /// Properties that exist with another type or options, and why they
    /// will not work.
    pub conflicts: Vec<(String, String)>,
    /// Properties that do not exist (when not applying).
    pub missing: Vec<String>,
    /// Model inputs the CRM has no field or list for: what is missing,
    /// and what reads it.
    pub missing_inputs: Vec<(String, String)>,
    /// What a person should know that does not stop a run.
    pub warnings: Vec<String>,
}

/// Why a CRM call or a whole run failed.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    /// A secret could not be read (the message names where, never what).
    #[error("credentials: {0}")]
    Credentials(String),
    /// The CRM rejected the credentials; the run stops.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The token lacks a scope the call needs.
    #[error("missing permission: {0}")]
    MissingScope(String),
    /// The daily budget (minus the headroom left to other integrations) is
    /// spent; resume after the reset.
    #[error("daily API budget spent ({used} of {limit} calls); resuming after {resume_at}")]
    BudgetExhausted {
        used: u64,
        limit: u64,
        resume_at: jiff::Timestamp,
    },
    /// The CRM refused a request (a 4xx other than auth and rate limits).
    #[error("{endpoint}: HTTP {status}: {message}")]
    Rejected {
        endpoint: String,
        status: u16,
        message: String,
        body: serde_json::Value,
    },
    /// Retries did not get an answer (5xx, 429, timeouts, resets, bad bodies).
    #[error("{endpoint}: gave up after {attempts} attempts: {last}")]
    Unavailable {
        endpoint: String,
        attempts: u32,
        last: String,
    },
    /// An answer that does not have the shape the API documents.
    #[error("{endpoint}: unexpected answer: {message}")]
    Protocol { endpoint: String, message: String },
    /// The pull's consumer went away (the run is stopping).
    #[error("the run was stopped")]
    Stopped,
    /// The connection asks for something this build cannot do.
    #[error("{0}")]
    Unsupported(String),
}

/// A CRM connection. Implementations page, batch, rate-limit and retry on
/// their own; callers see records and write reports.
pub trait Crm: Send + Sync {
    /// Reads the records `spec` asks for, in pages, and sends them to
    /// `sink` (a bounded channel: a slow consumer slows the pull, so memory
    /// stays flat). Event detail is fetched only for `spec.event_types`.
    fn pull(
        &self,
        spec: &PullSpec,
        sink: mpsc::Sender<Vec<CrmRecord>>,
    ) -> impl Future<Output = Result<PullSummary, CrmError>> + Send;

    /// Writes the updates in the CRM's largest batches. One bad record never
    /// fails the others; failures come back per id.
    fn write(
        &self,
        updates: Vec<Update>,
    ) -> impl Future<Output = Result<WriteReport, CrmError>> + Send;

    /// Writes updates to companies (their ids and properties), as
    /// [`Crm::write`] writes contacts.
    fn write_companies(
        &self,
        updates: Vec<Update>,
    ) -> impl Future<Output = Result<WriteReport, CrmError>> + Send {
        let _ = updates;
        async {
            Err(CrmError::Unsupported(
                "this CRM has no company object to write to".to_owned(),
            ))
        }
    }

    /// How many updates one [`Crm::write`] should get, when the CRM does
    /// better with more than the engine's default (Pardot's imports).
    fn write_batch(&self) -> Option<usize> {
        None
    }

    /// About how many calls writing `changed` records costs (dry runs
    /// report it): batches of 100 unless the CRM says otherwise.
    fn write_cost(&self, changed: u64) -> u64 {
        changed.div_ceil(100)
    }

    /// Creates missing output properties (when `apply`), and reports
    /// existing ones of the wrong type.
    fn setup(
        &self,
        wanted: &[PropertySpec],
        apply: bool,
    ) -> impl Future<Output = Result<SetupReport, CrmError>> + Send;

    /// The account the credentials reach, as the CRM names it (`HubSpot
    /// portal 123`), asked once per connector; `None` when the CRM will
    /// not say. The state records it, and a state made for another
    /// account is refused before anything is written.
    fn identity(&self) -> impl Future<Output = Result<Option<String>, CrmError>> + Send;

    /// The shared HTTP layer: call counts, the daily budget, progress.
    fn http(&self) -> &http::Http;

    /// Reads these companies (each id once) with `fields`, in the CRM's
    /// largest batches. Ids the CRM does not know are left out.
    fn companies(
        &self,
        ids: &[String],
        fields: &[String],
    ) -> impl Future<Output = Result<Vec<CrmCompany>, CrmError>> + Send {
        let _ = (ids, fields);
        async {
            Err(CrmError::Unsupported(
                "this CRM keeps company facts on the contact".to_owned(),
            ))
        }
    }

    /// Companies modified in `[from_ms, until_ms]`, with `fields`.
    fn changed_companies(
        &self,
        from_ms: i64,
        until_ms: i64,
        fields: &[String],
    ) -> impl Future<Output = Result<Vec<CrmCompany>, CrmError>> + Send {
        let _ = (from_ms, until_ms, fields);
        async { Ok(Vec::new()) }
    }

    /// The lists the model names, resolved by name (a name no list has
    /// comes back with no id).
    fn list_infos(
        &self,
        names: &[String],
    ) -> impl Future<Output = Result<Vec<ListInfo>, CrmError>> + Send {
        let _ = names;
        async {
            Err(CrmError::Unsupported(
                "list memberships are not read from this CRM yet".to_owned(),
            ))
        }
    }

    /// The input fields the CRM does not have: `(object, field)` for each
    /// of `contact` (on the contact or prospect) and `company` (on the
    /// company) that no property of that object is named.
    fn missing_fields(
        &self,
        contact: &[String],
        company: &[String],
    ) -> impl Future<Output = Result<Vec<(&'static str, String)>, CrmError>> + Send {
        let _ = (contact, company);
        async { Ok(Vec::new()) }
    }

    /// Every member (record id) of a list.
    fn list_members(
        &self,
        list_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, CrmError>> + Send {
        let _ = list_id;
        async { Ok(Vec::new()) }
    }

    /// Whether engagement can be read as streams by type and time window
    /// ([`Crm::stream_events`]) rather than per record.
    fn streams(&self) -> bool {
        false
    }

    /// About how many calls per-record event detail costs for one record
    /// and these event types (zero when none needs a call of its own).
    fn detail_calls_per_record(&self, event_types: &[String]) -> u64 {
        let _ = event_types;
        0
    }

    /// Pages one stream read returns at most (to estimate its cost).
    fn stream_page(&self) -> u64 {
        1_000
    }

    /// How many separate streams `spec` reads (each costs a call at least).
    fn stream_count(&self, event_types: &[String]) -> u64 {
        let _ = event_types;
        0
    }

    /// Reads every occurrence of the event types in `spec` in its time
    /// window, by type, in pages sent to `sink`.
    fn stream_events(
        &self,
        spec: &StreamSpec,
        sink: mpsc::Sender<Vec<StreamEvent>>,
    ) -> impl Future<Output = Result<StreamSummary, CrmError>> + Send {
        let _ = (spec, sink);
        async {
            Err(CrmError::Unsupported(
                "this CRM's engagement is read per record".to_owned(),
            ))
        }
    }

    /// The longest property value the CRM keeps, in characters: a pulled
    /// value longer than this is not the CRM's data, and its record is
    /// refused rather than stored.
    fn max_value_chars(&self) -> usize {
        65_536
    }
}

/// The connector a connection file names.
#[derive(Debug)]
pub enum Connector {
    Hubspot(hubspot::Hubspot),
    Pardot(pardot::Pardot),
}

impl Connector {
    pub fn new(connection: &crate::config::Connection) -> Result<Connector, CrmError> {
        match connection.crm.kind {
            crate::config::CrmKind::Hubspot => {
                Ok(Connector::Hubspot(hubspot::Hubspot::new(connection)?))
            }
            crate::config::CrmKind::Pardot => {
                Ok(Connector::Pardot(pardot::Pardot::new(connection)?))
            }
        }
    }

    /// The HTTP layer: call counts, rate-limit waits, the daily budget.
    pub fn http(&self) -> &http::Http {
        match self {
            Connector::Hubspot(c) => c.http(),
            Connector::Pardot(c) => c.http(),
        }
    }
}

impl Crm for Connector {
    async fn pull(
        &self,
        spec: &PullSpec,
        sink: mpsc::Sender<Vec<CrmRecord>>,
    ) -> Result<PullSummary, CrmError> {
        match self {
            Connector::Hubspot(c) => c.pull(spec, sink).await,
            Connector::Pardot(c) => c.pull(spec, sink).await,
        }
    }

    async fn write(&self, updates: Vec<Update>) -> Result<WriteReport, CrmError> {
        match self {
            Connector::Hubspot(c) => c.write(updates).await,
            Connector::Pardot(c) => c.write(updates).await,
        }
    }

    async fn write_companies(&self, updates: Vec<Update>) -> Result<WriteReport, CrmError> {
        match self {
            Connector::Hubspot(c) => c.write_companies(updates).await,
            Connector::Pardot(c) => c.write_companies(updates).await,
        }
    }

    fn write_batch(&self) -> Option<usize> {
        match self {
            Connector::Hubspot(c) => c.write_batch(),
            Connector::Pardot(c) => c.write_batch(),
        }
    }

    fn write_cost(&self, changed: u64) -> u64 {
        match self {
            Connector::Hubspot(c) => c.write_cost(changed),
            Connector::Pardot(c) => c.write_cost(changed),
        }
    }

    async fn setup(&self, wanted: &[PropertySpec], apply: bool) -> Result<SetupReport, CrmError> {
        match self {
            Connector::Hubspot(c) => c.setup(wanted, apply).await,
            Connector::Pardot(c) => c.setup(wanted, apply).await,
        }
    }

    async fn identity(&self) -> Result<Option<String>, CrmError> {
        match self {
            Connector::Hubspot(c) => c.identity().await,
            Connector::Pardot(c) => c.identity().await,
        }
    }

    fn http(&self) -> &http::Http {
        Connector::http(self)
    }

    fn max_value_chars(&self) -> usize {
        match self {
            Connector::Hubspot(c) => c.max_value_chars(),
            Connector::Pardot(c) => c.max_value_chars(),
        }
    }

    async fn companies(
        &self,
        ids: &[String],
        fields: &[String],
    ) -> Result<Vec<CrmCompany>, CrmError> {
        match self {
            Connector::Hubspot(c) => c.companies(ids, fields).await,
            Connector::Pardot(c) => c.companies(ids, fields).await,
        }
    }

    async fn changed_companies(
        &self,
        from_ms: i64,
        until_ms: i64,
        fields: &[String],
    ) -> Result<Vec<CrmCompany>, CrmError> {
        match self {
            Connector::Hubspot(c) => c.changed_companies(from_ms, until_ms, fields).await,
            Connector::Pardot(c) => c.changed_companies(from_ms, until_ms, fields).await,
        }
    }

    async fn list_infos(&self, names: &[String]) -> Result<Vec<ListInfo>, CrmError> {
        match self {
            Connector::Hubspot(c) => c.list_infos(names).await,
            Connector::Pardot(c) => c.list_infos(names).await,
        }
    }

    async fn missing_fields(
        &self,
        contact: &[String],
        company: &[String],
    ) -> Result<Vec<(&'static str, String)>, CrmError> {
        match self {
            Connector::Hubspot(c) => c.missing_fields(contact, company).await,
            Connector::Pardot(c) => c.missing_fields(contact, company).await,
        }
    }

    async fn list_members(&self, list_id: &str) -> Result<Vec<String>, CrmError> {
        match self {
            Connector::Hubspot(c) => c.list_members(list_id).await,
            Connector::Pardot(c) => c.list_members(list_id).await,
        }
    }

    fn streams(&self) -> bool {
        match self {
            Connector::Hubspot(c) => c.streams(),
            Connector::Pardot(c) => c.streams(),
        }
    }

    fn detail_calls_per_record(&self, event_types: &[String]) -> u64 {
        match self {
            Connector::Hubspot(c) => c.detail_calls_per_record(event_types),
            Connector::Pardot(c) => c.detail_calls_per_record(event_types),
        }
    }

    fn stream_page(&self) -> u64 {
        match self {
            Connector::Hubspot(c) => c.stream_page(),
            Connector::Pardot(c) => c.stream_page(),
        }
    }

    fn stream_count(&self, event_types: &[String]) -> u64 {
        match self {
            Connector::Hubspot(c) => c.stream_count(event_types),
            Connector::Pardot(c) => c.stream_count(event_types),
        }
    }

    async fn stream_events(
        &self,
        spec: &StreamSpec,
        sink: mpsc::Sender<Vec<StreamEvent>>,
    ) -> Result<StreamSummary, CrmError> {
        match self {
            Connector::Hubspot(c) => c.stream_events(spec, sink).await,
            Connector::Pardot(c) => c.stream_events(spec, sink).await,
        }
    }
}

/// Guards a pager against a server that never lets go: a cursor or
/// offset that repeats, or more pages than the reported total allows, is
/// a protocol error (exit 76) instead of an endless loop.
#[derive(Debug)]
pub struct Pager {
    endpoint: &'static str,
    seen: std::collections::HashSet<String>,
    pages: u64,
    bound: u64,
    /// The cursor the next page is asked for with; `None` for the first.
    cursor: Option<String>,
}

impl Pager {
    pub fn new(endpoint: &'static str) -> Pager {
        Pager {
            endpoint,
            seen: std::collections::HashSet::new(),
            pages: 0,
            bound: u64::MAX,
            cursor: None,
        }
    }

    /// The cursor (or offset) to ask for the next page with, `None` for
    /// the first page.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// After a page: `next` is the cursor it gave, `more` whether it had
    /// anything (an empty page ends paging whatever its cursor says).
    /// Returns whether to ask for another page, with [`Pager::cursor`];
    /// a repeated cursor or too many pages is a protocol error.
    pub fn turn(&mut self, next: Option<String>, more: bool) -> Result<bool, CrmError> {
        match next {
            Some(next) if more => {
                self.next(&next)?;
                self.cursor = Some(next);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The pages cannot outnumber `total` items (as the latest page
    /// reports it) at `per_page` a page, plus two (an empty last page, a
    /// total that moved while paging).
    pub fn bound_by(&mut self, total: u64, per_page: u64) {
        self.bound = total.div_ceil(per_page.max(1)).saturating_add(2);
    }

    /// Counts a page and checks the cursor it gave for the next one.
    pub fn next(&mut self, cursor: &str) -> Result<(), CrmError> {
        self.pages += 1;
        if !self.seen.insert(cursor.to_owned()) {
            return Err(CrmError::Protocol {
                endpoint: self.endpoint.to_owned(),
                message: format!(
                    "the paging cursor {cursor:?} came back a second time after {} pages; stopping rather than looping (nothing of this pass is written)",
                    self.pages
                ),
            });
        }
        if self.pages > self.bound {
            return Err(CrmError::Protocol {
                endpoint: self.endpoint.to_owned(),
                message: format!(
                    "{} pages, more than the reported total allows ({}); stopping rather than looping",
                    self.pages, self.bound
                ),
            });
        }
        Ok(())
    }

    pub fn pages(&self) -> u64 {
        self.pages
    }
}
