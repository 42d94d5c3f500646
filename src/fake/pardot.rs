//! The fake Pardot (Account Engagement API v5): prospect queries with
//! `fields`, `orderBy`, date and id filters and `nextPageToken` paging
//! (cut off after a set number of records with `Pardot-Warning: 203`),
//! `PATCH` of one prospect, the Import API (CSV batches, see [`import`]),
//! visitor activities, custom fields, Salesforce
//! OAuth, the `Pardot-Business-Unit-Id` header, at most five concurrent
//! requests (error 66) and a daily budget (error 122), on 127.0.0.1.
//!
//! Prospects are the same generated people as the fake HubSpot's contacts
//! (same seed, same ids), so one model can be checked against both CRMs.
//! Error bodies are `{"code","message"}`. Codes 66 and 122 are Pardot's
//! documented ones; for the other failures the fake uses 3 (invalid
//! prospect id), 5 (invalid parameters or fields), 181 (business unit
//! header) and 184 (invalid or expired access token) with the HTTP status
//! Pardot answers, so a client must rely on the status for those.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use super::faults::Faults;
use super::faults::{self, Fault};
use super::limits::DailyBudget;
use super::people::{GenEvent, PeopleSpec, Person, Persona};
use super::store::{Overlay, StateHeader};

mod import;

/// Pardot returns no page token once a query has served this many records.
pub const TOKEN_RECORD_LIMIT: u64 = 100_000;
/// Page tokens expire this long after the query started.
const TOKEN_LIFETIME: Duration = Duration::from_secs(4 * 3600);

/// How the fake Pardot behaves.
#[derive(Clone, Debug)]
pub struct PardotConfig {
    pub prospects: u64,
    pub seed: u64,
    /// "Now" for the generated history, epoch ms (the same default as the
    /// fake HubSpot's, so both serve the same people).
    pub epoch_ms: i64,
    /// The static access token accepted when `faults.token_ttl` is unset.
    pub token: String,
    /// The business unit every request must name.
    pub business_unit_id: String,
    /// Salesforce connected-app credentials for `/services/oauth2/token`.
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// Daily calls per business unit (Growth 25,000, Plus 50,000,
    /// Advanced and Premium 100,000).
    pub daily: u64,
    /// Requests served at once; one more gets error 66.
    pub concurrency: usize,
    /// Records one query may serve through page tokens.
    pub token_record_limit: u64,
    /// How long an import takes once it is Ready.
    pub import_delay: Duration,
    pub faults: Faults,
    /// Companies the people work at (0: about eight people each).
    pub companies: u64,
    /// The account id `/api/v5/objects/account` answers with; default:
    /// derived from the seed, so two seeds are two accounts.
    pub account_id: Option<u64>,
}

impl PardotConfig {
    /// The Account Engagement account id this fake answers as.
    pub fn account(&self) -> u64 {
        self.account_id.unwrap_or(90_000 + self.seed)
    }
}

impl Default for PardotConfig {
    fn default() -> Self {
        Self {
            prospects: 1_000,
            seed: 42,
            epoch_ms: super::hubspot::HubspotConfig::default().epoch_ms,
            token: "fake-pardot-access-token".to_owned(),
            business_unit_id: "0Uv5g000000FAKEAAA".to_owned(),
            client_id: "fake-client-id".to_owned(),
            client_secret: "fake-client-secret".to_owned(),
            refresh_token: "fake-salesforce-refresh-token".to_owned(),
            daily: 50_000,
            concurrency: 5,
            token_record_limit: TOKEN_RECORD_LIMIT,
            import_delay: Duration::ZERO,
            faults: Faults::default(),
            companies: 0,
            account_id: None,
        }
    }
}

/// Shared state of one fake Pardot.
#[derive(Clone)]
pub struct FakePardot {
    inner: Arc<Mutex<Inner>>,
    in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for FakePardot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("FakePardot")
            .field("prospects", &inner.config.prospects)
            .field("seed", &inner.config.seed)
            .field("written", &inner.overlay.written.len())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: PardotConfig,
    people: PeopleSpec,
    overlay: Overlay,
    /// (updatedAt, id) of every prospect; built on first use.
    by_updated: Option<BTreeSet<(i64, u64)>>,
    /// (createdAt, id) of every prospect; built on first use.
    by_created: Option<BTreeSet<(i64, u64)>>,
    daily: DailyBudget,
    tokens: HashMap<String, Instant>,
    rng: super::people::Rng,
    faults_served: BTreeMap<&'static str, u64>,
    stats: BTreeMap<String, u64>,
    max_in_flight: usize,
    rejected_concurrency: u64,
    cut_off_queries: u64,
    imports: BTreeMap<u64, import::Import>,
    next_import: u64,
}

/// A prospect field the fake knows: its wire name and type.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CustomField {
    id: u64,
    name: String,
    /// The API name without `__c`.
    field_id: String,
    /// Text, Number, Date, Dropdown, Checkbox, ...
    kind: String,
    created_at: String,
}

const STANDARD_FIELDS: &[&str] = &[
    "id",
    "email",
    "firstName",
    "lastName",
    "jobTitle",
    "company",
    "country",
    "industry",
    "employees",
    "phone",
    "score",
    "grade",
    "createdAt",
    "updatedAt",
    "lastActivityAt",
    "optedOut",
    "isDoNotEmail",
    "isDeleted",
    "campaignId",
    "website",
    "salesforceAccountId",
];
/// Fields a PATCH may set (`grade` is computed by Pardot and read-only).
const WRITABLE_FIELDS: &[&str] = &[
    "email",
    "firstName",
    "lastName",
    "jobTitle",
    "company",
    "country",
    "industry",
    "employees",
    "phone",
    "website",
    "score",
    "optedOut",
    "isDoNotEmail",
];
const DAY_MS: i64 = 86_400_000;

/// A Pardot timestamp: ISO 8601 with an offset, second precision.
fn pardot_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string())
        .unwrap_or_default()
}

fn parse_pardot_time(text: &str) -> Option<i64> {
    let normal = text.replace("-00:00", "+00:00");
    normal
        .parse::<jiff::Timestamp>()
        .ok()
        .map(jiff::Timestamp::as_millisecond)
}

