//! The fake HubSpot: CRM v3 contacts (list, get, search, batch read, batch
//! update), the properties API, bearer auth, HubSpot's error bodies, its
//! rate-limit headers and 429s, all stateful and on 127.0.0.1.
//!
//! Contacts are generated on demand from the seed (see `people`); only what
//! clients write is stored. Property values go over the wire as strings, as
//! HubSpot sends them. Wire shapes follow HubSpot's public OpenAPI specs for
//! these paths (`PublicApiSpecs/CRM/Contacts`, `.../CRM/Properties`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use super::faults::Faults;
use super::faults::{self, Fault};
use super::limits::{DailyBudget, RollingWindow};
use super::people::{GenEvent, PeopleSpec, Person};
use super::store::{Overlay, StateHeader};

mod drift;
mod engagement;
mod objects;
pub mod webhooks;

/// The account's time zone (`/account-info/v3/details`), where its
/// daily limit resets.
const ACCOUNT_ZONE: &str = "US/Eastern";

/// HubSpot's object type id for contacts.
const CONTACT_TYPE_ID: &str = "0-1";
/// The contact property naming its primary company.
const COMPANY_ID: &str = "associatedcompanyid";

const DAY_MS: i64 = 86_400_000;
/// HubSpot's search returns at most this many results for one query.
pub const SEARCH_CAP: usize = 10_000;

/// How the fake HubSpot behaves.
#[derive(Clone, Debug)]
pub struct HubspotConfig {
    pub contacts: u64,
    pub seed: u64,
    /// The moment the generated history ends at, epoch ms.
    pub epoch_ms: i64,
    /// The private-app token clients must present.
    pub token: String,
    /// Requests per ten-second rolling window (HubSpot Free/Starter: 100).
    pub per_ten_seconds: u32,
    /// The rolling window `per_ten_seconds` applies to: ten seconds, as in
    /// HubSpot; tests shrink it to run fast.
    pub interval: Duration,
    /// Search requests per second.
    pub search_per_second: u32,
    /// Calls per day.
    pub daily: u64,
    /// Share of the ten-second window another integration uses (0.0–1.0).
    pub other_integration_share: f64,
    /// The OAuth refresh token `/oauth/v1/token` accepts.
    pub refresh_token: String,
    /// Faults to inject.
    pub faults: Faults,
    /// The portal (Hub) id `/account-info/v3/details` answers with;
    /// default: derived from the seed, so two seeds are two portals.
    pub portal_id: Option<u64>,
    /// Events per person relative to the generator's default (1.0).
    pub activity: f64,
    /// Webhook deliveries to a local receiver, as HubSpot sends them.
    pub webhooks: Option<webhooks::FakeWebhooks>,
    /// Companies the contacts work at (0: about eight contacts each).
    pub companies: u64,
}

impl HubspotConfig {
    /// The portal id this fake answers as.
    pub fn portal(&self) -> u64 {
        self.portal_id.unwrap_or(40_000_000 + self.seed)
    }
}

impl Default for HubspotConfig {
    fn default() -> Self {
        Self {
            contacts: 1_000,
            seed: 1,
            epoch_ms: 1_793_491_200_000, // 2026-11-01T00:00:00Z
            token: "pat-fake-local-token".to_owned(),
            per_ten_seconds: 100,
            interval: Duration::from_secs(10),
            search_per_second: 5,
            daily: 250_000,
            other_integration_share: 0.0,
            refresh_token: "fake-refresh-token".to_owned(),
            faults: Faults::default(),
            portal_id: None,
            activity: 1.0,
            webhooks: None,
            companies: 0,
        }
    }
}

/// Shared state of one fake HubSpot.
#[derive(Clone)]
pub struct FakeHubspot {
    inner: Arc<Mutex<Inner>>,
    /// Wakes the webhook sender when events wait.
    wake: Arc<tokio::sync::Notify>,
    sent: Arc<webhooks::Sent>,
}

impl std::fmt::Debug for FakeHubspot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("FakeHubspot")
            .field("contacts", &inner.config.contacts)
            .field("seed", &inner.config.seed)
            .field("written", &inner.overlay.written.len())
            .finish_non_exhaustive()
    }
}

/// One write the fake took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WriteLogEntry {
    /// Wall clock, epoch ms.
    pub at_ms: i64,
    /// The client's User-Agent (leadscored's names its process).
    pub agent: String,
    pub route: String,
}

struct Inner {
    config: HubspotConfig,
    people: PeopleSpec,
    /// What clients wrote: values, modified times, custom properties.
    overlay: Overlay,
    /// (lastmodified, id) for every contact; built on first search.
    by_modified: Option<BTreeSet<(i64, u64)>>,
    /// Email, form and web event lookups; built on first use.
    engagement: Option<engagement::EngagementIndex>,
    /// Events tests added, per contact (their modified time stays).
    added_events: BTreeMap<u64, Vec<GenEvent>>,
    properties: BTreeMap<String, PropertyDef>,
    company_properties: BTreeMap<String, PropertyDef>,
    /// List members by list id, until the list is edited.
    list_cache: HashMap<u64, Arc<Vec<u64>>>,
    /// Property group names and labels.
    groups: BTreeMap<String, String>,
    ten_seconds: RollingWindow,
    search_second: RollingWindow,
    daily: DailyBudget,
    stats: BTreeMap<String, u64>,
    /// Every write the fake took, in order (the newest 100,000).
    write_log: std::collections::VecDeque<WriteLogEntry>,
    rate_limited: u64,
    /// Index moves search does not see yet: (written at, id, old, new).
    lagging: Vec<(Instant, u64, i64, i64)>,
    /// OAuth access tokens and when they expire.
    tokens: HashMap<String, Instant>,
    fault_rng: super::people::Rng,
    faults_served: BTreeMap<&'static str, u64>,
    /// Webhook events not sent yet.
    outbox: webhooks::Outbox,
    /// Days `/__fake/advance` let pass.
    drift_days: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PropertyDef {
    name: String,
    label: String,
    kind: String,
    field_type: String,
    group: String,
    options: Vec<(String, String)>,
    hubspot_defined: bool,
    read_only: bool,
}

impl PropertyDef {
    fn builtin(name: &str, kind: &str, field_type: &str, read_only: bool) -> Self {
        Self {
            name: name.to_owned(),
            label: name.replace('_', " "),
            kind: kind.to_owned(),
            field_type: field_type.to_owned(),
            group: "contactinformation".to_owned(),
            options: Vec::new(),
            hubspot_defined: true,
            read_only,
        }
    }

    fn to_json(&self, created: &str) -> Value {
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.kind,
            "fieldType": self.field_type,
            "description": "",
            "groupName": self.group,
            "options": self.options.iter().enumerate().map(|(i, (label, value))| json!({
                "label": label, "value": value, "displayOrder": i, "hidden": false
            })).collect::<Vec<_>>(),
            "displayOrder": -1,
            "calculated": false,
            "externalOptions": false,
            "hasUniqueValue": false,
            "hidden": false,
            "hubspotDefined": self.hubspot_defined,
            "modificationMetadata": { "archivable": !self.hubspot_defined, "readOnlyDefinition": self.hubspot_defined, "readOnlyValue": self.read_only },
            "formField": !self.read_only,
            "createdAt": created,
            "updatedAt": created,
            "archived": false,
        })
    }
}

