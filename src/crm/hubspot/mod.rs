//! The HubSpot connector (CRM v3): full pulls through the list endpoint,
//! incremental pulls through search with keyset paging on `hs_object_id`
//! inside a bounded `lastmodifieddate` window (never near the 10,000-result
//! cap, correct when thousands share one timestamp), event detail from the
//! forms, marketing email and web event APIs only for the event types the
//! model reads, property setup, and batched write-back that handles 207
//! partial failures.

pub mod webhook;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures_util::{StreamExt as _, TryStreamExt as _};
use reqwest::Method;
use reqwest::header::HeaderMap;
use rustc_hash::FxHashSet;
use serde_json::json;
use tokio::sync::mpsc;

use super::http::{
    Body, Call, Dialect, Http, Lane, Observed, Size, Verdict, header_number, retry_after,
};
use super::{
    Crm, CrmCompany, CrmError, CrmEvent, CrmRecord, ListInfo, Pager, PropertySpec, PullKind,
    PullSpec, PullSummary, SetupReport, StreamEvent, StreamSpec, StreamSummary, Update,
    WriteReport, email_key,
};
use crate::config::{Connection, EventSource};
use crate::engine::OutputKind;
use crate::model::Object;
use wire::{
    BatchResponse, ContactPage, EmailEventPage, ErrorBody, Filter, FilterGroup, FormList,
    GroupList, NewProperty, PropertyList, PropertyOption, SearchRequest, Sort, SubmissionPage,
    UpdateBatch, UpdateInput, WebEventPage,
};

/// A CRM object leadscored searches by modified time.
#[derive(Clone, Copy, Debug)]
struct Searched {
    search_path: &'static str,
    search_endpoint: &'static str,
    /// The property holding the record's last-modified time.
    modified: &'static str,
}

const CONTACTS: Searched = Searched {
    search_path: "/crm/v3/objects/contacts/search",
    search_endpoint: "contacts.search",
    modified: "lastmodifieddate",
};

const COMPANIES: Searched = Searched {
    search_path: "/crm/v3/objects/companies/search",
    search_endpoint: "companies.search",
    modified: COMPANY_MODIFIED,
};

/// A company's last-modified property (contacts say `lastmodifieddate`).
const COMPANY_MODIFIED: &str = "hs_lastmodifieddate";
/// Members read per page of a list (HubSpot's maximum).
const MEMBERS_PAGE: u32 = 250;
/// Lists read per page of a list search (HubSpot's maximum).
const LISTS_PAGE: u32 = 500;
/// HubSpot's object type id for contacts.
const CONTACT_TYPE: &str = "0-1";

/// HubSpot's page and batch sizes.
const LIST_PAGE: u32 = 100;
/// Events read per page of the email and web event APIs (the email
/// events API's maximum; the events API states none and pages by cursor
/// whatever size it answers with).
const STREAM_PAGE: u32 = 1_000;
const SEARCH_PAGE: u32 = 200;
const BATCH: usize = 100;
/// Our property group.
pub const GROUP: &str = "leadscored";

/// How HubSpot answers are read.
struct HubspotDialect {
    timezone: jiff::tz::TimeZone,
    /// `[limits] daily_reset_probe_secs`.
    probe: std::time::Duration,
}

fn error_body(body: &[u8]) -> ErrorBody {
    serde_json::from_slice(body).unwrap_or_default()
}

fn message_of(body: &ErrorBody, status: u16) -> String {
    body.message
        .clone()
        .unwrap_or_else(|| format!("HTTP {status} with no message"))
}

impl Dialect for HubspotDialect {
    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict {
        match status {
            200..=299 => Verdict::Done,
            401 => {
                let error = error_body(body);
                if error.category.as_deref() == Some("EXPIRED_AUTHENTICATION") {
                    Verdict::Refresh
                } else {
                    Verdict::Fatal(CrmError::Auth(format!(
                        "HubSpot rejected the token ({}): {}",
                        error.category.as_deref().unwrap_or("401"),
                        message_of(&error, status)
                    )))
                }
            }
            403 => {
                let error = error_body(body);
                let scopes: Vec<String> = error
                    .errors
                    .iter()
                    .filter_map(|e| e.context.as_ref())
                    .flat_map(|c| c.required_scopes.iter().cloned())
                    .collect();
                let detail = if scopes.is_empty() {
                    error
                        .errors
                        .iter()
                        .filter_map(|e| e.message.clone())
                        .collect::<Vec<_>>()
                        .join("; ")
                } else {
                    format!("it needs the scope {}", scopes.join(" or "))
                };
                Verdict::Fatal(CrmError::MissingScope(format!(
                    "HubSpot refused the call ({}): {}{}. The private app or OAuth app needs crm.objects.contacts.read and .write, crm.schemas.contacts.read and .write, and for company inputs and lists crm.objects.companies.read, crm.schemas.companies.read and crm.lists.read",
                    error.category.as_deref().unwrap_or("403"),
                    message_of(&error, status),
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(" — {detail}")
                    }
                )))
            }
            429 => {
                let error = error_body(body);
                if error.policy_name.as_deref() == Some("DAILY") {
                    let tomorrow = super::http::daily_resume(&self.timezone, self.probe);
                    Verdict::Fatal(CrmError::BudgetExhausted {
                        used: 0,
                        limit: 0,
                        resume_at: tomorrow,
                    })
                } else {
                    Verdict::Retry {
                        after: retry_after(headers),
                        reason: format!(
                            "429 {}",
                            error.policy_name.as_deref().unwrap_or("rate limit")
                        ),
                        throttled: true,
                    }
                }
            }
            500..=599 => Verdict::Retry {
                after: retry_after(headers),
                reason: format!("HTTP {status}"),
                throttled: false,
            },
            _ => Verdict::Rejected(message_of(&error_body(body), status)),
        }
    }

    fn observe(&self, headers: &HeaderMap) -> Observed {
        let max = header_number(headers, "x-hubspot-ratelimit-max");
        let remaining = header_number(headers, "x-hubspot-ratelimit-remaining");
        Observed {
            window: max.zip(remaining).map(|(m, r)| (m as u32, r as u32)),
            daily_remaining: header_number(headers, "x-hubspot-ratelimit-daily-remaining"),
            daily_limit: header_number(headers, "x-hubspot-ratelimit-daily"),
        }
    }
}

/// Form submissions by email (lowercase): (submitted at, form name,
/// occurrence id).
type Submissions = HashMap<String, Vec<(i64, String, String)>>;

/// A HubSpot connection.
#[derive(Debug)]
pub struct Hubspot {
    http: Arc<Http>,
    /// Model event type → where its detail comes from.
    sources: BTreeMap<String, EventSource>,
    overlap_ms: i64,
    /// Loaded once per pull (keyed by its `until_ms`), on the first page
    /// that needs forms.
    submissions: tokio::sync::Mutex<Option<(i64, Arc<Submissions>)>>,
    /// The portal the token reaches, asked once.
    identity: tokio::sync::OnceCell<Option<String>>,
}

