//! Engagement detail the fake HubSpot serves beyond contact properties, in
//! the shapes of HubSpot's own endpoints:
//! - form submissions: `GET /form-integrations/v1/submissions/forms/{formGuid}`
//!   and the form list `GET /marketing/v3/forms`;
//! - marketing email events: `GET /email/public/v1/events`, per recipient
//!   or as a stream by `eventType` and `startTimestamp`/`endTimestamp`
//!   (newest first, `limit` ≤ 1000, `offset`/`hasMore` paging);
//! - web and custom events: `GET /events/v3/events`, per contact
//!   (`objectId`) or as a stream by `objectType` and `eventType` with
//!   `occurredAfter`/`occurredBefore` (newest first, cursor paging).
//!
//! Everything comes from the generated people (`people::Person::events`),
//! so the detail always agrees with the summary properties, plus events
//! a test adds with `POST /__fake/events` — which, like a real page view
//! tracked after the fact, do not move the contact's modified time.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{FakeHubspot, Inner, bad_request, error, iso, parse_id};
use crate::fake::people::{GenEvent, Person};

/// Event numbers from here on are added events, not generated ones.
const ADDED: usize = 1 << 20;

/// Every event of one API type: (at, contact id, event number), sorted.
type Stream = Vec<(i64, u64, usize)>;

/// Form names the generator uses, in a fixed order (their GUIDs derive from it).
const FORMS: &[&str] = &["demo-request", "contact-us", "newsletter", "support-ticket"];

/// A stable GUID for a form name.
fn form_guid(name: &str) -> String {
    let index = FORMS.iter().position(|f| *f == name).unwrap_or(FORMS.len());
    format!("6f1d0c1e-0000-4000-8000-{:012x}", index + 1)
}

fn form_name(guid: &str) -> Option<&'static str> {
    FORMS.iter().copied().find(|name| form_guid(name) == guid)
}

/// Lookups built once over all generated people.
#[derive(Debug, Default)]
pub(super) struct EngagementIndex {
    by_email: HashMap<String, u64>,
    /// Per form name: (submitted at, contact id), newest first.
    submissions: HashMap<&'static str, Vec<(i64, u64)>>,
    /// Email events by HubSpot type, newest first.
    email: HashMap<&'static str, Stream>,
    /// Web events by HubSpot type, newest first.
    web: HashMap<&'static str, Stream>,
}

impl EngagementIndex {
    fn add(&mut self, id: u64, n: usize, event: &GenEvent) {
        if event.kind == "form_submission"
            && let Some((_, form)) = &event.attribute
            && let Some(name) = FORMS.iter().copied().find(|f| f == form)
        {
            self.submissions
                .entry(name)
                .or_default()
                .push((event.at, id));
        }
        if let Some(kind) = email_type(event.kind) {
            self.email.entry(kind).or_default().push((event.at, id, n));
        }
        if let Some(kind) = web_event_type(event.kind) {
            self.web.entry(kind).or_default().push((event.at, id, n));
        }
    }

    fn sort(&mut self) {
        for list in self.submissions.values_mut() {
            list.sort_by(|a, b| b.cmp(a));
        }
        for list in self.email.values_mut().chain(self.web.values_mut()) {
            list.sort_by(|a, b| b.cmp(a));
        }
    }
}

/// An event added by a test (`POST /__fake/events`).
#[derive(serde::Deserialize)]
pub(super) struct AddedEvent {
    contact: u64,
    /// The neutral type: `page_view`, `email_open`, `form_submission`, …
    kind: String,
    /// Epoch ms; default: now.
    at: Option<i64>,
    /// The attribute's value (`url`, `campaign`, `form_id` or `asset` by type).
    value: Option<String>,
}

/// The generator's type names, so added events share its `&'static str`s.
const KINDS: &[&str] = &[
    "page_view",
    "email_open",
    "email_click",
    "form_submission",
    "content_download",
    "ad_click",
    "cta_click",
    "webinar",
    "meeting",
    "email_unsubscribe",
];

