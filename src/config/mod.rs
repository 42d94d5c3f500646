//! The connection file: which CRM, how to authenticate (where the secrets
//! are, never the secrets), the rate limits, which CRM field feeds which
//! model input, where event detail comes from, and which scorecard value is
//! written to which CRM property.
//!
//! It names its scoring model (`model = "b2b.toml"`, relative to the
//! file), so revops keep model and mappings in git beside each other. Parsed
//! then validated against the compiled model, with every problem reported
//! at once with file, line and column.
//!
//! ```toml
//! model = "b2b.toml"
//!
//! [crm]
//! kind = "hubspot"
//! token = { credential = "hubspot-token" }
//!
//! [inputs]
//! "company.numemployees" = { field = "numemployees", type = "number" }
//!
//! [[output]]
//! property = "leadscored_score"
//! value = "contact.total"
//! ```

pub mod accounts;
mod raw;
pub use accounts::{AccountKey, Accounts};
pub mod state;
pub mod webhooks;
pub use state::StateStore;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::engine::{OutputKind, OutputValue};
use crate::model::diagnostics::Diagnostics;
use crate::model::{ConfigErrors, Model, Object, Scope};
use raw::{RawCrm, RawDaemon, RawInput, RawLimits, RawOauth, RawOutput, RawSecret};

const TOP_LEVEL: &str =
    "model, crm, limits, inputs, events, output, daemon, webhooks, accounts, state";

/// Which CRM a connection talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrmKind {
    Hubspot,
    Pardot,
}

impl CrmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CrmKind::Hubspot => "hubspot",
            CrmKind::Pardot => "pardot",
        }
    }
}

/// Where a secret is read from. The secret itself never sits in config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// `$CREDENTIALS_DIRECTORY/<name>` (systemd `LoadCredential=`).
    Credential(String),
    File(PathBuf),
    Env(String),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Credential(name) => write!(f, "credential `{name}`"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// How the connection authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// A private-app / service-key token, or a static access token.
    Token(SecretSource),
    /// OAuth 2 with a refresh token (HubSpot) or Salesforce's refresh-token
    /// or client-credentials flow (Pardot).
    Oauth {
        client_id: String,
        client_secret: SecretSource,
        refresh_token: Option<SecretSource>,
        token_url: String,
    },
}

/// The CRM and how to reach it.
#[derive(Clone, Debug)]
pub struct CrmSettings {
    pub kind: CrmKind,
    /// Without a trailing slash.
    pub base_url: String,
    pub api_version: String,
    pub auth: Auth,
    /// Pardot only.
    pub business_unit_id: Option<String>,
    /// IANA name; the daily budget resets at midnight there.
    pub timezone: String,
}

/// Rate limits and retry policy, defaulted by CRM and account tier.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// HubSpot's per-10-second limit.
    pub per_ten_seconds: u32,
    /// The window `per_ten_seconds` applies to (ten seconds at HubSpot).
    pub interval: Duration,
    /// HubSpot search requests per second.
    pub search_per_second: u32,
    pub daily: u64,
    /// Share of the daily budget left to other integrations (0.0–0.9).
    pub daily_headroom: f64,
    /// Requests in flight at once (Pardot allows 5).
    pub concurrency: usize,
    /// Tries per request, the first included.
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How far an incremental pull reaches back before its watermark, to
    /// cover the CRM's index lag.
    pub search_overlap: Duration,
    /// The largest answer body read from a page or batch call: a bigger
    /// (or endless) answer is cut off and the call fails.
    pub max_answer_bytes: usize,
    /// The same for export-like calls (Pardot's import error files).
    pub max_export_bytes: usize,
    /// Soon after the account's midnight, a spent-budget answer may be the
    /// CRM's counter not yet reset: probe again after this long instead of
    /// waiting for the next midnight.
    pub daily_reset_probe: Duration,
    /// How engagement is read.
    pub event_reads: EventReads,
}

/// How a pass reads engagement where the CRM offers both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventReads {
    /// Whichever the pass estimates to cost fewer calls.
    Auto,
    /// By type and time window, for every record at once.
    Streams,
    /// A call or two per changed record.
    PerRecord,
}

impl EventReads {
    pub fn as_str(self) -> &'static str {
        match self {
            EventReads::Auto => "auto",
            EventReads::Streams => "streams",
            EventReads::PerRecord => "per_record",
        }
    }
}

/// A megabyte, for the answer-size limits.
const MB: usize = 1024 * 1024;

impl Limits {
    /// Defaults for a CRM and (HubSpot) account tier.
    pub fn defaults(kind: CrmKind, tier: &str) -> Limits {
        let (per_ten_seconds, daily) = match (kind, tier) {
            (CrmKind::Pardot, "growth") => (0, 25_000),
            (CrmKind::Pardot, "plus") => (0, 50_000),
            (CrmKind::Pardot, _) => (0, 100_000),
            (CrmKind::Hubspot, "professional") => (190, 625_000),
            (CrmKind::Hubspot, "enterprise") => (190, 1_000_000),
            (CrmKind::Hubspot, "api_limit_increase") => (250, 1_250_000),
            (CrmKind::Hubspot, _) => (100, 250_000),
        };
        Limits {
            per_ten_seconds,
            interval: Duration::from_secs(10),
            search_per_second: 5,
            daily,
            daily_headroom: 0.1,
            concurrency: if kind == CrmKind::Pardot { 5 } else { 4 },
            max_attempts: 6,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            search_overlap: Duration::from_secs(120),
            max_answer_bytes: 16 * MB,
            max_export_bytes: 256 * MB,
            daily_reset_probe: Duration::from_secs(300),
            event_reads: EventReads::Auto,
        }
    }
}

/// How a CRM field's text becomes a model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// As sent; numbers and dates are still recognised where the model
    /// compares them.
    Text,
    Number,
    /// `true`/`false`, also `1`/`0`, `yes`/`no`.
    Bool,
    /// ISO 8601 or epoch milliseconds.
    Time,
    /// A multi-select: values separated by `;`.
    Multi,
}

/// Which CRM field feeds one model property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub scope: Scope,
    /// The name the model uses (without `company.`).
    pub name: String,
    pub field: String,
    pub kind: FieldType,
    /// Computed from events instead of read from `field` (which is then
    /// empty and not pulled).
    pub derived: Option<Derived>,
    /// The CRM object `field` is read from.
    pub origin: Origin,
}

/// The CRM object an input is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The contact or prospect itself.
    Contact,
    /// The contact's primary associated company (HubSpot's
    /// `associatedcompanyid`).
    Company,
}

/// An input computed from engagement the CRM has no field for (Pardot has
/// no visit count; its nearest to HubSpot's last-open date is the newest
/// email-open activity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    pub how: DeriveHow,
    /// The internal event type its events are pulled under
    /// ([`DERIVED_PREFIX`] and the input's model name).
    pub event_type: String,
}