impl Hubspot {
    /// Connects with the connection's settings (reads the secrets; no call
    /// is made yet).
    pub fn new(connection: &Connection) -> Result<Hubspot, CrmError> {
        let tokens = super::auth::Tokens::new(connection.crm.kind, &connection.crm.auth)?;
        let timezone = crate::config::account_zone(&connection.crm.timezone)
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let http = Http::new(
            &connection.crm,
            &connection.limits,
            tokens,
            Box::new(HubspotDialect {
                timezone,
                probe: connection.limits.daily_reset_probe,
            }),
            HeaderMap::new(),
        )?;
        Ok(Hubspot {
            http: Arc::new(http),
            sources: connection.events.clone(),
            overlap_ms: connection.limits.search_overlap.as_millis() as i64,
            submissions: tokio::sync::Mutex::new(None),
            identity: tokio::sync::OnceCell::new(),
        })
    }

    /// Call counters for reports and metrics.
    pub fn http(&self) -> &Http {
        &self.http
    }

    /// The portal id the token belongs to (`GET /account-info/v3/details`).
    async fn portal(&self) -> Result<Option<String>, CrmError> {
        let reply = self
            .http
            .json::<wire::AccountDetails>(&Call {
                method: Method::GET,
                path: "/account-info/v3/details",
                query: &[],
                body: Body::None,
                lane: Lane::General,
                size: Size::Page,
                endpoint: "account.details",
            })
            .await?;
        Ok(Some(format!("HubSpot portal {}", reply.body.portal_id)))
    }

    fn needs_email(&self, spec: &PullSpec) -> bool {
        spec.event_types.iter().any(|t| {
            matches!(
                self.sources.get(t),
                Some(EventSource::HubspotEmail(_) | EventSource::HubspotForms)
            )
        })
    }

    async fn list_page(
        &self,
        properties: &str,
        after: Option<&str>,
    ) -> Result<ContactPage, CrmError> {
        let mut query = vec![
            ("limit", LIST_PAGE.to_string()),
            ("properties", properties.to_owned()),
            ("archived", "false".to_owned()),
        ];
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        let reply = self
            .http
            .json::<ContactPage>(&Call {
                method: Method::GET,
                path: "/crm/v3/objects/contacts",
                query: &query,
                body: Body::None,
                lane: Lane::General,
                size: Size::Page,
                endpoint: "contacts.list",
            })
            .await?;
        Ok(reply.body)
    }

    async fn search_page(
        &self,
        object: Searched,
        properties: &[String],
        from_ms: i64,
        until_ms: i64,
        after_id: u64,
    ) -> Result<ContactPage, CrmError> {
        let request = SearchRequest {
            filter_groups: vec![FilterGroup {
                filters: vec![
                    Filter {
                        property_name: object.modified,
                        operator: "GTE",
                        value: from_ms.to_string(),
                    },
                    Filter {
                        property_name: object.modified,
                        operator: "LTE",
                        value: until_ms.to_string(),
                    },
                    Filter {
                        property_name: "hs_object_id",
                        operator: "GT",
                        value: after_id.to_string(),
                    },
                ],
            }],
            sorts: vec![Sort {
                property_name: "hs_object_id",
                direction: "ASCENDING",
            }],
            properties,
            limit: SEARCH_PAGE,
        };
        let body = serde_json::to_value(&request).map_err(|e| CrmError::Protocol {
            endpoint: object.search_endpoint.to_owned(),
            message: e.to_string(),
        })?;
        let reply = self
            .http
            .json::<ContactPage>(&Call {
                method: Method::POST,
                path: object.search_path,
                query: &[],
                body: Body::Json(&body),
                lane: Lane::Search,
                size: Size::Page,
                endpoint: object.search_endpoint,
            })
            .await?;
        Ok(reply.body)
    }

    /// Fetches a page's event detail (or marks records as last seen) and
    /// hands the page on.
    async fn deliver(
        &self,
        spec: &PullSpec,
        mut records: Vec<CrmRecord>,
        summary: &mut PullSummary,
        sink: &mpsc::Sender<Vec<CrmRecord>>,
    ) -> Result<(), CrmError> {
        if !spec.event_types.is_empty() && !records.is_empty() {
            summary.detail_calls += self.enrich(spec, &mut records).await?;
        } else {
            // Records as leadscored last saw them (echoes of its own
            // writes, mostly).
            for record in &mut records {
                record.detail_skipped = spec.known.get(&record.id) == Some(&record.modified_ms);
            }
        }
        summary.records += records.len() as u64;
        if !records.is_empty() && sink.send(records).await.is_err() {
            return Err(CrmError::Stopped);
        }
        Ok(())
    }

    /// Reads the contacts `spec.ids` names, 100 to a batch read. Ids that
    /// no longer exist (deleted or merged since the webhook) come back as
    /// HubSpot's `OBJECT_NOT_FOUND` and are skipped.
    async fn pull_ids(
        &self,
        spec: &PullSpec,
        properties: &[String],
        sink: mpsc::Sender<Vec<CrmRecord>>,
    ) -> Result<PullSummary, CrmError> {
        let mut summary = PullSummary::default();
        let ids: Vec<&String> = spec.ids.iter().filter(|id| is_object_id(id)).collect();
        for chunk in ids.chunks(BATCH) {
            let request = wire::BatchRead {
                inputs: chunk.iter().map(|id| wire::ObjectId { id }).collect(),
                properties,
                properties_with_history: [],
            };
            let body = serde_json::to_value(&request).map_err(|e| CrmError::Protocol {
                endpoint: "contacts.batch.read".to_owned(),
                message: e.to_string(),
            })?;
            let answer = self
                .http
                .json::<BatchResponse>(&Call {
                    method: Method::POST,
                    path: "/crm/v3/objects/contacts/batch/read",
                    query: &[("archived", "false".to_owned())],
                    body: Body::Json(&body),
                    lane: Lane::General,
                    size: Size::Page,
                    endpoint: "contacts.batch.read",
                })
                .await;
            summary.pages += 1;
            let results = match answer {
                Ok(reply) => reply.body.results,
                // Every id unknown: none to read.
                Err(CrmError::Rejected { status: 404, .. }) => Vec::new(),
                Err(other) => return Err(other),
            };
            // Only what was asked for: an answer naming another contact
            // is not pulled, so nothing is written to it.
            let asked: FxHashSet<&str> = chunk.iter().map(|id| id.as_str()).collect();
            let (results, foreign): (Vec<wire::Contact>, Vec<wire::Contact>) = results
                .into_iter()
                .partition(|c| asked.contains(c.id.as_str()));
            if let Some(odd) = foreign.first() {
                tracing::warn!(id = %odd.id, count = foreign.len(), "a batch read answered with contacts not asked for; left out");
            }
            let records: Vec<CrmRecord> = results.into_iter().map(to_crm_record).collect();
            self.deliver(spec, records, &mut summary, &sink).await?;
        }
        Ok(summary)
    }