fn builtin_properties() -> BTreeMap<String, PropertyDef> {
    let list = [
        PropertyDef::builtin("hs_object_id", "number", "number", true),
        PropertyDef::builtin("email", "string", "text", false),
        PropertyDef::builtin("firstname", "string", "text", false),
        PropertyDef::builtin("lastname", "string", "text", false),
        PropertyDef::builtin("jobtitle", "string", "text", false),
        PropertyDef::builtin("phone", "string", "phonenumber", false),
        PropertyDef::builtin("country", "string", "text", false),
        PropertyDef::builtin("company", "string", "text", false),
        PropertyDef::builtin("numemployees", "number", "number", false),
        PropertyDef::builtin("industry", "string", "text", false),
        PropertyDef::builtin(COMPANY_ID, "number", "number", true),
        PropertyDef::builtin("createdate", "datetime", "date", true),
        PropertyDef::builtin("lastmodifieddate", "datetime", "date", true),
        PropertyDef::builtin("lifecyclestage", "enumeration", "radio", false),
        PropertyDef::builtin("hs_lead_status", "enumeration", "radio", false),
        PropertyDef::builtin("hs_analytics_num_page_views", "number", "number", true),
        PropertyDef::builtin("hs_analytics_num_visits", "number", "number", true),
        PropertyDef::builtin(
            "hs_analytics_last_visit_timestamp",
            "datetime",
            "date",
            true,
        ),
        PropertyDef::builtin("hs_email_open", "number", "number", true),
        PropertyDef::builtin("hs_email_click", "number", "number", true),
        PropertyDef::builtin("hs_email_last_open_date", "datetime", "date", true),
        PropertyDef::builtin("hs_email_optout", "bool", "booleancheckbox", false),
        PropertyDef::builtin("num_conversion_events", "number", "number", true),
        PropertyDef::builtin("recent_conversion_date", "datetime", "date", true),
        PropertyDef::builtin("recent_conversion_event_name", "string", "text", true),
        PropertyDef::builtin("hubspotscore", "number", "number", true),
        PropertyDef::builtin("hs_merged_object_ids", "enumeration", "checkbox", true),
    ];
    let mut map: BTreeMap<String, PropertyDef> =
        list.into_iter().map(|p| (p.name.clone(), p)).collect();
    let stages = [
        "subscriber",
        "lead",
        "marketingqualifiedlead",
        "salesqualifiedlead",
        "opportunity",
        "customer",
        "evangelist",
        "other",
    ];
    if let Some(p) = map.get_mut("lifecyclestage") {
        p.options = stages
            .iter()
            .map(|s| ((*s).to_owned(), (*s).to_owned()))
            .collect();
    }
    let statuses = [
        "NEW",
        "OPEN",
        "IN_PROGRESS",
        "OPEN_DEAL",
        "UNQUALIFIED",
        "ATTEMPTED_TO_CONTACT",
        "CONNECTED",
        "BAD_TIMING",
    ];
    if let Some(p) = map.get_mut("hs_lead_status") {
        p.options = statuses
            .iter()
            .map(|s| ((*s).to_owned(), (*s).to_owned()))
            .collect();
    }
    if let Some(p) = map.get_mut("hs_email_optout") {
        p.options = vec![
            ("True".to_owned(), "true".to_owned()),
            ("False".to_owned(), "false".to_owned()),
        ];
    }
    map
}

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

fn new_correlation_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// A HubSpot error response.
pub(super) fn error(status: StatusCode, category: &str, message: &str) -> Response {
    let body = json!({
        "status": "error",
        "message": message,
        "correlationId": new_correlation_id(),
        "category": category,
    });
    (status, Json(body)).into_response()
}

/// The generated properties of a person, as HubSpot strings.
fn generated_properties(person: &Person) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        p.insert(k.to_owned(), v);
    };
    put("hs_object_id", person.id.to_string());
    put("email", person.email.clone());
    put("firstname", person.firstname.to_owned());
    put("lastname", person.lastname.to_owned());
    put("jobtitle", person.jobtitle.clone());
    if let Some(phone) = &person.phone {
        put("phone", phone.clone());
    }
    put("country", person.country.to_owned());
    put("company", person.company.clone());
    // As on real portals, company facts live on the Company record: a
    // contact's own employee count and industry are mostly empty (some
    // forms ask for them).
    let mut facts = super::people::Rng::new(0x0F0C_7500, person.id);
    if facts.below(100) < 15 {
        put("numemployees", person.numemployees.to_string());
    }
    if facts.below(100) < 20 {
        put("industry", person.industry.to_owned());
    }
    if let Some(company) = person.company_id {
        put(COMPANY_ID, company.to_string());
    }
    put("createdate", iso(person.created_at));
    let count = |kind: &str| person.events.iter().filter(|e| e.kind == kind).count();
    let newest = |kind: &str| person.events.iter().find(|e| e.kind == kind).map(|e| e.at);
    let views = count("page_view");
    put("hs_analytics_num_page_views", views.to_string());
    put("hs_analytics_num_visits", views.div_ceil(2).to_string());
    if let Some(at) = newest("page_view") {
        put("hs_analytics_last_visit_timestamp", iso(at));
    }
    put("hs_email_open", count("email_open").to_string());
    put("hs_email_click", count("email_click").to_string());
    if let Some(at) = newest("email_open") {
        put("hs_email_last_open_date", iso(at));
    }
    put(
        "hs_email_optout",
        (count("email_unsubscribe") > 0).to_string(),
    );
    let forms: Vec<&GenEvent> = person
        .events
        .iter()
        .filter(|e| e.kind == "form_submission")
        .collect();
    put("num_conversion_events", forms.len().to_string());
    if let Some(form) = forms.first() {
        put("recent_conversion_date", iso(form.at));
        if let Some((_, name)) = &form.attribute {
            put("recent_conversion_event_name", name.clone());
        }
    }
    let stage = if person.converted {
        "customer"
    } else if forms.is_empty() {
        "subscriber"
    } else {
        "lead"
    };
    put("lifecyclestage", stage.to_owned());
    p
}

fn generated_modified(person: &Person) -> i64 {
    person
        .events
        .first()
        .map_or(person.created_at, |e| e.at.max(person.created_at))
}

impl Inner {
    /// A live contact (not archived, not merged away).
    fn exists(&self, id: u64) -> bool {
        self.status(id) == Status::Live
    }

    fn status(&self, id: u64) -> Status {
        let faults = &self.config.faults;
        if id < 1 || id > self.config.contacts {
            Status::Missing
        } else if faults.archived_every > 0 && id.is_multiple_of(faults.archived_every) {
            Status::Archived
        } else if faults.merged_every > 1 && id.is_multiple_of(faults.merged_every) && id > 1 {
            Status::MergedInto(id - 1)
        } else {
            Status::Live
        }
    }

    /// The live contact an id now stands for: itself, or its merge winner.
    fn resolve(&self, id: u64) -> Option<u64> {
        match self.status(id) {
            Status::Live => Some(id),
            Status::MergedInto(winner) if self.exists(winner) => Some(winner),
            _ => None,
        }
    }

    /// Ids merged into `winner`.
    fn merged_into(&self, winner: u64) -> Vec<u64> {
        let loser = winner + 1;
        if self.status(loser) == Status::MergedInto(winner) {
            vec![loser]
        } else {
            Vec::new()
        }
    }

    fn modified_at(&self, id: u64, person: &Person) -> i64 {
        if let Some(modified) = self.overlay.modified.get(&id) {
            return *modified;
        }
        if id <= self.config.faults.bulk_import {
            // One import touched them all in the same millisecond.
            return self.config.epoch_ms - 10 * DAY_MS;
        }
        generated_modified(person)
    }

    /// All current properties of a contact.
    fn properties_of(&self, id: u64) -> (BTreeMap<String, String>, Person, i64) {
        let person = self.people.person(id);
        let mut props = generated_properties(&person);
        if let Some(written) = self.overlay.written.get(&id) {
            for (k, v) in written {
                props.insert(k.clone(), v.clone());
            }
        }
        let modified = self.modified_at(id, &person);
        props.insert("lastmodifieddate".to_owned(), iso(modified));
        let merged = self.merged_into(id);
        if !merged.is_empty() {
            let ids: Vec<String> = merged.iter().map(u64::to_string).collect();
            props.insert("hs_merged_object_ids".to_owned(), ids.join(";"));
        }
        (props, person, modified)
    }

    /// A contact object as HubSpot returns it, with the requested properties
    /// (HubSpot's defaults when none are asked for).
    fn contact_json(&self, id: u64, wanted: Option<&[String]>) -> Value {
        let (props, person, modified) = self.properties_of(id);
        let defaults = [
            "createdate",
            "email",
            "firstname",
            "hs_object_id",
            "lastmodifieddate",
            "lastname",
        ];
        let mut out = serde_json::Map::new();
        match wanted {
            Some(names) if !names.is_empty() => {
                for name in names {
                    if self.properties.contains_key(name) {
                        out.insert(
                            name.clone(),
                            props
                                .get(name)
                                .map_or(Value::Null, |v| Value::String(v.clone())),
                        );
                    }
                }
                // HubSpot always includes these three.
                for name in ["createdate", "hs_object_id", "lastmodifieddate"] {
                    out.entry(name.to_owned()).or_insert_with(|| {
                        props
                            .get(name)
                            .map_or(Value::Null, |v| Value::String(v.clone()))
                    });
                }
            }
            _ => {
                for name in defaults {
                    out.insert(
                        name.to_owned(),
                        props
                            .get(name)
                            .map_or(Value::Null, |v| Value::String(v.clone())),
                    );
                }
            }
        }
        json!({
            "id": id.to_string(),
            "properties": out,
            "createdAt": iso(person.created_at),
            "updatedAt": iso(modified),
            "archived": false,
        })
    }