/// What a derived input takes from its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeriveHow {
    /// How many there are (0 when none).
    Count,
    /// When the newest happened (absent when none).
    Latest,
}

/// Whether a URL is plain HTTP on a loopback address (tests, fakes).
fn is_loopback(url: &str) -> bool {
    ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|l| url.starts_with(l))
}

/// Salesforce's login hosts, where Pardot's OAuth tokens come from.
const SALESFORCE_LOGINS: [&str; 2] = [
    "https://login.salesforce.com",
    "https://test.salesforce.com",
];

/// Event types pulled only to compute derived inputs start with this; the
/// model never sees them as events.
pub const DERIVED_PREFIX: &str = "input:";

/// The HubSpot contact property holding the id of the contact's primary
/// company (read-only; HubSpot keeps it in step with the primary
/// association).
pub const COMPANY_ID: &str = "associatedcompanyid";

/// Where the detail for one model event type comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventSource {
    /// HubSpot form submissions (`/form-integrations/v1/submissions/forms`).
    HubspotForms,
    /// HubSpot marketing email events of these types (`OPEN`, `CLICK`, ...).
    HubspotEmail(Vec<String>),
    /// HubSpot web / behavioural events of these types (`e_visited_page`, ...).
    HubspotWeb(Vec<String>),
    /// Pardot visitor activities of these type codes; with `with`, only
    /// those that carry that field (`fileId`), with `without` only those
    /// that do not.
    PardotActivity {
        types: Vec<u32>,
        with: Option<String>,
        without: Option<String>,
    },
}

/// Whether a run may overwrite what the CRM holds in an output property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    Always,
    /// Only when the property is empty.
    IfEmpty,
    /// When empty or holding one of this output's own values; a value sales
    /// set by hand (outside that vocabulary) is left alone.
    IfOurs,
}

/// One scorecard value written to one CRM property.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// The object the property is on: a company score's values go to the
    /// company in HubSpot unless said otherwise; everything else to the
    /// contact (or prospect).
    pub object: Object,
    pub property: String,
    pub value: OutputValue,
    pub label: String,
    /// Scorecard text → CRM option value.
    pub map: BTreeMap<String, String>,
    pub overwrite: Overwrite,
}

impl Output {
    pub fn kind(&self) -> OutputKind {
        self.value.kind()
    }

    /// The CRM options of a choice output, after the value map.
    pub fn options(&self, model: &Model) -> Vec<String> {
        self.value
            .options(model)
            .into_iter()
            .map(|o| self.map.get(&o).cloned().unwrap_or(o))
            .collect()
    }

    /// The text to write for a scorecard, after the value map.
    pub fn render(&self, model: &Model, card: &crate::Scorecard) -> Option<String> {
        self.value
            .render(model, card)
            .map(|v| self.map.get(&v).cloned().unwrap_or(v))
    }
}

/// A validated connection with its compiled model.
#[derive(Debug)]
pub struct Connection {
    pub model_path: PathBuf,
    pub model: Model,
    pub crm: CrmSettings,
    pub limits: Limits,
    /// One per model property, explicit or defaulted.
    pub inputs: Vec<Input>,
    /// Event type → source, for every event type the model reads.
    pub events: BTreeMap<String, EventSource>,
    /// Outputs on the contact (or prospect).
    pub outputs: Vec<Output>,
    /// Outputs on the company (HubSpot): company scores' values.
    pub company_outputs: Vec<Output>,
    pub daemon: DaemonSettings,
    /// HubSpot webhook deliveries to the daemon (`[webhooks]`).
    pub webhooks: Option<webhooks::Webhooks>,
    /// How prospects are grouped into accounts (`[accounts]`): set when
    /// the CRM has no account object (Pardot) and the model scores
    /// companies.
    pub accounts: Option<accounts::Accounts>,
    /// Where the connection's state lives (`[state]`).
    pub state: state::StateStore,
}

/// When the daemon runs a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// A cron expression with seconds (six fields, UTC).
    Cron(String),
    /// A fixed interval from the daemon's start.
    Every(Duration),
    Off,
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Cron(expr) => write!(f, "cron {expr:?} (UTC)"),
            Schedule::Every(every) => write!(f, "every {}s", every.as_secs()),
            Schedule::Off => f.write_str("off"),
        }
    }
}

/// `[daemon]`: schedules and the local HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSettings {
    /// Incremental passes (changes since the watermark).
    pub incremental: Schedule,
    /// Rescore passes (every stored record, for decay).
    pub rescore: Schedule,
    /// `/healthz` and `/metrics`; `None` when off.
    pub listen: Option<std::net::SocketAddr>,
    /// `/healthz` reports degraded when the last successful run is older.
    pub stale_after: Duration,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            incremental: Schedule::Every(Duration::from_secs(15 * 60)),
            rescore: Schedule::Cron("0 30 3 * * *".to_owned()),
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9187))),
            stale_after: Duration::from_secs(90 * 60),
        }
    }
}

/// Why a connection could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
}