    /// Reads one batch of at most 100 companies.
    async fn company_batch(
        &self,
        ids: &[String],
        fields: &[String],
    ) -> Result<Vec<CrmCompany>, CrmError> {
        let request = wire::BatchRead {
            inputs: ids.iter().map(|id| wire::ObjectId { id }).collect(),
            properties: fields,
            properties_with_history: [],
        };
        let body = serde_json::to_value(&request).map_err(|e| CrmError::Protocol {
            endpoint: "companies.batch.read".to_owned(),
            message: e.to_string(),
        })?;
        let answer = self
            .http
            .json::<BatchResponse>(&Call {
                method: Method::POST,
                path: "/crm/v3/objects/companies/batch/read",
                query: &[("archived", "false".to_owned())],
                body: Body::Json(&body),
                lane: Lane::General,
                size: Size::Page,
                endpoint: "companies.batch.read",
            })
            .await;
        let results = match answer {
            Ok(reply) => reply.body.results,
            // Every id unknown (merged or deleted companies): none to read.
            Err(CrmError::Rejected { status: 404, .. }) => Vec::new(),
            Err(other) => return Err(other),
        };
        Ok(results
            .into_iter()
            .map(|c| to_crm_company(c, COMPANY_MODIFIED))
            .collect())
    }

    /// Every form in the portal: (guid, name).
    async fn forms(&self) -> Result<Vec<(String, String)>, CrmError> {
        let mut forms = Vec::new();
        let mut pager = Pager::new("forms.list");
        loop {
            let mut query = vec![("limit", "100".to_owned())];
            if let Some(cursor) = pager.cursor() {
                query.push(("after", cursor.to_owned()));
            }
            let page = self
                .http
                .json::<FormList>(&Call {
                    method: Method::GET,
                    path: "/marketing/v3/forms",
                    query: &query,
                    body: Body::None,
                    lane: Lane::General,
                    size: Size::Page,
                    endpoint: "forms.list",
                })
                .await?
                .body;
            let empty = page.results.is_empty();
            forms.extend(page.results.into_iter().map(|form| {
                let name = form.name.clone().unwrap_or_else(|| form.id.clone());
                (form.id, name)
            }));
            if !pager.turn(page.paging.and_then(|p| p.next).map(|n| n.after), !empty)? {
                break;
            }
        }
        Ok(forms)
    }

    /// A form's submissions, newest first, page by page until one reaches
    /// back past `from_ms`: (email, submitted at, occurrence id).
    async fn form_submissions(
        &self,
        guid: &str,
        from_ms: i64,
        mut each: impl FnMut(Vec<(String, i64, String)>) -> Result<(), CrmError>,
    ) -> Result<u64, CrmError> {
        let path = format!("/form-integrations/v1/submissions/forms/{guid}");
        let mut pager = Pager::new("forms.submissions");
        let mut calls = 0;
        loop {
            let mut query = vec![("limit", "50".to_owned())];
            if let Some(cursor) = pager.cursor() {
                query.push(("after", cursor.to_owned()));
            }
            calls += 1;
            let page = self
                .http
                .json::<SubmissionPage>(&Call {
                    method: Method::GET,
                    path: &path,
                    query: &query,
                    body: Body::None,
                    lane: Lane::General,
                    size: Size::Page,
                    endpoint: "forms.submissions",
                })
                .await?
                .body;
            let empty = page.results.is_empty();
            let reached_back = page.results.iter().any(|s| s.submitted_at < from_ms);
            let found = page
                .results
                .into_iter()
                .filter(|s| s.submitted_at >= from_ms)
                .filter_map(|submission| {
                    let email = submission
                        .values
                        .iter()
                        .find(|v| v.name == "email")
                        .and_then(|v| v.value.clone())?
                        .to_lowercase();
                    let id = format!("f:{guid}:{}:{email}", submission.submitted_at);
                    Some((email, submission.submitted_at, id))
                })
                .collect();
            each(found)?;
            let next = page.paging.and_then(|p| p.next).map(|n| n.after);
            if !pager.turn(next, !empty && !reached_back)? {
                break;
            }
        }
        Ok(calls)
    }

    /// Every form submission in the portal, by email: read once per pull
    /// (the forms API cannot be asked per contact), so a daemon sees new
    /// submissions on its next pull.
    async fn submissions(&self, pull: i64) -> Result<Arc<Submissions>, CrmError> {
        let mut cached = self.submissions.lock().await;
        if let Some((key, found)) = cached.as_ref()
            && *key == pull
        {
            return Ok(found.clone());
        }
        let mut by_email: Submissions = HashMap::new();
        for (guid, name) in self.forms().await? {
            self.form_submissions(&guid, i64::MIN, |found| {
                for (email, at, id) in found {
                    by_email
                        .entry(email)
                        .or_default()
                        .push((at, name.clone(), id));
                }
                Ok(())
            })
            .await?;
        }
        let loaded = Arc::new(by_email);
        *cached = Some((pull, loaded.clone()));
        Ok(loaded)
    }

    /// One page of marketing email events.
    async fn email_page(&self, query: &[(&str, String)]) -> Result<EmailEventPage, CrmError> {
        Ok(self
            .http
            .json::<EmailEventPage>(&Call {
                method: Method::GET,
                path: "/email/public/v1/events",
                query,
                body: Body::None,
                lane: Lane::General,
                size: Size::Page,
                endpoint: "email.events",
            })
            .await?
            .body)
    }

    /// One page of web and behavioural events.
    async fn web_page(&self, query: &[(&str, String)]) -> Result<WebEventPage, CrmError> {
        Ok(self
            .http
            .json::<WebEventPage>(&Call {
                method: Method::GET,
                path: "/events/v3/events",
                query,
                body: Body::None,
                lane: Lane::General,
                size: Size::Page,
                endpoint: "web.events",
            })
            .await?
            .body)
    }

    /// Email events of one recipient, with the model's type names.
    async fn email_events(
        &self,
        email: &str,
        wanted: &Kinds,
    ) -> Result<(Vec<CrmEvent>, u64), CrmError> {
        let mut events = Vec::new();
        let mut pager = Pager::new("email.events");
        loop {
            let mut query = vec![
                ("recipient", email.to_owned()),
                ("limit", STREAM_PAGE.to_string()),
            ];
            if let Some(cursor) = pager.cursor() {
                query.push(("offset", cursor.to_owned()));
            }
            let page = self.email_page(&query).await?;
            let empty = page.events.is_empty();
            for event in page.events {
                email_events_of(event, wanted, &mut events);
            }
            if !pager.turn(page.offset.filter(|_| page.has_more), !empty)? {
                break;
            }
        }
        Ok((events, pager.pages() + 1))
    }