    fn index(&mut self) -> &BTreeSet<(i64, u64)> {
        if self.by_modified.is_none() {
            // Search sees a lagging contact where it was before its first unseen write.
            let mut visible: HashMap<u64, i64> = HashMap::new();
            for (_, id, old, _) in &self.lagging {
                visible.entry(*id).or_insert(*old);
            }
            let mut set = BTreeSet::new();
            for id in 1..=self.config.contacts {
                let modified = match visible.get(&id) {
                    Some(old) => *old,
                    None => self.modified_at(id, &self.people.person(id)),
                };
                set.insert((modified, id));
            }
            self.by_modified = Some(set);
        }
        self.by_modified.get_or_insert_with(BTreeSet::new)
    }

    /// Applies a write and moves the contact in the search index (at once,
    /// or after the search lag).
    fn write(&mut self, id: u64, values: BTreeMap<String, String>) {
        self.write_from(id, values, "INTEGRATION");
    }

    /// A write by `source` (HubSpot's `changeSource`: `INTEGRATION` for an
    /// API client, `CRM_UI` for a person in HubSpot).
    fn write_from(&mut self, id: u64, values: BTreeMap<String, String>, source: &str) {
        if let Some(config) = &self.config.webhooks {
            let portal = self.config.portal();
            self.outbox
                .contact_changed(config, portal, id, values.iter(), source);
        }
        let person = self.people.person(id);
        let old = self.modified_at(id, &person);
        let new = self.overlay.next_write_time(self.config.epoch_ms, old);
        self.overlay.write(id, values, new);
        if self.config.faults.search_lag.is_zero() {
            self.move_in_index(id, old, new);
        } else {
            self.lagging.push((Instant::now(), id, old, new));
        }
    }

    fn move_in_index(&mut self, id: u64, old: i64, new: i64) {
        if let Some(index) = self.by_modified.as_mut() {
            index.remove(&(old, id));
            index.insert((new, id));
        }
    }

    /// Applies the index moves that are older than the search lag.
    fn catch_up_search(&mut self) {
        let lag = self.config.faults.search_lag;
        let now = Instant::now();
        let (due, waiting): (Vec<_>, Vec<_>) = self
            .lagging
            .drain(..)
            .partition(|(at, ..)| now.duration_since(*at) >= lag);
        self.lagging = waiting;
        for (_, id, old, new) in due {
            self.move_in_index(id, old, new);
        }
    }
}

impl FakeHubspot {
    pub fn new(config: HubspotConfig) -> Self {
        let people = PeopleSpec {
            seed: config.seed,
            epoch_ms: config.epoch_ms,
            activity: config.activity,
            companies: config.companies,
        };
        let other = (f64::from(config.per_ten_seconds)
            * (1.0 - config.other_integration_share.clamp(0.0, 1.0)))
        .floor() as u32;
        let inner = Inner {
            ten_seconds: RollingWindow::new(other, config.interval),
            search_second: RollingWindow::new(config.search_per_second, Duration::from_secs(1)),
            daily: DailyBudget::new(
                config.daily,
                jiff::tz::TimeZone::get(ACCOUNT_ZONE).unwrap_or(jiff::tz::TimeZone::UTC),
            ),
            people,
            overlay: Overlay::default(),
            by_modified: None,
            engagement: None,
            added_events: BTreeMap::new(),
            properties: builtin_properties(),
            company_properties: objects::company_properties(),
            list_cache: HashMap::new(),
            groups: [
                ("contactinformation", "Contact information"),
                ("emailinformation", "Email information"),
                ("analyticsinformation", "Web analytics history"),
                ("conversioninformation", "Conversion information"),
            ]
            .into_iter()
            .map(|(name, label)| (name.to_owned(), label.to_owned()))
            .collect(),
            stats: BTreeMap::new(),
            write_log: std::collections::VecDeque::new(),
            rate_limited: 0,
            lagging: Vec::new(),
            tokens: HashMap::new(),
            fault_rng: super::people::Rng::new(config.seed, 0xFA17),
            faults_served: BTreeMap::new(),
            outbox: webhooks::Outbox::default(),
            drift_days: 0,
            config,
        };
        let mut inner = inner;
        if let Some(ttl) = inner.config.faults.token_ttl {
            let token = inner.config.token.clone();
            inner.tokens.insert(token, Instant::now() + ttl);
        }
        Self {
            inner: Arc::new(Mutex::new(inner)),
            wake: Arc::new(tokio::sync::Notify::new()),
            sent: Arc::new(webhooks::Sent::default()),
        }
    }

    /// Starts sending webhooks, when configured (on the current tokio
    /// runtime; the sender ends when the fake is dropped).
    pub fn start_webhooks(&self) {
        let config = self.lock().config.webhooks.clone();
        if let Some(config) = config {
            webhooks::start(self.clone(), config);
        }
    }

    /// Tells the webhook sender that events wait.
    fn wake_sender(&self) {
        self.wake.notify_one();
    }

    /// A person edits a contact in HubSpot (benchmarks call this in
    /// process; tests use `POST /__fake/contacts/{id}`): false when there
    /// is no such contact.
    pub fn edit_contact(&self, id: u64, values: BTreeMap<String, String>) -> bool {
        {
            let mut inner = self.lock();
            if !inner.exists(id) {
                return false;
            }
            inner.write_from(id, values, "CRM_UI");
        }
        self.wake_sender();
        true
    }

    /// A contact's property as HubSpot holds it now.
    pub fn property(&self, id: u64, name: &str) -> Option<String> {
        let inner = self.lock();
        let id = inner.resolve(id)?;
        let (properties, _, _) = inner.properties_of(id);
        properties.get(name).cloned()
    }

    fn state_header(inner: &Inner) -> StateHeader {
        StateHeader {
            kind: "hubspot".to_owned(),
            seed: inner.config.seed,
            records: inner.config.contacts,
        }
    }

    /// Takes over the writes and custom properties saved in `path` (none
    /// if the file does not exist yet).
    /// The writes the fake took, oldest first (also under `write_log` in
    /// `GET /__fake/stats`): when, from which client (its User-Agent), to
    /// which route.
    pub fn write_log(&self) -> Vec<WriteLogEntry> {
        self.lock().write_log.iter().cloned().collect()
    }

    pub fn load_state(&self, path: &std::path::Path) -> Result<(), String> {
        let mut inner = self.lock();
        let overlay = Overlay::load(&Self::state_header(&inner), path)?;
        for (key, saved) in &overlay.custom {
            if let Some(group) = key.strip_prefix(GROUP_KEY) {
                let label = saved.as_str().unwrap_or(group).to_owned();
                inner.groups.insert(group.to_owned(), label);
                continue;
            }
            let def: PropertyDef = serde_json::from_value(saved.clone())
                .map_err(|e| format!("{}: a saved property: {e}", path.display()))?;
            inner.properties.insert(def.name.clone(), def);
        }
        inner.overlay = overlay;
        inner.by_modified = None;
        inner.list_cache.clear();
        Ok(())
    }

    /// Saves the writes and custom properties to `path` if anything changed
    /// since the last save; true when it wrote the file.
    pub fn save_state(&self, path: &std::path::Path) -> std::io::Result<bool> {
        let mut inner = self.lock();
        let header = Self::state_header(&inner);
        inner.overlay.save_if_dirty(&header, path)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The HTTP routes, ready to serve.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/crm/v3/objects/contacts", get(list_contacts))
            .route("/crm/v3/objects/contacts/search", post(search_contacts))
            .route("/crm/v3/objects/contacts/batch/read", post(batch_read))
            .route("/crm/v3/objects/contacts/batch/update", post(batch_update))
            .route("/crm/v3/objects/contacts/{id}", get(get_contact))
            .route(
                "/crm/v3/properties/contacts",
                get(list_properties).post(create_property),
            )
            .route(
                "/crm/v3/properties/contacts/groups",
                get(list_groups).post(create_group),
            )
            .route("/marketing/v3/forms", get(engagement::list_forms))
            .route(
                "/form-integrations/v1/submissions/forms/{guid}",
                get(engagement::form_submissions),
            )
            .route("/email/public/v1/events", get(engagement::email_events))
            .route("/events/v3/events", get(engagement::web_events))
            .route("/account-info/v3/details", get(account_details))
            .route("/crm/v3/objects/companies", get(objects::list_companies))
            .route(
                "/crm/v3/objects/companies/batch/read",
                post(objects::batch_read_companies),
            )
            .route(
                "/crm/v3/objects/companies/search",
                post(objects::search_companies),
            )
            .route(
                "/crm/v3/properties/companies",
                get(objects::company_property_list).post(objects::create_company_property),
            )
            .route(
                "/crm/v3/objects/companies/batch/update",
                post(objects::batch_update_companies),
            )
            .route(
                "/crm/v4/associations/contacts/companies/batch/read",
                post(objects::contact_companies),
            )
            .route("/crm/v3/lists/search", post(objects::search_lists))
            .route(
                "/crm/v3/lists/{list}/memberships",
                get(objects::list_memberships),
            )
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(self.clone(), gate));
        let inspect = Router::new()
            .route("/__fake/stats", get(stats))
            .route("/__fake/events", post(engagement::add_events))
            .route(
                "/__fake/contacts/{id}",
                get(inspect_contact).post(edit_contact),
            )
            .route("/__fake/reset-daily", post(reset_daily))
            .route("/__fake/advance", post(drift::advance))
            .route("/__fake/catch-up-search", post(catch_up_search))
            .route(
                "/__fake/companies/{id}",
                post(objects::edit_company).get(objects::inspect_company),
            )
            .route("/__fake/contacts/{id}/company", post(objects::move_contact))
            .route("/__fake/lists/{list}/members", post(objects::edit_members))
            .route("/oauth/v1/token", post(oauth_token));
        api.merge(inspect).with_state(self.clone())
    }
}

