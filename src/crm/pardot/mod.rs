//! The Pardot (Account Engagement v5) connector: prospects paged with
//! `nextPageToken` (restarted from the last record when a query stops at
//! the token's record limit, `Pardot-Warning: 203`, or its token expires),
//! engagement from visitor activities, writes by PATCH per prospect to
//! custom fields (at most five requests at once), custom-field setup, and
//! Pardot's `{"code","message"}` errors mapped to retry, refresh, stop or
//! skip-record. Every call carries `Pardot-Business-Unit-Id` and asks for
//! `x-api-usage`, which feeds the daily budget guard.

mod accounts;
mod wire;

pub use accounts::account_of;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures_util::{StreamExt as _, TryStreamExt as _};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::sync::mpsc;

use super::http::{Body, Call, Dialect, Http, Lane, Observed, Part, Size, Verdict, retry_after};
use super::{
    Crm, CrmError, CrmEvent, CrmRecord, PropertySpec, PullKind, PullSpec, PullSummary, SetupReport,
    Update, WriteReport,
};
use crate::config::{Connection, EventSource};
use crate::engine::OutputKind;
use wire::{CustomFieldList, ErrorBody, ImportJob, Page};

/// Prospects per page (Pardot's maximum).
const PAGE: &str = "1000";
/// Prospects whose activities are read before they go on to scoring.
const DETAIL_PART: usize = 100;
/// Prospects needing activities from which one id-range query is tried…
const RANGE_MIN: usize = 10;
/// …when their ids lie within this many times their number.
const RANGE_SPREAD: u64 = 4;
/// Updates with the same fields go by the Import API from this many on
/// (an import costs about five calls however small; a PATCH one each).
const IMPORT_MIN_ROWS: usize = 50;
/// Rows in one import file (far under Pardot's 10 MB a file), and the
/// updates one write takes.
const IMPORT_ROWS: usize = 10_000;
/// Bytes of CSV in one import file (Pardot takes 10 MB).
const IMPORT_BYTES: usize = 9 * 1024 * 1024;
/// How long to wait for an import before its rows count as failed (they
/// are retried by the next pass).
const IMPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

struct PardotDialect {
    timezone: jiff::tz::TimeZone,
    /// `[limits] daily_reset_probe_secs`.
    probe: std::time::Duration,
}

fn error_of(body: &[u8]) -> ErrorBody {
    serde_json::from_slice(body).unwrap_or_default()
}

impl Dialect for PardotDialect {
    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict {
        let error = error_of(body);
        let said = || {
            format!(
                "Pardot error {}: {}",
                error
                    .code
                    .map_or_else(|| status.to_string(), |c| c.to_string()),
                error.message.as_deref().unwrap_or("no message")
            )
        };
        match (status, error.code) {
            (200..=299, _) => Verdict::Done,
            (_, Some(122)) => Verdict::Fatal(CrmError::BudgetExhausted {
                used: 0,
                limit: 0,
                resume_at: super::http::daily_resume(&self.timezone, self.probe),
            }),
            (429, _) | (_, Some(66)) => Verdict::Retry {
                after: retry_after(headers),
                reason: said(),
                throttled: true,
            },
            (401, _) | (_, Some(184)) => Verdict::Refresh,
            (403, _) => Verdict::Fatal(CrmError::MissingScope(format!(
                "{}. The Salesforce user needs Account Engagement access to this business unit",
                said()
            ))),
            (400, Some(181)) => Verdict::Fatal(CrmError::Auth(format!(
                "{} (check business_unit_id)",
                said()
            ))),
            (500..=599, _) => Verdict::Retry {
                after: retry_after(headers),
                reason: format!("HTTP {status}"),
                throttled: false,
            },
            _ => Verdict::Rejected(said()),
        }
    }

    fn observe(&self, headers: &HeaderMap) -> Observed {
        let usage = headers
            .get("x-api-usage")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once('/'))
            .and_then(|(used, limit)| {
                Some((
                    used.trim().parse::<u64>().ok()?,
                    limit.trim().parse::<u64>().ok()?,
                ))
            });
        Observed {
            window: None,
            daily_remaining: usage.map(|(used, limit)| limit.saturating_sub(used)),
            daily_limit: usage.map(|(_, limit)| limit),
        }
    }
}