    /// Web and behavioural events of one contact.
    async fn web_events(&self, id: &str, wanted: &Kinds) -> Result<(Vec<CrmEvent>, u64), CrmError> {
        let mut events = Vec::new();
        let mut pager = Pager::new("web.events");
        loop {
            let mut query = vec![
                ("objectType", "contact".to_owned()),
                ("objectId", id.to_owned()),
                ("limit", STREAM_PAGE.to_string()),
            ];
            if let Some(cursor) = pager.cursor() {
                query.push(("after", cursor.to_owned()));
            }
            let page = self.web_page(&query).await?;
            let empty = page.results.is_empty();
            for event in page.results {
                web_events_of(event, wanted, &mut events);
            }
            if !pager.turn(page.paging.and_then(|p| p.next).map(|n| n.after), !empty)? {
                break;
            }
        }
        Ok((events, pager.pages() + 1))
    }

    /// Every email event of one HubSpot type in `[from_ms, until_ms]`,
    /// for every recipient, in pages of 1,000.
    async fn email_stream(
        &self,
        hubspot_type: &str,
        wanted: &Kinds,
        from_ms: i64,
        until_ms: i64,
        sink: &mpsc::Sender<Vec<StreamEvent>>,
    ) -> Result<StreamSummary, CrmError> {
        let mut summary = StreamSummary::default();
        let mut pager = Pager::new("email.events");
        loop {
            let mut query = vec![
                ("eventType", hubspot_type.to_owned()),
                ("startTimestamp", from_ms.max(0).to_string()),
                ("endTimestamp", until_ms.to_string()),
                ("limit", STREAM_PAGE.to_string()),
            ];
            if let Some(cursor) = pager.cursor() {
                query.push(("offset", cursor.to_owned()));
            }
            summary.calls += 1;
            let page = self.email_page(&query).await?;
            let empty = page.events.is_empty();
            let mut found = Vec::new();
            for event in page.events {
                let Some(key) = event.recipient.as_deref().map(email_key) else {
                    continue;
                };
                let mut events = Vec::new();
                email_events_of(event, wanted, &mut events);
                found.extend(events.into_iter().map(|event| StreamEvent {
                    key: key.clone(),
                    event,
                }));
            }
            summary.events += found.len() as u64;
            if !found.is_empty() {
                sink.send(found).await.map_err(|_| CrmError::Stopped)?;
            }
            if !pager.turn(page.offset.filter(|_| page.has_more), !empty)? {
                break;
            }
        }
        Ok(summary)
    }

