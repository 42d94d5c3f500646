//! Pardot's JSON shapes (only this connector sees them).

use serde::Deserialize;

/// A page of prospects or visitor activities: objects with the requested
/// fields, and the token for the next page.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Page {
    #[serde(default)]
    pub values: Vec<serde_json::Map<String, serde_json::Value>>,
    pub next_page_token: Option<String>,
}

/// `{"code": 66, "message": "..."}`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorBody {
    pub code: Option<u32>,
    pub message: Option<String>,
}

/// The custom-fields list.
#[derive(Debug, Default, Deserialize)]
pub(super) struct CustomFieldList {
    #[serde(default)]
    pub values: Vec<CustomField>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CustomField {
    pub field_id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// An import job's state (`Waiting`, `Ready`, `Processing`, `Complete`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ImportJob {
    pub id: u64,
    pub status: String,
    #[serde(default)]
    pub error_count: u64,
    pub updated_at: Option<String>,
}

/// `GET /api/v5/objects/account?fields=id`: the Account Engagement
/// account the business unit belongs to.
#[derive(Debug, Deserialize)]
pub(super) struct Account {
    pub id: u64,
}
