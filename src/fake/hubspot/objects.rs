//! Companies and lists in the fake HubSpot, in the shapes of HubSpot's own
//! endpoints (`PublicApiSpecs/CRM/Companies` and `.../CRM/Lists`, v3):
//! - companies: `GET /crm/v3/objects/companies` (paged),
//!   `POST /crm/v3/objects/companies/batch/read` (≤ 100 ids, 207 for
//!   unknown ones), `POST /crm/v3/objects/companies/search` (the contact
//!   search's rules, modified time in `hs_lastmodifieddate`) and the
//!   company properties;
//! - lists: `POST /crm/v3/lists/search` (`offset` and
//!   `additionalProperties` required, `count` ≤ 500, each hit with
//!   `hs_list_size`, `hs_last_record_added_at`, `hs_last_record_removed_at`)
//!   and `GET /crm/v3/lists/{listId}/memberships` (ordered by record id,
//!   `limit` ≤ 250, cursor paging).
//!
//! Companies are generated from the seed like people (a few people share
//! each; some people have none); lists from a fixed table and a share of
//! the people. Edits through `/__fake/` move a company's values, a
//! contact's company, or a list's members, with the modified times and
//! list timestamps HubSpot would show.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    BatchRequest, CONTACT_TYPE_ID, FakeHubspot, Inner, PropertyDef, Search, bad_request,
    batch_body, decode, error, filter_matches, iso, numeric, parse_id, parse_search, query_matches,
    standard_error, value_text, within_batch_limit,
};
use crate::fake::people::Rng;

const DAY_MS: i64 = 86_400_000;

/// The default searchable company properties.
const COMPANY_SEARCHABLE: &[&str] = &["name", "domain", "website"];

/// The company properties the fake knows (name, type, field type).
pub(super) fn company_properties() -> BTreeMap<String, PropertyDef> {
    let mut map = BTreeMap::new();
    for (name, kind, field_type, read_only) in [
        ("hs_object_id", "number", "number", true),
        ("name", "string", "text", false),
        ("domain", "string", "text", false),
        ("website", "string", "text", false),
        ("numberofemployees", "number", "number", false),
        ("annualrevenue", "number", "number", false),
        ("industry", "enumeration", "select", false),
        ("country", "string", "text", false),
        ("createdate", "datetime", "date", true),
        ("hs_lastmodifieddate", "datetime", "date", true),
        ("lifecyclestage", "enumeration", "radio", false),
    ] {
        let mut def = PropertyDef::builtin(name, kind, field_type, read_only);
        def.group = "companyinformation".to_owned();
        map.insert(name.to_owned(), def);
    }
    map
}

/// The lists every fake portal has: id, name, processing type, and the
/// share (per mille) of contacts in it.
const LISTS: &[(u64, &str, &str, u64)] = &[
    (11, "Analytics webinar 2026", "MANUAL", 60),
    (12, "Newsletter subscribers", "DYNAMIC", 350),
    (13, "Customers", "DYNAMIC", 40),
    (14, "Do not contact", "MANUAL", 10),
];

impl Inner {
    /// How many companies the fake holds.
    pub(super) fn company_count(&self) -> u64 {
        self.people.companies_for(self.config.contacts)
    }

    fn company_modified(&self, id: u64, created: i64) -> i64 {
        if let Some(at) = self.overlay.company_modified.get(&id) {
            return *at;
        }
        let mut rng = Rng::new(self.config.seed ^ 0xC0FF_EE02, id);
        let back = rng.below(300) as i64 * DAY_MS + rng.below(DAY_MS as u64) as i64;
        (self.config.epoch_ms - back).max(created)
    }

    /// Sets company properties (by a client or a person): its modified
    /// time moves, as in HubSpot. Returns the new modified time.
    fn write_company(&mut self, id: u64, values: BTreeMap<String, String>) -> i64 {
        let created = self.people.company(id).created_at;
        let old = self.company_modified(id, created);
        let epoch = self.config.epoch_ms;
        let at = self.overlay.next_write_time(epoch, old);
        self.overlay
            .company_written
            .entry(id)
            .or_default()
            .extend(values);
        self.overlay.company_modified.insert(id, at);
        self.overlay.dirty = true;
        at
    }