/// `POST /__fake/events`: adds engagement to contacts without touching
/// their modified time.
pub(super) async fn add_events(
    State(fake): State<FakeHubspot>,
    Json(events): Json<Vec<AddedEvent>>,
) -> Response {
    let mut inner = fake.lock();
    let now = jiff::Timestamp::now().as_millisecond();
    let mut added = 0;
    for event in events {
        let Some(kind) = KINDS.iter().copied().find(|k| *k == event.kind) else {
            return bad_request(&format!("unknown event kind {:?}", event.kind));
        };
        if !inner.exists(event.contact) {
            return bad_request(&format!("no contact {}", event.contact));
        }
        let attribute = event.value.map(|value| {
            let name = match kind {
                "page_view" => "url",
                "form_submission" => "form_id",
                "content_download" => "asset",
                _ => "campaign",
            };
            (name, value)
        });
        let at = event.at.unwrap_or(now);
        inner.add_event(
            event.contact,
            GenEvent {
                kind,
                at,
                attribute,
            },
        );
        added += 1;
    }
    inner.sort_engagement();
    Json(json!({ "added": added })).into_response()
}

impl Inner {
    /// Adds an event to a contact (in whole seconds, as HubSpot states
    /// them) without touching its modified time; `sort_engagement` after
    /// a run of these.
    pub(super) fn add_event(&mut self, contact: u64, mut event: GenEvent) {
        event.at -= event.at.rem_euclid(1000);
        let list = self.added_events.entry(contact).or_default();
        let n = ADDED + list.len();
        list.push(event.clone());
        if let Some(index) = self.engagement.as_mut() {
            index.add(contact, n, &event);
        }
    }

    pub(super) fn sort_engagement(&mut self) {
        if let Some(index) = self.engagement.as_mut() {
            index.sort();
        }
    }
}

impl Inner {
    fn engagement(&mut self) -> &EngagementIndex {
        if self.engagement.is_none() {
            let mut index = EngagementIndex::default();
            for id in 1..=self.config.contacts {
                let person = self.people.person(id);
                index
                    .by_email
                    .entry(person.email.to_lowercase())
                    .or_insert(id);
                for (n, event) in person.events.iter().enumerate() {
                    index.add(id, n, event);
                }
                for (n, event) in self.added_events.get(&id).into_iter().flatten().enumerate() {
                    index.add(id, ADDED + n, event);
                }
            }
            index.sort();
            self.engagement = Some(index);
        }
        self.engagement.get_or_insert_with(EngagementIndex::default)
    }

    /// A person's events, generated and added, with their numbers.
    fn numbered_events(&self, person: &Person) -> Vec<(usize, GenEvent)> {
        let mut events: Vec<(usize, GenEvent)> =
            person.events.iter().cloned().enumerate().collect();
        events.extend(
            self.added_events
                .get(&person.id)
                .into_iter()
                .flatten()
                .cloned()
                .enumerate()
                .map(|(n, e)| (ADDED + n, e)),
        );
        events
    }

    /// Event `n` of a contact (generated or added).
    fn event_of(&self, person: &Person, n: usize) -> Option<GenEvent> {
        if n >= ADDED {
            self.added_events.get(&person.id)?.get(n - ADDED).cloned()
        } else {
            person.events.get(n).cloned()
        }
    }
}

/// A whole-number query parameter; the error is HubSpot's 400 message.
fn number(query: &HashMap<String, String>, key: &str, default: u64) -> Result<u64, String> {
    match query.get(key) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| format!("{key} must be a whole number")),
    }
}

/// A whole-number query parameter that must lie in `1..=max`.
fn bounded(
    query: &HashMap<String, String>,
    key: &str,
    default: u64,
    max: u64,
) -> Result<usize, String> {
    match number(query, key, default)? {
        n if (1..=max).contains(&n) => Ok(n as usize),
        _ => Err(format!("{key} must be between 1 and {max}")),
    }
}