impl Connection {
    /// Reads a connection file and the model it names, and validates both.
    pub fn load(path: &Path) -> Result<Connection, LoadError> {
        let shown = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|source| LoadError::Unreadable {
            path: shown.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Connection::parse(&shown, &source, base, None)
    }

    /// Validates connection text. The model is read from `model` relative
    /// to `base`, unless `model` is given already compiled.
    pub fn parse(
        file: &str,
        source: &str,
        base: &Path,
        model: Option<(PathBuf, Model)>,
    ) -> Result<Connection, LoadError> {
        let mut d = Diagnostics::new(file, source);
        let (root, syntax_errors) = DeTable::parse_recoverable(source);
        for error in &syntax_errors {
            d.toml(error, &(0..0));
        }
        if !syntax_errors.is_empty() {
            return Err(finish(d).into());
        }
        let root_span = root.span();
        let mut root = root.into_inner();
        let model_value = root.remove("model");
        let crm_value = root.remove("crm");
        let limits_value = root.remove("limits");
        let inputs_value = root.remove("inputs");
        let events_value = root.remove("events");
        let outputs_value = root.remove("output");
        let daemon_value = root.remove("daemon");
        let webhooks_value = root.remove("webhooks");
        let accounts_value = root.remove("accounts");
        let state_value = root.remove("state");
        for (key, _) in root.iter() {
            d.error(
                &key.span(),
                format!(
                    "unknown section `{}`, expected one of {TOP_LEVEL}",
                    key.get_ref()
                ),
            );
        }

        // The model first: everything else is checked against it.
        let model = match (model, model_value) {
            (Some(given), _) => Some(given),
            (None, None) => {
                d.error(
                    &root_span,
                    "no `model`: name the model file, e.g. model = \"b2b.toml\"",
                );
                None
            }
            (None, Some(value)) => {
                let span = value.span();
                match d.decode::<String>(value) {
                    Some(relative) => {
                        let path = base.join(&relative);
                        match std::fs::read_to_string(&path) {
                            Ok(text) => match Model::compile(&path.display().to_string(), &text) {
                                Ok(model) => Some((path, model)),
                                Err(errors) => return Err(errors.into()),
                            },
                            Err(e) => {
                                d.error(
                                    &span,
                                    format!("cannot read model {}: {e}", path.display()),
                                );
                                None
                            }
                        }
                    }
                    None => None,
                }
            }
        };

        let crm = match crm_value {
            Some(value) => d.decode::<RawCrm>(value).map(|raw| {
                let tier = raw
                    .account_tier
                    .as_ref()
                    .map_or("", |t| t.get_ref().as_str())
                    .to_owned();
                let kind = crm_kind(&mut d, &raw);
                let settings = kind.and_then(|kind| crm_settings(&mut d, raw, kind));
                (kind, tier, settings)
            }),
            None => {
                d.error(
                    &root_span,
                    "no [crm] section: say which CRM, e.g. kind = \"hubspot\"",
                );
                None
            }
        };
        let raw_limits: RawLimits = match limits_value {
            Some(value) => d.decode(value).unwrap_or_default(),
            None => RawLimits::default(),
        };
        let raw_inputs: BTreeMap<String, Spanned<RawInput>> = match inputs_value {
            Some(value) => d.decode(value).unwrap_or_default(),
            None => BTreeMap::new(),
        };
        let raw_events: BTreeMap<String, Spanned<String>> = match events_value {
            Some(value) => d.decode(value).unwrap_or_default(),
            None => BTreeMap::new(),
        };
        let raw_outputs = match outputs_value {
            Some(value) => array_of_tables(&mut d, value, "output")
                .into_iter()
                .filter_map(|v| d.decode::<RawOutput>(v))
                .collect(),
            None => Vec::new(),
        };

        let raw_daemon: RawDaemon = match daemon_value {
            Some(value) => d.decode(value).unwrap_or_default(),
            None => RawDaemon::default(),
        };
        let incremental_span = raw_daemon
            .incremental
            .as_ref()
            .map_or(root_span.clone(), Spanned::span);
        let daemon = daemon(&mut d, raw_daemon);
        let raw_webhooks: Option<webhooks::RawWebhooks> =
            webhooks_value.and_then(|value| d.decode(value));
        let raw_state = state_value.and_then(|value| d.decode(value));
        let store = state::state(&mut d, raw_state);
        let raw_accounts = accounts_value.and_then(|value| {
            let span = value.span();
            d.decode::<accounts::RawAccounts>(value)
                .map(|raw| (span, raw))
        });

        let (Some((model_path, model)), Some((Some(kind), tier, settings))) = (model, crm) else {
            return Err(finish(d).into());
        };
        let limits = limits(&mut d, raw_limits, kind, &tier);
        let (inputs, derived_sources) = inputs(&mut d, &model, kind, raw_inputs);
        let mut events = events(&mut d, &model, kind, raw_events);
        events.extend(derived_sources);
        let (company_outputs, outputs): (Vec<Output>, Vec<Output>) =
            outputs(&mut d, &model, kind, raw_outputs)
                .into_iter()
                .partition(|o| o.object == Object::Company);
        let webhooks = raw_webhooks.and_then(|raw| webhooks::webhooks(&mut d, raw, kind, &daemon));
        let accounts = accounts::accounts(&mut d, raw_accounts, kind, &model);
        if kind == CrmKind::Pardot {
            // Pardot has no webhooks: a short interval must fit the budget.
            let idle = webhooks::idle_pass_calls(kind, events.len() as u64, false, false);
            webhooks::check_budget(&mut d, &incremental_span, &daemon, &limits, idle);
        }
        let (Some(crm), false) = (settings, d.has_errors()) else {
            return Err(finish(d).into());
        };
        Ok(Connection {
            model_path,
            model,
            crm,
            limits,
            inputs,
            events,
            outputs,
            company_outputs,
            daemon,
            webhooks,
            accounts,
            state: store,
        })
    }

    /// Points the connection at another base URL (`--crm-url`, for tests
    /// and staging); a token URL derived from the old base follows it, and
    /// so does Salesforce's login URL when the new base is a local server
    /// (a fake or a proxy must never send our secrets to Salesforce).
    pub fn override_base_url(&mut self, url: &str) -> Result<(), String> {
        let url = url.trim_end_matches('/');
        let is_local = is_loopback(url);
        if !url.starts_with("https://") && !is_local {
            return Err(format!(
                "--crm-url {url}: expected an https:// URL, or http:// on a loopback address"
            ));
        }
        let old = std::mem::replace(&mut self.crm.base_url, url.to_owned());
        if let Auth::Oauth { token_url, .. } = &mut self.crm.auth {
            if let Some(rest) = token_url.strip_prefix(&old) {
                *token_url = format!("{url}{rest}");
            } else if is_local
                && let Some(rest) = SALESFORCE_LOGINS
                    .iter()
                    .find_map(|login| token_url.strip_prefix(login))
            {
                *token_url = format!("{url}{rest}");
            }
        }
        Ok(())
    }

    /// The CRM account this connection talks to, as local state records
    /// it (state made for one account is never used for another). A local
    /// test server's port is left out: it changes between starts.
    pub fn identity(&self) -> String {
        let mut base = self.crm.base_url.as_str();
        for local in ["http://127.0.0.1", "http://localhost", "http://[::1]"] {
            if base.starts_with(local) {
                base = local;
            }
        }
        match &self.crm.business_unit_id {
            Some(unit) => format!("{} {base} {unit}", self.crm.kind.as_str()),
            None => format!("{} {base}", self.crm.kind.as_str()),
        }
    }

    /// The output properties as `setup` creates them.
    pub fn property_specs(&self) -> Vec<crate::crm::PropertySpec> {
        self.outputs
            .iter()
            .chain(&self.company_outputs)
            .map(|o| crate::crm::PropertySpec {
                object: o.object,
                name: o.property.clone(),
                label: o.label.clone(),
                kind: o.kind(),
                options: o.options(&self.model),
            })
            .collect()
    }

    /// The CRM fields a pull must request: every mapped input and every
    /// output property (to compare with what would be written).
    pub fn fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = self
            .inputs
            .iter()
            .filter(|i| i.derived.is_none() && i.origin == Origin::Contact)
            .map(|i| i.field.clone())
            .chain(self.outputs.iter().map(|o| o.property.clone()))
            .collect();
        match &self.accounts {
            // Pardot: the fields prospects are grouped into accounts by.
            Some(accounts) => fields.extend(accounts.fields().map(str::to_owned)),
            None if !self.company_fields().is_empty() || self.model.has_company_scores() => {
                fields.push(COMPANY_ID.to_owned());
            }
            None => {}
        }
        fields.sort();
        fields.dedup();
        fields
    }