    /// A company's properties as HubSpot strings; `None` when no company
    /// has this id.
    pub(super) fn company_props(&self, id: u64) -> Option<BTreeMap<String, String>> {
        if id < 1 || id > self.company_count() {
            return None;
        }
        let facts = self.people.company(id);
        let modified = self.company_modified(id, facts.created_at);
        let mut p = BTreeMap::new();
        p.insert("hs_object_id".to_owned(), id.to_string());
        p.insert("name".to_owned(), facts.name.clone());
        p.insert("domain".to_owned(), format!("{}.example", facts.slug));
        p.insert(
            "website".to_owned(),
            format!("https://www.{}.example", facts.slug),
        );
        p.insert(
            "numberofemployees".to_owned(),
            facts.numemployees.to_string(),
        );
        p.insert("annualrevenue".to_owned(), facts.annual_revenue.to_string());
        // A portal whose industry options carry their labels as values
        // (HubSpot's default options use values like COMPUTER_SOFTWARE).
        p.insert("industry".to_owned(), facts.industry.to_owned());
        p.insert("country".to_owned(), facts.country.to_owned());
        p.insert("createdate".to_owned(), iso(facts.created_at));
        p.insert("lifecyclestage".to_owned(), "lead".to_owned());
        if let Some(written) = self.overlay.company_written.get(&id) {
            p.extend(written.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        p.insert("hs_lastmodifieddate".to_owned(), iso(modified));
        Some(p)
    }

    /// A company as HubSpot returns it, with the requested properties.
    fn company_json(&self, id: u64, wanted: &[String]) -> Option<Value> {
        let props = self.company_props(id)?;
        let mut out = serde_json::Map::new();
        let names: Vec<&str> = if wanted.is_empty() {
            vec![
                "createdate",
                "domain",
                "hs_lastmodifieddate",
                "hs_object_id",
                "name",
            ]
        } else {
            wanted.iter().map(String::as_str).collect()
        };
        for name in names {
            if self.company_properties.contains_key(name) {
                out.insert(
                    name.to_owned(),
                    props
                        .get(name)
                        .map_or(Value::Null, |v| Value::String(v.clone())),
                );
            }
        }
        for name in ["createdate", "hs_lastmodifieddate", "hs_object_id"] {
            out.entry(name.to_owned()).or_insert_with(|| {
                props
                    .get(name)
                    .map_or(Value::Null, |v| Value::String(v.clone()))
            });
        }
        let created = props.get("createdate").cloned().unwrap_or_default();
        let updated = props
            .get("hs_lastmodifieddate")
            .cloned()
            .unwrap_or_default();
        Some(json!({
            "id": id.to_string(),
            "properties": out,
            "createdAt": created,
            "updatedAt": updated,
            "archived": false,
        }))
    }

    /// Whether a contact is in a list now.
    fn in_list(&self, list: u64, share: u64, contact: u64) -> bool {
        if let Some(edited) = self
            .overlay
            .list_edits
            .get(&list)
            .and_then(|e| e.members.get(&contact))
        {
            return *edited;
        }
        let mut rng = Rng::new(self.config.seed ^ 0x0115_7000 ^ list, contact);
        rng.below(1000) < share
    }

    /// A list's members, ascending (computed once per list and edit: a
    /// member page of a million-contact portal must not walk them all).
    fn list_members(&mut self, list: u64) -> std::sync::Arc<Vec<u64>> {
        if let Some(found) = self.list_cache.get(&list) {
            return found.clone();
        }
        let Some(&(_, _, _, share)) = LISTS.iter().find(|l| l.0 == list) else {
            return std::sync::Arc::default();
        };
        let members: std::sync::Arc<Vec<u64>> = std::sync::Arc::new(
            (1..=self.config.contacts)
                .filter(|id| self.exists(*id) && self.in_list(list, share, *id))
                .collect(),
        );
        self.list_cache.insert(list, members.clone());
        members
    }
}

/// `POST /crm/v3/objects/companies/batch/read`.
pub(super) async fn batch_read_companies(
    State(fake): State<FakeHubspot>,
    body: axum::body::Bytes,
) -> Response {
    let request = match decode::<BatchRequest>(&body).and_then(within_batch_limit) {
        Ok(r) => r,
        Err(message) => return bad_request(&message),
    };
    if request.id_property.is_some() {
        return bad_request("the fake reads companies by id only");
    }
    let inner = fake.lock();
    super::batch_read_answer("COMPANY", &request.inputs, |id| {
        inner.company_json(id, &request.properties)
    })
}

/// `POST /crm/v3/objects/companies/search`: filters, free text, one sort,
/// `after` offsets below the 10,000-result cap.
pub(super) async fn search_companies(
    State(fake): State<FakeHubspot>,
    body: axum::body::Bytes,
) -> Response {
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
    let inner = fake.lock();
    let mut matches: Vec<(f64, String, u64)> = Vec::new();
    for id in 1..=inner.company_count() {
        let Some(props) = inner.company_props(id) else {
            continue;
        };
        let ok = (request.filter_groups.is_empty()
            || request
                .filter_groups
                .iter()
                .any(|g| g.filters.iter().all(|f| filter_matches(f, &props))))
            && query_matches(request.query.as_deref(), &props, COMPANY_SEARCHABLE);
        if ok {
            let key = props.get(&sort_property).cloned().unwrap_or_default();
            matches.push((numeric(&key).unwrap_or(f64::NAN), key, id));
        }
    }
    matches.sort_by(|a, b| {
        let order = if a.0.is_nan() || b.0.is_nan() {
            a.1.cmp(&b.1)
        } else {
            a.0.total_cmp(&b.0)
        }
        .then(a.2.cmp(&b.2));
        if descending { order.reverse() } else { order }
    });
    let total = matches.len();
    let page: Vec<Value> = matches
        .iter()
        .skip(after)
        .take(limit as usize)
        .filter_map(|(_, _, id)| inner.company_json(*id, &request.properties))
        .collect();
    let mut body = json!({ "total": total, "results": page });
    let next = after + limit as usize;
    if next < total {
        body["paging"] = json!({ "next": { "after": next.to_string() } });
    }
    Json(body).into_response()
}

/// `GET /crm/v3/objects/companies`: companies by id, `limit` ≤ 100.
pub(super) async fn list_companies(
    State(fake): State<FakeHubspot>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let limit: u64 = match get("limit").map(str::parse::<u64>) {
        None => 10,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        _ => return bad_request("limit must be between 1 and 100"),
    };
    let after: u64 = match get("after").map(str::parse::<u64>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return bad_request("after must be a number"),
    };
    let wanted = super::repeated_properties(&query);
    let inner = fake.lock();
    let last = inner.company_count();
    let results: Vec<Value> = (after + 1..=last)
        .take(limit as usize)
        .filter_map(|id| inner.company_json(id, &wanted))
        .collect();
    let mut body = json!({ "results": results });
    if after + limit < last {
        body["paging"] = json!({ "next": { "after": (after + limit).to_string() } });
    }
    Json(body).into_response()
}

/// `GET /crm/v3/properties/companies`.
pub(super) async fn company_property_list(State(fake): State<FakeHubspot>) -> Response {
    let inner = fake.lock();
    let created = iso(inner.config.epoch_ms - 900 * DAY_MS);
    let results: Vec<Value> = inner
        .company_properties
        .values()
        .map(|p| p.to_json(&created))
        .collect();
    Json(json!({ "results": results })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListSearchRequest {
    query: Option<String>,
    offset: Option<u64>,
    count: Option<u64>,
    additional_properties: Option<Vec<String>>,
    #[serde(default)]
    list_ids: Vec<String>,
    #[serde(default)]
    processing_types: Vec<String>,
}

/// `POST /crm/v3/lists/search`.
pub(super) async fn search_lists(
    State(fake): State<FakeHubspot>,
    body: axum::body::Bytes,
) -> Response {
    let request: ListSearchRequest = match decode(&body) {
        Ok(r) => r,
        Err(message) => return bad_request(&message),
    };
    let (Some(offset), Some(_)) = (request.offset, &request.additional_properties) else {
        return bad_request("offset and additionalProperties are required");
    };
    let count = request.count.unwrap_or(20);
    if !(1..=500).contains(&count) {
        return bad_request("count must be between 1 and 500");
    }
    let query = request.query.unwrap_or_default().to_lowercase();
    let mut inner = fake.lock();
    let created = iso(inner.config.epoch_ms - 400 * DAY_MS);
    let hits: Vec<Value> = LISTS
        .iter()
        .filter(|(id, name, kind, _)| {
            name.to_lowercase().contains(&query)
                && (request.list_ids.is_empty() || request.list_ids.contains(&id.to_string()))
                && (request.processing_types.is_empty()
                    || request.processing_types.iter().any(|t| t == kind))
        })
        .map(|&(id, name, kind, _)| {
            let members = inner.list_members(id);
            let edits = inner.overlay.list_edits.get(&id);
            let mut additional = serde_json::Map::new();
            additional.insert("hs_list_size".to_owned(), json!(members.len().to_string()));
            additional.insert("hs_list_reference_count".to_owned(), json!("0"));
            let added = edits
                .and_then(|e| e.added_ms)
                .unwrap_or(inner.config.epoch_ms - 20 * DAY_MS);
            additional.insert(
                "hs_last_record_added_at".to_owned(),
                json!(added.to_string()),
            );
            if let Some(removed) = edits.and_then(|e| e.removed_ms) {
                additional.insert(
                    "hs_last_record_removed_at".to_owned(),
                    json!(removed.to_string()),
                );
            }
            json!({
                "listId": id.to_string(),
                "listVersion": 1,
                "name": name,
                "objectTypeId": CONTACT_TYPE_ID,
                "processingStatus": "COMPLETE",
                "processingType": kind,
                "createdAt": created,
                "createdById": "1",
                "filtersUpdatedAt": created,
                "updatedAt": created,
                "updatedById": "1",
                "additionalProperties": additional,
            })
        })
        .collect();
    let total = hits.len() as u64;
    let page: Vec<Value> = hits
        .into_iter()
        .skip(offset as usize)
        .take(count as usize)
        .collect();
    let next = offset + page.len() as u64;
    Json(json!({
        "hasMore": next < total,
        "lists": page,
        "offset": next,
        "total": total,
    }))
    .into_response()
}

/// `GET /crm/v3/lists/{listId}/memberships`: members ordered by record id.
pub(super) async fn list_memberships(
    State(fake): State<FakeHubspot>,
    Path(list): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(list) = parse_id(&list).filter(|id| LISTS.iter().any(|l| l.0 == *id)) else {
        return error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            &format!("List {list} does not exist."),
        );
    };
    let limit: usize = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=250).contains(&n) => n,
        _ => return bad_request("limit must be between 1 and 250"),
    };
    let after: u64 = match query.get("after").map(|a| a.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return bad_request("after is not a valid offset token"),
    };
    let mut inner = fake.lock();
    let members = inner.list_members(list);
    let total = members.len();
    let joined = inner
        .overlay
        .list_edits
        .get(&list)
        .and_then(|e| e.added_ms)
        .unwrap_or(inner.config.epoch_ms - 20 * DAY_MS);
    let page: Vec<u64> = members
        .iter()
        .copied()
        .filter(|id| *id > after)
        .take(limit)
        .collect();
    let results: Vec<Value> = page
        .iter()
        .map(|id| json!({ "recordId": id.to_string(), "membershipTimestamp": iso(joined) }))
        .collect();
    let mut body = json!({ "results": results, "total": total });
    if let Some(last) = page.last()
        && members.last() != Some(last)
    {
        body["paging"] = json!({ "next": { "after": last.to_string() } });
    }
    Json(body).into_response()
}

/// `POST /crm/v4/associations/contacts/companies/batch/read`: each
/// contact's companies (the fake has one per contact, labelled Primary:
/// HubSpot-defined type 1, with the unlabelled type 279 beside it).
pub(super) async fn contact_companies(
    State(fake): State<FakeHubspot>,
    body: axum::body::Bytes,
) -> Response {
    #[derive(Deserialize)]
    struct Input {
        id: Value,
    }
    #[derive(Deserialize)]
    struct Request {
        inputs: Vec<Input>,
    }
    let request: Request = match decode(&body) {
        Ok(r) => r,
        Err(message) => return bad_request(&message),
    };
    if request.inputs.len() > 1000 {
        return bad_request("Batch input limit of 1000 exceeded");
    }
    let started = iso(jiff::Timestamp::now().as_millisecond());
    let inner = fake.lock();
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in &request.inputs {
        let text = value_text(&input.id);
        let Some(id) = parse_id(&text).filter(|id| inner.exists(*id)) else {
            missing.push(text);
            continue;
        };
        let (props, _, _) = inner.properties_of(id);
        let to: Vec<Value> = props
            .get(super::COMPANY_ID)
            .filter(|c| !c.is_empty())
            .map(|company| {
                vec![json!({
                    "toObjectId": company,
                    "associationTypes": [
                        { "category": "HUBSPOT_DEFINED", "typeId": 1, "label": "Primary" },
                        { "category": "HUBSPOT_DEFINED", "typeId": 279, "label": null },
                    ],
                })]
            })
            .unwrap_or_default();
        if to.is_empty() {
            missing.push(text);
            continue;
        }
        results.push(json!({ "from": { "id": id.to_string() }, "to": to }));
    }
    let errors = if missing.is_empty() {
        Vec::new()
    } else {
        vec![standard_error(
            "NO_ASSOCIATIONS_FOUND",
            &format!(
                "No companies are associated with contacts {}",
                missing.join(", ")
            ),
            json!({ "fromObjectIds": missing }),
            Vec::new(),
        )]
    };
    batch_body(results, errors, &started)
}

/// `POST /crm/v3/properties/companies`: a custom company property, in the
/// default `companyinformation` group.
pub(super) async fn create_company_property(
    State(fake): State<FakeHubspot>,
    body: axum::body::Bytes,
) -> Response {
    super::create_property_on(&fake, &body, true)
}

/// `POST /crm/v3/objects/companies/batch/update` (≤ 100 inputs): as the
/// contacts' batch update — 200 when all were written, 207 with per-id
/// errors (unknown company, unknown or read-only property, a value not
/// among an enumeration's options), 400 when none was. Each written
/// company's modified time moves, as in HubSpot.
pub(super) async fn batch_update_companies(
    State(fake): State<FakeHubspot>,
    body: axum::body::Bytes,
) -> Response {
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
        let Some(id) = parse_id(&text).filter(|id| inner.company_props(*id).is_some()) else {
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
        for (name, value) in &input.properties {
            match super::validate(inner.company_properties.get(name), name, value) {
                Ok(text) => {
                    accepted.insert(name.clone(), text);
                }
                Err(problem) => problems.push((name.clone(), problem)),
            }
        }
        if !problems.is_empty() {
            let messages: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
            let names: Vec<&str> = problems.iter().map(|(n, _)| n.as_str()).collect();
            errors.push(standard_error(
                "VALIDATION_ERROR",
                &format!("Property values were not valid: {}", messages.join("; ")),
                json!({ "ids": [text], "propertyName": names }),
                Vec::new(),
            ));
            continue;
        }
        inner.write_company(id, accepted);
        *inner
            .stats
            .entry("companies written".to_owned())
            .or_default() += 1;
        let wanted: Vec<String> = input.properties.keys().cloned().collect();
        results.extend(inner.company_json(id, &wanted));
    }
    if results.is_empty() && !errors.is_empty() {
        let first = errors
            .first()
            .and_then(|e| e["message"].as_str())
            .unwrap_or("invalid input")
            .to_owned();
        return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &first);
    }
    batch_body(results, errors, &started)
}