/// What became of a contact id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Live,
    Archived,
    MergedInto(u64),
    Missing,
}

/// The outcome of checking a request's bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    Valid,
    Missing,
    /// An OAuth token that expired this many seconds ago.
    Expired(u64),
}

impl Inner {
    fn check_token(&self, presented: Option<&str>) -> Auth {
        let Some(token) = presented else {
            return Auth::Missing;
        };
        // Tokens issued at /oauth/v1/token hold until they expire; the
        // private-app token too, unless the fake is in OAuth-only mode.
        match self.tokens.get(token) {
            None if self.config.faults.token_ttl.is_none() && token == self.config.token => {
                Auth::Valid
            }
            None => Auth::Missing,
            Some(expires) => {
                let now = Instant::now();
                if now < *expires {
                    Auth::Valid
                } else {
                    Auth::Expired(now.duration_since(*expires).as_secs())
                }
            }
        }
    }

    /// Draws at most one fault for a request, by the configured rates.
    fn roll_fault(&mut self) -> Option<Fault> {
        faults::roll(
            &self.config.faults,
            &mut self.fault_rng,
            &mut self.faults_served,
        )
    }
}

fn rate_limited(
    fake: &FakeHubspot,
    policy: &str,
    message: &str,
    wait: Option<Duration>,
) -> Response {
    fake.lock().rate_limited += 1;
    let body = json!({
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "category": "RATE_LIMITS",
        "correlationId": new_correlation_id(),
        "policyName": policy,
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    if let Some(value) =
        wait.and_then(|w| HeaderValue::from_str(&w.as_secs().max(1).to_string()).ok())
    {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

/// Whether a call needs `scope` (HubSpot's granular scopes, by route).
fn needs_scope(method: &axum::http::Method, route: &str, scope: &str) -> bool {
    let write = method != axum::http::Method::GET
        && !route.ends_with("/search")
        && !route.ends_with("/batch/read");
    let needed = if route.starts_with("/crm/v3/objects/contacts") {
        if write {
            "crm.objects.contacts.write"
        } else {
            "crm.objects.contacts.read"
        }
    } else if route.starts_with("/crm/v3/objects/companies")
        || route.starts_with("/crm/v4/associations")
    {
        "crm.objects.companies.read"
    } else if route.starts_with("/crm/v3/lists") {
        "crm.lists.read"
    } else if route.starts_with("/crm/v3/properties/companies") {
        "crm.schemas.companies.read"
    } else if route.starts_with("/crm/v3/properties/contacts") {
        if write {
            "crm.schemas.contacts.write"
        } else {
            "crm.schemas.contacts.read"
        }
    } else if route.starts_with("/marketing/v3/forms") || route.starts_with("/form-integrations") {
        "forms"
    } else if route.starts_with("/email/public") {
        "content"
    } else if route.starts_with("/events/v3") {
        "behavioral_events.event_definitions.read_write"
    } else {
        return false;
    };
    needed == scope
}

/// HubSpot's 403 for a token without a scope the call needs.
fn missing_scope(scope: &str) -> Response {
    let body = json!({
        "status": "error",
        "message": "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
        "correlationId": new_correlation_id(),
        "errors": [{
            "message": "One or more of the following scopes are required.",
            "context": { "requiredGranularScopes": [scope] },
        }],
        "links": { "scopes": "https://developers.hubspot.com/scopes" },
        "category": "MISSING_SCOPES",
    });
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// Any other path: HubSpot's JSON error body, not an empty 404.
async fn not_found(request: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "OBJECT_NOT_FOUND",
        &format!(
            "Unable to route {} {}: no such endpoint",
            request.method(),
            request.uri().path()
        ),
    )
}

/// `GET /account-info/v3/details`: the portal the token belongs to.
async fn account_details(State(fake): State<FakeHubspot>) -> Response {
    let portal = fake.lock().config.portal();
    Json(json!({
        "portalId": portal,
        "accountType": "STANDARD",
        "timeZone": ACCOUNT_ZONE,
        "companyCurrency": "USD",
        "additionalCurrencies": [],
        "utcOffset": "-05:00",
        "utcOffsetMilliseconds": -18_000_000,
        "uiDomain": "app.hubspot.com",
        "dataHostingLocation": "na1",
    }))
    .into_response()
}

/// Auth, rate limits, faults, headers and request counting for every API call.
async fn gate(State(fake): State<FakeHubspot>, request: Request, next: Next) -> Response {
    let echo = fake.lock().config.faults.echo_auth;
    faults::echoing_auth(echo, request, |request| gate_inner(fake, request, next)).await
}

async fn gate_inner(fake: FakeHubspot, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let key = format!("{} {route}", request.method());
    let agent = request
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // The search limit covers the CRM object searches only.
    let is_search = route.starts_with("/crm/v3/objects/") && route.ends_with("/search");
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let auth = fake.lock().check_token(presented.as_deref());
    let authorized = matches!(auth, Auth::Valid);
    let limited = if authorized {
        let mut inner = fake.lock();
        let now = Instant::now();
        if !inner.daily.try_take() {
            Some((
                "DAILY",
                "You have reached your daily limit.",
                Some(Duration::from_secs(3600)),
            ))
        } else if is_search && !inner.search_second.try_take(now) {
            let wait = inner.search_second.retry_after(now);
            Some((
                "SECONDLY",
                "You have reached your secondly limit.",
                Some(wait),
            ))
        } else if !is_search && !inner.ten_seconds.try_take(now) {
            let wait = inner.ten_seconds.retry_after(now);
            Some((
                "TEN_SECONDLY_ROLLING",
                "You have reached your ten_secondly_rolling limit.",
                Some(wait),
            ))
        } else {
            None
        }
    } else {
        None
    };
    let method = request.method().clone();
    let lacking = fake
        .lock()
        .config
        .faults
        .missing_scopes
        .iter()
        .find(|scope| needs_scope(&method, &route, scope))
        .cloned();
    if let (Some(scope), true, None) = (lacking, authorized, &limited) {
        let mut inner = fake.lock();
        *inner.stats.entry(format!("{key} 403")).or_default() += 1;
        drop(inner);
        return missing_scope(&scope);
    }
    let fault = if authorized && limited.is_none() {
        fake.lock().roll_fault()
    } else {
        None
    };
    let failing_write = fake
        .lock()
        .config
        .faults
        .fail_writes
        .filter(|_| authorized && limited.is_none() && route.ends_with("/batch/update"));
    if let Some(code) = failing_write {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let response = if code == 401 {
            error(
                status,
                "INVALID_AUTHENTICATION",
                "The access token was revoked.",
            )
        } else {
            error(status, "INTERNAL_ERROR", "internal error")
        };
        let mut inner = fake.lock();
        *inner.stats.entry(format!("{key} {code}")).or_default() += 1;
        return response;
    }
    let mut response = match (auth, limited, fault) {
        (Auth::Missing, ..) => error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        ),
        (Auth::Expired(seconds), ..) => error(
            StatusCode::UNAUTHORIZED,
            "EXPIRED_AUTHENTICATION",
            &format!("The OAuth token used to make this call expired {seconds} second(s) ago."),
        ),
        (Auth::Valid, Some((policy, message, wait)), _) => {
            rate_limited(&fake, policy, message, wait)
        }
        (Auth::Valid, None, Some(Fault::TooMany)) => {
            let wait = fake
                .lock()
                .config
                .faults
                .retry_after_on_429
                .then_some(Duration::from_secs(1));
            rate_limited(
                &fake,
                "TEN_SECONDLY_ROLLING",
                "You have reached your ten_secondly_rolling limit.",
                wait,
            )
        }
        (Auth::Valid, None, Some(Fault::ServerError(code))) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, "INTERNAL_ERROR", "internal error")
        }
        (Auth::Valid, None, fault) => {
            let slow = fake.lock().config.faults.slow;
            faults::pass_through(fault, slow, next.run(request)).await
        }
    };
    let mut inner = fake.lock();
    let status = response.status().as_u16();
    *inner.stats.entry(format!("{key} {status}")).or_default() += 1;
    if response.status().is_success() && route.ends_with("/batch/update") {
        if inner.write_log.len() >= 100_000 {
            inner.write_log.pop_front();
        }
        inner.write_log.push_back(WriteLogEntry {
            at_ms: jiff::Timestamp::now().as_millisecond(),
            agent,
            route: route.clone(),
        });
    }
    if authorized && !is_search {
        let now = Instant::now();
        let remaining = inner.ten_seconds.remaining(now);
        let headers = response.headers_mut();
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        };
        put("x-hubspot-ratelimit-daily", inner.daily.max.to_string());
        put(
            "x-hubspot-ratelimit-daily-remaining",
            inner.daily.remaining().to_string(),
        );
        put(
            "x-hubspot-ratelimit-interval-milliseconds",
            inner.config.interval.as_millis().to_string(),
        );
        put(
            "x-hubspot-ratelimit-max",
            inner.config.per_ten_seconds.to_string(),
        );
        put("x-hubspot-ratelimit-remaining", remaining.to_string());
    }
    response
}