    /// Every contact event of one HubSpot type in `[from_ms, until_ms]`,
    /// for every contact, following the cursor.
    async fn web_stream(
        &self,
        hubspot_type: &str,
        wanted: &Kinds,
        from_ms: i64,
        until_ms: i64,
        sink: &mpsc::Sender<Vec<StreamEvent>>,
    ) -> Result<StreamSummary, CrmError> {
        let iso = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .unwrap_or_default()
                .to_string()
        };
        let mut summary = StreamSummary::default();
        let mut pager = Pager::new("web.events");
        loop {
            let mut query = vec![
                ("objectType", "contact".to_owned()),
                ("eventType", hubspot_type.to_owned()),
                ("occurredBefore", iso(until_ms + 1)),
                ("limit", STREAM_PAGE.to_string()),
            ];
            if from_ms > 0 {
                query.push(("occurredAfter", iso(from_ms - 1)));
            }
            if let Some(cursor) = pager.cursor() {
                query.push(("after", cursor.to_owned()));
            }
            summary.calls += 1;
            let page = self.web_page(&query).await?;
            let empty = page.results.is_empty();
            let mut found = Vec::new();
            for event in page.results {
                let Some(key) = event.object_id.clone().filter(|id| is_object_id(id)) else {
                    continue;
                };
                let mut events = Vec::new();
                web_events_of(event, wanted, &mut events);
                found.extend(events.into_iter().map(|event| StreamEvent {
                    key: key.clone(),
                    event,
                }));
            }
            summary.events += found.len() as u64;
            if !found.is_empty() {
                sink.send(found).await.map_err(|_| CrmError::Stopped)?;
            }
            if !pager.turn(page.paging.and_then(|p| p.next).map(|n| n.after), !empty)? {
                break;
            }
        }
        Ok(summary)
    }

    /// Every form submission since `from_ms`: the forms, then each form's
    /// submissions newest first until they reach back past `from_ms`.
    async fn form_stream(
        &self,
        kinds: &[String],
        from_ms: i64,
        until_ms: i64,
        sink: &mpsc::Sender<Vec<StreamEvent>>,
    ) -> Result<StreamSummary, CrmError> {
        let mut summary = StreamSummary {
            calls: 1,
            ..StreamSummary::default()
        };
        let forms = self.forms().await?;
        for (guid, name) in forms {
            let mut pages: Vec<Vec<StreamEvent>> = Vec::new();
            summary.calls += self
                .form_submissions(&guid, from_ms, |found| {
                    let mut events = Vec::new();
                    for (email, at, id) in found.into_iter().filter(|(_, at, _)| *at <= until_ms) {
                        let mut one = Vec::new();
                        push_each(
                            &mut one,
                            kinds,
                            &id,
                            at,
                            vec![("form_id".to_owned(), name.clone())],
                        );
                        let key = email_key(&email);
                        events.extend(one.into_iter().map(|event| StreamEvent {
                            key: key.clone(),
                            event,
                        }));
                    }
                    pages.push(events);
                    Ok(())
                })
                .await?;
            for page in pages.into_iter().filter(|p| !p.is_empty()) {
                summary.events += page.len() as u64;
                sink.send(page).await.map_err(|_| CrmError::Stopped)?;
            }
        }
        Ok(summary)
    }

    /// The HubSpot types each model event type of `types` reads, by API.
    fn kinds_by_api<'a>(
        &self,
        types: impl Iterator<Item = &'a String>,
    ) -> (Kinds, Kinds, Vec<String>) {
        let mut email_types = Kinds::new();
        let mut web_types = Kinds::new();
        let mut forms: Vec<String> = Vec::new();
        for model_type in types {
            match self.sources.get(model_type) {
                Some(EventSource::HubspotEmail(types)) => {
                    for t in types {
                        email_types
                            .entry(t.clone())
                            .or_default()
                            .push(model_type.clone());
                    }
                }
                Some(EventSource::HubspotWeb(types)) => {
                    for t in types {
                        web_types
                            .entry(t.clone())
                            .or_default()
                            .push(model_type.clone());
                    }
                }
                Some(EventSource::HubspotForms) => forms.push(model_type.clone()),
                _ => {}
            }
        }
        (email_types, web_types, forms)
    }

    /// Writes one batch of at most 100 updates to contacts or companies.
    async fn write_batch(&self, object: Object, chunk: &[Update]) -> Result<WriteReport, CrmError> {
        let (path, endpoint) = match object {
            Object::Contact => (
                "/crm/v3/objects/contacts/batch/update",
                "contacts.batch.update",
            ),
            Object::Company => (
                "/crm/v3/objects/companies/batch/update",
                "companies.batch.update",
            ),
        };
        let mut report = WriteReport {
            calls: 1,
            ..WriteReport::default()
        };
        let batch = UpdateBatch {
            inputs: chunk
                .iter()
                .map(|u| UpdateInput {
                    id: &u.id,
                    properties: &u.values,
                })
                .collect(),
        };
        let body = serde_json::to_value(&batch).map_err(|e| CrmError::Protocol {
            endpoint: endpoint.to_owned(),
            message: e.to_string(),
        })?;
        let answer = self
            .http
            .json::<BatchResponse>(&Call {
                method: Method::POST,
                path,
                query: &[],
                body: Body::Json(&body),
                lane: Lane::General,
                size: Size::Page,
                endpoint,
            })
            .await;
        let (results, errors) = match answer {
            Ok(reply) => (reply.body.results, reply.body.errors),
            Err(CrmError::Rejected { message, body, .. }) => {
                // Every input was refused (HubSpot answers 400 when
                // none is valid); per-record reasons when it gives them.
                let errors: Vec<wire::BatchError> = serde_json::from_value::<ErrorBody>(body)
                    .map(|b| b.errors)
                    .unwrap_or_default();
                if errors.iter().all(|e| e.context.is_none()) {
                    for update in chunk {
                        report.failed.push((update.id.clone(), message.clone()));
                    }
                    return Ok(report);
                }
                (Vec::new(), errors)
            }
            Err(other) => return Err(other),
        };
        let mut reasons: HashMap<String, String> = HashMap::new();
        for error in errors {
            let reason = format!(
                "{}: {}",
                error.category.as_deref().unwrap_or("ERROR"),
                error.message.as_deref().unwrap_or("no message")
            );
            for id in error.context.map(|c| c.ids).unwrap_or_default() {
                reasons.insert(id, reason.clone());
            }
        }
        let mut done: std::collections::HashSet<String> = std::collections::HashSet::new();
        for contact in results {
            if let Some(at) = contact
                .updated_at
                .as_deref()
                .and_then(crate::record::parse_time)
            {
                report.stamps.push((contact.id.clone(), at));
            }
            done.insert(contact.id);
        }
        for update in chunk {
            if done.contains(&update.id) {
                report.written.push(update.id.clone());
            } else if let Some(reason) = reasons.remove(&update.id) {
                report.failed.push((update.id.clone(), reason));
            } else {
                report.failed.push((
                    update.id.clone(),
                    "not in HubSpot's answer (merged or archived?)".to_owned(),
                ));
            }
        }
        Ok(report)
    }

    /// Creates a property or group. A 409 means an earlier attempt whose
    /// answer was lost already created it.
    async fn create(
        &self,
        path: &str,
        endpoint: &str,
        body: &serde_json::Value,
    ) -> Result<(), CrmError> {
        let created = self
            .http
            .json::<serde_json::Value>(&Call {
                method: Method::POST,
                path,
                query: &[],
                body: Body::Json(body),
                lane: Lane::General,
                size: Size::Page,
                endpoint,
            })
            .await;
        match created {
            Ok(_) | Err(CrmError::Rejected { status: 409, .. }) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Email and web events of one contact.
    async fn detail_for(
        &self,
        index: usize,
        email: Option<String>,
        id: String,
        email_types: &Kinds,
        web_types: &Kinds,
    ) -> Result<(usize, Vec<CrmEvent>, u64), CrmError> {
        let mut events = Vec::new();
        let mut calls = 0;
        if !email_types.is_empty()
            && let Some(email) = &email
        {
            let (found, n) = self.email_events(email, email_types).await?;
            events.extend(found);
            calls += n;
        }
        if !web_types.is_empty() {
            let (found, n) = self.web_events(&id, web_types).await?;
            events.extend(found);
            calls += n;
        }
        Ok((index, events, calls))
    }

    /// Adds the event detail `spec` asks for to a page of records.
    async fn enrich(&self, spec: &PullSpec, records: &mut [CrmRecord]) -> Result<u64, CrmError> {
        // Records as leadscored last saw them keep their stored events.
        for record in records.iter_mut() {
            record.detail_skipped = spec.known.get(&record.id) == Some(&record.modified_ms);
        }
        let (email_types, web_types, forms) = self.kinds_by_api(spec.event_types.iter());
        let mut calls = 0;
        let all_skipped = records.iter().all(|r| r.detail_skipped);
        let submissions = if forms.is_empty() || all_skipped {
            None
        } else {
            Some(self.submissions(spec.until_ms).await?)
        };
        let concurrency = self.http.limits().concurrency.max(1);
        let work: Vec<(usize, Option<String>, String)> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.detail_skipped)
            .map(|(index, r)| (index, r.values.get("email").cloned(), r.id.clone()))
            .collect();
        let (email_types, web_types) = (&email_types, &web_types);
        let fetched: Vec<(usize, Vec<CrmEvent>, u64)> =
            futures_util::stream::iter(work.into_iter().map(|(index, email, id)| {
                self.detail_for(index, email, id, email_types, web_types)
            }))
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        for (index, events, n) in fetched {
            calls += n;
            if let Some(record) = records.get_mut(index) {
                record.events.extend(events);
            }
        }
        if let Some(submissions) = submissions {
            for record in records.iter_mut().filter(|r| !r.detail_skipped) {
                let Some(email) = record.values.get("email") else {
                    continue;
                };
                for (at, form, id) in submissions.get(&email.to_lowercase()).into_iter().flatten() {
                    let attributes = vec![("form_id".to_owned(), form.clone())];
                    push_each(&mut record.events, &forms, id, *at, attributes);
                }
            }
        }
        Ok(calls)
    }
}

/// The event types leadscored wants for each HubSpot event type (one
/// HubSpot type can feed a model event and a derived input).
type Kinds = HashMap<String, Vec<String>>;

/// Whether `id` can be a HubSpot object id (a positive whole number): a
/// record or event naming anything else is not HubSpot's data.
fn is_object_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Adds one event per wanted type.
fn push_each(
    events: &mut Vec<CrmEvent>,
    kinds: &[String],
    id: &str,
    at_ms: i64,
    attributes: Vec<(String, String)>,
) {
    for kind in kinds {
        events.push(CrmEvent {
            id: id.to_owned(),
            kind: kind.clone(),
            at_ms,
            attributes: attributes.clone(),
        });
    }
}

/// A marketing email event as the model's events (one per model type its
/// HubSpot type feeds).
fn email_events_of(event: wire::EmailEvent, wanted: &Kinds, out: &mut Vec<CrmEvent>) {
    let Some(kinds) = wanted.get(&event.kind.to_uppercase()) else {
        return;
    };
    let mut attributes = Vec::new();
    if let Some(campaign) = event.campaign_id {
        attributes.push(("campaign".to_owned(), campaign.to_string()));
    }
    if let Some(url) = event.url {
        attributes.push(("url".to_owned(), url));
    }
    let id = match &event.id {
        Some(id) => format!("e:{}:{id}", event.created),
        None => String::new(),
    };
    push_each(out, kinds, &id, event.created, attributes);
}

