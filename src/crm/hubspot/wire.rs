//! HubSpot's JSON shapes, as its public OpenAPI specs give them, for the
//! calls the connector makes. Every field a response may leave out is
//! optional; nothing here leaves the `hubspot` module.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `SimplePublicObject` (list, search, batch results).
#[derive(Debug, Deserialize)]
pub(super) struct Contact {
    pub id: String,
    #[serde(default)]
    pub properties: BTreeMap<String, Option<String>>,
    #[serde(rename = "updatedAt")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct NextPage {
    pub after: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Paging {
    pub next: Option<NextPage>,
}

/// `CollectionResponseSimplePublicObjectWithAssociationsForwardPaging` and
/// the search response (which adds `total`).
#[derive(Debug, Deserialize)]
pub(super) struct ContactPage {
    #[serde(default)]
    pub results: Vec<Contact>,
    pub paging: Option<Paging>,
}

#[derive(Debug, Serialize)]
pub(super) struct Filter {
    #[serde(rename = "propertyName")]
    pub property_name: &'static str,
    pub operator: &'static str,
    pub value: String,
}

#[derive(Debug, Serialize)]
pub(super) struct FilterGroup {
    pub filters: Vec<Filter>,
}

#[derive(Debug, Serialize)]
pub(super) struct Sort {
    #[serde(rename = "propertyName")]
    pub property_name: &'static str,
    pub direction: &'static str,
}

/// `PublicObjectSearchRequest`.
#[derive(Debug, Serialize)]
pub(super) struct SearchRequest<'a> {
    #[serde(rename = "filterGroups")]
    pub filter_groups: Vec<FilterGroup>,
    pub sorts: Vec<Sort>,
    pub properties: &'a [String],
    pub limit: u32,
}

#[derive(Debug, Serialize)]
pub(super) struct UpdateInput<'a> {
    pub id: &'a str,
    pub properties: &'a BTreeMap<String, String>,
}

/// `BatchInputSimplePublicObjectBatchInput`.
#[derive(Debug, Serialize)]
pub(super) struct UpdateBatch<'a> {
    pub inputs: Vec<UpdateInput<'a>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ErrorContext {
    #[serde(default)]
    pub ids: Vec<String>,
    /// A 403 `MISSING_SCOPES` answer's scopes.
    #[serde(rename = "requiredGranularScopes", default)]
    pub required_scopes: Vec<String>,
}

/// `StandardError` inside a batch answer.
#[derive(Debug, Deserialize)]
pub(super) struct BatchError {
    pub message: Option<String>,
    pub category: Option<String>,
    pub context: Option<ErrorContext>,
}

/// `BatchResponseSimplePublicObject` (200) and
/// `BatchResponseSimplePublicObjectWithErrors` (207); the 2026-09 shape
/// folds errors into the 200 answer, so both are read alike.
#[derive(Debug, Deserialize)]
pub(super) struct BatchResponse {
    #[serde(default)]
    pub results: Vec<Contact>,
    #[serde(default)]
    pub errors: Vec<BatchError>,
}

/// The error body HubSpot sends with 4xx and 5xx answers.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorBody {
    pub message: Option<String>,
    pub category: Option<String>,
    #[serde(rename = "policyName")]
    pub policy_name: Option<String>,
    #[serde(default)]
    pub errors: Vec<BatchError>,
}