fn parse_id(id: &str) -> Option<u64> {
    id.parse::<u64>().ok()
}

/// Every `properties` the query names: HubSpot takes a comma list, the
/// parameter repeated (`properties=a&properties=b`, as its own SDKs send
/// it), or both.
fn repeated_properties(query: &[(String, String)]) -> Vec<String> {
    query
        .iter()
        .filter(|(k, _)| k == "properties")
        .flat_map(|(_, v)| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The properties a GET asks for; `None` when it names none.
fn property_list(query: &[(String, String)]) -> Option<Vec<String>> {
    query
        .iter()
        .any(|(k, _)| k == "properties")
        .then(|| repeated_properties(query))
}

async fn list_contacts(
    State(fake): State<FakeHubspot>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let wanted = property_list(&pairs);
    let query: HashMap<String, String> = pairs.into_iter().collect();
    let limit = match query.get("limit").map(|l| l.parse::<u64>()) {
        None => 10,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        Some(_) => {
            return bad_request("limit must be between 1 and 100");
        }
    };
    let archived = query.get("archived").is_some_and(|a| a == "true");
    let stuck = fake.lock().config.faults.stuck_cursor;
    let after = match query.get("after").map(|a| a.parse::<u64>()) {
        _ if stuck => 0,
        None => 0,
        Some(Ok(a)) => a,
        Some(Err(_)) => {
            return bad_request(
                "Invalid input JSON: after must be a cursor returned by a previous page",
            );
        }
    };
    let inner = fake.lock();
    let wanted_status = |id: u64| match inner.status(id) {
        Status::Live => !archived,
        Status::Archived => archived,
        _ => false,
    };
    let ids: Vec<u64> = (after + 1..=inner.config.contacts)
        .filter(|id| wanted_status(*id))
        .take(limit as usize + 1)
        .collect();
    let more = ids.len() > limit as usize;
    let results: Vec<Value> = ids
        .iter()
        .take(limit as usize)
        .map(|id| {
            let mut contact = inner.contact_json(*id, wanted.as_deref());
            if archived {
                contact["archived"] = json!(true);
                contact["archivedAt"] = json!(iso(inner.config.epoch_ms - 5 * DAY_MS));
            }
            contact
        })
        .collect();
    let mut body = json!({ "results": results });
    if let (true, Some(last)) = (more, ids.get(limit as usize - 1)) {
        let next = last.to_string();
        body["paging"] = json!({ "next": { "after": next, "link": format!("/crm/v3/objects/contacts?after={next}") } });
    }
    if inner.config.faults.stuck_cursor {
        if let Some(results) = body["results"].as_array_mut() {
            results.push(json!({
                "id": "string",
                "properties": { "email": "string", "lastmodifieddate": "2019-08-24T14:15:22Z" },
                "createdAt": "2019-08-24T14:15:22Z",
                "updatedAt": "2019-08-24T14:15:22Z",
                "archived": false,
            }));
        }
        body["paging"] =
            json!({ "next": { "after": "NTI1Cg%3D%3D", "link": "?after=NTI1Cg%3D%3D" } });
    }
    Json(body).into_response()
}

async fn get_contact(
    State(fake): State<FakeHubspot>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let inner = fake.lock();
    match parse_id(&id).and_then(|id| inner.resolve(id)) {
        Some(id) => Json(inner.contact_json(id, property_list(&query).as_deref())).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            "resource not found",
        ),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchRequest {
    #[serde(default)]
    filter_groups: Vec<FilterGroup>,
    #[serde(default)]
    sorts: Vec<Value>,
    #[serde(default)]
    properties: Vec<String>,
    limit: Option<i64>,
    after: Option<Value>,
    /// Free text over the object's default searchable properties.
    query: Option<String>,
}

/// Whether free-text search `query` finds a record: HubSpot matches
/// words of the default searchable properties by prefix (contacts: names,
/// email, phone, company; companies: name, domain, website).
fn query_matches(
    query: Option<&str>,
    props: &BTreeMap<String, String>,
    searchable: &[&str],
) -> bool {
    let Some(query) = query.map(str::trim).filter(|q| !q.is_empty()) else {
        return true;
    };
    let query = query.to_lowercase();
    searchable
        .iter()
        .filter_map(|name| props.get(*name))
        .any(|value| {
            let value = value.to_lowercase();
            value.starts_with(&query)
                || value
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|word| word.starts_with(&query))
        })
}

/// The default searchable contact properties.
const CONTACT_SEARCHABLE: &[&str] = &[
    "firstname",
    "lastname",
    "email",
    "phone",
    "company",
    "hs_additional_emails",
];

#[derive(Deserialize)]
struct FilterGroup {
    #[serde(default)]
    filters: Vec<Filter>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Filter {
    property_name: String,
    operator: String,
    value: Option<Value>,
    high_value: Option<Value>,
    values: Option<Vec<Value>>,
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A property value as a comparable number: numbers as they are, dates as
/// epoch milliseconds (HubSpot accepts both forms in filters).
fn numeric(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().or_else(|| {
        text.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_millisecond() as f64)
    })
}

/// A filter on a numeric value known without the contact's properties
/// (its id, its indexed modified time), with its operands parsed once.
struct NumberFilter<'a> {
    filter: &'a Filter,
    value: Option<f64>,
    high: Option<f64>,
    values: Vec<f64>,
}

impl<'a> NumberFilter<'a> {
    fn new(filter: &'a Filter) -> Self {
        let number = |v: &Value| numeric(&value_text(v));
        Self {
            filter,
            value: filter.value.as_ref().and_then(number),
            high: filter.high_value.as_ref().and_then(number),
            values: filter.values.iter().flatten().filter_map(number).collect(),
        }
    }

    fn matches(&self, actual: f64) -> bool {
        let value = self.value;
        match self.filter.operator.as_str() {
            "HAS_PROPERTY" => true,
            "NOT_HAS_PROPERTY" => false,
            "EQ" => value == Some(actual),
            "NEQ" => value != Some(actual),
            "GT" => value.is_some_and(|v| actual > v),
            "GTE" => value.is_some_and(|v| actual >= v),
            "LT" => value.is_some_and(|v| actual < v),
            "LTE" => value.is_some_and(|v| actual <= v),
            "BETWEEN" => {
                value.is_some_and(|v| actual >= v) && self.high.is_some_and(|h| actual <= h)
            }
            "IN" => self.values.contains(&actual),
            "NOT_IN" => !self.values.contains(&actual),
            _ => false,
        }
    }
}

fn filter_matches(filter: &Filter, props: &BTreeMap<String, String>) -> bool {
    let actual = props.get(&filter.property_name).filter(|v| !v.is_empty());
    let compare = |wanted: &Value| -> Option<std::cmp::Ordering> {
        let actual = actual?;
        let wanted = value_text(wanted);
        match (numeric(actual), numeric(&wanted)) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => Some(actual.to_lowercase().cmp(&wanted.to_lowercase())),
        }
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    let value = filter.value.as_ref();
    match filter.operator.as_str() {
        "HAS_PROPERTY" => actual.is_some(),
        "NOT_HAS_PROPERTY" => actual.is_none(),
        "EQ" => value.and_then(compare) == Some(Equal),
        "NEQ" => value.and_then(compare) != Some(Equal),
        "GT" => value.and_then(compare) == Some(Greater),
        "GTE" => matches!(value.and_then(compare), Some(Greater | Equal)),
        "LT" => value.and_then(compare) == Some(Less),
        "LTE" => matches!(value.and_then(compare), Some(Less | Equal)),
        "BETWEEN" => {
            matches!(value.and_then(compare), Some(Greater | Equal))
                && matches!(
                    filter.high_value.as_ref().and_then(compare),
                    Some(Less | Equal)
                )
        }
        "IN" => filter
            .values
            .as_ref()
            .is_some_and(|vs| vs.iter().any(|v| compare(v) == Some(Equal))),
        "NOT_IN" => !filter
            .values
            .as_ref()
            .is_some_and(|vs| vs.iter().any(|v| compare(v) == Some(Equal))),
        "CONTAINS_TOKEN" | "NOT_CONTAINS_TOKEN" => {
            let token = value
                .map(value_text)
                .unwrap_or_default()
                .replace('*', "")
                .to_lowercase();
            let contains = actual.is_some_and(|a| a.to_lowercase().contains(&token));
            if filter.operator == "CONTAINS_TOKEN" {
                contains
            } else {
                !contains
            }
        }
        _ => false,
    }
}

const OPERATORS: &[&str] = &[
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
];

/// A search request as HubSpot validates it: the request, where the page
/// starts, its size, and the sort (property, descending).
struct Search {
    request: SearchRequest,
    after: usize,
    limit: i64,
    sort_property: String,
    descending: bool,
}

/// Reads and checks a CRM search body with HubSpot's limits; the error
/// is HubSpot's message for its 400.
fn parse_search(body: &[u8]) -> Result<Search, String> {
    let request: SearchRequest = decode(body)?;
    let limit = request.limit.unwrap_or(10);
    if !(1..=200).contains(&limit) {
        return Err("limit must be between 1 and 200".to_owned());
    }
    let filters: usize = request.filter_groups.iter().map(|g| g.filters.len()).sum();
    if request.filter_groups.len() > 5
        || request.filter_groups.iter().any(|g| g.filters.len() > 6)
        || filters > 18
    {
        return Err("too many filters: at most 5 filterGroups of 6 filters, 18 in all".to_owned());
    }
    if let Some(bad) = request
        .filter_groups
        .iter()
        .flat_map(|g| &g.filters)
        .find(|f| !OPERATORS.contains(&f.operator.as_str()))
    {
        return Err(format!("Unknown operator {}", bad.operator));
    }
    if request.sorts.len() > 1 {
        return Err("only one sort is supported".to_owned());
    }
    let after = match &request.after {
        None => 0,
        Some(v) => match value_text(v).parse::<usize>() {
            Ok(a) => a,
            Err(_) => {
                return Err("after must be a number".to_owned());
            }
        },
    };
    if after >= SEARCH_CAP || after + limit as usize > SEARCH_CAP {
        return Err("Search results are limited to 10000 per query: narrow the query instead of paging further".to_owned());
    }
    let (sort_property, descending) = match request.sorts.first() {
        None => ("hs_object_id".to_owned(), false),
        Some(Value::String(name)) => (
            name.trim_start_matches('-').to_owned(),
            name.starts_with('-'),
        ),
        Some(sort) => (
            sort.get("propertyName")
                .and_then(Value::as_str)
                .unwrap_or("hs_object_id")
                .to_owned(),
            sort.get("direction").and_then(Value::as_str) == Some("DESCENDING"),
        ),
    };
    Ok(Search {
        request,
        after,
        limit,
        sort_property,
        descending,
    })
}

async fn search_contacts(State(fake): State<FakeHubspot>, body: axum::body::Bytes) -> Response {
    let Search {
        request,
        after,
        limit,
        sort_property,
        descending,
    } = match parse_search(&body) {
        Ok(search) => search,
        Err(message) => return bad_request(&message),
    };
    let mut inner = fake.lock();
    inner.catch_up_search();
    let ids = candidates(&mut inner, &request.filter_groups);
    // Filters and a sort on id and modified time only (what a sync's keyset
    // pagination sends) are decided from the index, without generating
    // every candidate; pages of a large window stay cheap.
    let cheap = |name: &str| name == "hs_object_id" || name == "lastmodifieddate";
    let index_only = cheap(&sort_property)
        && request.query.as_deref().is_none_or(|q| q.trim().is_empty())
        && request
            .filter_groups
            .iter()
            .flat_map(|g| &g.filters)
            .all(|f| cheap(&f.property_name))
        && ids.iter().all(|(_, key)| key.is_some());
    let number_groups: Vec<Vec<NumberFilter<'_>>> = request
        .filter_groups
        .iter()
        .map(|g| g.filters.iter().map(NumberFilter::new).collect())
        .collect();
    let mut matches: Vec<(f64, String, u64)> = Vec::new();
    for (id, key) in ids.into_iter().filter(|(id, _)| inner.exists(*id)) {
        if let (Some(key), true) = (key, index_only) {
            let modified = inner.overlay.modified.get(&id).copied().unwrap_or(key);
            let value_of = |name: &str| {
                if name == "hs_object_id" {
                    id as f64
                } else {
                    modified as f64
                }
            };
            let ok = number_groups.is_empty()
                || number_groups.iter().any(|g| {
                    g.iter()
                        .all(|f| f.matches(value_of(&f.filter.property_name)))
                });
            if ok {
                matches.push((value_of(&sort_property), String::new(), id));
            }
            continue;
        }
        let props = inner.properties_of(id).0;
        let ok = (request.filter_groups.is_empty()
            || request
                .filter_groups
                .iter()
                .any(|g| g.filters.iter().all(|f| filter_matches(f, &props))))
            && query_matches(request.query.as_deref(), &props, CONTACT_SEARCHABLE);
        if ok {
            let key = props.get(&sort_property).cloned().unwrap_or_default();
            matches.push((numeric(&key).unwrap_or(f64::NAN), key, id));
        }
    }
    let order = |a: &(f64, String, u64), b: &(f64, String, u64)| {
        let order = if a.0.is_nan() || b.0.is_nan() {
            a.1.cmp(&b.1)
        } else {
            a.0.total_cmp(&b.0)
        };
        let order = order.then(a.2.cmp(&b.2));
        if descending { order.reverse() } else { order }
    };
    let total = matches.len();
    // Only the requested page needs ordering: select it, then sort it.
    let needed = after + limit as usize;
    if matches.len() > needed {
        matches.select_nth_unstable_by(needed, order);
        matches.truncate(needed);
    }
    matches.sort_by(order);
    let page: Vec<Value> = matches
        .iter()
        .skip(after)
        .take(limit as usize)
        .map(|(_, _, id)| inner.contact_json(*id, Some(&request.properties)))
        .collect();
    let mut body = json!({ "total": total, "results": page });
    let next = after + limit as usize;
    if next < total {
        body["paging"] = json!({ "next": { "after": next.to_string() } });
    }
    Json(body).into_response()
}

/// Contacts a search has to look at: a `lastmodifieddate` range present in
/// every filter group narrows it through the index, else every contact.
fn candidates(inner: &mut Inner, groups: &[FilterGroup]) -> Vec<(u64, Option<i64>)> {
    let range_of = |group: &FilterGroup| -> Option<(i64, i64)> {
        let mut lo = i64::MIN;
        let mut hi = i64::MAX;
        let mut seen = false;
        for f in group
            .filters
            .iter()
            .filter(|f| f.property_name == "lastmodifieddate")
        {
            let v = f
                .value
                .as_ref()
                .map(value_text)
                .and_then(|t| numeric(&t))
                .map(|n| n as i64);
            match (f.operator.as_str(), v) {
                ("GT" | "GTE", Some(v)) => lo = lo.max(v),
                ("LT" | "LTE", Some(v)) => hi = hi.min(v),
                ("BETWEEN", Some(v)) => {
                    lo = lo.max(v);
                    if let Some(h) = f
                        .high_value
                        .as_ref()
                        .map(value_text)
                        .and_then(|t| numeric(&t))
                    {
                        hi = hi.min(h as i64);
                    }
                }
                _ => continue,
            }
            seen = true;
        }
        seen.then_some((lo, hi))
    };
    let ranges: Vec<Option<(i64, i64)>> = groups.iter().map(range_of).collect();
    if groups.is_empty() || ranges.iter().any(Option::is_none) {
        return (1..=inner.config.contacts).map(|id| (id, None)).collect();
    }
    let index = inner.index();
    if let [Some((lo, hi))] = ranges.as_slice() {
        return index
            .range((*lo, 0)..=(*hi, u64::MAX))
            .map(|(modified, id)| (*id, Some(*modified)))
            .collect();
    }
    let mut ids: BTreeMap<u64, i64> = BTreeMap::new();
    for (lo, hi) in ranges.into_iter().flatten() {
        ids.extend(
            index
                .range((lo, 0)..=(hi, u64::MAX))
                .map(|(modified, id)| (*id, *modified)),
        );
    }
    ids.into_iter().map(|(id, key)| (id, Some(key))).collect()
}

#[derive(Deserialize)]
struct BatchInput {
    id: Value,
    #[serde(default)]
    properties: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct BatchRequest {
    inputs: Vec<BatchInput>,
    #[serde(default)]
    properties: Vec<String>,
    #[serde(rename = "idProperty")]
    id_property: Option<String>,
}

fn batch_body(results: Vec<Value>, errors: Vec<Value>, started: &str) -> Response {
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": iso(jiff::Timestamp::now().as_millisecond()),
    });
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    if !errors.is_empty() {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors);
    }
    (status, Json(body)).into_response()
}