/// A Pardot error body with its HTTP status.
fn pardot_error(status: StatusCode, code: u32, message: &str) -> Response {
    (status, Json(json!({ "code": code, "message": message }))).into_response()
}

fn invalid(message: &str) -> Response {
    pardot_error(
        StatusCode::BAD_REQUEST,
        5,
        &format!("Invalid query parameters: {message}"),
    )
}

/// Pardot's default scoring rules: form success +50, file access +3,
/// custom redirect click +3, page view +1, webinar +5, opens 0.
fn native_score(person: &Person) -> i64 {
    person
        .events
        .iter()
        .map(|e| match (e.kind, activity_type(e)) {
            ("form_submission", _) => 50,
            ("content_download", _) | (_, Some((21, _))) => 3,
            ("page_view", _) => 1,
            ("webinar", _) => 5,
            _ => 0,
        })
        .sum()
}

/// The grade Pardot's default profile would give: better for buyers.
fn native_grade(person: &Person) -> Option<&'static str> {
    match person.persona {
        Persona::Executive if person.numemployees > 200 => Some("A"),
        Persona::Executive => Some("A-"),
        Persona::Manager if person.numemployees > 200 => Some("B+"),
        Persona::Manager => Some("B"),
        Persona::Practitioner => Some("C+"),
        Persona::Student => Some("D"),
        Persona::JobSeeker => Some("D-"),
        Persona::Competitor => None,
    }
}

/// A visitor activity's type code and name, for a generated event
/// (meetings have no Pardot activity).
fn activity_type(event: &GenEvent) -> Option<(u32, &'static str)> {
    Some(match event.kind {
        "email_click" => (1, "Click"),
        "page_view" | "content_download" => (2, "View"),
        "form_submission" => (4, "Success"),
        "email_open" => (11, "Open"),
        "email_unsubscribe" => (12, "Unsubscribe Page"),
        "ad_click" => (17, "Click (Third Party)"),
        VISIT => (20, "Visit"),
        "cta_click" => (21, "Custom URL click"),
        "webinar" => (24, "Attended Webinar"),
        _ => return None,
    })
}

/// The generated kind of the visit activities the fake adds.
const VISIT: &str = "visit";

/// A person's visitor activities, oldest first: their events, and a visit
/// (type 20) opening every second page view, so a prospect has as many
/// visits as the fake HubSpot's `hs_analytics_num_visits` says.
fn activities(person: &Person) -> Vec<GenEvent> {
    let mut out = Vec::with_capacity(person.events.len() * 5 / 4);
    let mut views = 0;
    for event in person.events.iter().rev() {
        if event.kind == "page_view" {
            if views % 2 == 0 {
                out.push(GenEvent {
                    kind: VISIT,
                    at: event.at,
                    attribute: None,
                });
            }
            views += 1;
        }
        out.push(event.clone());
    }
    out
}

/// A stable small id for a name (form, file, email, campaign).
fn asset_id(name: &str) -> u64 {
    name.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 90_000
        + 10_000
}

impl Inner {
    fn deleted(&self, id: u64) -> bool {
        let every = self.config.faults.archived_every;
        every > 0 && id.is_multiple_of(every)
    }

    fn updated_at(&self, id: u64, person: &Person) -> i64 {
        if let Some(at) = self.overlay.modified.get(&id) {
            return *at;
        }
        if id <= self.config.faults.bulk_import {
            return self.config.epoch_ms - 10 * DAY_MS;
        }
        person
            .events
            .first()
            .map_or(person.created_at, |e| e.at.max(person.created_at))
    }

    fn custom_fields(&self) -> Vec<CustomField> {
        self.overlay
            .custom
            .values()
            .filter_map(|v| serde_json::from_value(v.clone()).ok())
            .collect()
    }

    fn custom_field(&self, name: &str) -> Option<CustomField> {
        let field_id = name.strip_suffix("__c")?;
        self.custom_fields()
            .into_iter()
            .find(|f| f.field_id == field_id)
    }

    /// Every field of a prospect, as Pardot's JSON values.
    fn prospect_values(&self, id: u64) -> Map<String, Value> {
        let person = self.people.person(id);
        let mut out = Map::new();
        out.insert("id".into(), json!(id));
        out.insert("email".into(), json!(person.email));
        out.insert("firstName".into(), json!(person.firstname));
        out.insert("lastName".into(), json!(person.lastname));
        out.insert("jobTitle".into(), json!(person.jobtitle));
        // A person with no company gave none: the prospect's company
        // fields are empty (a CRM with Company records leaves them
        // unassociated).
        let linked = person.company_id.is_some();
        out.insert("company".into(), json!(linked.then_some(&person.company)));
        out.insert("country".into(), json!(person.country));
        out.insert("industry".into(), json!(linked.then_some(person.industry)));
        out.insert(
            "employees".into(),
            json!(linked.then(|| person.numemployees.to_string())),
        );
        out.insert("phone".into(), json!(person.phone));
        // Three companies in four are Salesforce accounts their prospects'
        // contacts belong to (an 18-character id); some give a website.
        let company = person.company_id.map(|c| self.people.company(c));
        out.insert(
            "salesforceAccountId".into(),
            json!(
                company
                    .as_ref()
                    .filter(|c| c.id % 4 != 0)
                    .map(|c| format!("0015g0000{:06}AAQ", c.id))
            ),
        );
        out.insert(
            "website".into(),
            json!(
                company
                    .as_ref()
                    .filter(|c| c.id % 8 == 0 || c.id % 4 == 2)
                    .map(|c| format!("https://www.{}.example/", c.slug))
            ),
        );
        out.insert("score".into(), json!(native_score(&person)));
        out.insert("grade".into(), json!(native_grade(&person)));
        out.insert("createdAt".into(), json!(pardot_time(person.created_at)));
        out.insert(
            "updatedAt".into(),
            json!(pardot_time(self.updated_at(id, &person))),
        );
        out.insert(
            "lastActivityAt".into(),
            json!(person.events.first().map(|e| pardot_time(e.at))),
        );
        let unsubscribed = person.events.iter().any(|e| e.kind == "email_unsubscribe");
        out.insert("optedOut".into(), json!(unsubscribed));
        out.insert("isDoNotEmail".into(), json!(false));
        out.insert("isDeleted".into(), json!(self.deleted(id)));
        out.insert("campaignId".into(), json!(asset_id("acquisition")));
        let customs = self.custom_fields();
        for field in &customs {
            out.insert(format!("{}__c", field.field_id), Value::Null);
        }
        if let Some(written) = self.overlay.written.get(&id) {
            for (name, text) in written {
                let kind = customs
                    .iter()
                    .find(|f| name.strip_suffix("__c") == Some(f.field_id.as_str()))
                    .map(|f| f.kind.as_str());
                let value = match (name.as_str(), kind) {
                    ("score", _) | (_, Some("Number")) => {
                        text.parse::<f64>().ok().map_or(Value::Null, |n| {
                            if n.fract() == 0.0 && n.abs() < 1e15 {
                                json!(n as i64)
                            } else {
                                json!(n)
                            }
                        })
                    }
                    ("optedOut" | "isDoNotEmail", _) => json!(text == "true"),
                    _ => json!(text),
                };
                out.insert(name.clone(), value);
            }
        }
        out
    }

