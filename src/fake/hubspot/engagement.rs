//! Engagement detail the fake HubSpot serves beyond contact properties, in
//! the shapes of HubSpot's own endpoints:
//! - form submissions: `GET /form-integrations/v1/submissions/forms/{formGuid}`
//!   and the form list `GET /marketing/v3/forms`;
//! - marketing email events: `GET /email/public/v1/events`;
//! - web and custom events per contact: `GET /events/v3/events`.
//!
//! Everything comes from the generated people (`people::Person::events`),
//! so the detail always agrees with the summary properties.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{FakeHubspot, Inner, bad_request, error, iso, parse_id};
use crate::fake::people::GenEvent;

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
                for event in person.events.iter().filter(|e| e.kind == "form_submission") {
                    if let Some((_, form)) = &event.attribute
                        && let Some(name) = FORMS.iter().copied().find(|f| f == form)
                    {
                        index
                            .submissions
                            .entry(name)
                            .or_default()
                            .push((event.at, id));
                    }
                }
            }
            for list in index.submissions.values_mut() {
                list.sort_by(|a, b| b.cmp(a));
            }
            self.engagement = Some(index);
        }
        self.engagement.get_or_insert_with(EngagementIndex::default)
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
    let start = query
        .get("startTimestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(i64::MIN);
    let end = query
        .get("endTimestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(i64::MAX);
    let wanted_type = query.get("eventType").map(|t| t.to_uppercase());
    let mut inner = fake.lock();
    let ids: Vec<u64> = match query.get("recipient") {
        Some(email) => inner
            .engagement()
            .by_email
            .get(&email.to_lowercase())
            .copied()
            .into_iter()
            .collect(),
        None => (1..=inner.config.contacts).collect(),
    };
    let mut events: Vec<Value> = Vec::new();
    for id in ids {
        let person = inner.people.person(id);
        for (n, event) in person.events.iter().enumerate() {
            let Some(kind) = email_type(event.kind) else {
                continue;
            };
            if wanted_type.as_deref().is_some_and(|w| w != kind)
                || event.at < start
                || event.at > end
            {
                continue;
            }
            events.push(email_event_json(&person.email, id, n, kind, event));
        }
    }
    events.sort_by_key(|e| std::cmp::Reverse(e["created"].as_i64().unwrap_or_default()));
    let has_more = offset + limit < events.len();
    let page: Vec<Value> = events.into_iter().skip(offset).take(limit).collect();
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
    let inner = fake.lock();
    let Some(id) = query
        .get("objectId")
        .and_then(|id| parse_id(id))
        .filter(|id| inner.exists(*id))
    else {
        return bad_request("objectId must name an existing contact");
    };
    let limit = match bounded(&query, "limit", 100, 1000) {
        Ok(l) => l,
        Err(message) => return bad_request(&message),
    };
    let after = match number(&query, "after", 0) {
        Ok(a) => a as usize,
        Err(message) => return bad_request(&message),
    };
    let wanted = query.get("eventType");
    let since = query
        .get("occurredAfter")
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(i64::MIN, |t| t.as_millisecond());
    let person = inner.people.person(id);
    let matching: Vec<Value> = person
        .events
        .iter()
        .enumerate()
        .filter_map(|(n, event)| {
            let kind = web_event_type(event.kind)?;
            if wanted.is_some_and(|w| w != kind) || event.at <= since {
                return None;
            }
            let mut properties = serde_json::Map::new();
            if let Some((name, value)) = &event.attribute {
                let key = if *name == "url" {
                    "hs_url".to_owned()
                } else {
                    (*name).to_owned()
                };
                properties.insert(key, Value::String(value.clone()));
            }
            Some(json!({
                "objectType": "CONTACT",
                "objectId": id.to_string(),
                "eventType": kind,
                "occurredAt": iso(event.at),
                "id": format!("{id:x}-{n:x}-{kind}"),
                "properties": properties,
            }))
        })
        .collect();
    let page: Vec<Value> = matching.iter().skip(after).take(limit).cloned().collect();
    let mut body = json!({ "results": page });
    if after + limit < matching.len() {
        let next = (after + limit).to_string();
        body["paging"] = json!({ "next": { "after": next, "link": format!("/events/v3/events?objectId={id}&after={next}") } });
    }
    Json(body).into_response()
}