    /// The company properties a pull must read for the model's
    /// company-origin inputs (none: no company calls at all).
    pub fn company_fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = self
            .inputs
            .iter()
            .filter(|i| i.derived.is_none() && i.origin == Origin::Company)
            .map(|i| i.field.clone())
            .collect();
        fields.sort();
        fields.dedup();
        fields
    }

    /// The CRM fields the model's inputs read from one object (derived
    /// and switched-off inputs read none), with the model input each feeds.
    pub fn input_fields(&self, origin: Origin) -> Vec<(String, String)> {
        self.inputs
            .iter()
            .filter(|i| i.derived.is_none() && i.origin == origin)
            .map(|i| {
                let input = match i.scope {
                    crate::model::Scope::Company => format!("company.{}", i.name),
                    crate::model::Scope::Contact => i.name.clone(),
                };
                (i.field.clone(), input)
            })
            .collect()
    }

    /// How far back occurrences of a connection event type can still
    /// change a score (ms; `None`: all history). Derived inputs count
    /// every occurrence, so they read all history.
    pub fn horizon(&self, event_type: &str) -> Option<i64> {
        if event_type.starts_with(DERIVED_PREFIX) {
            None
        } else {
            self.model.event_horizon(event_type)
        }
    }

    /// The list names the model's `list` conditions read.
    pub fn lists(&self) -> Vec<String> {
        self.model.list_names().map(str::to_owned).collect()
    }
}

fn finish(d: Diagnostics<'_>) -> ConfigErrors {
    match d.finish() {
        Err(errors) => errors,
        Ok(_) => ConfigErrors(Vec::new()),
    }
}

fn array_of_tables<'i>(
    d: &mut Diagnostics<'_>,
    value: Spanned<DeValue<'i>>,
    key: &str,
) -> Vec<Spanned<DeValue<'i>>> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => items
            .into_iter()
            .filter(|item| {
                let ok = item.get_ref().is_table();
                if !ok {
                    d.error(
                        &item.span(),
                        format!("`{key}` entries must be tables, written as [[{key}]]"),
                    );
                }
                ok
            })
            .collect(),
        _ => {
            d.error(
                &span,
                format!("`{key}` must be an array of tables, written as [[{key}]]"),
            );
            Vec::new()
        }
    }
}