    fn prospect_json(&self, id: u64, fields: &[String]) -> Value {
        let mut all = self.prospect_values(id);
        let mut out = Map::new();
        for name in fields {
            out.insert(name.clone(), all.remove(name).unwrap_or(Value::Null));
        }
        Value::Object(out)
    }

    fn known_field(&self, name: &str) -> bool {
        STANDARD_FIELDS.contains(&name) || self.custom_field(name).is_some()
    }

    fn index(&mut self, by: SortField) -> &BTreeSet<(i64, u64)> {
        let missing = match by {
            SortField::UpdatedAt => self.by_updated.is_none(),
            SortField::CreatedAt => self.by_created.is_none(),
            SortField::Id => false,
        };
        if missing {
            let mut set = BTreeSet::new();
            for id in 1..=self.config.prospects {
                let person = self.people.person(id);
                let key = match by {
                    SortField::CreatedAt => person.created_at,
                    _ => self.updated_at(id, &person),
                };
                set.insert((key, id));
            }
            match by {
                SortField::CreatedAt => self.by_created = Some(set),
                _ => self.by_updated = Some(set),
            }
        }
        let slot = match by {
            SortField::CreatedAt => &mut self.by_created,
            _ => &mut self.by_updated,
        };
        slot.get_or_insert_with(BTreeSet::new)
    }

    fn write(&mut self, id: u64, values: BTreeMap<String, String>) {
        let person = self.people.person(id);
        let old = self.updated_at(id, &person);
        let new = self.overlay.next_write_time(self.config.epoch_ms, old);
        self.overlay.write(id, values, new);
        if let Some(index) = self.by_updated.as_mut() {
            index.remove(&(old, id));
            index.insert((new, id));
        }
    }

    /// Checks written values against the fields they go to, as stored
    /// text (empty clears a field).
    fn accept<'a>(
        &self,
        values: impl Iterator<Item = (&'a str, Value)>,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut accepted = BTreeMap::new();
        for (name, value) in values {
            let kind = if name == "grade" {
                return Err(
                    "grade is read-only; Account Engagement computes it from profiles".to_owned(),
                );
            } else if name == "score" {
                "Number"
            } else if WRITABLE_FIELDS.contains(&name) {
                if matches!(name, "optedOut" | "isDoNotEmail") {
                    "Checkbox"
                } else {
                    "Text"
                }
            } else if let Some(field) = self.custom_field(name) {
                match field.kind.as_str() {
                    "Number" => "Number",
                    "Date" => "Date",
                    "Checkbox" => "Checkbox",
                    _ => "Text",
                }
            } else {
                return Err(format!(
                    "Invalid property: {name} is not a writable prospect field"
                ));
            };
            let text = validate_value(kind, name, &value)
                .map_err(|message| format!("Invalid value: {message}"))?;
            accepted.insert(name.to_owned(), text);
        }
        Ok(accepted)
    }

    fn check_token(&self, presented: Option<&str>) -> bool {
        let Some(token) = presented else {
            return false;
        };
        // Tokens issued at /services/oauth2/token are good until they
        // expire; the static token too, unless the fake is in OAuth-only
        // mode (token_ttl set), where only issued tokens are.
        let issued = self
            .tokens
            .get(token)
            .is_some_and(|expires| Instant::now() < *expires);
        issued || (self.config.faults.token_ttl.is_none() && token == self.config.token)
    }
}