/// Pardot's date-time format (second precision).
fn pardot_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms.div_euclid(1000) * 1000)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string())
        .unwrap_or_default()
}

/// A JSON field value as the neutral text (absent for null).
fn text_of(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// The model attribute a visitor activity's `details` becomes.
fn attribute_name(event_type: &str) -> &'static str {
    match event_type {
        "page_view" => "url",
        "content_download" => "asset",
        "form_submission" | "form_error" => "form_id",
        "email_open" | "email_click" | "email_unsubscribe" | "cta_click" | "ad_click" => "campaign",
        _ => "name",
    }
}

/// One visitor activity as Pardot sends it.
type Activity = serde_json::Map<String, serde_json::Value>;

/// The visitor activity fields leadscored reads.
const ACTIVITY_FIELDS: &str =
    "id,prospectId,type,details,emailId,formId,fileId,customRedirectId,campaignId,createdAt";

/// Whether an answer says its query stopped at the page token's record
/// limit (`Pardot-Warning: 203`).
fn warned_203(headers: &HeaderMap) -> bool {
    headers
        .get("pardot-warning")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("203"))
}

/// The model events one visitor activity is (none, or one per wanted type
/// it matches).
fn events_of(activity: &Activity, wanted: &[Wanted]) -> Vec<CrmEvent> {
    let code = activity.get("type").and_then(serde_json::Value::as_u64);
    let at = activity
        .get("createdAt")
        .and_then(serde_json::Value::as_str)
        .and_then(crate::record::parse_time);
    let (Some(code), Some(at)) = (code, at) else {
        return Vec::new();
    };
    let has = |field: &str| activity.get(field).is_some_and(|v| !v.is_null());
    wanted
        .iter()
        .filter(|want| {
            want.types.contains(&(code as u32))
                && want.with.as_deref().is_none_or(has)
                && want.without.as_deref().is_none_or(|f| !has(f))
        })
        .map(|want| CrmEvent {
            id: String::new(),
            kind: want.kind.clone(),
            at_ms: at,
            attributes: activity
                .get("details")
                .and_then(text_of)
                .map(|d| vec![(attribute_name(&want.kind).to_owned(), d)])
                .unwrap_or_default(),
        })
        .collect()
}

/// A model event type and the visitor activities that are it.
struct Wanted {
    kind: String,
    types: Vec<u32>,
    /// Only activities with this field set (`fileId`: downloads).
    with: Option<String>,
    /// Only activities without it (views that are not downloads).
    without: Option<String>,
}

/// The Pardot connection.
pub struct Pardot {
    http: Arc<Http>,
    sources: BTreeMap<String, EventSource>,
    overlap_ms: i64,
    /// Pardot refused a prospect id range for visitor activities once:
    /// read them one prospect at a time from then on.
    ranges_refused: std::sync::atomic::AtomicBool,
    /// The account the business unit belongs to, asked once.
    identity: tokio::sync::OnceCell<Option<String>>,
    /// How prospects are grouped into accounts (company scores on).
    group_by: Vec<crate::config::AccountKey>,
}

impl std::fmt::Debug for Pardot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pardot").finish_non_exhaustive()
    }
}

/// Where a restarted prospect query resumes.
#[derive(Clone, Debug, Default)]
struct Resume {
    last_id: u64,
    last_updated_ms: i64,
    /// Ids already seen at `last_updated_ms` (updatedAt order only).
    at_last: HashSet<u64>,
}

impl Pardot {
    /// Connects with the connection's settings (reads the secrets; no call
    /// is made yet).
    pub fn new(connection: &Connection) -> Result<Pardot, CrmError> {
        let tokens = super::auth::Tokens::new(connection.crm.kind, &connection.crm.auth)?;
        let timezone = crate::config::account_zone(&connection.crm.timezone)
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let mut headers = HeaderMap::new();
        let unit = connection.crm.business_unit_id.clone().unwrap_or_default();
        let unit = HeaderValue::from_str(&unit).map_err(|_| {
            CrmError::Credentials("business_unit_id is not a valid header value".to_owned())
        })?;
        headers.insert("pardot-business-unit-id", unit);
        headers.insert("x-return-api-usage", HeaderValue::from_static("1"));
        let http = Http::new(
            &connection.crm,
            &connection.limits,
            tokens,
            Box::new(PardotDialect {
                timezone,
                probe: connection.limits.daily_reset_probe,
            }),
            headers,
        )?;
        Ok(Pardot {
            http: Arc::new(http),
            sources: connection.events.clone(),
            overlap_ms: connection.limits.search_overlap.as_millis() as i64,
            ranges_refused: std::sync::atomic::AtomicBool::new(false),
            identity: tokio::sync::OnceCell::new(),
            group_by: connection
                .accounts
                .as_ref()
                .map(|a| a.group_by.clone())
                .unwrap_or_default(),
        })
    }