pub(super) async fn list_forms(State(fake): State<FakeHubspot>) -> Response {
    let inner = fake.lock();
    let created = iso(inner.config.epoch_ms - 700 * 86_400_000);
    let results: Vec<Value> = FORMS
        .iter()
        .map(|name| {
            // `HubSpotFormDefinition`, with every field its schema requires.
            json!({
                "id": form_guid(name),
                "name": name,
                "formType": "hubspot",
                "createdAt": created,
                "updatedAt": created,
                "archived": false,
                "fieldGroups": [{
                    "groupType": "default_group",
                    "richTextType": "text",
                    "fields": [{
                        "objectTypeId": "0-1",
                        "name": "email",
                        "label": "Email",
                        "required": true,
                        "hidden": false,
                        "fieldType": "email",
                        "dependentFields": [],
                        "validation": { "blockedEmailDomains": [], "useDefaultBlockList": false },
                    }],
                }],
                "configuration": {
                    "language": "en",
                    "cloneable": true,
                    "postSubmitAction": { "type": "thank_you", "value": "Thanks!" },
                    "editable": true,
                    "archivable": true,
                    "recaptchaEnabled": false,
                    "notifyContactOwner": false,
                    "notifyRecipients": [],
                    "createNewContactForNewEmail": false,
                    "prePopulateKnownValues": true,
                    "allowLinkToResetKnownValues": false,
                    "lifecycleStages": [],
                },
                "displayOptions": {
                    "renderRawHtml": false,
                    "theme": "default_style",
                    "submitButtonText": "Submit",
                    "style": {
                        "fontFamily": "arial, helvetica, sans-serif",
                        "backgroundWidth": "100%",
                        "labelTextColor": "#33475b",
                        "labelTextSize": "14px",
                        "helpTextColor": "#7C98B6",
                        "helpTextSize": "11px",
                        "legalConsentTextColor": "#33475b",
                        "legalConsentTextSize": "14px",
                        "submitColor": "#ff7a59",
                        "submitAlignment": "left",
                        "submitFontColor": "#ffffff",
                        "submitSize": "12px",
                    },
                },
                "legalConsentOptions": { "type": "none" },
            })
        })
        .collect();
    Json(json!({ "results": results })).into_response()
}

pub(super) async fn form_submissions(
    State(fake): State<FakeHubspot>,
    Path(guid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(name) = form_name(&guid) else {
        return error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            &format!("Form {guid} not found"),
        );
    };
    let limit = match bounded(&query, "limit", 20, 50) {
        Ok(l) => l,
        Err(message) => return bad_request(&message),
    };
    let after = match number(&query, "after", 0) {
        Ok(a) => a as usize,
        Err(message) => return bad_request(&message),
    };
    let mut inner = fake.lock();
    let all = inner
        .engagement()
        .submissions
        .get(name)
        .cloned()
        .unwrap_or_default();
    let results: Vec<Value> = all
        .iter()
        .skip(after)
        .take(limit)
        .map(|(at, id)| {
            let person = inner.people.person(*id);
            json!({
                "submittedAt": at,
                "values": [
                    { "name": "email", "value": person.email, "objectTypeId": "0-1" },
                    { "name": "firstname", "value": person.firstname, "objectTypeId": "0-1" },
                    { "name": "lastname", "value": person.lastname, "objectTypeId": "0-1" },
                ],
                "pageUrl": format!("https://www.acme.example/forms/{name}"),
            })
        })
        .collect();
    let mut body = json!({ "results": results });
    if after + limit < all.len() {
        let next = (after + limit).to_string();
        body["paging"] = json!({ "next": { "after": next, "link": format!("/form-integrations/v1/submissions/forms/{guid}?after={next}") } });
    }
    Json(body).into_response()
}

