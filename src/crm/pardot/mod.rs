//! The Pardot (Account Engagement v5) connector: prospects paged with
//! `nextPageToken` (restarted from the last record when a query stops at
//! the token's record limit, `Pardot-Warning: 203`, or its token expires),
//! engagement from visitor activities, writes by PATCH per prospect to
//! custom fields (at most five requests at once), custom-field setup, and
//! Pardot's `{"code","message"}` errors mapped to retry, refresh, stop or
//! skip-record. Every call carries `Pardot-Business-Unit-Id` and asks for
//! `x-api-usage`, which feeds the daily budget guard.

mod wire;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures_util::{StreamExt as _, TryStreamExt as _};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::sync::mpsc;

use super::http::{Call, Dialect, Http, Lane, Observed, Verdict, retry_after};
use super::{
    Crm, CrmError, CrmEvent, CrmRecord, PropertySpec, PullKind, PullSpec, PullSummary, SetupReport,
    Update, WriteReport,
};
use crate::config::{Connection, EventSource};
use crate::engine::OutputKind;
use wire::{CustomFieldList, ErrorBody, Page};

/// Prospects per page (Pardot's maximum).
const PAGE: &str = "1000";

struct PardotDialect {
    timezone: jiff::tz::TimeZone,
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
                resume_at: super::http::next_midnight(&self.timezone),
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
            Box::new(PardotDialect { timezone }),
            headers,
        )?;
        Ok(Pardot {
            http: Arc::new(http),
            sources: connection.events.clone(),
            overlap_ms: connection.limits.search_overlap.as_millis() as i64,
        })
    }

    pub fn http(&self) -> &Http {
        &self.http
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
                body: None,
                lane: Lane::General,
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

    /// Visitor activities of one prospect, as model events.
    async fn activities(
        &self,
        prospect: String,
        wanted: &[Wanted],
    ) -> Result<(String, Vec<CrmEvent>, u64), CrmError> {
        let fields = "id,prospectId,type,details,emailId,formId,fileId,customRedirectId,campaignId,createdAt";
        let mut events = Vec::new();
        let mut calls = 0;
        let mut token: Option<String> = None;
        loop {
            let query: Vec<(&str, String)> = match &token {
                Some(t) => vec![("fields", fields.to_owned()), ("nextPageToken", t.clone())],
                None => vec![
                    ("fields", fields.to_owned()),
                    ("prospectId", prospect.clone()),
                    ("limit", PAGE.to_owned()),
                ],
            };
            let page: Page = self
                .get(
                    "/api/v5/objects/visitor-activities",
                    &query,
                    "visitor-activities",
                )
                .await?
                .body;
            calls += 1;
            for activity in &page.values {
                let code = activity.get("type").and_then(serde_json::Value::as_u64);
                let at = activity
                    .get("createdAt")
                    .and_then(serde_json::Value::as_str)
                    .and_then(crate::record::parse_time);
                let (Some(code), Some(at)) = (code, at) else {
                    continue;
                };
                let has = |field: &str| activity.get(field).is_some_and(|v| !v.is_null());
                for want in wanted {
                    let kind = &want.kind;
                    let matches = want.types.contains(&(code as u32))
                        && want.with.as_deref().is_none_or(has)
                        && want.without.as_deref().is_none_or(|f| !has(f));
                    if !matches {
                        continue;
                    }
                    let attributes = activity
                        .get("details")
                        .and_then(text_of)
                        .map(|d| vec![(attribute_name(kind).to_owned(), d)])
                        .unwrap_or_default();
                    events.push(CrmEvent {
                        kind: kind.clone(),
                        at_ms: at,
                        attributes,
                    });
                }
            }
            match page.next_page_token {
                Some(next) if !page.values.is_empty() => token = Some(next),
                _ => break,
            }
        }
        Ok((prospect, events, calls))
    }

    /// Adds activity detail to a page of prospects (not to those as we
    /// last saw them).
    async fn enrich(&self, spec: &PullSpec, records: &mut [CrmRecord]) -> Result<u64, CrmError> {
        for record in records.iter_mut() {
            record.detail_skipped = spec.known.get(&record.id) == Some(&record.modified_ms);
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
        let fetched: Vec<(String, Vec<CrmEvent>, u64)> =
            futures_util::stream::iter(ids.into_iter().map(|id| self.activities(id, wanted)))
                .buffer_unordered(self.http.limits().concurrency.clamp(1, 5))
                .try_collect()
                .await?;
        let mut calls = 0;
        let mut by_id: HashMap<String, Vec<CrmEvent>> = HashMap::new();
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
                body: Some(&body),
                lane: Lane::General,
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

/// A prospect page's records, in the neutral shape.
fn to_records(page: &Page) -> Vec<(u64, CrmRecord)> {
    page.values
        .iter()
        .filter_map(|values| {
            let id = values.get("id").and_then(serde_json::Value::as_u64)?;
            let modified_ms = values
                .get("updatedAt")
                .and_then(serde_json::Value::as_str)
                .and_then(crate::record::parse_time)
                .unwrap_or(0);
            let record = CrmRecord {
                id: id.to_string(),
                modified_ms,
                values: values
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), text_of(v)?)))
                    .collect(),
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
        let mut fields = spec.fields.clone();
        fields.extend(["id".to_owned(), "updatedAt".to_owned()]);
        fields.sort();
        fields.dedup();
        let fields = fields.join(",");
        let mut summary = PullSummary::default();
        let mut resume: Option<Resume> = None;
        let mut token: Option<String> = None;
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
                    token = None;
                    continue;
                }
                Err(other) => return Err(other),
            };
            summary.pages += 1;
            let cut_off = reply
                .headers
                .get("pardot-warning")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("203"));
            let page = reply.body;
            let mut records = Vec::new();
            for (id, record) in to_records(&page) {
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
            if !spec.event_types.is_empty() && !records.is_empty() {
                summary.detail_calls += self.enrich(spec, &mut records).await?;
            }
            summary.records += records.len() as u64;
            let empty = records.is_empty();
            if !empty && sink.send(records).await.is_err() {
                return Err(CrmError::Stopped);
            }
            match page.next_page_token {
                Some(next) if !page.values.is_empty() => token = Some(next),
                _ if cut_off && !empty => token = None,
                _ => break,
            }
        }
        Ok(summary)
    }

    async fn write(&self, updates: Vec<Update>) -> Result<WriteReport, CrmError> {
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

    async fn setup(&self, wanted: &[PropertySpec], apply: bool) -> Result<SetupReport, CrmError> {
        let query = [("fields", "id,name,fieldId,type,createdAt".to_owned())];
        let existing = self.custom_fields().await?;
        let mut report = SetupReport::default();
        for spec in wanted {
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
                            body: Some(&body),
                            lane: Lane::General,
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