impl FakePardot {
    pub fn new(config: PardotConfig) -> Self {
        let mut inner = Inner {
            people: PeopleSpec {
                seed: config.seed,
                epoch_ms: config.epoch_ms,
                activity: 1.0,
                companies: config.companies,
            },
            overlay: Overlay::default(),
            by_updated: None,
            by_created: None,
            daily: DailyBudget::new(config.daily, jiff::tz::TimeZone::UTC),
            tokens: HashMap::new(),
            rng: super::people::Rng::new(config.seed, 0x9A4D),
            faults_served: BTreeMap::new(),
            stats: BTreeMap::new(),
            max_in_flight: 0,
            rejected_concurrency: 0,
            cut_off_queries: 0,
            imports: BTreeMap::new(),
            next_import: 0,
            config,
        };
        if let Some(ttl) = inner.config.faults.token_ttl {
            let token = inner.config.token.clone();
            inner.tokens.insert(token, Instant::now() + ttl);
        }
        Self {
            inner: Arc::new(Mutex::new(inner)),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn state_header(inner: &Inner) -> StateHeader {
        StateHeader {
            kind: "pardot".to_owned(),
            seed: inner.config.seed,
            records: inner.config.prospects,
        }
    }

    /// Takes over the writes and custom fields saved in `path` (none if the
    /// file does not exist yet).
    pub fn load_state(&self, path: &std::path::Path) -> Result<(), String> {
        let mut inner = self.lock();
        let overlay = Overlay::load(&Self::state_header(&inner), path)?;
        inner.overlay = overlay;
        inner.by_updated = None;
        Ok(())
    }

    /// Saves the writes and custom fields to `path` if anything changed;
    /// true when it wrote the file.
    pub fn save_state(&self, path: &std::path::Path) -> std::io::Result<bool> {
        let mut inner = self.lock();
        let header = Self::state_header(&inner);
        inner.overlay.save_if_dirty(&header, path)
    }

    /// The HTTP routes, ready to serve.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/api/v5/objects/prospects", get(query_prospects))
            .route(
                "/api/v5/objects/prospects/{id}",
                get(read_prospect).patch(update_prospect),
            )
            .route("/api/v5/objects/visitor-activities", get(query_activities))
            .route("/api/v5/objects/account", get(read_account))
            .route("/api/v5/imports", post(import::create_import))
            .route(
                "/api/v5/imports/{id}",
                get(import::read_import).patch(import::update_import),
            )
            .route(
                "/api/v5/imports/{id}/batches",
                post(import::add_import_batch),
            )
            .route("/api/v5/imports/{id}/errors", get(import::import_errors))
            // Import files may have 10 MB (axum's default limit is 2 MB).
            .layer(axum::extract::DefaultBodyLimit::max(11 * 1024 * 1024))
            .route(
                "/api/v5/objects/custom-fields",
                get(query_custom_fields).post(create_custom_field),
            )
            .layer(axum::middleware::from_fn_with_state(self.clone(), gate));
        let other = Router::new()
            .route("/services/oauth2/token", post(oauth_token))
            .route("/__fake/stats", get(stats))
            .route(
                "/__fake/prospects/{id}",
                get(inspect_prospect).post(edit_prospect),
            )
            .route("/__fake/reset-daily", post(reset_daily));
        api.merge(other).with_state(self.clone())
    }
}

/// Decrements the in-flight count when a request ends, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Concurrency, business unit, auth, daily budget, faults, usage header and
/// request counting for every API call.
/// `GET /api/v5/objects/account?fields=...`: the account of the business
/// unit (`fields` is required, as on every v5 object read).
async fn read_account(
    State(fake): State<FakePardot>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if query.get("fields").is_none_or(|f| f.trim().is_empty()) {
        return pardot_error(
            StatusCode::BAD_REQUEST,
            10,
            "The request is missing the fields parameter.",
        );
    }
    let inner = fake.lock();
    let mut account = serde_json::Map::new();
    for field in query.get("fields").into_iter().flat_map(|f| f.split(',')) {
        let value = match field.trim() {
            "id" => json!(inner.config.account()),
            "company" => json!("Fake Pardot Inc."),
            "level" => json!("Advanced"),
            "website" => json!("https://www.example.com"),
            other => {
                return pardot_error(
                    StatusCode::BAD_REQUEST,
                    10,
                    &format!("The account object has no field {other}."),
                );
            }
        };
        account.insert(field.trim().to_owned(), value);
    }
    Json(serde_json::Value::Object(account)).into_response()
}

async fn gate(State(fake): State<FakePardot>, request: Request, next: Next) -> Response {
    let echo = fake.lock().config.faults.echo_auth;
    faults::echoing_auth(echo, request, |request| gate_inner(fake, request, next)).await
}

async fn gate_inner(fake: FakePardot, request: Request, next: Next) -> Response {
    let now_in_flight = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(Arc::clone(&fake.in_flight));
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let key = format!("{} {route}", request.method());
    let (business_unit, bearer, wants_usage) = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            header("pardot-business-unit-id"),
            header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned)),
            header("x-return-api-usage").is_some_and(|v| v == "1" || v == "true"),
        )
    };
    let (verdict, fault, slow) = {
        let mut inner = fake.lock();
        inner.max_in_flight = inner.max_in_flight.max(now_in_flight);
        let verdict = if now_in_flight > inner.config.concurrency {
            inner.rejected_concurrency += 1;
            Some(pardot_error(
                StatusCode::TOO_MANY_REQUESTS,
                66,
                "The max number of concurrent API calls has been exceeded.",
            ))
        } else if business_unit.as_deref() != Some(inner.config.business_unit_id.as_str()) {
            Some(pardot_error(
                StatusCode::BAD_REQUEST,
                181,
                "The Pardot-Business-Unit-Id header is missing or names no business unit this user can access.",
            ))
        } else if !inner.check_token(bearer.as_deref()) {
            Some(pardot_error(
                StatusCode::UNAUTHORIZED,
                184,
                "access_token is invalid, unknown, or malformed: Inactive token",
            ))
        } else if !inner.daily.try_take() {
            Some(pardot_error(
                StatusCode::TOO_MANY_REQUESTS,
                122,
                "Daily API rate limit met.",
            ))
        } else {
            None
        };
        let fault = if verdict.is_none() {
            let Inner {
                config,
                rng,
                faults_served,
                ..
            } = &mut *inner;
            faults::roll(&config.faults, rng, faults_served)
        } else {
            None
        };
        (verdict, fault, inner.config.faults.slow)
    };
    let writing = (request.method() == axum::http::Method::PATCH
        && route == "/api/v5/objects/prospects/{id}")
        || route.starts_with("/api/v5/imports");
    let failing_write = fake
        .lock()
        .config
        .faults
        .fail_writes
        .filter(|_| verdict.is_none() && writing);
    let mut response = match (verdict, fault) {
        (Some(response), _) => response,
        (None, _) if failing_write.is_some() => {
            let code = failing_write.unwrap_or(500);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if code == 401 {
                pardot_error(
                    status,
                    184,
                    "access_token is invalid, unknown, or malformed: Inactive token",
                )
            } else {
                (
                    status,
                    [("content-type", "text/html")],
                    "<html><body><h1>Service Unavailable</h1></body></html>",
                )
                    .into_response()
            }
        }
        (None, Some(Fault::TooMany)) => pardot_error(
            StatusCode::TOO_MANY_REQUESTS,
            66,
            "The max number of concurrent API calls has been exceeded.",
        ),
        (None, Some(Fault::ServerError(code))) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            // Gateways in front of Pardot answer with HTML, not JSON.
            (
                status,
                [("content-type", "text/html")],
                "<html><body><h1>Service Unavailable</h1></body></html>",
            )
                .into_response()
        }
        (None, fault) => faults::pass_through(fault, slow, next.run(request)).await,
    };
    let mut inner = fake.lock();
    let status = response.status().as_u16();
    *inner.stats.entry(format!("{key} {status}")).or_default() += 1;
    if wants_usage
        && let Ok(value) =
            HeaderValue::from_str(&format!("{}/{}", inner.daily.used, inner.daily.max))
    {
        response.headers_mut().insert("x-api-usage", value);
    }
    response
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum SortField {
    Id,
    CreatedAt,
    UpdatedAt,
}