/// HubSpot's marketing email event types for the generator's email events.
fn email_type(kind: &str) -> Option<&'static str> {
    match kind {
        "email_open" => Some("OPEN"),
        "email_click" => Some("CLICK"),
        "email_unsubscribe" => Some("STATUSCHANGE"),
        _ => None,
    }
}

/// A stable numeric id for a campaign name.
fn campaign_id(name: &str) -> u64 {
    name.bytes().fold(1_469_598_103_934_665_603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211)
    }) % 1_000_000_000
}

pub(super) async fn email_events(
    State(fake): State<FakeHubspot>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let limit = match bounded(&query, "limit", 100, 1000) {
        Ok(l) => l,
        Err(message) => return bad_request(&message),
    };
    let offset = match number(&query, "offset", 0) {
        Ok(o) => o as usize,
        Err(message) => return bad_request(&message),
    };
    let bound = |key: &str, default: i64| match query.get(key) {
        None => Ok(default),
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| format!("{key} must be milliseconds since the epoch")),
    };
    let (start, end) = match (
        bound("startTimestamp", i64::MIN),
        bound("endTimestamp", i64::MAX),
    ) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(message), _) | (_, Err(message)) => return bad_request(&message),
    };
    let wanted_type = query.get("eventType").map(|t| t.to_uppercase());
    let mut inner = fake.lock();
    // Newest first: (at, contact, event number, type).
    let mut matching: Vec<(i64, u64, usize, &'static str)> = Vec::new();
    match query.get("recipient") {
        Some(email) => {
            let id = inner
                .engagement()
                .by_email
                .get(&email.to_lowercase())
                .copied();
            if let Some(id) = id {
                let person = inner.people.person(id);
                for (n, event) in inner.numbered_events(&person) {
                    if let Some(kind) = email_type(event.kind) {
                        matching.push((event.at, id, n, kind));
                    }
                }
            }
        }
        None => {
            let index = inner.engagement();
            for (kind, stream) in &index.email {
                if wanted_type.as_deref().is_some_and(|w| w != *kind) {
                    continue;
                }
                // The stream is newest first: the window is one slice.
                let first = stream.partition_point(|(at, _, _)| *at > end);
                let last = stream.partition_point(|(at, _, _)| *at >= start);
                matching.extend(
                    stream[first..last.max(first)]
                        .iter()
                        .map(|(at, id, n)| (*at, *id, *n, *kind)),
                );
            }
        }
    }
    matching.retain(|(at, _, _, kind)| {
        wanted_type.as_deref().is_none_or(|w| w == *kind) && *at >= start && *at <= end
    });
    matching.sort_by(|a, b| b.cmp(a));
    let has_more = offset + limit < matching.len();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .filter_map(|(_, id, n, kind)| {
            let person = inner.people.person(*id);
            let event = inner.event_of(&person, *n)?;
            Some(email_event_json(&person.email, *id, *n, kind, &event))
        })
        .collect();
    Json(json!({ "events": page, "hasMore": has_more, "offset": (offset + limit).to_string() }))
        .into_response()
}

fn email_event_json(email: &str, id: u64, n: usize, kind: &str, event: &GenEvent) -> Value {
    let campaign = event.attribute.as_ref().map_or("", |(_, v)| v.as_str());
    let mut body = json!({
        "id": format!("{id:x}-{n:x}-{kind}"),
        "created": event.at,
        "recipient": email,
        "type": kind,
        "emailCampaignId": campaign_id(campaign),
        "appName": "BatchEmail",
        "portalId": 1,
        "sentBy": { "id": format!("{id:x}-{n:x}-sent"), "created": event.at - 3_600_000 },
    });
    if kind == "STATUSCHANGE" {
        body["subscriptions"] = json!([{ "id": 1, "status": "UNSUBSCRIBED" }]);
    }
    body
}

/// HubSpot event type names for the generator's web and behavioural events.
fn web_event_type(kind: &str) -> Option<&'static str> {
    match kind {
        "page_view" => Some("e_visited_page"),
        "cta_click" => Some("e_clicked_cta"),
        "ad_click" => Some("e_ad_interaction"),
        "content_download" => Some("pe_content_download"),
        "webinar" => Some("pe_webinar_attended"),
        "meeting" => Some("e_meeting_booked"),
        _ => None,
    }
}

