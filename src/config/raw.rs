//! The connection file as written: serde structs mirroring the TOML, with
//! spans for validation messages. Only `config::load` sees these.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `[crm]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCrm {
    pub kind: Spanned<String>,
    pub base_url: Option<Spanned<String>>,
    pub api_version: Option<Spanned<String>>,
    pub account_tier: Option<Spanned<String>>,
    pub token: Option<Spanned<RawSecret>>,
    pub oauth: Option<Spanned<RawOauth>>,
    pub business_unit_id: Option<Spanned<String>>,
    /// The account's time zone (the daily limit resets at its midnight).
    pub timezone: Option<Spanned<String>>,
}

/// Where a secret comes from: exactly one of these.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecret {
    pub credential: Option<String>,
    pub file: Option<String>,
    pub env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOauth {
    pub client_id: Spanned<String>,
    pub client_secret: Spanned<RawSecret>,
    pub refresh_token: Option<Spanned<RawSecret>>,
    pub token_url: Option<Spanned<String>>,
    /// Salesforce only: `refresh_token` (default) or `client_credentials`.
    pub grant: Option<Spanned<String>>,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub per_ten_seconds: Option<Spanned<i64>>,
    pub search_per_second: Option<Spanned<i64>>,
    pub daily: Option<Spanned<i64>>,
    pub daily_headroom_percent: Option<Spanned<f64>>,
    pub concurrency: Option<Spanned<i64>>,
    pub max_attempts: Option<Spanned<i64>>,
    pub connect_timeout_secs: Option<Spanned<f64>>,
    pub request_timeout_secs: Option<Spanned<f64>>,
    pub backoff_base_ms: Option<Spanned<i64>>,
    pub backoff_max_secs: Option<Spanned<f64>>,
    pub search_overlap_secs: Option<Spanned<f64>>,
    /// The window `per_ten_seconds` counts in (10 at HubSpot).
    pub rate_interval_secs: Option<Spanned<f64>>,
    /// How soon after a spent-budget answer, just after the account's
    /// midnight, the next probe goes (the CRM's reset may lag ours).
    pub daily_reset_probe_secs: Option<Spanned<f64>>,
    /// The largest answer body read from a page or batch call, in MB.
    pub max_answer_mb: Option<Spanned<f64>>,
    /// The largest answer body read from an export-like call (Pardot's
    /// import error files), in MB.
    pub max_export_mb: Option<Spanned<f64>>,
    /// How engagement is read: `auto`, `streams` or `per_record`.
    pub event_reads: Option<Spanned<String>>,
}

/// `[daemon]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDaemon {
    pub incremental: Option<Spanned<String>>,
    pub rescore: Option<Spanned<String>>,
    pub listen: Option<Spanned<String>>,
    pub stale_after_minutes: Option<Spanned<i64>>,
}

/// One `[inputs]` entry: a CRM field name, or a table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawInput {
    Field(String),
    Table(RawInputTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInputTable {
    pub field: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The number of events from this source (an `[events]` source text).
    pub count: Option<String>,
    /// The time of the newest event from this source.
    pub latest: Option<String>,
    /// Which CRM object a `company.X` input is read from: `company` (the
    /// contact's primary company, HubSpot's default) or `contact`.
    pub from: Option<String>,
}

/// `[[output]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutput {
    pub property: Spanned<String>,
    pub value: Spanned<String>,
    pub label: Option<String>,
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    pub overwrite: Option<Spanned<String>>,
    /// Write Pardot's own `score` (only with this said explicitly).
    #[serde(default)]
    pub native: Option<Spanned<bool>>,
    /// Which object the property is on: `contact` or `company` (the
    /// default for a company score's values in HubSpot).
    pub object: Option<Spanned<String>>,
}