/// A prospect or activity query, as carried in a page token.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct QueryState {
    /// None: id order.
    sort: Option<SortField>,
    descending: bool,
    /// Inclusive/exclusive bounds, epoch ms or ids.
    id_min: Option<u64>,
    id_max: Option<u64>,
    created_min: Option<i64>,
    created_max: Option<i64>,
    updated_min: Option<i64>,
    updated_max: Option<i64>,
    deleted: Option<String>,
    email: Option<String>,
    prospect_id: Option<u64>,
    /// Inclusive prospect id bounds (visitor activities).
    #[serde(default)]
    prospect_min: Option<u64>,
    #[serde(default)]
    prospect_max: Option<u64>,
    activity_type: Option<u32>,
    limit: u64,
    /// The last (sort key, id) served.
    after: Option<(i64, u64)>,
    served: u64,
    started_ms: i64,
}

impl QueryState {
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        json.iter().fold(String::new(), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    fn decode(token: &str) -> Option<Self> {
        let bytes: Option<Vec<u8>> = (0..token.len())
            .step_by(2)
            .map(|i| {
                token
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        serde_json::from_slice(&bytes?).ok()
    }

    fn in_bounds(&self, id: u64, created: i64, updated: i64) -> bool {
        self.id_min.is_none_or(|m| id >= m)
            && self.id_max.is_none_or(|m| id <= m)
            && self.created_min.is_none_or(|m| created >= m)
            && self.created_max.is_none_or(|m| created <= m)
            && self.updated_min.is_none_or(|m| updated >= m)
            && self.updated_max.is_none_or(|m| updated <= m)
    }
}

/// The parsed `fields` list and query state of a first-page or token
/// request, or what is wrong with it.
fn parse_query(
    query: &HashMap<String, String>,
    filters: &[&str],
) -> Result<(Vec<String>, QueryState), String> {
    let fields: Vec<String> = match query.get("fields") {
        Some(list) => list
            .split(',')
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .collect(),
        None => Vec::new(),
    };
    if fields.is_empty() {
        return Err("fields is required".to_owned());
    }
    if let Some(token) = query.get("nextPageToken") {
        if let Some(other) = query
            .keys()
            .find(|k| *k != "fields" && *k != "nextPageToken")
        {
            return Err(format!(
                "{other} may not be sent with nextPageToken; only fields may"
            ));
        }
        let Some(state) = QueryState::decode(token) else {
            return Err("nextPageToken is not a valid page token".to_owned());
        };
        let age = jiff::Timestamp::now().as_millisecond() - state.started_ms;
        if age > TOKEN_LIFETIME.as_millis() as i64 {
            return Err("nextPageToken has expired; start the query again".to_owned());
        }
        return Ok((fields, state));
    }
    let mut state = QueryState {
        limit: 200,
        started_ms: jiff::Timestamp::now().as_millisecond(),
        ..QueryState::default()
    };
    for (name, value) in query {
        let time =
            || parse_pardot_time(value).ok_or_else(|| format!("{name}: not a date-time: {value}"));
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{name}: not a number: {value}"))
        };
        match name.as_str() {
            "fields" => {}
            "limit" => {
                let limit = number()?;
                if !(1..=1000).contains(&limit) {
                    return Err("limit must be between 1 and 1000".to_owned());
                }
                state.limit = limit;
            }
            "orderBy" => {
                let mut parts = value.split_whitespace();
                let field = parts.next().unwrap_or("").trim_end_matches(',');
                state.sort = match field {
                    "id" => None,
                    "createdAt" => Some(SortField::CreatedAt),
                    "updatedAt" if filters.contains(&"updatedAt") => Some(SortField::UpdatedAt),
                    other => return Err(format!("orderBy: cannot sort by {other}")),
                };
                state.descending = match parts.next().map(str::to_ascii_uppercase).as_deref() {
                    None | Some("ASC") => false,
                    Some("DESC") => true,
                    Some(other) => {
                        return Err(format!("orderBy: unknown direction {other}"));
                    }
                };
            }
            "idGreaterThan" => state.id_min = Some(number()? + 1),
            "idGreaterThanOrEqualTo" => state.id_min = Some(number()?),
            "idLessThan" => state.id_max = Some(number()?.saturating_sub(1)),
            "idLessThanOrEqualTo" => state.id_max = Some(number()?),
            "createdAtAfter" => state.created_min = Some(time()? + 1),
            "createdAtAfterOrEqualTo" => state.created_min = Some(time()?),
            "createdAtBefore" => state.created_max = Some(time()? - 1),
            "createdAtBeforeOrEqualTo" => state.created_max = Some(time()?),
            "updatedAtAfter" if filters.contains(&"updatedAt") => {
                state.updated_min = Some(time()? + 1)
            }
            "updatedAtAfterOrEqualTo" if filters.contains(&"updatedAt") => {
                state.updated_min = Some(time()?)
            }
            "updatedAtBefore" if filters.contains(&"updatedAt") => {
                state.updated_max = Some(time()? - 1)
            }
            "updatedAtBeforeOrEqualTo" if filters.contains(&"updatedAt") => {
                state.updated_max = Some(time()?)
            }
            "deleted" if filters.contains(&"deleted") => {
                if !["true", "false", "all"].contains(&value.as_str()) {
                    return Err("deleted must be true, false or all".to_owned());
                }
                state.deleted = Some(value.clone());
            }
            "email" if filters.contains(&"email") => state.email = Some(value.clone()),
            "prospectId" if filters.contains(&"prospectId") => state.prospect_id = Some(number()?),
            "prospectIdGreaterThan" if filters.contains(&"prospectId") => {
                state.prospect_min = Some(number()? + 1);
            }
            "prospectIdGreaterThanOrEqualTo" if filters.contains(&"prospectId") => {
                state.prospect_min = Some(number()?);
            }
            "prospectIdLessThan" if filters.contains(&"prospectId") => {
                state.prospect_max = Some(number()?.saturating_sub(1));
            }
            "prospectIdLessThanOrEqualTo" if filters.contains(&"prospectId") => {
                state.prospect_max = Some(number()?);
            }
            "type" if filters.contains(&"type") => {
                state.activity_type = Some(number()? as u32);
            }
            other => return Err(format!("unknown parameter {other}")),
        }
    }
    Ok((fields, state))
}

/// One page of a query: the values, the next token (None on the last page
/// or when the record limit cut the query off) and whether it was cut off.
fn page_body(
    inner: &mut Inner,
    values: Vec<Value>,
    mut state: QueryState,
    last: Option<(i64, u64)>,
    more: bool,
    base: &str,
    fields: &[String],
) -> Response {
    state.served += values.len() as u64;
    state.after = last.or(state.after);
    let cut_off = more && state.served >= inner.config.token_record_limit;
    let mut body = json!({ "values": values });
    if more && !cut_off {
        let token = state.encode();
        body["nextPageToken"] = json!(token);
        body["nextPageUrl"] = json!(format!(
            "{base}?fields={}&nextPageToken={token}",
            fields.join(",")
        ));
    } else {
        body["nextPageToken"] = Value::Null;
        body["nextPageUrl"] = Value::Null;
    }
    let mut response = Json(body).into_response();
    if cut_off {
        inner.cut_off_queries += 1;
        response
            .headers_mut()
            .insert("pardot-warning", HeaderValue::from_static("203"));
    }
    response
}

async fn query_prospects(
    State(fake): State<FakePardot>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (fields, state) = match parse_query(&query, &["updatedAt", "deleted", "email"]) {
        Ok(parsed) => parsed,
        Err(message) => return invalid(&message),
    };
    let mut inner = fake.lock();
    if let Some(unknown) = fields.iter().find(|f| !inner.known_field(f)) {
        return invalid(&format!("fields: unknown field {unknown}"));
    }
    let room = state
        .limit
        .min(inner.config.token_record_limit.saturating_sub(state.served))
        .max(1) as usize;
    let wanted_deleted = |inner: &Inner, id: u64| match state.deleted.as_deref() {
        Some("all") => true,
        Some("true") => inner.deleted(id),
        _ => !inner.deleted(id),
    };
    let mut picked: Vec<(i64, u64)> = Vec::with_capacity(room + 1);
    let consider = |inner: &Inner, key: i64, id: u64, picked: &mut Vec<(i64, u64)>| {
        if !wanted_deleted(inner, id) {
            return;
        }
        let person = inner.people.person(id);
        let updated = inner.updated_at(id, &person);
        if state.in_bounds(id, person.created_at, updated)
            && state.email.as_deref().is_none_or(|e| e == person.email)
        {
            picked.push((key, id));
        }
    };
    match state.sort {
        None => {
            let prospects = inner.config.prospects;
            let after = state.after.map(|(_, id)| id);
            let ids: Box<dyn Iterator<Item = u64>> = if state.descending {
                Box::new((1..after.unwrap_or(prospects + 1)).rev())
            } else {
                Box::new(after.map_or(1, |a| a + 1)..=prospects)
            };
            for id in ids {
                if picked.len() > room {
                    break;
                }
                consider(&inner, id as i64, id, &mut picked);
            }
        }
        Some(by) => {
            inner.index(by);
            let inner = &*inner;
            let index = match by {
                SortField::CreatedAt => inner.by_created.as_ref(),
                _ => inner.by_updated.as_ref(),
            };
            let lower = match (state.after, by, state.descending) {
                (Some(after), _, false) => Bound::Excluded(after),
                (None, SortField::UpdatedAt, false) => {
                    Bound::Included((state.updated_min.unwrap_or(i64::MIN), 0))
                }
                _ => Bound::Unbounded,
            };
            let upper = match (state.after, state.descending) {
                (Some(after), true) => Bound::Excluded(after),
                _ => Bound::Unbounded,
            };
            if let Some(index) = index {
                let range = index.range((lower, upper));
                let keys: Box<dyn Iterator<Item = &(i64, u64)>> = if state.descending {
                    Box::new(range.rev())
                } else {
                    Box::new(range)
                };
                for (key, id) in keys {
                    if picked.len() > room {
                        break;
                    }
                    consider(inner, *key, *id, &mut picked);
                }
            }
        }
    }
    let more = picked.len() > room;
    picked.truncate(room);
    let values = picked
        .iter()
        .map(|(_, id)| inner.prospect_json(*id, &fields))
        .collect();
    let last = picked.last().copied();
    page_body(
        &mut inner,
        values,
        state,
        last,
        more,
        "/api/v5/objects/prospects",
        &fields,
    )
}

fn parse_prospect_id(id: &str, inner: &Inner) -> Option<u64> {
    id.parse::<u64>()
        .ok()
        .filter(|id| (1..=inner.config.prospects).contains(id) && !inner.deleted(*id))
}

fn not_found() -> Response {
    pardot_error(StatusCode::NOT_FOUND, 3, "Invalid prospect ID")
}

async fn read_prospect(
    State(fake): State<FakePardot>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let inner = fake.lock();
    let Some(id) = parse_prospect_id(&id, &inner) else {
        return not_found();
    };
    let fields: Vec<String> = query
        .get("fields")
        .map(|f| f.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_else(|| vec!["id".to_owned()]);
    if let Some(unknown) = fields.iter().find(|f| !inner.known_field(f)) {
        return invalid(&format!("fields: unknown field {unknown}"));
    }
    Json(inner.prospect_json(id, &fields)).into_response()
}

/// Checks one written value against the field's type and returns it as
/// stored text.
fn validate_value(kind: &str, name: &str, value: &Value) -> Result<String, String> {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => return Err(format!("{name}: arrays and objects are not field values")),
    };
    match kind {
        "Number" if !text.is_empty() && text.parse::<f64>().is_err() => {
            Err(format!("{name}: {text:?} is not a number"))
        }
        "Date" if !text.is_empty() && parse_pardot_time(&text).is_none() => {
            Err(format!("{name}: {text:?} is not a date"))
        }
        "Checkbox" if !matches!(value, Value::Bool(_) | Value::Null) => {
            Err(format!("{name}: expects true or false"))
        }
        _ => Ok(text),
    }
}

async fn update_prospect(
    State(fake): State<FakePardot>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let object: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(object) => object,
        Err(e) => {
            return pardot_error(
                StatusCode::BAD_REQUEST,
                5,
                &format!("The request body is not a JSON object: {e}"),
            );
        }
    };
    let mut inner = fake.lock();
    let Some(id) = parse_prospect_id(&id, &inner) else {
        return not_found();
    };
    let injected = inner.config.faults.rate_record_error;
    if injected > 0.0 && inner.rng.unit() < injected {
        return pardot_error(
            StatusCode::BAD_REQUEST,
            5,
            "fault: the prospect could not be saved",
        );
    }
    let accepted = match inner.accept(object.iter().map(|(k, v)| (k.as_str(), v.clone()))) {
        Ok(accepted) => accepted,
        Err(message) => return pardot_error(StatusCode::BAD_REQUEST, 5, &message),
    };
    inner.write(id, accepted);
    *inner
        .stats
        .entry("prospects written".to_owned())
        .or_default() += 1;
    let mut fields: Vec<String> = query
        .get("fields")
        .map(|f| f.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default();
    if !fields.iter().any(|f| f == "id") {
        fields.insert(0, "id".to_owned());
    }
    Json(inner.prospect_json(id, &fields)).into_response()
}

const ACTIVITY_FIELDS: &[&str] = &[
    "id",
    "prospectId",
    "visitorId",
    "type",
    "typeName",
    "details",
    "campaignId",
    "emailId",
    "formId",
    "fileId",
    "customRedirectId",
    "createdAt",
    "updatedAt",
];
/// Activity ids are prospect id × this + the activity's position.
const ACTIVITY_STRIDE: u64 = 1_000;

fn activity_json(prospect: u64, n: usize, event: &GenEvent, fields: &[String]) -> Option<Value> {
    let (code, name) = activity_type(event)?;
    let attribute = event.attribute.as_ref().map(|(_, v)| v.as_str());
    let mut all = Map::new();
    all.insert("id".into(), json!(prospect * ACTIVITY_STRIDE + n as u64));
    all.insert("prospectId".into(), json!(prospect));
    all.insert("visitorId".into(), json!(prospect + 7_000_000));
    all.insert("type".into(), json!(code));
    all.insert("typeName".into(), json!(name));
    all.insert("details".into(), json!(attribute));
    let id_if = |kinds: &[&str]| {
        if kinds.contains(&event.kind) {
            json!(attribute.map(asset_id))
        } else {
            Value::Null
        }
    };
    all.insert(
        "campaignId".into(),
        id_if(&[
            "email_open",
            "email_click",
            "email_unsubscribe",
            "cta_click",
            "ad_click",
        ]),
    );
    all.insert(
        "emailId".into(),
        id_if(&["email_open", "email_click", "email_unsubscribe"]),
    );
    all.insert("formId".into(), id_if(&["form_submission"]));
    all.insert("fileId".into(), id_if(&["content_download"]));
    all.insert("customRedirectId".into(), id_if(&["cta_click", "ad_click"]));
    all.insert("createdAt".into(), json!(pardot_time(event.at)));
    all.insert("updatedAt".into(), json!(pardot_time(event.at)));
    let mut out = Map::new();
    for field in fields {
        out.insert(field.clone(), all.remove(field).unwrap_or(Value::Null));
    }
    Some(Value::Object(out))
}

async fn query_activities(
    State(fake): State<FakePardot>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (fields, state) = match parse_query(&query, &["prospectId", "type"]) {
        Ok(parsed) => parsed,
        Err(message) => return invalid(&message),
    };
    if let Some(unknown) = fields
        .iter()
        .find(|f| !ACTIVITY_FIELDS.contains(&f.as_str()))
    {
        return invalid(&format!("fields: unknown field {unknown}"));
    }
    if state.sort.is_some() || state.descending {
        return invalid("visitor activities are ordered by id ascending only in this fake");
    }
    let mut inner = fake.lock();
    let room = state
        .limit
        .min(inner.config.token_record_limit.saturating_sub(state.served))
        .max(1) as usize;
    let after = state.after.map_or(0, |(_, id)| id);
    let first = state
        .prospect_id
        .or(state.prospect_min)
        .unwrap_or(1)
        .max(after / ACTIVITY_STRIDE)
        .max(1);
    let last = state
        .prospect_id
        .or(state.prospect_max)
        .unwrap_or(inner.config.prospects)
        .min(inner.config.prospects);
    let mut values = Vec::new();
    let mut last_id = None;
    let mut more = false;
    'prospects: for prospect in first..=last {
        let person = inner.people.person(prospect);
        for (n, event) in activities(&person).iter().enumerate() {
            let id = prospect * ACTIVITY_STRIDE + n as u64;
            if id <= after
                || !state.in_bounds(id, event.at, event.at)
                || state
                    .activity_type
                    .is_some_and(|t| activity_type(event).map(|(c, _)| c) != Some(t))
            {
                continue;
            }
            let Some(value) = activity_json(prospect, n, event, &fields) else {
                continue;
            };
            if values.len() == room {
                more = true;
                break 'prospects;
            }
            values.push(value);
            last_id = Some((id as i64, id));
        }
    }
    page_body(
        &mut inner,
        values,
        state,
        last_id,
        more,
        "/api/v5/objects/visitor-activities",
        &fields,
    )
}

fn custom_field_json(field: &CustomField) -> Value {
    json!({
        "id": field.id,
        "name": field.name,
        "fieldId": field.field_id,
        "type": field.kind,
        "isRecordMultipleResponses": false,
        "isUseValues": false,
        "createdAt": field.created_at,
        "updatedAt": field.created_at,
    })
}

async fn query_custom_fields(State(fake): State<FakePardot>) -> Response {
    let inner = fake.lock();
    let values: Vec<Value> = inner
        .custom_fields()
        .iter()
        .map(custom_field_json)
        .collect();
    Json(json!({ "values": values, "nextPageToken": null, "nextPageUrl": null })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewCustomField {
    name: String,
    field_id: String,
    #[serde(rename = "type")]
    kind: String,
}

async fn create_custom_field(State(fake): State<FakePardot>, body: axum::body::Bytes) -> Response {
    let request: NewCustomField = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return pardot_error(
                StatusCode::BAD_REQUEST,
                5,
                &format!("Invalid custom field: {e}"),
            );
        }
    };
    let kinds = [
        "Text",
        "Number",
        "Date",
        "Dropdown",
        "Checkbox",
        "Radio Button",
        "Textarea",
    ];
    if !kinds.contains(&request.kind.as_str()) {
        return pardot_error(
            StatusCode::BAD_REQUEST,
            5,
            &format!("Invalid custom field type {}", request.kind),
        );
    }
    if request.field_id.is_empty()
        || !request
            .field_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return pardot_error(
            StatusCode::BAD_REQUEST,
            5,
            "fieldId must be letters, digits and underscores",
        );
    }
    let mut inner = fake.lock();
    if inner
        .custom_fields()
        .iter()
        .any(|f| f.field_id.eq_ignore_ascii_case(&request.field_id))
    {
        return pardot_error(
            StatusCode::BAD_REQUEST,
            5,
            &format!(
                "A custom field with fieldId {} already exists",
                request.field_id
            ),
        );
    }
    let field = CustomField {
        id: 5_000 + inner.overlay.custom.len() as u64,
        name: request.name,
        field_id: request.field_id,
        kind: request.kind,
        created_at: pardot_time(jiff::Timestamp::now().as_millisecond()),
    };
    if let Ok(saved) = serde_json::to_value(&field) {
        inner.overlay.custom.insert(field.field_id.clone(), saved);
        inner.overlay.dirty = true;
    }
    (StatusCode::CREATED, Json(custom_field_json(&field))).into_response()
}