    pub fn http(&self) -> &Http {
        &self.http
    }

    /// The Account Engagement account behind the business unit (`GET
    /// /api/v5/objects/account`). Reading it takes an admin ability some
    /// integration users lack: then only the business unit id (already
    /// part of the connection) tells accounts apart.
    async fn account(&self) -> Result<Option<String>, CrmError> {
        let query = [("fields", "id".to_owned())];
        match self
            .get::<wire::Account>("/api/v5/objects/account", &query, "account.read")
            .await
        {
            Ok(reply) => Ok(Some(format!("Pardot account {}", reply.body.id))),
            Err(CrmError::Rejected { message, .. } | CrmError::MissingScope(message)) => {
                tracing::info!(
                    reason = %message,
                    "Pardot does not let this user read its account; the business unit id alone identifies it"
                );
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    /// The account's prospect custom fields.
    async fn custom_fields(&self) -> Result<CustomFieldList, CrmError> {
        let query = [("fields", "id,name,fieldId,type,createdAt".to_owned())];
        Ok(self
            .get(
                "/api/v5/objects/custom-fields",
                &query,
                "custom-fields.list",
            )
            .await?
            .body)
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        endpoint: &'static str,
    ) -> Result<super::http::Reply<T>, CrmError> {
        self.http
            .json::<T>(&Call {
                method: Method::GET,
                path,
                query,
                body: Body::None,
                lane: Lane::General,
                size: Size::Page,
                endpoint,
            })
            .await
    }

    /// The first query of a prospect pull, or its restart after `resume`.
    fn prospect_query(
        &self,
        spec: &PullSpec,
        fields: &str,
        resume: Option<&Resume>,
    ) -> Vec<(&'static str, String)> {
        let mut query = vec![("fields", fields.to_owned()), ("limit", PAGE.to_owned())];
        match spec.kind {
            PullKind::Full => {
                query.push(("orderBy", "id ASC".to_owned()));
                if let Some(resume) = resume {
                    query.push(("idGreaterThan", resume.last_id.to_string()));
                }
            }
            // Refused in `pull` before any query is made.
            PullKind::Ids => {}
            PullKind::Since(watermark) => {
                query.push(("orderBy", "updatedAt ASC".to_owned()));
                let from = match resume {
                    Some(resume) => resume.last_updated_ms,
                    None => watermark - self.overlap_ms,
                };
                query.push(("updatedAtAfterOrEqualTo", pardot_time(from)));
                query.push(("updatedAtBeforeOrEqualTo", pardot_time(spec.until_ms)));
            }
        }
        query
    }

    /// Every visitor activity one query finds, paging with only `fields`
    /// beside the token; and the calls made. `None` when the query was cut
    /// off at the page token's record limit.
    async fn activity_query(
        &self,
        filters: Vec<(&'static str, String)>,
    ) -> Result<(Option<Vec<Activity>>, u64), CrmError> {
        let mut all = Vec::new();
        let mut calls = 0;
        let mut token: Option<String> = None;
        let mut pager = super::Pager::new("visitor-activities");
        loop {
            let mut query = vec![("fields", ACTIVITY_FIELDS.to_owned())];
            match &token {
                Some(t) => query.push(("nextPageToken", t.clone())),
                None => {
                    query.extend(filters.iter().cloned());
                    query.push(("limit", PAGE.to_owned()));
                }
            }
            let reply = self
                .get::<Page>(
                    "/api/v5/objects/visitor-activities",
                    &query,
                    "visitor-activities",
                )
                .await?;
            calls += 1;
            if warned_203(&reply.headers) {
                return Ok((None, calls));
            }
            let page = reply.body;
            let empty = page.values.is_empty();
            all.extend(page.values);
            match page.next_page_token {
                Some(next) if !empty => {
                    pager.next(&next)?;
                    token = Some(next);
                }
                _ => break,
            }
        }
        Ok((Some(all), calls))
    }

    /// Visitor activities of one prospect, as model events.
    async fn activities(
        &self,
        prospect: String,
        wanted: &[Wanted],
    ) -> Result<(String, Vec<CrmEvent>, u64), CrmError> {
        let (found, calls) = self
            .activity_query(vec![("prospectId", prospect.clone())])
            .await?;
        let events = found
            .unwrap_or_default()
            .iter()
            .flat_map(|activity| events_of(activity, wanted))
            .collect();
        Ok((prospect, events, calls))
    }

    /// Visitor activities of the prospects with ids in `first..=last`, by
    /// prospect id, in as few calls as their number allows. `None` when
    /// Pardot does not take the range (or cut it off): ask one by one.
    async fn activities_in_range(
        &self,
        first: u64,
        last: u64,
        wanted: &[Wanted],
    ) -> Result<(Option<HashMap<String, Vec<CrmEvent>>>, u64), CrmError> {
        let filters = vec![
            ("prospectIdGreaterThanOrEqualTo", first.to_string()),
            ("prospectIdLessThanOrEqualTo", last.to_string()),
        ];
        let (found, calls) = match self.activity_query(filters).await {
            Ok(found) => found,
            Err(CrmError::Rejected { message, .. }) => {
                tracing::warn!(%message, "Pardot refused a prospect id range for visitor activities; reading them one prospect at a time");
                self.ranges_refused
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok((None, 1));
            }
            Err(other) => return Err(other),
        };
        let Some(found) = found else {
            return Ok((None, calls));
        };
        let mut by_id: HashMap<String, Vec<CrmEvent>> = HashMap::new();
        for activity in &found {
            let Some(prospect) = activity
                .get("prospectId")
                .and_then(serde_json::Value::as_u64)
            else {
                continue;
            };
            by_id
                .entry(prospect.to_string())
                .or_default()
                .extend(events_of(activity, wanted));
        }
        Ok((Some(by_id), calls))
    }

    /// Adds activity detail to a page of prospects (not to those as we
    /// last saw them).
    async fn enrich(&self, spec: &PullSpec, records: &mut [CrmRecord]) -> Result<u64, CrmError> {
        for record in records.iter_mut() {
            // At or before our stamp: an import stamps every row with its
            // own last change, which is at or after each row's.
            record.detail_skipped = spec
                .known
                .get(&record.id)
                .is_some_and(|known| record.modified_ms <= *known);
        }
        let wanted: Vec<Wanted> = spec
            .event_types
            .iter()
            .filter_map(|kind| match self.sources.get(kind) {
                Some(EventSource::PardotActivity {
                    types,
                    with,
                    without,
                }) => Some(Wanted {
                    kind: kind.clone(),
                    types: types.clone(),
                    with: with.clone(),
                    without: without.clone(),
                }),
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = records
            .iter()
            .filter(|r| !r.detail_skipped)
            .map(|r| r.id.clone())
            .collect();
        let wanted = &wanted;
        let mut calls = 0;
        let mut by_id: HashMap<String, Vec<CrmEvent>> = HashMap::new();
        // Prospects close together by id (a full pull goes in id order):
        // one query for their id range costs a call per 1,000 activities,
        // not one per prospect.
        let numbers: Vec<u64> = ids.iter().filter_map(|id| id.parse().ok()).collect();
        if let (Some(first), Some(last)) = (numbers.iter().min(), numbers.iter().max())
            && numbers.len() == ids.len()
            && ids.len() >= RANGE_MIN
            && last - first < RANGE_SPREAD * ids.len() as u64
            && !self
                .ranges_refused
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            let (found, n) = self.activities_in_range(*first, *last, wanted).await?;
            calls += n;
            if let Some(found) = found {
                by_id = found;
                for record in records.iter_mut().filter(|r| !r.detail_skipped) {
                    record.events = by_id.remove(&record.id).unwrap_or_default();
                }
                return Ok(calls);
            }
        }
        let fetched: Vec<(String, Vec<CrmEvent>, u64)> =
            futures_util::stream::iter(ids.into_iter().map(|id| self.activities(id, wanted)))
                .buffer_unordered(self.http.limits().concurrency.clamp(1, 5))
                .try_collect()
                .await?;
        for (id, events, n) in fetched {
            calls += n;
            by_id.insert(id, events);
        }
        for record in records.iter_mut() {
            if let Some(events) = by_id.remove(&record.id) {
                record.events = events;
            }
        }
        Ok(calls)
    }

    /// One prospect's PATCH: the CRM's new modified time, or the reason it
    /// refused this prospect (an error that is not the record's fault
    /// stops the write).
    /// PATCHes each update, at most five at once.
    async fn patch_all(&self, updates: Vec<Update>) -> Result<WriteReport, CrmError> {
        let concurrency = self.http.limits().concurrency.clamp(1, 5);
        let results: Vec<(String, Result<Option<i64>, String>)> =
            futures_util::stream::iter(updates.into_iter().map(|u| self.patch(u)))
                .buffered(concurrency)
                .try_collect()
                .await?;
        let mut report = WriteReport {
            calls: results.len() as u64,
            ..WriteReport::default()
        };
        for (id, result) in results {
            match result {
                Ok(stamp) => {
                    if let Some(at) = stamp {
                        report.stamps.push((id.clone(), at));
                    }
                    report.written.push(id);
                }
                Err(message) => report.failed.push((id, message)),
            }
        }
        Ok(report)
    }

    /// Writes updates of the same `columns` through one import: create it
    /// with the CSV, start it, wait for it, then read its failed rows.
    async fn import(&self, columns: &[String], rows: &[Update]) -> Result<WriteReport, CrmError> {
        let failed_all = |why: String, calls: u64| WriteReport {
            failed: rows.iter().map(|u| (u.id.clone(), why.clone())).collect(),
            calls,
            ..WriteReport::default()
        };
        let csv = import_csv(columns, rows)?;
        let input = serde_json::json!({
            "operation": "Upsert",
            "object": "Prospect",
            "createOnNoMatch": false,
        })
        .to_string();
        let parts = [
            Part {
                name: "input",
                file_name: None,
                content_type: "application/json",
                bytes: input.as_bytes(),
            },
            Part {
                name: "importFile",
                file_name: Some("leadscored.csv"),
                content_type: "text/csv",
                bytes: &csv,
            },
        ];
        let call = |method, path, query, body, endpoint| Call {
            method,
            path,
            query,
            body,
            lane: Lane::General,
            // An import's error file is an export: far larger than a page.
            size: if endpoint == "imports.errors" {
                Size::Export
            } else {
                Size::Page
            },
            endpoint,
        };
        let job: ImportJob = self
            .http
            .json(&call(
                Method::POST,
                "/api/v5/imports",
                &[],
                Body::Multipart(&parts),
                "imports.create",
            ))
            .await?
            .body;
        let path = format!("/api/v5/imports/{}", job.id);
        let ready = serde_json::json!({ "status": "Ready" });
        self.http
            .json::<serde_json::Value>(&call(
                Method::PATCH,
                &path,
                &[],
                Body::Json(&ready),
                "imports.start",
            ))
            .await?;
        let mut calls = 2;
        let started = std::time::Instant::now();
        let mut wait = std::time::Duration::from_millis(200);
        let query = [("fields", "id,status,errorCount,updatedAt".to_owned())];
        let done = loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(30));
            let job: ImportJob = self
                .http
                .json(&call(
                    Method::GET,
                    &path,
                    &query,
                    Body::None,
                    "imports.read",
                ))
                .await?
                .body;
            calls += 1;
            if job.status == "Complete" {
                break job;
            }
            if started.elapsed() > IMPORT_WAIT {
                let why = format!(
                    "Pardot import {} is still {} after an hour; the next pass writes these again",
                    job.id, job.status
                );
                return Ok(failed_all(why, calls));
            }
        };
        let mut refused: HashMap<String, String> = HashMap::new();
        if done.error_count > 0 {
            let errors = format!("{path}/errors");
            let expected = done.error_count as usize;
            refused = self
                .http
                .decoded(
                    &call(Method::GET, &errors, &[], Body::None, "imports.errors"),
                    |bytes| import_errors(bytes, expected),
                )
                .await?
                .body;
            calls += 1;
        }
        // Pardot states no time per row: the import's own last change is at
        // or after every write it made, which the next pull recognises.
        let stamp = done
            .updated_at
            .as_deref()
            .and_then(crate::record::parse_time);
        let mut report = WriteReport {
            calls,
            ..WriteReport::default()
        };
        for update in rows {
            match refused.remove(&update.id) {
                Some(why) => report.failed.push((
                    update.id.clone(),
                    format!("Pardot import {}: {why}", done.id),
                )),
                None => {
                    if let Some(at) = stamp {
                        report.stamps.push((update.id.clone(), at));
                    }
                    report.written.push(update.id.clone());
                }
            }
        }
        Ok(report)
    }

    async fn patch(
        &self,
        update: Update,
    ) -> Result<(String, Result<Option<i64>, String>), CrmError> {
        let body: serde_json::Map<String, serde_json::Value> = update
            .values
            .iter()
            .map(|(name, value)| {
                let json = if value.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(value.clone())
                };
                (name.clone(), json)
            })
            .collect();
        let body = serde_json::Value::Object(body);
        let path = format!("/api/v5/objects/prospects/{}", update.id);
        let query = [("fields", "id,updatedAt".to_owned())];
        let answer = self
            .http
            .json::<serde_json::Value>(&Call {
                method: Method::PATCH,
                path: &path,
                query: &query,
                body: Body::Json(&body),
                lane: Lane::General,
                size: Size::Page,
                endpoint: "prospects.update",
            })
            .await;
        match answer {
            Ok(reply) => {
                let stamp = reply
                    .body
                    .get("updatedAt")
                    .and_then(serde_json::Value::as_str)
                    .and_then(crate::record::parse_time);
                Ok((update.id, Ok(stamp)))
            }
            Err(CrmError::Rejected { message, .. }) => Ok((update.id, Err(message))),
            Err(other) => Err(other),
        }
    }
}

/// Updates in runs that fit one import file each: at most
/// [`IMPORT_ROWS`] rows and about [`IMPORT_BYTES`] of CSV.
fn import_chunks(updates: &[Update]) -> Vec<&[Update]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, update) in updates.iter().enumerate() {
        // Quoting can double a value; a comma and the id besides.
        let row: usize = update.id.len()
            + 2
            + update
                .values
                .values()
                .map(|v| 2 * v.len() + 3)
                .sum::<usize>();
        if i > start && (i - start == IMPORT_ROWS || bytes + row > IMPORT_BYTES) {
            chunks.push(&updates[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += row;
    }
    if start < updates.len() {
        chunks.push(&updates[start..]);
    }
    chunks
}

/// The CSV of an import: `matchId`, then the written fields; an empty
/// cell clears its field.
fn import_csv(columns: &[String], rows: &[Update]) -> Result<Vec<u8>, CrmError> {
    let broken =
        |e: csv::Error| CrmError::Unsupported(format!("cannot build the import file: {e}"));
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(std::iter::once("matchId").chain(columns.iter().map(String::as_str)))
        .map_err(broken)?;
    for update in rows {
        let cells = columns
            .iter()
            .map(|c| update.values.get(c).map_or("", String::as_str));
        writer
            .write_record(std::iter::once(update.id.as_str()).chain(cells))
            .map_err(broken)?;
    }
    writer
        .into_inner()
        .map_err(|e| CrmError::Unsupported(format!("cannot build the import file: {e}")))
}

/// An import's failed rows (prospect id → Pardot's reason), from its error
/// CSV; fewer rows than the import counted means the answer was cut.
fn import_errors(bytes: &[u8], expected: usize) -> Result<HashMap<String, String>, String> {
    let mut reader = csv::Reader::from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| format!("the import's error file is not CSV: {e}"))?
        .clone();
    let column = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(id), Some(error)) = (column("matchId"), column("error")) else {
        return Err("the import's error file has no matchId or error column".to_owned());
    };
    let mut out = HashMap::new();
    for row in reader.records() {
        let row = row.map_err(|e| format!("the import's error file is cut: {e}"))?;
        if let (Some(id), Some(why)) = (row.get(id), row.get(error)) {
            out.insert(id.to_owned(), why.to_owned());
        }
    }
    if out.len() < expected {
        return Err(format!(
            "the import's error file lists {} of {expected} failed rows",
            out.len()
        ));
    }
    Ok(out)
}

/// A prospect page's records, in the neutral shape, each named with its
/// account when prospects are grouped.
fn to_records(page: &Page, group_by: &[crate::config::AccountKey]) -> Vec<(u64, CrmRecord)> {
    page.values
        .iter()
        .filter_map(|values| {
            let id = values.get("id").and_then(serde_json::Value::as_u64)?;
            let modified_ms = values
                .get("updatedAt")
                .and_then(serde_json::Value::as_str)
                .and_then(crate::record::parse_time)
                .unwrap_or(0);
            let mut values: BTreeMap<String, String> = values
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), text_of(v)?)))
                .collect();
            values.remove(crate::config::COMPANY_ID);
            if let Some(account) = account_of(&values, group_by) {
                values.insert(crate::config::COMPANY_ID.to_owned(), account);
            }
            let record = CrmRecord {
                id: id.to_string(),
                modified_ms,
                values,
                ..CrmRecord::default()
            };
            Some((id, record))
        })
        .collect()
}