fn secret(d: &mut Diagnostics<'_>, raw: &Spanned<RawSecret>, what: &str) -> Option<SecretSource> {
    let s = raw.get_ref();
    let given: Vec<SecretSource> = [
        s.credential.clone().map(SecretSource::Credential),
        s.file.clone().map(|f| SecretSource::File(PathBuf::from(f))),
        s.env.clone().map(SecretSource::Env),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() != 1 {
        d.error(
            &raw.span(),
            format!(
                "{what}: give exactly one of credential, file or env (secrets never go in this file)"
            ),
        );
        return None;
    }
    given.into_iter().next()
}

fn http_url(d: &mut Diagnostics<'_>, value: &Spanned<String>, what: &str) -> Option<String> {
    let text = value.get_ref().trim_end_matches('/');
    if text.starts_with("https://")
        || text.starts_with("http://127.0.0.1")
        || text.starts_with("http://localhost")
        || text.starts_with("http://[::1]")
    {
        Some(text.to_owned())
    } else {
        d.error(
            &value.span(),
            format!("{what}: expected an https:// URL (plain http only for a local test server), got {text:?}"),
        );
        None
    }
}

fn crm_kind(d: &mut Diagnostics<'_>, raw: &RawCrm) -> Option<CrmKind> {
    match raw.kind.get_ref().as_str() {
        "hubspot" => Some(CrmKind::Hubspot),
        "pardot" | "account_engagement" => Some(CrmKind::Pardot),
        other => {
            d.error(
                &raw.kind.span(),
                format!("unknown CRM kind `{other}`, expected hubspot or pardot"),
            );
            None
        }
    }
}

fn crm_settings(d: &mut Diagnostics<'_>, raw: RawCrm, kind: CrmKind) -> Option<CrmSettings> {
    let default_url = match kind {
        CrmKind::Hubspot => "https://api.hubapi.com",
        CrmKind::Pardot => "https://pi.pardot.com",
    };
    let base_url = match &raw.base_url {
        Some(url) => http_url(d, url, "base_url")?,
        None => default_url.to_owned(),
    };
    let api_version = raw
        .api_version
        .as_ref()
        .map_or(
            match kind {
                CrmKind::Hubspot => "v3",
                CrmKind::Pardot => "v5",
            },
            |v| v.get_ref().as_str(),
        )
        .to_owned();
    if let Some(version) = &raw.api_version {
        let ok = match kind {
            CrmKind::Hubspot => version.get_ref() == "v3",
            CrmKind::Pardot => version.get_ref() == "v5",
        };
        if !ok {
            d.error(
                &version.span(),
                format!(
                    "api_version `{}` is not supported for {}: use {}",
                    version.get_ref(),
                    kind.as_str(),
                    if kind == CrmKind::Hubspot { "v3" } else { "v5" }
                ),
            );
        }
    }
    let tiers: &[&str] = match kind {
        CrmKind::Hubspot => &[
            "free",
            "starter",
            "professional",
            "enterprise",
            "api_limit_increase",
        ],
        CrmKind::Pardot => &["growth", "plus", "advanced", "premium"],
    };
    if let Some(t) = &raw.account_tier
        && !tiers.contains(&t.get_ref().as_str())
    {
        d.error(
            &t.span(),
            format!(
                "unknown account_tier `{}` for {}, expected one of {}",
                t.get_ref(),
                kind.as_str(),
                tiers.join(", ")
            ),
        );
    }
    let auth = match (&raw.token, &raw.oauth) {
        (Some(token), None) => Auth::Token(secret(d, token, "token")?),
        (None, Some(oauth)) => oauth_settings(d, oauth, kind, &base_url)?,
        (Some(token), Some(_)) => {
            d.error(&token.span(), "give either token or oauth, not both");
            return None;
        }
        (None, None) => {
            d.error(
                &raw.kind.span(),
                "no credentials: add token = { credential = \"...\" } or an [crm.oauth] table",
            );
            return None;
        }
    };
    let business_unit_id = raw.business_unit_id.as_ref().map(|b| b.get_ref().clone());
    match (kind, &raw.business_unit_id) {
        (CrmKind::Pardot, None) => {
            d.error(
                &raw.kind.span(),
                "Pardot needs business_unit_id (the 18-character id starting with 0Uv)",
            );
        }
        (CrmKind::Pardot, Some(unit))
            if unit.get_ref().len() != 18 || !unit.get_ref().starts_with("0Uv") =>
        {
            d.error(
                &unit.span(),
                "business_unit_id must be the 18-character id starting with 0Uv",
            );
        }
        (CrmKind::Hubspot, Some(unit)) => {
            d.error(&unit.span(), "business_unit_id is for Pardot only");
        }
        _ => {}
    }
    let timezone = raw
        .timezone
        .as_ref()
        .map_or("UTC", |t| t.get_ref().as_str())
        .to_owned();
    if let Some(tz) = &raw.timezone
        && account_zone(tz.get_ref()).is_none()
    {
        d.error(
            &tz.span(),
            format!(
                "unknown time zone `{}` (use an IANA name such as Europe/Oslo, or a fixed offset such as UTC+05:30)",
                tz.get_ref()
            ),
        );
    }
    Some(CrmSettings {
        kind,
        base_url,
        api_version,
        auth,
        business_unit_id,
        timezone,
    })
}

fn oauth_settings(
    d: &mut Diagnostics<'_>,
    raw: &Spanned<RawOauth>,
    kind: CrmKind,
    base_url: &str,
) -> Option<Auth> {
    let o = raw.get_ref();
    let client_secret = secret(d, &o.client_secret, "oauth.client_secret")?;
    let grant = o
        .grant
        .as_ref()
        .map_or("refresh_token", |g| g.get_ref().as_str());
    let refresh_token = match (&o.refresh_token, grant, kind) {
        (Some(token), "refresh_token", _) => Some(secret(d, token, "oauth.refresh_token")?),
        (None, "client_credentials", CrmKind::Pardot) => None,
        (Some(token), "client_credentials", _) => {
            d.error(
                &token.span(),
                "the client_credentials grant takes no refresh_token",
            );
            return None;
        }
        (None, "refresh_token", _) => {
            d.error(
                &raw.span(),
                "oauth: refresh_token is required for the refresh_token grant",
            );
            return None;
        }
        (_, other, _) => {
            let span = o.grant.as_ref().map_or(raw.span(), Spanned::span);
            d.error(
                &span,
                format!(
                    "unknown grant `{other}`: {}",
                    if kind == CrmKind::Pardot {
                        "use refresh_token or client_credentials"
                    } else {
                        "HubSpot uses refresh_token"
                    }
                ),
            );
            return None;
        }
    };
    let token_url = match &o.token_url {
        Some(url) => http_url(d, url, "oauth.token_url")?,
        None => match kind {
            CrmKind::Hubspot => format!("{base_url}/oauth/v1/token"),
            // A local server (a fake, a proxy) gets the token requests too:
            // secrets never leave for Salesforce from a loopback setup.
            CrmKind::Pardot if is_loopback(base_url) => {
                format!("{base_url}/services/oauth2/token")
            }
            CrmKind::Pardot => format!("{}/services/oauth2/token", SALESFORCE_LOGINS[0]),
        },
    };
    Some(Auth::Oauth {
        client_id: o.client_id.get_ref().clone(),
        client_secret,
        refresh_token,
        token_url,
    })
}

fn limits(d: &mut Diagnostics<'_>, raw: RawLimits, kind: CrmKind, tier: &str) -> Limits {
    let mut limits = Limits::defaults(kind, tier);
    let int = |d: &mut Diagnostics<'_>,
               v: &Option<Spanned<i64>>,
               min: i64,
               max: i64,
               name: &str|
     -> Option<i64> {
        let v = v.as_ref()?;
        let n = *v.get_ref();
        if (min..=max).contains(&n) {
            Some(n)
        } else {
            d.error(
                &v.span(),
                format!("{name} must be between {min} and {max}, got {n}"),
            );
            None
        }
    };
    if let Some(n) = int(d, &raw.per_ten_seconds, 1, 10_000, "per_ten_seconds") {
        limits.per_ten_seconds = n as u32;
    }
    if let Some(n) = int(d, &raw.search_per_second, 1, 1_000, "search_per_second") {
        limits.search_per_second = n as u32;
    }
    if let Some(n) = int(d, &raw.daily, 1, 100_000_000, "daily") {
        limits.daily = n as u64;
    }
    if let Some(n) = int(d, &raw.concurrency, 1, 64, "concurrency") {
        limits.concurrency = n as usize;
    }
    if kind == CrmKind::Pardot && limits.concurrency > 5 {
        let span = raw.concurrency.as_ref().map_or(0..0, Spanned::span);
        d.error(&span, "Pardot allows at most 5 concurrent requests");
    }
    if let Some(n) = int(d, &raw.max_attempts, 1, 20, "max_attempts") {
        limits.max_attempts = n as u32;
    }
    if let Some(n) = int(d, &raw.backoff_base_ms, 1, 60_000, "backoff_base_ms") {
        limits.backoff_base = Duration::from_millis(n as u64);
    }
    let secs = |d: &mut Diagnostics<'_>,
                v: &Option<Spanned<f64>>,
                min: f64,
                max: f64,
                name: &str|
     -> Option<Duration> {
        let v = v.as_ref()?;
        let n = *v.get_ref();
        if (min..=max).contains(&n) {
            Some(Duration::from_secs_f64(n))
        } else {
            d.error(
                &v.span(),
                format!("{name} must be between {min} and {max}, got {n}"),
            );
            None
        }
    };
    if let Some(t) = secs(
        d,
        &raw.connect_timeout_secs,
        0.1,
        300.0,
        "connect_timeout_secs",
    ) {
        limits.connect_timeout = t;
    }
    if let Some(t) = secs(
        d,
        &raw.request_timeout_secs,
        0.1,
        3600.0,
        "request_timeout_secs",
    ) {
        limits.request_timeout = t;
    }
    if let Some(t) = secs(d, &raw.backoff_max_secs, 0.0, 3600.0, "backoff_max_secs") {
        limits.backoff_max = t;
    }
    if let Some(t) = secs(
        d,
        &raw.rate_interval_secs,
        0.1,
        3600.0,
        "rate_interval_secs",
    ) {
        limits.interval = t;
    }
    if let Some(t) = secs(
        d,
        &raw.search_overlap_secs,
        0.0,
        86_400.0,
        "search_overlap_secs",
    ) {
        limits.search_overlap = t;
    }
    if let Some(t) = secs(
        d,
        &raw.daily_reset_probe_secs,
        1.0,
        7_200.0,
        "daily_reset_probe_secs",
    ) {
        limits.daily_reset_probe = t;
    }
    let megabytes = |d: &mut Diagnostics<'_>, v: &Option<Spanned<f64>>, name: &str| {
        let v = v.as_ref()?;
        let n = *v.get_ref();
        if (0.01..=4096.0).contains(&n) {
            Some((n * MB as f64) as usize)
        } else {
            d.error(
                &v.span(),
                format!("{name} must be between 0.01 and 4096, got {n}"),
            );
            None
        }
    };
    if let Some(n) = megabytes(d, &raw.max_answer_mb, "max_answer_mb") {
        limits.max_answer_bytes = n;
    }
    if let Some(n) = megabytes(d, &raw.max_export_mb, "max_export_mb") {
        limits.max_export_bytes = n;
    }
    if let Some(v) = &raw.event_reads {
        match v.get_ref().as_str() {
            "auto" => limits.event_reads = EventReads::Auto,
            "streams" => limits.event_reads = EventReads::Streams,
            "per_record" => limits.event_reads = EventReads::PerRecord,
            other => {
                d.error(
                    &v.span(),
                    format!(
                        "event_reads must be \"auto\", \"streams\" or \"per_record\", got {other:?}"
                    ),
                );
            }
        }
    }
    if let Some(p) = &raw.daily_headroom_percent {
        let n = *p.get_ref();
        if (0.0..=90.0).contains(&n) {
            limits.daily_headroom = n / 100.0;
        } else {
            d.error(
                &p.span(),
                format!("daily_headroom_percent must be between 0 and 90, got {n}"),
            );
        }
    }
    limits
}