/// A property definition (`Property`).
#[derive(Debug, Deserialize)]
pub(super) struct Property {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub options: Vec<PropertyOption>,
    #[serde(rename = "hubspotDefined")]
    pub hubspot_defined: Option<bool>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct PropertyOption {
    pub label: String,
    pub value: String,
    #[serde(rename = "displayOrder", default)]
    pub display_order: i32,
    /// Required by HubSpot's schema for a new option (`OptionInput`).
    #[serde(default)]
    pub hidden: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct PropertyList {
    #[serde(default)]
    pub results: Vec<Property>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Group {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct GroupList {
    #[serde(default)]
    pub results: Vec<Group>,
}

/// `PropertyCreate`.
#[derive(Debug, Serialize)]
pub(super) struct NewProperty<'a> {
    pub name: &'a str,
    pub label: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(rename = "fieldType")]
    pub field_type: &'static str,
    #[serde(rename = "groupName")]
    pub group_name: &'a str,
    pub description: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<PropertyOption>,
}

/// A form from `/marketing/v3/forms`.
#[derive(Debug, Deserialize)]
pub(super) struct Form {
    pub id: String,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FormList {
    #[serde(default)]
    pub results: Vec<Form>,
    pub paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FieldValue {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Submission {
    #[serde(rename = "submittedAt")]
    pub submitted_at: i64,
    #[serde(default)]
    pub values: Vec<FieldValue>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SubmissionPage {
    #[serde(default)]
    pub results: Vec<Submission>,
    pub paging: Option<Paging>,
}

/// A marketing email event (`/email/public/v1/events`).
#[derive(Debug, Deserialize)]
pub(super) struct EmailEvent {
    /// Unique per event (with `created`).
    #[serde(default)]
    pub id: Option<String>,
    /// The recipient's address (a stream read names no contact).
    #[serde(default)]
    pub recipient: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    #[serde(rename = "emailCampaignId")]
    pub campaign_id: Option<u64>,
    pub url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct EmailEventPage {
    #[serde(default)]
    pub events: Vec<EmailEvent>,
    #[serde(rename = "hasMore", default)]
    pub has_more: bool,
    pub offset: Option<String>,
}

/// A web or behavioural event (`/events/v3/events`).
#[derive(Debug, Deserialize)]
pub(super) struct WebEvent {
    #[serde(default)]
    pub id: Option<String>,
    /// The contact that did it (a stream read spans every contact).
    #[serde(rename = "objectId", default)]
    pub object_id: Option<String>,
    #[serde(rename = "eventType")]
    pub event_type: String,
    #[serde(rename = "occurredAt")]
    pub occurred_at: String,
    #[serde(default)]
    pub properties: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WebEventPage {
    #[serde(default)]
    pub results: Vec<WebEvent>,
    pub paging: Option<Paging>,
}

/// `GET /account-info/v3/details`: the portal the token belongs to.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AccountDetails {
    pub portal_id: u64,
}

/// One id in a batch read (`SimplePublicObjectId`).
#[derive(Debug, Serialize)]
pub(super) struct ObjectId<'a> {
    pub id: &'a str,
}

/// `BatchReadInputSimplePublicObjectId` (all three fields are required).
#[derive(Debug, Serialize)]
pub(super) struct BatchRead<'a> {
    pub inputs: Vec<ObjectId<'a>>,
    pub properties: &'a [String],
    #[serde(rename = "propertiesWithHistory")]
    pub properties_with_history: [&'a str; 0],
}

/// `ListSearchRequest` (`additionalProperties` and `offset` are required).
#[derive(Debug, Serialize)]
pub(super) struct ListSearch<'a> {
    pub query: &'a str,
    pub offset: u64,
    pub count: u32,
    #[serde(rename = "additionalProperties")]
    pub additional_properties: [&'a str; 0],
}

/// `PublicObjectListSearchResult`.
#[derive(Debug, Deserialize)]
pub(super) struct ListHit {
    #[serde(rename = "listId")]
    pub list_id: String,
    pub name: String,
    #[serde(rename = "objectTypeId", default)]
    pub object_type_id: String,
    #[serde(rename = "listVersion", default)]
    pub list_version: i64,
    /// `hs_list_size`, `hs_last_record_added_at`, `hs_last_record_removed_at`.
    #[serde(rename = "additionalProperties", default)]
    pub additional: BTreeMap<String, String>,
}

/// `ListSearchResponse`.
#[derive(Debug, Deserialize)]
pub(super) struct ListSearchPage {
    #[serde(default)]
    pub lists: Vec<ListHit>,
    #[serde(rename = "hasMore", default)]
    pub has_more: bool,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub total: u64,
}

/// `JoinTimeAndRecordId`.
#[derive(Debug, Deserialize)]
pub(super) struct Member {
    #[serde(rename = "recordId")]
    pub record_id: String,
}

/// `ApiCollectionResponseJoinTimeAndRecordId`.
#[derive(Debug, Deserialize)]
pub(super) struct MemberPage {
    #[serde(default)]
    pub results: Vec<Member>,
    pub paging: Option<Paging>,
    pub total: Option<u64>,
}

/// One event of a webhook delivery (a delivery is a JSON array of these,
/// up to 100). Legacy subscriptions say `contact.propertyChange`; apps on
/// the new developer platform say `object.propertyChange` with
/// `objectTypeId` (`0-1` contacts, `0-2` companies). Ids arrive as
/// numbers; anything unexpected in a field leaves it out.
#[derive(Debug, Deserialize)]
pub(super) struct Notification {
    #[serde(rename = "eventId", default, deserialize_with = "lenient_id")]
    pub event_id: Option<String>,
    #[serde(rename = "portalId", default, deserialize_with = "lenient_id")]
    pub portal_id: Option<String>,
    #[serde(rename = "subscriptionType", default)]
    pub subscription_type: Option<String>,
    #[serde(rename = "objectTypeId", default)]
    pub object_type_id: Option<String>,
    #[serde(rename = "objectId", default, deserialize_with = "lenient_id")]
    pub object_id: Option<String>,
    #[serde(rename = "propertyName", default)]
    pub property_name: Option<String>,
    #[serde(rename = "primaryObjectId", default, deserialize_with = "lenient_id")]
    pub primary_object_id: Option<String>,
    /// Set when a merge made a new record rather than keeping the primary.
    #[serde(rename = "newObjectId", default, deserialize_with = "lenient_id")]
    pub new_object_id: Option<String>,
    #[serde(rename = "mergedObjectIds", default)]
    pub merged_object_ids: Vec<serde_json::Value>,
    #[serde(rename = "associationType", default)]
    pub association_type: Option<String>,
    #[serde(rename = "fromObjectId", default, deserialize_with = "lenient_id")]
    pub from_object_id: Option<String>,
    #[serde(rename = "toObjectId", default, deserialize_with = "lenient_id")]
    pub to_object_id: Option<String>,
}

/// An id given as a number or a string of digits; anything else is none.
fn lenient_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(id_text(&value))
}

/// The text of an id given as a number or a string of digits.
pub(super) fn id_text(value: &serde_json::Value) -> Option<String> {
    let text = match value {
        serde_json::Value::Number(n) => n.as_u64()?.to_string(),
        serde_json::Value::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    (!text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()))
        .then_some(text)
}