async fn batch_read(State(fake): State<FakeHubspot>, body: axum::body::Bytes) -> Response {
    let request = match decode::<BatchRequest>(&body).and_then(within_batch_limit) {
        Ok(r) => r,
        Err(message) => return bad_request(&message),
    };
    if request
        .id_property
        .as_deref()
        .is_some_and(|p| p != "hs_object_id")
    {
        return bad_request("the fake supports idProperty hs_object_id only");
    }
    let inner = fake.lock();
    batch_read_answer("CONTACT", &request.inputs, |id| {
        inner
            .resolve(id)
            .map(|id| inner.contact_json(id, Some(&request.properties)))
    })
}

/// A batch read's answer: the objects `read` finds, and one
/// `OBJECT_NOT_FOUND` error (a 207) naming the ids it does not.
fn batch_read_answer(
    kind: &str,
    inputs: &[BatchInput],
    read: impl Fn(u64) -> Option<Value>,
) -> Response {
    let started = iso(jiff::Timestamp::now().as_millisecond());
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in inputs {
        let text = value_text(&input.id);
        match parse_id(&text).and_then(&read) {
            Some(object) => results.push(object),
            None => missing.push(text),
        }
    }
    let errors = if missing.is_empty() {
        Vec::new()
    } else {
        vec![standard_error(
            "OBJECT_NOT_FOUND",
            &format!(
                "Could not get some {kind} objects, they may be deleted or not exist. Check that ids are valid. ids: {}",
                missing.join(", ")
            ),
            json!({ "ids": missing }),
            Vec::new(),
        )]
    };
    batch_body(results, errors, &started)
}