/// A web or behavioural event as the model's events.
fn web_events_of(event: wire::WebEvent, wanted: &Kinds, out: &mut Vec<CrmEvent>) {
    let Some(kinds) = wanted.get(&event.event_type) else {
        return;
    };
    let Ok(at) = event.occurred_at.parse::<jiff::Timestamp>() else {
        return;
    };
    let attributes = event
        .properties
        .into_iter()
        .filter_map(|(name, value)| {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                _ => return None,
            };
            let name = if name == "hs_url" {
                "url".to_owned()
            } else {
                name
            };
            Some((name, text))
        })
        .collect();
    let id = event.id.map(|id| format!("w:{id}")).unwrap_or_default();
    push_each(out, kinds, &id, at.as_millisecond(), attributes);
}

/// A pulled company in the neutral shape.
fn to_crm_company(company: wire::Contact, modified: &str) -> CrmCompany {
    let modified_ms = company
        .properties
        .get(modified)
        .and_then(|v| v.as_deref())
        .or(company.updated_at.as_deref())
        .and_then(crate::record::parse_time)
        .unwrap_or(0);
    CrmCompany {
        id: company.id,
        modified_ms,
        values: company
            .properties
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
    }
}

/// A pulled contact in the neutral shape.
fn to_crm_record(contact: wire::Contact) -> CrmRecord {
    let modified_ms = contact
        .properties
        .get("lastmodifieddate")
        .and_then(|v| v.as_deref())
        .or(contact.updated_at.as_deref())
        .and_then(crate::record::parse_time)
        .unwrap_or(0);
    CrmRecord {
        id: contact.id,
        modified_ms,
        values: contact
            .properties
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
        events: Vec::new(),
        lists: Vec::new(),
        detail_skipped: false,
    }
}

impl Crm for Hubspot {
    async fn pull(
        &self,
        spec: &PullSpec,
        sink: mpsc::Sender<Vec<CrmRecord>>,
    ) -> Result<PullSummary, CrmError> {
        let mut properties = spec.fields.clone();
        properties.push("lastmodifieddate".to_owned());
        if self.needs_email(spec) {
            properties.push("email".to_owned());
        }
        properties.sort();
        properties.dedup();
        if spec.kind == PullKind::Ids {
            return self.pull_ids(spec, &properties, sink).await;
        }
        let joined = properties.join(",");
        let mut summary = PullSummary::default();
        let mut after: Option<String> = None;
        let mut last_id: u64 = 0;
        let mut pager = Pager::new(match spec.kind {
            PullKind::Full => "contacts.list",
            PullKind::Since(_) | PullKind::Ids => "contacts.search",
        });
        loop {
            let page = match spec.kind {
                PullKind::Full | PullKind::Ids => self.list_page(&joined, after.as_deref()).await?,
                PullKind::Since(watermark) => {
                    self.search_page(
                        CONTACTS,
                        &properties,
                        watermark - self.overlap_ms,
                        spec.until_ms,
                        last_id,
                    )
                    .await?
                }
            };
            summary.pages += 1;
            let next = page.paging.and_then(|p| p.next).map(|n| n.after);
            // A cursor that came before means this page came before too:
            // stop before its records go anywhere.
            if let (PullKind::Full, Some(cursor)) = (spec.kind, &next)
                && !page.results.is_empty()
            {
                pager.next(cursor)?;
            }
            // A contact HubSpot cannot have sent (an id that is not a
            // number) is not pulled, so nothing is ever written to it.
            let (results, foreign): (Vec<wire::Contact>, Vec<wire::Contact>) =
                page.results.into_iter().partition(|c| is_object_id(&c.id));
            if let Some(odd) = foreign.first() {
                tracing::warn!(id = %odd.id, count = foreign.len(), "contacts with ids HubSpot does not give; left out");
            }
            let records: Vec<CrmRecord> = results.into_iter().map(to_crm_record).collect();
            if let (PullKind::Since(_), Some(last)) = (spec.kind, records.last()) {
                match last.id.parse::<u64>() {
                    Ok(id) if id > last_id => last_id = id,
                    _ => {
                        return Err(CrmError::Protocol {
                            endpoint: "contacts.search".to_owned(),
                            message: format!(
                                "ids did not ascend (got {} after {last_id}); stopping rather than looping",
                                last.id
                            ),
                        });
                    }
                }
            }
            let empty = records.is_empty();
            self.deliver(spec, records, &mut summary, &sink).await?;
            match (spec.kind, next) {
                (_, None) => break,
                (_, Some(_)) if empty => break,
                (PullKind::Full | PullKind::Ids, Some(cursor)) => after = Some(cursor),
                // Keyset: the next query starts past the last id, so the
                // search's 10,000-result cap is never reached.
                (PullKind::Since(_), Some(_)) => {}
            }
        }
        Ok(summary)
    }

    async fn write(&self, updates: Vec<Update>) -> Result<WriteReport, CrmError> {
        self.write_object(Object::Contact, updates).await
    }

    async fn write_companies(&self, updates: Vec<Update>) -> Result<WriteReport, CrmError> {
        self.write_object(Object::Company, updates).await
    }

    fn streams(&self) -> bool {
        true
    }

    fn detail_calls_per_record(&self, event_types: &[String]) -> u64 {
        let (email, web, _) = self.kinds_by_api(event_types.iter());
        u64::from(!email.is_empty()) + u64::from(!web.is_empty())
    }

    fn stream_page(&self) -> u64 {
        u64::from(STREAM_PAGE)
    }

    fn stream_count(&self, event_types: &[String]) -> u64 {
        let (email, web, forms) = self.kinds_by_api(event_types.iter());
        // Forms: the form list, then at least a page per form (four is a
        // small portal's count).
        email.len() as u64 + web.len() as u64 + if forms.is_empty() { 0 } else { 5 }
    }