impl Crm for Pardot {
    async fn pull(
        &self,
        spec: &PullSpec,
        sink: mpsc::Sender<Vec<CrmRecord>>,
    ) -> Result<PullSummary, CrmError> {
        if spec.kind == PullKind::Ids {
            return Err(CrmError::Unsupported(
                "Account Engagement has no webhooks, so no pull by id: changes come with incremental passes".to_owned(),
            ));
        }
        let mut fields = spec.fields.clone();
        fields.extend(["id".to_owned(), "updatedAt".to_owned()]);
        fields.sort();
        fields.dedup();
        let fields = fields.join(",");
        let mut summary = PullSummary::default();
        let mut resume: Option<Resume> = None;
        let mut token: Option<String> = None;
        let mut pager = super::Pager::new("prospects.query");
        // Where the query last restarted: a restart that has not moved on
        // since would repeat itself for ever.
        let mut restarted_at: Option<(u64, i64, usize)> = None;
        let mut restart = |resume: &Option<Resume>| -> Result<(), CrmError> {
            let at = resume.as_ref().map_or((0, i64::MIN, 0), |r| {
                (r.last_id, r.last_updated_ms, r.at_last.len())
            });
            if restarted_at.replace(at) == Some(at) {
                return Err(CrmError::Protocol {
                    endpoint: "prospects.query".to_owned(),
                    message: format!(
                        "the query restarted twice from the same record (id {}, updated {}); stopping rather than looping",
                        at.0, at.1
                    ),
                });
            }
            Ok(())
        };
        loop {
            let query = match &token {
                Some(t) => vec![("fields", fields.clone()), ("nextPageToken", t.clone())],
                None => self.prospect_query(spec, &fields, resume.as_ref()),
            };
            let reply = match self
                .get::<Page>("/api/v5/objects/prospects", &query, "prospects.query")
                .await
            {
                Ok(reply) => reply,
                // An expired or refused page token: start the query again
                // from the last record seen.
                Err(CrmError::Rejected { .. }) if token.is_some() => {
                    restart(&resume)?;
                    token = None;
                    continue;
                }
                Err(other) => return Err(other),
            };
            summary.pages += 1;
            let cut_off = warned_203(&reply.headers);
            let page = reply.body;
            let mut records = Vec::new();
            for (id, record) in to_records(&page, &self.group_by) {
                let state = resume.get_or_insert_with(Resume::default);
                if let PullKind::Since(_) = spec.kind {
                    if record.modified_ms == state.last_updated_ms && state.at_last.contains(&id) {
                        continue;
                    }
                    if record.modified_ms != state.last_updated_ms {
                        state.at_last.clear();
                        state.last_updated_ms = record.modified_ms;
                    }
                    state.at_last.insert(id);
                }
                state.last_id = state.last_id.max(id);
                records.push(record);
            }
            summary.records += records.len() as u64;
            let empty = records.is_empty();
            // Activities cost a call per prospect: send each part as soon as
            // it has them, so a pass stopped by the daily limit keeps what
            // it paid for.
            while !records.is_empty() {
                let rest = records.split_off(records.len().min(DETAIL_PART));
                let mut part = std::mem::replace(&mut records, rest);
                if !spec.event_types.is_empty() {
                    summary.detail_calls += self.enrich(spec, &mut part).await?;
                }
                if sink.send(part).await.is_err() {
                    return Err(CrmError::Stopped);
                }
            }
            match page.next_page_token {
                Some(next) if !page.values.is_empty() => {
                    pager.next(&next)?;
                    token = Some(next);
                }
                _ if cut_off && !empty => {
                    restart(&resume)?;
                    token = None;
                }
                _ => break,
            }
        }
        Ok(summary)
    }