/// The model's inputs, and the event sources derived inputs need.
fn inputs(
    d: &mut Diagnostics<'_>,
    model: &Model,
    crm: CrmKind,
    mut raw: BTreeMap<String, Spanned<RawInput>>,
) -> (Vec<Input>, BTreeMap<String, EventSource>) {
    let mut out = Vec::new();
    let mut derived_sources = BTreeMap::new();
    for property in model.properties() {
        let (scope, name) = match property.strip_prefix("company.") {
            Some(rest) => (Scope::Company, rest.to_owned()),
            None => (Scope::Contact, property.clone()),
        };
        // HubSpot keeps company facts on the Company object; Pardot on the
        // prospect.
        let default_origin = match (crm, scope) {
            (CrmKind::Hubspot, Scope::Company) => Origin::Company,
            _ => Origin::Contact,
        };
        let (field, kind, origin) = match raw.remove(&property) {
            None => (name.clone(), FieldType::Text, default_origin),
            Some(spanned) => {
                let span = spanned.span();
                match spanned.into_inner() {
                    // The CRM has no such field: the model sees none.
                    RawInput::Field(field) if field == "off" => continue,
                    RawInput::Field(field) => (field, FieldType::Text, default_origin),
                    RawInput::Table(table) if table.count.is_some() || table.latest.is_some() => {
                        let (how, text, kind) = match (&table.count, &table.latest) {
                            (Some(text), None) => (DeriveHow::Count, text, FieldType::Number),
                            (None, Some(text)) => (DeriveHow::Latest, text, FieldType::Time),
                            _ => {
                                d.error(
                                    &span,
                                    format!("`{property}`: take either count or latest, not both"),
                                );
                                continue;
                            }
                        };
                        if table.field.is_some() || table.kind.is_some() || table.from.is_some() {
                            d.error(&span, format!("`{property}`: an input computed from events takes no field, type or from"));
                        }
                        match parse_source(crm, text) {
                            Ok(source) => {
                                let event_type = format!("{DERIVED_PREFIX}{property}");
                                derived_sources.insert(event_type.clone(), source);
                                out.push(Input {
                                    scope,
                                    name,
                                    field: String::new(),
                                    kind,
                                    derived: Some(Derived { how, event_type }),
                                    origin: Origin::Contact,
                                });
                            }
                            Err(message) => {
                                d.error(&span, format!("[inputs] {property}: {message}"))
                            }
                        }
                        continue;
                    }
                    RawInput::Table(table) => {
                        let kind = match table.kind.as_deref() {
                            None | Some("text") => FieldType::Text,
                            Some("number") => FieldType::Number,
                            Some("bool" | "boolean") => FieldType::Bool,
                            Some("datetime" | "date") => FieldType::Time,
                            Some("multi" | "multiselect") => FieldType::Multi,
                            Some(other) => {
                                d.error(&span, format!("`{property}`: unknown type `{other}`, expected text, number, bool, datetime or multi"));
                                FieldType::Text
                            }
                        };
                        let origin = match (table.from.as_deref(), crm) {
                            (None, _) => default_origin,
                            (Some("contact" | "prospect"), _) => Origin::Contact,
                            (Some("company"), CrmKind::Hubspot) => Origin::Company,
                            (Some("company"), CrmKind::Pardot) => {
                                d.error(&span, format!("`{property}`: Pardot keeps company facts on the prospect; drop `from` (or say from = \"prospect\")"));
                                Origin::Contact
                            }
                            (Some(other), _) => {
                                d.error(&span, format!("`{property}`: unknown from = \"{other}\", expected \"contact\" or \"company\""));
                                default_origin
                            }
                        };
                        (table.field.unwrap_or_else(|| name.clone()), kind, origin)
                    }
                }
            }
        };
        if field.is_empty() {
            d.error(
                &(0..0),
                format!("`{property}`: the CRM field name is empty"),
            );
        }
        out.push(Input {
            scope,
            name,
            field,
            kind,
            derived: None,
            origin,
        });
    }
    for (extra, value) in raw {
        d.error(
            &value.span(),
            format!("[inputs] `{extra}`: the model reads no such property, so nothing maps to it"),
        );
    }
    (out, derived_sources)
}

/// Sources for event types when `[events]` does not say.
fn default_source(kind: CrmKind, event_type: &str) -> Option<EventSource> {
    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
    let activity =
        |types: &[u32], with: Option<&str>, without: Option<&str>| EventSource::PardotActivity {
            types: types.to_vec(),
            with: with.map(str::to_owned),
            without: without.map(str::to_owned),
        };
    Some(match (kind, event_type) {
        (CrmKind::Hubspot, "form_submission") => EventSource::HubspotForms,
        (CrmKind::Hubspot, "email_open") => EventSource::HubspotEmail(strings(&["OPEN"])),
        (CrmKind::Hubspot, "email_click") => EventSource::HubspotEmail(strings(&["CLICK"])),
        (CrmKind::Hubspot, "email_unsubscribe") => {
            EventSource::HubspotEmail(strings(&["STATUSCHANGE"]))
        }
        (CrmKind::Hubspot, "page_view") => EventSource::HubspotWeb(strings(&["e_visited_page"])),
        (CrmKind::Hubspot, "cta_click") => EventSource::HubspotWeb(strings(&["e_clicked_cta"])),
        (CrmKind::Hubspot, "ad_click") => EventSource::HubspotWeb(strings(&["e_ad_interaction"])),
        (CrmKind::Hubspot, "content_download") => {
            EventSource::HubspotWeb(strings(&["pe_content_download"]))
        }
        (CrmKind::Hubspot, "webinar") => EventSource::HubspotWeb(strings(&["pe_webinar_attended"])),
        (CrmKind::Hubspot, "meeting") => EventSource::HubspotWeb(strings(&["e_meeting_booked"])),
        (CrmKind::Pardot, "email_click") => activity(&[1], Some("emailId"), None),
        (CrmKind::Pardot, "page_view") => activity(&[2], None, Some("fileId")),
        (CrmKind::Pardot, "content_download") => activity(&[2], Some("fileId"), None),
        (CrmKind::Pardot, "form_error") => activity(&[3], None, None),
        (CrmKind::Pardot, "form_submission") => activity(&[4], None, None),
        (CrmKind::Pardot, "email_open") => activity(&[11], None, None),
        (CrmKind::Pardot, "email_unsubscribe") => activity(&[12], None, None),
        // Tracked links in ads count as third-party clicks; custom
        // redirects are the links on your own calls to action.
        (CrmKind::Pardot, "ad_click") => activity(&[17], None, None),
        (CrmKind::Pardot, "cta_click") => activity(&[21], None, None),
        (CrmKind::Pardot, "webinar") => activity(&[24], None, None),
        _ => return None,
    })
}