    async fn stream_events(
        &self,
        spec: &StreamSpec,
        sink: mpsc::Sender<Vec<StreamEvent>>,
    ) -> Result<StreamSummary, CrmError> {
        let (email, web, forms) = self.kinds_by_api(spec.from_ms.keys());
        let from_of = |kinds: &[String]| {
            kinds
                .iter()
                .filter_map(|k| spec.from_ms.get(k))
                .copied()
                .min()
                .unwrap_or(spec.until_ms)
        };
        let until = spec.until_ms;
        let mut jobs: Vec<futures_util::future::BoxFuture<'_, Result<StreamSummary, CrmError>>> =
            Vec::new();
        // One stream per HubSpot type, each with only its own model kinds.
        for (hubspot_type, kinds) in &email {
            let wanted: Kinds = [(hubspot_type.clone(), kinds.clone())].into();
            let from = from_of(kinds);
            let sink = sink.clone();
            jobs.push(Box::pin(async move {
                self.email_stream(hubspot_type, &wanted, from, until, &sink)
                    .await
            }));
        }
        for (hubspot_type, kinds) in &web {
            let wanted: Kinds = [(hubspot_type.clone(), kinds.clone())].into();
            let from = from_of(kinds);
            let sink = sink.clone();
            jobs.push(Box::pin(async move {
                self.web_stream(hubspot_type, &wanted, from, until, &sink)
                    .await
            }));
        }
        if !forms.is_empty() {
            let from = from_of(&forms);
            let sink = sink.clone();
            let forms = &forms;
            jobs.push(Box::pin(async move {
                self.form_stream(forms, from, until, &sink).await
            }));
        }
        drop(sink);
        let concurrency = self.http.limits().concurrency.max(1);
        let done: Vec<StreamSummary> = futures_util::stream::iter(jobs)
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        Ok(StreamSummary {
            events: done.iter().map(|s| s.events).sum(),
            calls: done.iter().map(|s| s.calls).sum(),
        })
    }

    async fn identity(&self) -> Result<Option<String>, CrmError> {
        self.identity
            .get_or_try_init(|| self.portal())
            .await
            .cloned()
    }

    fn http(&self) -> &Http {
        &self.http
    }

    async fn companies(
        &self,
        ids: &[String],
        fields: &[String],
    ) -> Result<Vec<CrmCompany>, CrmError> {
        let concurrency = self.http.limits().concurrency.max(1);
        let chunks: Vec<Vec<String>> = ids.chunks(BATCH).map(<[String]>::to_vec).collect();
        let batches: Vec<Vec<CrmCompany>> = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|chunk| async move { self.company_batch(&chunk, fields).await }),
        )
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
        Ok(batches.into_iter().flatten().collect())
    }

    async fn changed_companies(
        &self,
        from_ms: i64,
        until_ms: i64,
        fields: &[String],
    ) -> Result<Vec<CrmCompany>, CrmError> {
        let mut properties = fields.to_vec();
        properties.push(COMPANY_MODIFIED.to_owned());
        properties.sort();
        properties.dedup();
        let mut found = Vec::new();
        let mut last_id: u64 = 0;
        loop {
            let page = self
                .search_page(COMPANIES, &properties, from_ms, until_ms, last_id)
                .await?;
            let more = page.paging.and_then(|p| p.next).is_some();
            let Some(last) = page.results.last() else {
                break;
            };
            match last.id.parse::<u64>() {
                Ok(id) if id > last_id => last_id = id,
                _ => {
                    return Err(CrmError::Protocol {
                        endpoint: COMPANIES.search_endpoint.to_owned(),
                        message: format!(
                            "ids did not ascend (got {} after {last_id}); stopping rather than looping",
                            last.id
                        ),
                    });
                }
            }
            found.extend(
                page.results
                    .into_iter()
                    .map(|c| to_crm_company(c, COMPANY_MODIFIED)),
            );
            if !more {
                break;
            }
        }
        Ok(found)
    }

    async fn list_infos(&self, names: &[String]) -> Result<Vec<ListInfo>, CrmError> {
        // One page of every list (500 a page) costs fewer calls than a
        // search per name whenever the model names more than one list.
        let mut hits: Vec<wire::ListHit> = Vec::new();
        let mut offset = 0;
        let mut pages = 0;
        loop {
            let request = wire::ListSearch {
                query: if names.len() == 1 { &names[0] } else { "" },
                offset,
                count: LISTS_PAGE,
                additional_properties: [],
            };
            let body = serde_json::to_value(&request).map_err(|e| CrmError::Protocol {
                endpoint: "lists.search".to_owned(),
                message: e.to_string(),
            })?;
            let page = self
                .http
                .json::<wire::ListSearchPage>(&Call {
                    method: Method::POST,
                    path: "/crm/v3/lists/search",
                    query: &[],
                    body: Body::Json(&body),
                    lane: Lane::General,
                    size: Size::Page,
                    endpoint: "lists.search",
                })
                .await?
                .body;
            pages += 1;
            let got = page.lists.len() as u64;
            hits.extend(page.lists);
            // Offsets must move on, and the pages cannot outnumber the total.
            if !page.has_more || got == 0 {
                break;
            }
            if page.offset <= offset || pages > page.total / u64::from(LISTS_PAGE) + 1 {
                return Err(CrmError::Protocol {
                    endpoint: "lists.search".to_owned(),
                    message: format!(
                        "the offset did not advance (got {} after {offset}); stopping rather than looping",
                        page.offset
                    ),
                });
            }
            offset = page.offset;
        }
        Ok(names
            .iter()
            .map(|name| {
                let hit = hits
                    .iter()
                    .filter(|h| h.object_type_id.is_empty() || h.object_type_id == CONTACT_TYPE)
                    .find(|h| &h.name == name)
                    .or_else(|| {
                        hits.iter()
                            .filter(|h| {
                                h.object_type_id.is_empty() || h.object_type_id == CONTACT_TYPE
                            })
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                    });
                match hit {
                    Some(hit) => {
                        let get = |k: &str| hit.additional.get(k).map(String::as_str).unwrap_or("");
                        ListInfo {
                            name: name.clone(),
                            id: Some(hit.list_id.clone()),
                            change_key: format!(
                                "v{} size {} added {} removed {}",
                                hit.list_version,
                                get("hs_list_size"),
                                get("hs_last_record_added_at"),
                                get("hs_last_record_removed_at")
                            ),
                            size: get("hs_list_size").parse().unwrap_or(0),
                        }
                    }
                    None => ListInfo {
                        name: name.clone(),
                        id: None,
                        change_key: String::new(),
                        size: 0,
                    },
                }
            })
            .collect())
    }

    async fn missing_fields(
        &self,
        contact: &[String],
        company: &[String],
    ) -> Result<Vec<(&'static str, String)>, CrmError> {
        let mut missing = Vec::new();
        for (object, path, endpoint, wanted) in [
            (
                "contact",
                "/crm/v3/properties/contacts",
                "properties.list",
                contact,
            ),
            (
                "company",
                "/crm/v3/properties/companies",
                "properties.companies",
                company,
            ),
        ] {
            if wanted.is_empty() {
                continue;
            }
            let have: std::collections::HashSet<String> = self
                .http
                .json::<PropertyList>(&Call {
                    method: Method::GET,
                    path,
                    query: &[],
                    body: Body::None,
                    lane: Lane::General,
                    size: Size::Page,
                    endpoint,
                })
                .await?
                .body
                .results
                .into_iter()
                .map(|p| p.name)
                .collect();
            missing.extend(
                wanted
                    .iter()
                    .filter(|f| !have.contains(f.as_str()))
                    .map(|f| (object, f.clone())),
            );
        }
        Ok(missing)
    }

    async fn list_members(&self, list_id: &str) -> Result<Vec<String>, CrmError> {
        let path = format!("/crm/v3/lists/{list_id}/memberships");
        let mut members = Vec::new();
        let mut pager = Pager::new("lists.memberships");
        loop {
            let mut query = vec![("limit", MEMBERS_PAGE.to_string())];
            if let Some(cursor) = pager.cursor() {
                query.push(("after", cursor.to_owned()));
            }
            let page = self
                .http
                .json::<wire::MemberPage>(&Call {
                    method: Method::GET,
                    path: &path,
                    query: &query,
                    body: Body::None,
                    lane: Lane::General,
                    size: Size::Page,
                    endpoint: "lists.memberships",
                })
                .await?
                .body;
            let got = page.results.len();
            members.extend(page.results.into_iter().map(|m| m.record_id));
            if let Some(total) = page.total {
                pager.bound_by(total, u64::from(MEMBERS_PAGE));
            }
            if !pager.turn(page.paging.and_then(|p| p.next).map(|n| n.after), got > 0)? {
                break;
            }
        }
        Ok(members)
    }

    async fn setup(&self, wanted: &[PropertySpec], apply: bool) -> Result<SetupReport, CrmError> {
        let mut report = SetupReport::default();
        for object in [Object::Contact, Object::Company] {
            let specs: Vec<PropertySpec> = wanted
                .iter()
                .filter(|s| s.object == object)
                .cloned()
                .collect();
            // Contacts are always checked (the call proves the token);
            // companies only when something is written to them.
            if specs.is_empty() && object == Object::Company {
                continue;
            }
            let part = self.setup_object(object, &specs, apply).await?;
            report.created.extend(part.created);
            report.existing.extend(part.existing);
            report.conflicts.extend(part.conflicts);
            report.missing.extend(part.missing);
        }
        Ok(report)
    }
}