    fn write_batch(&self) -> Option<usize> {
        Some(IMPORT_ROWS)
    }

    /// Imports of about five calls per 10,000 records (when the records
    /// share their changed fields), or a PATCH each below 50.
    fn write_cost(&self, changed: u64) -> u64 {
        if changed >= IMPORT_MIN_ROWS as u64 {
            changed.div_ceil(IMPORT_ROWS as u64) * 5
        } else {
            changed
        }
    }

    /// Many updates of the same fields go by the Import API (a handful of
    /// calls for up to 10,000 prospects), the rest by PATCH.
    async fn write(&self, updates: Vec<Update>) -> Result<WriteReport, CrmError> {
        let mut groups: BTreeMap<Vec<String>, Vec<Update>> = BTreeMap::new();
        for update in updates {
            let columns = update.values.keys().cloned().collect();
            groups.entry(columns).or_default().push(update);
        }
        let mut report = WriteReport::default();
        let mut one_by_one = Vec::new();
        for (columns, group) in groups {
            if group.len() < IMPORT_MIN_ROWS {
                one_by_one.extend(group);
                continue;
            }
            for rows in import_chunks(&group) {
                report.absorb(self.import(&columns, rows).await?);
            }
        }
        report.absorb(self.patch_all(one_by_one).await?);
        Ok(report)
    }