/// Parses a JSON request body, with HubSpot's wording for bad input.
fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("Invalid input JSON on line 1: {e}"))
}

fn within_batch_limit(request: BatchRequest) -> Result<BatchRequest, String> {
    if request.inputs.len() > 100 {
        Err("Batch input limit of 100 exceeded".to_owned())
    } else {
        Ok(request)
    }
}

/// HubSpot's 400 for invalid input.
fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
}

/// One entry of a batch response's `errors`, shaped as the spec's
/// `StandardError` (every required field present, context values lists).
fn standard_error(category: &str, message: &str, context: Value, details: Vec<Value>) -> Value {
    json!({
        "status": "error",
        "category": category,
        "message": message,
        "context": context,
        "errors": details,
        "links": {},
    })
}

/// Checks one written value against the property's definition.
fn validate(def: Option<&PropertyDef>, name: &str, value: &Value) -> Result<String, String> {
    let Some(def) = def else {
        return Err(format!("Property \"{name}\" does not exist"));
    };
    if def.read_only {
        return Err(format!(
            "\"{name}\" is a read only property; its value cannot be set."
        ));
    }
    let text = value_text(value);
    match def.kind.as_str() {
        "number" if !text.is_empty() && text.parse::<f64>().is_err() => {
            Err(format!("{text} was not a valid number."))
        }
        "enumeration" | "bool"
            if !text.is_empty() && !def.options.iter().any(|(_, v)| *v == text) =>
        {
            Err(format!(
                "{text} was not one of the allowed options: [{}]",
                def.options
                    .iter()
                    .map(|(_, v)| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        _ => Ok(text),
    }
}

async fn batch_update(State(fake): State<FakeHubspot>, body: axum::body::Bytes) -> Response {
    let request = match decode::<BatchRequest>(&body).and_then(within_batch_limit) {
        Ok(r) => r,
        Err(message) => return bad_request(&message),
    };
    let started = iso(jiff::Timestamp::now().as_millisecond());
    let mut inner = fake.lock();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in &request.inputs {
        let text = value_text(&input.id);
        let Some(id) = parse_id(&text).and_then(|id| inner.resolve(id)) else {
            errors.push(standard_error(
                "OBJECT_NOT_FOUND",
                "Object not found.  objectId are usually numeric.",
                json!({ "ids": [text] }),
                Vec::new(),
            ));
            continue;
        };
        let mut accepted = BTreeMap::new();
        let mut problems = Vec::new();
        let injected = inner.config.faults.rate_record_error;
        if injected > 0.0 && inner.fault_rng.unit() < injected {
            problems.push((
                "hs_object_id".to_owned(),
                "fault: this record was rejected".to_owned(),
            ));
        }
        let rejected = !problems.is_empty();
        for (name, value) in input.properties.iter().filter(|_| !rejected) {
            match validate(inner.properties.get(name), name, value) {
                Ok(text) => {
                    accepted.insert(name.clone(), text);
                }
                Err(problem) => problems.push((name.clone(), problem)),
            }
        }
        if !problems.is_empty() {
            let names: Vec<&str> = problems.iter().map(|(name, _)| name.as_str()).collect();
            let messages: Vec<&str> = problems
                .iter()
                .map(|(_, message)| message.as_str())
                .collect();
            let details = problems
                .iter()
                .map(|(name, message)| json!({ "message": message, "code": "INVALID_OPTION", "in": name }))
                .collect();
            errors.push(standard_error(
                "VALIDATION_ERROR",
                &format!("Property values were not valid: {}", messages.join("; ")),
                json!({ "ids": [text], "propertyName": names }),
                details,
            ));
            continue;
        }
        inner.write(id, accepted);
        *inner
            .stats
            .entry("contacts written".to_owned())
            .or_default() += 1;
        results.push(inner.contact_json(
            id,
            Some(&input.properties.keys().cloned().collect::<Vec<_>>()),
        ));
    }
    if results.is_empty() && !errors.is_empty() {
        let first = errors
            .first()
            .and_then(|e| e["message"].as_str())
            .unwrap_or("invalid input")
            .to_owned();
        let body = json!({
            "status": "error",
            "message": first,
            "correlationId": new_correlation_id(),
            "category": "VALIDATION_ERROR",
            "errors": errors
                .iter()
                .map(|e| json!({ "message": e["message"], "context": e["context"] }))
                .collect::<Vec<_>>(),
        });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    drop(inner);
    fake.wake_sender();
    batch_body(results, errors, &started)
}

async fn list_properties(State(fake): State<FakeHubspot>) -> Response {
    let inner = fake.lock();
    let created = iso(inner.config.epoch_ms - 900 * DAY_MS);
    let results: Vec<Value> = inner
        .properties
        .values()
        .map(|p| p.to_json(&created))
        .collect();
    Json(json!({ "results": results })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewProperty {
    name: String,
    label: String,
    #[serde(rename = "type")]
    kind: String,
    field_type: String,
    group_name: String,
    #[serde(default)]
    options: Vec<NewOption>,
}

/// `OptionInput`: HubSpot's schema requires every field, `hidden` too.
#[derive(Deserialize)]
struct NewOption {
    label: String,
    value: String,
    /// Required, not kept (options keep the order given).
    #[serde(rename = "displayOrder")]
    _display_order: i32,
    #[serde(rename = "hidden")]
    _hidden: bool,
}

/// The field types HubSpot documents for each property type.
fn field_types(kind: &str) -> &'static [&'static str] {
    match kind {
        "string" => &["text", "textarea", "file", "html", "phonenumber"],
        "number" => &["number", "calculation_equation"],
        "enumeration" => &[
            "booleancheckbox",
            "checkbox",
            "radio",
            "select",
            "calculation_equation",
        ],
        "datetime" | "date" => &["date"],
        "bool" => &["booleancheckbox", "calculation_equation"],
        _ => &[],
    }
}

async fn create_property(State(fake): State<FakeHubspot>, body: axum::body::Bytes) -> Response {
    create_property_on(&fake, &body, false)
}

/// `POST /crm/v3/properties/{contacts|companies}`: a custom property on
/// contacts, or (`company`) on companies, in one of that object's groups.
fn create_property_on(fake: &FakeHubspot, body: &[u8], company: bool) -> Response {
    let request: NewProperty = match decode(body) {
        Ok(r) => r,
        Err(message) => return bad_request(&message),
    };
    let kind: &'static str = match request.kind.as_str() {
        "string" => "string",
        "number" => "number",
        "enumeration" => "enumeration",
        "datetime" => "datetime",
        "date" => "date",
        "bool" => "bool",
        other => {
            return bad_request(&format!("Unknown property type {other}"));
        }
    };
    if request.name.is_empty()
        || !request
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return bad_request("Property name must be lowercase letters, digits and underscores");
    }
    if !field_types(kind).contains(&request.field_type.as_str()) {
        return bad_request(&format!(
            "fieldType {} is not valid for a property of type {kind}; use one of {}",
            request.field_type,
            field_types(kind).join(", ")
        ));
    }
    if kind == "enumeration" && request.options.is_empty() {
        return bad_request("Enumeration properties need options");
    }
    let mut inner = fake.lock();
    let group_known = if company {
        inner
            .company_properties
            .values()
            .any(|p| p.group == request.group_name)
    } else {
        inner.groups.contains_key(&request.group_name)
    };
    if !group_known {
        return bad_request(&format!(
            "Property group {} does not exist.",
            request.group_name
        ));
    }
    let exists = if company {
        inner.company_properties.contains_key(&request.name)
    } else {
        inner.properties.contains_key(&request.name)
    };
    if exists {
        return error(
            StatusCode::CONFLICT,
            "OBJECT_ALREADY_EXISTS",
            &format!("Property named '{}' already exists.", request.name),
        );
    }
    let def = PropertyDef {
        name: request.name.clone(),
        label: request.label,
        kind: kind.to_owned(),
        field_type: request.field_type,
        group: request.group_name,
        options: request
            .options
            .into_iter()
            .map(|o| (o.label, o.value))
            .collect(),
        hubspot_defined: false,
        read_only: false,
    };
    let created = iso(jiff::Timestamp::now().as_millisecond());
    let body = def.to_json(&created);
    if company {
        // Company properties live as long as the fake (not in `--state`).
        inner.company_properties.insert(request.name, def);
        return (StatusCode::CREATED, Json(body)).into_response();
    }
    if let Ok(saved) = serde_json::to_value(&def) {
        inner.overlay.custom.insert(request.name.clone(), saved);
        inner.overlay.dirty = true;
    }
    inner.properties.insert(request.name, def);
    (StatusCode::CREATED, Json(body)).into_response()
}

/// Overlay keys of saved property groups (the rest are properties).
const GROUP_KEY: &str = "group:";

fn group_json(name: &str, label: &str) -> Value {
    json!({ "name": name, "label": label, "displayOrder": -1, "archived": false })
}

async fn list_groups(State(fake): State<FakeHubspot>) -> Response {
    let inner = fake.lock();
    let results: Vec<Value> = inner
        .groups
        .iter()
        .map(|(name, label)| group_json(name, label))
        .collect();
    Json(json!({ "results": results })).into_response()
}

#[derive(Deserialize)]
struct NewGroup {
    name: String,
    label: String,
}

async fn create_group(State(fake): State<FakeHubspot>, body: axum::body::Bytes) -> Response {
    let request: NewGroup = match decode(&body) {
        Ok(r) => r,
        Err(message) => return bad_request(&message),
    };
    if request.name.is_empty()
        || !request
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return bad_request("Group name must be lowercase letters, digits and underscores");
    }
    let mut inner = fake.lock();
    if inner.groups.contains_key(&request.name) {
        return error(
            StatusCode::CONFLICT,
            "OBJECT_ALREADY_EXISTS",
            &format!("Property group named '{}' already exists.", request.name),
        );
    }
    inner.overlay.custom.insert(
        format!("{GROUP_KEY}{}", request.name),
        Value::String(request.label.clone()),
    );
    inner.overlay.dirty = true;
    inner
        .groups
        .insert(request.name.clone(), request.label.clone());
    (
        StatusCode::CREATED,
        Json(group_json(&request.name, &request.label)),
    )
        .into_response()
}

async fn stats(State(fake): State<FakeHubspot>) -> Response {
    let inner = fake.lock();
    Json(json!({
        "requests": inner.stats,
        "rate_limited": inner.rate_limited,
        "faults": inner.faults_served,
        "daily_used": inner.daily.used,
        // The account day the count is for (it starts over at the
        // account's midnight).
        "daily_day": inner.daily.day.map(|d| d.to_string()),
        "account_time_zone": ACCOUNT_ZONE,
        "contacts": inner.config.contacts,
        "webhooks": fake.sent.json(),
        "write_log": inner.write_log,
    }))
    .into_response()
}

/// `POST /__fake/contacts/{id}` with `{"properties": {...}}`: a person
/// edits a contact in HubSpot (its modified time moves, and webhooks
/// report each property as `changeSource: CRM_UI`).
async fn edit_contact(
    State(fake): State<FakeHubspot>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    #[derive(Deserialize)]
    struct Edit {
        properties: BTreeMap<String, Value>,
    }
    let edit = match decode::<Edit>(&body) {
        Ok(edit) => edit,
        Err(message) => return bad_request(&message),
    };
    let Some(id) = parse_id(&id) else {
        return bad_request("no such contact");
    };
    let mut accepted = BTreeMap::new();
    {
        let inner = fake.lock();
        for (name, value) in &edit.properties {
            match validate(inner.properties.get(name), name, value) {
                Ok(text) => {
                    accepted.insert(name.clone(), text);
                }
                Err(problem) => return bad_request(&problem),
            }
        }
    }
    if !fake.edit_contact(id, accepted) {
        return bad_request("no such contact");
    }
    Json(json!({ "id": id.to_string() })).into_response()
}

async fn inspect_contact(State(fake): State<FakeHubspot>, Path(id): Path<String>) -> Response {
    let inner = fake.lock();
    match parse_id(&id).and_then(|id| inner.resolve(id)) {
        Some(id) => {
            let (props, person, _) = inner.properties_of(id);
            Json(
                json!({ "id": id.to_string(), "properties": props, "converted": person.converted }),
            )
            .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such contact" })),
        )
            .into_response(),
    }
}

async fn reset_daily(State(fake): State<FakeHubspot>) -> Response {
    fake.lock().daily.used = 0;
    StatusCode::NO_CONTENT.into_response()
}

/// Headers a test may want to read back.
pub fn rate_limit_remaining(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("x-hubspot-ratelimit-remaining")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: String,
    refresh_token: Option<String>,
}

/// HubSpot's OAuth token endpoint (refresh-token grant).
async fn oauth_token(
    State(fake): State<FakeHubspot>,
    axum::Form(form): axum::Form<TokenRequest>,
) -> Response {
    let mut inner = fake.lock();
    let valid = form.grant_type == "refresh_token"
        && form.refresh_token.as_deref() == Some(inner.config.refresh_token.as_str());
    if !valid {
        let body = json!({
            "status": "BAD_REFRESH_TOKEN",
            "message": "missing or unknown refresh token",
            "correlationId": new_correlation_id(),
        });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let ttl = inner
        .config
        .faults
        .token_ttl
        .unwrap_or(Duration::from_secs(1800));
    *inner
        .stats
        .entry("POST /oauth/v1/token 200".to_owned())
        .or_default() += 1;
    let serial = inner.tokens.len() + 1;
    let token = format!("fake-access-{serial}-{}", inner.fault_rng.next());
    inner.tokens.insert(token.clone(), Instant::now() + ttl);
    Json(json!({
        "token_type": "bearer",
        "refresh_token": inner.config.refresh_token,
        "access_token": token,
        "expires_in": ttl.as_secs(),
    }))
    .into_response()
}

/// Ends the search lag now, for tests that must not sleep.
async fn catch_up_search(State(fake): State<FakeHubspot>) -> Response {
    let mut inner = fake.lock();
    let pending: Vec<_> = inner.lagging.drain(..).collect();
    for (_, id, old, new) in pending {
        inner.move_in_index(id, old, new);
    }
    StatusCode::NO_CONTENT.into_response()
}