/// Parses `forms`, `email:OPEN,CLICK`, `web:e_visited_page`,
/// `activity:2+fileId`, `activity:2-fileId`, `activity:11,1`.
fn parse_source(kind: CrmKind, text: &str) -> Result<EventSource, String> {
    let (source, rest) = text.split_once(':').unwrap_or((text, ""));
    let list = |rest: &str| -> Vec<String> {
        rest.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    match (kind, source) {
        (CrmKind::Hubspot, "forms") if rest.is_empty() => Ok(EventSource::HubspotForms),
        (CrmKind::Hubspot, "email") if !list(rest).is_empty() => Ok(EventSource::HubspotEmail(
            list(rest).iter().map(|s| s.to_uppercase()).collect(),
        )),
        (CrmKind::Hubspot, "web") if !list(rest).is_empty() => {
            Ok(EventSource::HubspotWeb(list(rest)))
        }
        (CrmKind::Pardot, "activity") => {
            let (codes, with, without) = if let Some((codes, field)) = rest.split_once('+') {
                (codes, Some(field.to_owned()), None)
            } else if let Some((codes, field)) = rest.split_once('-') {
                (codes, None, Some(field.to_owned()))
            } else {
                (rest, None, None)
            };
            let types: Result<Vec<u32>, _> = list(codes).iter().map(|c| c.parse::<u32>()).collect();
            match types {
                Ok(types) if !types.is_empty() => Ok(EventSource::PardotActivity {
                    types,
                    with,
                    without,
                }),
                _ => Err(format!(
                    "`{text}`: expected activity:<type codes>, e.g. activity:2+fileId"
                )),
            }
        }
        (CrmKind::Hubspot, _) => Err(format!(
            "`{text}`: expected forms, email:<TYPES> or web:<event types> for HubSpot"
        )),
        (CrmKind::Pardot, _) => Err(format!(
            "`{text}`: expected activity:<type codes> for Pardot"
        )),
    }
}

fn events(
    d: &mut Diagnostics<'_>,
    model: &Model,
    kind: CrmKind,
    mut raw: BTreeMap<String, Spanned<String>>,
) -> BTreeMap<String, EventSource> {
    let mut out = BTreeMap::new();
    for event_type in model.event_types() {
        if event_type == "any" {
            continue;
        }
        match raw.remove(event_type) {
            // Not fetched: the model sees none of these events.
            Some(text) if text.get_ref().trim() == "off" => {}
            Some(text) => match parse_source(kind, text.get_ref()) {
                Ok(source) => {
                    out.insert(event_type.to_owned(), source);
                }
                Err(message) => d.error(&text.span(), format!("[events] {event_type}: {message}")),
            },
            None => match default_source(kind, event_type) {
                Some(source) => {
                    out.insert(event_type.to_owned(), source);
                }
                None => d.error(
                    &(0..0),
                    format!(
                        "the model reads `{event_type}` events but no source is known for them on {}: add it under [events]",
                        kind.as_str()
                    ),
                ),
            },
        }
    }
    for (extra, value) in raw {
        d.error(
            &value.span(),
            format!("[events] `{extra}`: the model reads no such event type"),
        );
    }
    out
}

/// CRM properties leadscored must never write.
fn forbidden(kind: CrmKind, property: &str) -> Option<&'static str> {
    match kind {
        CrmKind::Hubspot if property == "hubspotscore" => {
            Some("hubspotscore is HubSpot's own legacy score (frozen since 2025-08-31)")
        }
        CrmKind::Hubspot if property.starts_with("hs_") && property != "hs_lead_status" => {
            Some("hs_ properties belong to HubSpot (its lead scoring, analytics and system fields)")
        }
        CrmKind::Pardot if property == "grade" => {
            Some("Pardot's grade is read-only: write the grade to a custom field")
        }
        CrmKind::Pardot if property == "score" => Some(
            "Pardot's own score is changed by its scoring rules: write to a custom field (Name__c), or say native = true to replace it on purpose",
        ),
        _ => None,
    }
}