    async fn identity(&self) -> Result<Option<String>, CrmError> {
        self.identity
            .get_or_try_init(|| self.account())
            .await
            .cloned()
    }

    fn http(&self) -> &Http {
        &self.http
    }

    /// Pardot's text-area custom fields hold 65,535 characters.
    fn max_value_chars(&self) -> usize {
        65_535
    }

    async fn setup(&self, wanted: &[PropertySpec], apply: bool) -> Result<SetupReport, CrmError> {
        let query = [("fields", "id,name,fieldId,type,createdAt".to_owned())];
        let existing = self.custom_fields().await?;
        let mut report = SetupReport::default();
        for spec in wanted {
            // Pardot's own score (an output with native = true) is a
            // number field every account has.
            if spec.name == "score" {
                match spec.kind {
                    OutputKind::Number => report.existing.push(spec.name.clone()),
                    _ => report.conflicts.push((
                        spec.name.clone(),
                        "Pardot's score is a number: write a score total to it".to_owned(),
                    )),
                }
                continue;
            }
            let Some(field_id) = spec.name.strip_suffix("__c") else {
                report.conflicts.push((
                    spec.name.clone(),
                    "Pardot outputs must be custom fields named Name__c".to_owned(),
                ));
                continue;
            };
            let want = match spec.kind {
                OutputKind::Number => "Number",
                OutputKind::Choice | OutputKind::Text => "Text",
            };
            match existing.values.iter().find(|f| f.field_id == field_id) {
                Some(found)
                    if found.kind == want || (want == "Text" && found.kind == "Textarea") =>
                {
                    report.existing.push(spec.name.clone());
                }
                Some(found) => report.conflicts.push((
                    spec.name.clone(),
                    format!("exists as {}, leadscored writes {want}", found.kind),
                )),
                None if apply => {
                    let body = serde_json::json!({
                        "name": spec.label,
                        "fieldId": field_id,
                        "type": want,
                    });
                    let created = self
                        .http
                        .json::<serde_json::Value>(&Call {
                            method: Method::POST,
                            path: "/api/v5/objects/custom-fields",
                            query: &query,
                            body: Body::Json(&body),
                            lane: Lane::General,
                            size: Size::Page,
                            endpoint: "custom-fields.create",
                        })
                        .await;
                    match created {
                        Ok(_) => {}
                        // An earlier attempt whose answer was lost (a reset,
                        // a cut body) may have made it already.
                        Err(CrmError::Rejected { .. })
                            if self
                                .custom_fields()
                                .await?
                                .values
                                .iter()
                                .any(|f| f.field_id == field_id && f.kind == want) => {}
                        Err(error) => return Err(error),
                    }
                    report.created.push(spec.name.clone());
                }
                None => report.missing.push(spec.name.clone()),
            }
        }
        Ok(report)
    }
}