#[derive(Deserialize)]
struct SalesforceTokenRequest {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

/// Salesforce's OAuth token endpoint: refresh-token and client-credentials
/// grants, Salesforce's error shape.
async fn oauth_token(
    State(fake): State<FakePardot>,
    axum::Form(form): axum::Form<SalesforceTokenRequest>,
) -> Response {
    let mut inner = fake.lock();
    let response = issue_token(&mut inner, &form);
    let key = format!(
        "POST /services/oauth2/token {} {}",
        form.grant_type,
        response.status().as_u16()
    );
    *inner.stats.entry(key).or_default() += 1;
    response
}

fn issue_token(inner: &mut Inner, form: &SalesforceTokenRequest) -> Response {
    let oauth_error = |error: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": error, "error_description": description })),
        )
            .into_response()
    };
    if form.client_id.as_deref() != Some(inner.config.client_id.as_str()) {
        return oauth_error("invalid_client_id", "client identifier invalid");
    }
    if form.client_secret.as_deref() != Some(inner.config.client_secret.as_str()) {
        return oauth_error("invalid_client", "invalid client credentials");
    }
    match form.grant_type.as_str() {
        "client_credentials" => {}
        "refresh_token"
            if form.refresh_token.as_deref() == Some(inner.config.refresh_token.as_str()) => {}
        "refresh_token" => return oauth_error("invalid_grant", "expired access/refresh token"),
        _ => return oauth_error("unsupported_grant_type", "grant type not supported"),
    }
    let ttl = inner
        .config
        .faults
        .token_ttl
        .unwrap_or(Duration::from_secs(2 * 3600));
    let token = format!("00Dfake!{:016x}", inner.rng.next());
    inner.tokens.insert(token.clone(), Instant::now() + ttl);
    let issued = jiff::Timestamp::now().as_millisecond();
    Json(json!({
        "access_token": token,
        "instance_url": "https://fake.my.salesforce.com",
        "id": "https://login.salesforce.com/id/00Dfake/005fake",
        "token_type": "Bearer",
        "issued_at": issued.to_string(),
        "signature": "ZmFrZQ==",
        "scope": "pardot_api",
    }))
    .into_response()
}