/// `GET /__fake/companies/{id}`: a company's properties as the fake holds
/// them (what clients wrote included).
pub(super) async fn inspect_company(
    State(fake): State<FakeHubspot>,
    Path(id): Path<String>,
) -> Response {
    let inner = fake.lock();
    match parse_id(&id).and_then(|id| inner.company_props(id)) {
        Some(props) => Json(json!({ "id": id, "properties": props })).into_response(),
        None => error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "no such company"),
    }
}

/// `POST /__fake/companies/{id}`: edits a company's properties (its
/// modified time moves, as in HubSpot).
pub(super) async fn edit_company(
    State(fake): State<FakeHubspot>,
    Path(id): Path<String>,
    Json(values): Json<BTreeMap<String, String>>,
) -> Response {
    let mut inner = fake.lock();
    let Some(id) = parse_id(&id).filter(|id| inner.company_props(*id).is_some()) else {
        return error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "no such company");
    };
    let at = inner.write_company(id, values);
    Json(json!({ "id": id.to_string(), "hs_lastmodifieddate": iso(at) })).into_response()
}

#[derive(Deserialize)]
pub(super) struct Move {
    /// The new primary company, or `null` for none.
    company: Option<String>,
}

/// `POST /__fake/contacts/{id}/company`: moves a contact to another
/// primary company (its `associatedcompanyid` and modified time change).
pub(super) async fn move_contact(
    State(fake): State<FakeHubspot>,
    Path(id): Path<String>,
    Json(to): Json<Move>,
) -> Response {
    let mut inner = fake.lock();
    let Some(id) = parse_id(&id).filter(|id| inner.exists(*id)) else {
        return error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "no such contact");
    };
    let value = to.company.unwrap_or_default();
    inner.write_from(
        id,
        BTreeMap::from([(super::COMPANY_ID.to_owned(), value.clone())]),
        "CRM_UI",
    );
    drop(inner);
    fake.wake_sender();
    Json(json!({ "id": id.to_string(), "associatedcompanyid": value })).into_response()
}