/// One web event in the events API's shape.
fn web_event_json(id: u64, n: usize, kind: &str, event: &GenEvent) -> Value {
    let mut properties = serde_json::Map::new();
    if let Some((name, value)) = &event.attribute {
        let key = if *name == "url" {
            "hs_url".to_owned()
        } else {
            (*name).to_owned()
        };
        properties.insert(key, Value::String(value.clone()));
    }
    json!({
        "objectType": "CONTACT",
        "objectId": id.to_string(),
        "eventType": kind,
        "occurredAt": iso(event.at),
        "id": format!("{id:x}-{n:x}-{kind}"),
        "properties": properties,
    })
}

pub(super) async fn web_events(
    State(fake): State<FakeHubspot>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if query
        .get("objectType")
        .is_some_and(|t| !t.eq_ignore_ascii_case("contact") && t != "0-1")
    {
        return bad_request("the fake serves contact events only");
    }
    let limit = match bounded(&query, "limit", 100, 1000) {
        Ok(l) => l,
        Err(message) => return bad_request(&message),
    };
    let after = match number(&query, "after", 0) {
        Ok(a) => a as usize,
        Err(message) => return bad_request(&message),
    };
    let time = |key: &str, default: i64| match query.get(key) {
        None => Ok(default),
        Some(text) => text
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|_| format!("{key} must be an ISO 8601 timestamp")),
    };
    // Both bounds are exclusive.
    let (since, before) = match (
        time("occurredAfter", i64::MIN),
        time("occurredBefore", i64::MAX),
    ) {
        (Ok(s), Ok(b)) => (s, b),
        (Err(message), _) | (_, Err(message)) => return bad_request(&message),
    };
    let wanted = query.get("eventType").cloned();
    let mut inner = fake.lock();
    // Newest first: (at, contact, event number, type).
    let mut matching: Vec<(i64, u64, usize, &'static str)> = Vec::new();
    match query.get("objectId") {
        Some(text) => {
            let Some(id) = parse_id(text).filter(|id| inner.exists(*id)) else {
                return bad_request("objectId must name an existing contact");
            };
            let person = inner.people.person(id);
            for (n, event) in inner.numbered_events(&person) {
                if let Some(kind) = web_event_type(event.kind) {
                    matching.push((event.at, id, n, kind));
                }
            }
        }
        None => {
            if !query.contains_key("objectType") {
                return bad_request("objectType is required when objectId is not given");
            }
            let index = inner.engagement();
            for (kind, stream) in &index.web {
                if wanted.as_deref().is_some_and(|w| w != *kind) {
                    continue;
                }
                let first = stream.partition_point(|(at, _, _)| *at >= before);
                let last = stream.partition_point(|(at, _, _)| *at > since);
                matching.extend(
                    stream[first..last.max(first)]
                        .iter()
                        .map(|(at, id, n)| (*at, *id, *n, *kind)),
                );
            }
        }
    }
    matching.retain(|(at, _, _, kind)| {
        wanted.as_deref().is_none_or(|w| w == *kind) && *at > since && *at < before
    });
    matching.sort_by(|a, b| b.cmp(a));
    let page: Vec<Value> = matching
        .iter()
        .skip(after)
        .take(limit)
        .filter_map(|(_, id, n, kind)| {
            let person = inner.people.person(*id);
            let event = inner.event_of(&person, *n)?;
            Some(web_event_json(*id, *n, kind, &event))
        })
        .collect();
    let mut body = json!({ "results": page });
    if after + limit < matching.len() {
        let next = (after + limit).to_string();
        body["paging"] =
            json!({ "next": { "after": next, "link": format!("/events/v3/events?after={next}") } });
    }
    Json(body).into_response()
}