async fn stats(State(fake): State<FakePardot>) -> Response {
    let inner = fake.lock();
    Json(json!({
        "requests": inner.stats,
        "faults": inner.faults_served,
        "daily_used": inner.daily.used,
        "max_in_flight": inner.max_in_flight,
        "rejected_concurrency": inner.rejected_concurrency,
        "cut_off_queries": inner.cut_off_queries,
        "prospects": inner.config.prospects,
    }))
    .into_response()
}

async fn inspect_prospect(State(fake): State<FakePardot>, Path(id): Path<String>) -> Response {
    let inner = fake.lock();
    match parse_prospect_id(&id, &inner) {
        Some(id) => {
            let person = inner.people.person(id);
            Json(json!({
                "id": id,
                "values": inner.prospect_values(id),
                "converted": person.converted,
            }))
            .into_response()
        }
        None => not_found(),
    }
}

/// `POST /__fake/prospects/{id}` `{"values": {"jobTitle": "…"}}`: a
/// change made in Account Engagement or synced from Salesforce (read-only
/// fields such as `salesforceAccountId` included); `updatedAt` moves.
async fn edit_prospect(
    State(fake): State<FakePardot>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    #[derive(Deserialize)]
    struct Edit {
        values: BTreeMap<String, Value>,
    }
    let edit: Edit = match serde_json::from_slice(&body) {
        Ok(edit) => edit,
        Err(e) => return invalid(&format!("bad edit: {e}")),
    };
    let mut inner = fake.lock();
    let Some(id) = parse_prospect_id(&id, &inner) else {
        return not_found();
    };
    let mut values = BTreeMap::new();
    for (name, value) in edit.values {
        if !inner.known_field(&name) || matches!(name.as_str(), "id" | "updatedAt" | "createdAt") {
            return invalid(&format!(
                "{name} is not a prospect field an edit can change"
            ));
        }
        let text = match value {
            Value::String(text) => text,
            Value::Null => String::new(),
            other => other.to_string(),
        };
        values.insert(name, text);
    }
    inner.write(id, values);
    Json(json!({ "id": id, "values": inner.prospect_values(id) })).into_response()
}

/// A new day: the count starts over (and with `?max=N`, the limit changes,
/// as when an edition changes).
async fn reset_daily(
    State(fake): State<FakePardot>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = fake.lock();
    inner.daily.used = 0;
    if let Some(max) = query.get("max").and_then(|m| m.parse().ok()) {
        inner.daily.max = max;
    }
    StatusCode::NO_CONTENT.into_response()
}