#[derive(Deserialize)]
pub(super) struct MemberEdit {
    #[serde(default)]
    add: Vec<u64>,
    #[serde(default)]
    remove: Vec<u64>,
}

/// `POST /__fake/lists/{listId}/members`: adds and removes members (the
/// contacts themselves are not modified, as in HubSpot).
pub(super) async fn edit_members(
    State(fake): State<FakeHubspot>,
    Path(list): Path<String>,
    Json(edit): Json<MemberEdit>,
) -> Response {
    let Some(list) = parse_id(&list).filter(|id| LISTS.iter().any(|l| l.0 == *id)) else {
        return error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "no such list");
    };
    let now = jiff::Timestamp::now().as_millisecond();
    let mut inner = fake.lock();
    inner.list_cache.remove(&list);
    let edits = inner.overlay.list_edits.entry(list).or_default();
    for id in &edit.add {
        edits.members.insert(*id, true);
    }
    for id in &edit.remove {
        edits.members.insert(*id, false);
    }
    if !edit.add.is_empty() {
        edits.added_ms = Some(now);
    }
    if !edit.remove.is_empty() {
        edits.removed_ms = Some(now);
    }
    inner.overlay.dirty = true;
    Json(json!({ "listId": list.to_string(), "added": edit.add.len(), "removed": edit.remove.len() }))
        .into_response()
}