impl Hubspot {
    /// Writes updates to contacts or companies in batches of 100, sent
    /// concurrently (bounded); reports keep batch order.
    async fn write_object(
        &self,
        object: Object,
        updates: Vec<Update>,
    ) -> Result<WriteReport, CrmError> {
        let concurrency = self.http.limits().concurrency.max(1);
        let mut batches: Vec<Vec<Update>> = Vec::new();
        let mut rest = updates.into_iter().peekable();
        while rest.peek().is_some() {
            batches.push(rest.by_ref().take(BATCH).collect());
        }
        let reports: Vec<WriteReport> = futures_util::stream::iter(
            batches
                .into_iter()
                .map(|batch| async move { self.write_batch(object, &batch).await }),
        )
        .buffered(concurrency)
        .try_collect()
        .await?;
        let mut report = WriteReport::default();
        for part in reports {
            report.calls += part.calls;
            report.written.extend(part.written);
            report.stamps.extend(part.stamps);
            report.failed.extend(part.failed);
        }
        Ok(report)
    }

    /// Setup on one object's properties: contacts' go into leadscored's
    /// own group (made when missing), companies' into HubSpot's default
    /// `companyinformation` group.
    async fn setup_object(
        &self,
        object: Object,
        wanted: &[PropertySpec],
        apply: bool,
    ) -> Result<SetupReport, CrmError> {
        let (properties, group, endpoint) = match object {
            Object::Contact => ("/crm/v3/properties/contacts", GROUP, "properties.list"),
            Object::Company => (
                "/crm/v3/properties/companies",
                "companyinformation",
                "company_properties.list",
            ),
        };
        let call = |method: Method, path: &'static str, endpoint: &'static str| Call {
            method,
            path,
            query: &[],
            body: Body::None,
            lane: Lane::General,
            size: Size::Page,
            endpoint,
        };
        let existing = self
            .http
            .json::<PropertyList>(&call(Method::GET, properties, endpoint))
            .await?
            .body
            .results;
        let by_name: HashMap<&str, &wire::Property> =
            existing.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut report = SetupReport::default();
        let mut missing = Vec::new();
        for spec in wanted {
            match by_name.get(spec.name.as_str()) {
                None => missing.push(spec),
                Some(property) => {
                    let expected = match spec.kind {
                        OutputKind::Number => "number",
                        OutputKind::Choice => "enumeration",
                        OutputKind::Text => "string",
                    };
                    if property.kind != expected {
                        report.conflicts.push((
                            spec.name.clone(),
                            format!(
                                "exists as type {}, leadscored writes {expected}",
                                property.kind
                            ),
                        ));
                        continue;
                    }
                    let have: Vec<&str> =
                        property.options.iter().map(|o| o.value.as_str()).collect();
                    let lacking: Vec<&str> = spec
                        .options
                        .iter()
                        .map(String::as_str)
                        .filter(|o| !have.contains(o))
                        .collect();
                    if spec.kind == OutputKind::Choice && !lacking.is_empty() {
                        report.conflicts.push((
                            spec.name.clone(),
                            format!(
                                "lacks the option{} {}{}",
                                if lacking.len() == 1 { "" } else { "s" },
                                lacking.join(", "),
                                if property.hubspot_defined == Some(true) {
                                    " (a HubSpot property: map the values onto its options)"
                                } else {
                                    " (add them in HubSpot or map the values onto its options)"
                                }
                            ),
                        ));
                    } else {
                        report.existing.push(spec.name.clone());
                    }
                }
            }
        }
        if !apply {
            report.missing = missing.iter().map(|s| s.name.clone()).collect();
            return Ok(report);
        }
        if !missing.is_empty() && object == Object::Contact {
            let groups = self
                .http
                .json::<GroupList>(&call(
                    Method::GET,
                    "/crm/v3/properties/contacts/groups",
                    "properties.groups",
                ))
                .await?
                .body
                .results;
            if !groups.iter().any(|g| g.name == GROUP) {
                let body = json!({ "name": GROUP, "label": "leadscored", "displayOrder": -1 });
                self.create(
                    "/crm/v3/properties/contacts/groups",
                    "properties.groups.create",
                    &body,
                )
                .await?;
            }
        }
        for spec in missing {
            let (kind, field_type) = match spec.kind {
                OutputKind::Number => ("number", "number"),
                OutputKind::Choice => ("enumeration", "select"),
                OutputKind::Text => ("string", "textarea"),
            };
            let new = NewProperty {
                name: &spec.name,
                label: &spec.label,
                kind,
                field_type,
                group_name: group,
                description: "Written by leadscored; edit the scoring model, not this value.",
                options: spec
                    .options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| PropertyOption {
                        label: o.clone(),
                        value: o.clone(),
                        display_order: i as i32,
                        hidden: false,
                    })
                    .collect(),
            };
            let body = serde_json::to_value(&new).map_err(|e| CrmError::Protocol {
                endpoint: "properties.create".to_owned(),
                message: e.to_string(),
            })?;
            self.create(properties, "properties.create", &body).await?;
            report.created.push(spec.name.clone());
        }
        Ok(report)
    }
}