fn outputs(
    d: &mut Diagnostics<'_>,
    model: &Model,
    kind: CrmKind,
    raw: Vec<RawOutput>,
) -> Vec<Output> {
    let mut out: Vec<Output> = Vec::new();
    let none_written = raw.is_empty();
    for o in raw {
        let property = o.property.get_ref().clone();
        let at: Range<usize> = o.property.span();
        let native = o.native.as_ref().is_some_and(|n| *n.get_ref());
        let native_score = native && kind == CrmKind::Pardot && property == "score";
        if native && !native_score {
            let span = o.native.as_ref().map_or(at.clone(), Spanned::span);
            d.error(
                &span,
                format!("`{property}`: native = true applies only to Pardot's own `score`"),
            );
            continue;
        }
        if let Some(why) = forbidden(kind, &property).filter(|_| !native_score) {
            d.error(&at, format!("`{property}` cannot be an output: {why}"));
            continue;
        }
        if kind == CrmKind::Pardot && !property.ends_with("__c") && property != "score" {
            d.error(
                &at,
                format!(
                    "`{property}`: Pardot outputs go to custom fields, named like Lead_Score__c"
                ),
            );
            continue;
        }
        if out.iter().any(|p| p.property == property) {
            d.error(&at, format!("`{property}` is written by two outputs"));
            continue;
        }
        let value = match OutputValue::parse(model, o.value.get_ref()) {
            Ok(v) => v,
            Err(message) => {
                d.error(&o.value.span(), message);
                continue;
            }
        };
        let of_company = value
            .score()
            .is_some_and(|i| model.score_object(i) == Object::Company);
        // Pardot has no account object: a company score's values go onto
        // every prospect of the account.
        let company_object = of_company && kind == CrmKind::Hubspot;
        let object = match o.object.as_ref().map(|w| w.get_ref().trim()) {
            None if company_object => Object::Company,
            Some("company") if of_company && kind == CrmKind::Pardot => {
                let span = o.object.as_ref().map_or(at.clone(), Spanned::span);
                d.error(
                    &span,
                    format!("`{property}`: Account Engagement (Pardot) has no account object to write to; a company score's values go onto every prospect of the account, so drop object (or say object = \"contact\")"),
                );
                continue;
            }
            None | Some("contact") => Object::Contact,
            Some("company") if of_company => Object::Company,
            Some("company") => {
                let span = o.object.as_ref().map_or(at.clone(), Spanned::span);
                d.error(
                    &span,
                    format!("`{property}`: only a company score's values go to the company, and `{}` is a contact's", o.value.get_ref()),
                );
                continue;
            }
            Some(other) => {
                let span = o.object.as_ref().map_or(at.clone(), Spanned::span);
                d.error(
                    &span,
                    format!("unknown object `{other}`, expected contact or company"),
                );
                continue;
            }
        };
        let builtin_status = matches!(property.as_str(), "hs_lead_status" | "lifecyclestage");
        let overwrite = match o.overwrite.as_ref().map(|w| w.get_ref().as_str()) {
            None if builtin_status => Overwrite::IfOurs,
            None | Some("always") => Overwrite::Always,
            Some("if_empty") => Overwrite::IfEmpty,
            Some("if_ours") => Overwrite::IfOurs,
            Some(other) => {
                let span = o.overwrite.as_ref().map_or(at.clone(), Spanned::span);
                d.error(
                    &span,
                    format!("unknown overwrite `{other}`, expected always, if_empty or if_ours"),
                );
                continue;
            }
        };
        let options = value.options(model);
        for key in o.map.keys() {
            if value.kind() != OutputKind::Choice || !options.contains(key) {
                d.error(
                    &o.value.span(),
                    format!(
                        "`{property}`: map has `{key}`, which `{}` never produces{}",
                        o.value.get_ref(),
                        if options.is_empty() {
                            String::new()
                        } else {
                            format!(" (it gives {})", options.join(", "))
                        }
                    ),
                );
            }
        }
        out.push(Output {
            object,
            label: o.label.unwrap_or_else(|| default_label(model, value)),
            property,
            value,
            map: o.map,
            overwrite,
        });
    }
    if none_written {
        d.error(
            &(0..0),
            "no [[output]]: say which scorecard values are written to which CRM properties",
        );
    }
    out
}

fn default_label(model: &Model, value: OutputValue) -> String {
    let score = |i: usize| model.scores.get(i).map_or("", |s| s.label.as_str());
    match value {
        OutputValue::Total(i) => format!("{} (leadscored)", score(i)),
        OutputValue::Fit(i) => format!("{} fit (leadscored)", score(i)),
        OutputValue::Engagement(i) => format!("{} engagement (leadscored)", score(i)),
        OutputValue::Tier(i) => format!("{} tier (leadscored)", score(i)),
        OutputValue::Matrix(i) => format!("{} fit × engagement (leadscored)", score(i)),
        OutputValue::Stage(i) => format!("{} stage (leadscored)", score(i)),
        OutputValue::Summary(i) => format!("{} reasons (leadscored)", score(i)),
        OutputValue::Grade => "Grade (leadscored)".to_owned(),
    }
}

/// Parses a schedule: `off`, `every 15m` (a friendly duration), or a
/// six-field cron expression.
fn schedule(d: &mut Diagnostics<'_>, value: &Spanned<String>, name: &str) -> Option<Schedule> {
    let text = value.get_ref().trim();
    if text == "off" {
        return Some(Schedule::Off);
    }
    if let Some(every) = text.strip_prefix("every ") {
        return match every.trim().parse::<jiff::SignedDuration>() {
            Ok(duration) if duration >= jiff::SignedDuration::from_secs(1) => {
                Some(Schedule::Every(duration.unsigned_abs()))
            }
            Ok(_) => {
                d.error(
                    &value.span(),
                    format!("{name}: the interval must be at least 1s"),
                );
                None
            }
            Err(e) => {
                d.error(
                    &value.span(),
                    format!("{name}: {every:?} is not a duration like 15m or 1h30m: {e}"),
                );
                None
            }
        };
    }
    let fields = text.split_whitespace().count();
    if fields != 6 {
        d.error(
            &value.span(),
            format!(
                "{name}: a cron expression needs six fields (second minute hour day month weekday), got {fields}; or write \"every 15m\" or \"off\""
            ),
        );
        return None;
    }
    match tokio_cron_scheduler::Job::new(text, |_, _| {}) {
        Ok(_) => Some(Schedule::Cron(text.to_owned())),
        Err(e) => {
            d.error(
                &value.span(),
                format!("{name}: {text:?} is not a valid cron expression: {e}"),
            );
            None
        }
    }
}

fn daemon(d: &mut Diagnostics<'_>, raw: RawDaemon) -> DaemonSettings {
    let mut settings = DaemonSettings::default();
    if let Some(value) = &raw.incremental
        && let Some(s) = schedule(d, value, "incremental")
    {
        settings.incremental = s;
    }
    if let Some(value) = &raw.rescore
        && let Some(s) = schedule(d, value, "rescore")
    {
        settings.rescore = s;
    }
    if let Some(value) = &raw.listen {
        let text = value.get_ref().trim();
        if text == "off" {
            settings.listen = None;
        } else {
            match text.parse::<std::net::SocketAddr>() {
                Ok(addr) => settings.listen = Some(addr),
                Err(_) => d.error(
                    &value.span(),
                    format!("listen: {text:?} is not an address like 127.0.0.1:9187 (or \"off\")"),
                ),
            }
        }
    }
    if let Some(value) = &raw.stale_after_minutes {
        let n = *value.get_ref();
        if (1..=10_080).contains(&n) {
            settings.stale_after = Duration::from_secs(n as u64 * 60);
        } else {
            d.error(
                &value.span(),
                format!("stale_after_minutes must be between 1 and 10080, got {n}"),
            );
        }
    }
    settings
}

/// The account's time zone (the daily API limit resets at its midnight): an
/// IANA name, or a fixed offset `UTC±HH:MM[:SS]`.
pub fn account_zone(name: &str) -> Option<jiff::tz::TimeZone> {
    if let Ok(zone) = jiff::tz::TimeZone::get(name) {
        return Some(zone);
    }
    let offset = name.strip_prefix("UTC")?;
    let (sign, rest) = match offset.as_bytes().first()? {
        b'+' => (1, &offset[1..]),
        b'-' => (-1, &offset[1..]),
        _ => return None,
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let numbers: Vec<i32> = parts
        .iter()
        .map(|p| p.parse::<i32>().ok())
        .collect::<Option<_>>()?;
    let (h, m, sec) = (numbers[0], numbers[1], numbers.get(2).copied().unwrap_or(0));
    if h > 25 || m > 59 || sec > 59 {
        return None;
    }
    let offset = jiff::tz::Offset::from_seconds(sign * (h * 3600 + m * 60 + sec)).ok()?;
    Some(jiff::tz::TimeZone::fixed(offset))
}
