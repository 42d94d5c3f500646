//! HubSpot webhook deliveries: the v3 request signature, and what a
//! delivery's events mean for leadscored.
//!
//! HubSpot signs every delivery with `X-HubSpot-Signature-v3`: the Base64
//! of an HMAC-SHA256, keyed with the app's client secret, over the UTF-8
//! text `method + URI + body + timestamp`, where the URI is the target URL
//! configured in the app (with `%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C
//! %3B` decoded) and the timestamp is `X-HubSpot-Request-Timestamp`
//! (epoch milliseconds). A delivery older than five minutes is refused.
//! The daemon sits behind a reverse proxy, so the URI is the public target
//! URL from the connection, not what the proxy hands on.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::wire::{Notification, id_text};
use crate::crm::Touch;

/// How old (or how far ahead) a delivery's timestamp may be.
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;

/// Why a delivery was refused before its body was read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp header")]
    Unsigned,
    #[error("X-HubSpot-Request-Timestamp is not epoch milliseconds")]
    BadTimestamp,
    #[error("the delivery is {seconds} s old, past the 300 s HubSpot allows")]
    Expired { seconds: i64 },
    #[error("the delivery's timestamp is {seconds} s ahead of our clock")]
    Ahead { seconds: i64 },
    #[error("the signature does not match (wrong client secret, target URL or a changed body)")]
    BadSignature,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::BadTimestamp => "bad_timestamp",
            Refusal::Expired { .. } => "expired",
            Refusal::Ahead { .. } => "ahead",
            Refusal::BadSignature => "bad_signature",
        }
    }
}

/// Checks deliveries against the app's client secret and target URL.
pub struct Verifier {
    secret: SecretString,
    /// The target URL, decoded as HubSpot decodes it before signing.
    uri: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(secret: SecretString, target_url: &str) -> Verifier {
        Verifier {
            secret,
            uri: decode_uri(target_url),
        }
    }

    /// Checks one delivery; returns its timestamp. The signature is
    /// compared in constant time.
    pub fn verify(
        &self,
        method: &str,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        now_ms: i64,
    ) -> Result<i64, Refusal> {
        let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
            return Err(Refusal::Unsigned);
        };
        let timestamp = timestamp.trim();
        let at: i64 = timestamp.parse().map_err(|_| Refusal::BadTimestamp)?;
        let age = now_ms.saturating_sub(at);
        if age > MAX_AGE_MS {
            return Err(Refusal::Expired {
                seconds: age / 1000,
            });
        }
        if -age > MAX_AGE_MS {
            return Err(Refusal::Ahead {
                seconds: -age / 1000,
            });
        }
        use base64::Engine as _;
        let given = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| Refusal::BadSignature)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose_secret().as_bytes())
            .map_err(|_| Refusal::BadSignature)?;
        mac.update(method.as_bytes());
        mac.update(self.uri.as_bytes());
        mac.update(body);
        mac.update(timestamp.as_bytes());
        mac.verify_slice(&given)
            .map_err(|_| Refusal::BadSignature)?;
        Ok(at)
    }
}

/// Decodes the characters HubSpot decodes in the URI before signing.
pub fn decode_uri(uri: &str) -> String {
    const DECODED: [(&str, char); 12] = [
        ("%3A", ':'),
        ("%2F", '/'),
        ("%3F", '?'),
        ("%40", '@'),
        ("%21", '!'),
        ("%24", '$'),
        ("%27", '\''),
        ("%28", '('),
        ("%29", ')'),
        ("%2A", '*'),
        ("%2C", ','),
        ("%3B", ';'),
    ];
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3).unwrap_or("");
        match DECODED.iter().find(|(c, _)| c.eq_ignore_ascii_case(code)) {
            Some((_, ch)) => {
                out.push(*ch);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// HubSpot properties that move when a contact engages (a form filled, an
/// email opened or clicked, a visit): watched when the model reads events,
/// so engagement rescores within seconds too.
pub const ENGAGEMENT_PROPERTIES: [&str; 5] = [
    "recent_conversion_date",
    "num_conversion_events",
    "hs_email_last_open_date",
    "hs_email_last_click_date",
    "hs_analytics_last_visit_timestamp",
];

/// What leadscored listens for: the contact and company properties the
/// model (and the connection's inputs) read, and the properties whose
/// change means new engagement.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    pub contact_fields: rustc_hash::FxHashSet<String>,
    pub company_fields: rustc_hash::FxHashSet<String>,
    pub engagement_fields: rustc_hash::FxHashSet<String>,
}

/// One event of a delivery, as leadscored reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// HubSpot's event id (a retried event keeps it); none if absent.
    pub event_id: Option<String>,
    pub portal_id: Option<String>,
    /// `subscriptionType`, for logs and metrics.
    pub kind: String,
    /// What the event asks for: nothing when it is about something the
    /// model does not read, or of a type leadscored does not handle.
    pub touches: Vec<Touch>,
}

/// Reads a delivery's body: a JSON array of events. A body that is not
/// such an array is an error; an event of an unknown shape or type is
/// kept with no touches (ignored, and counted).
pub fn read(body: &[u8], watch: &Watch) -> Result<Vec<Delivered>, String> {
    let events: Vec<serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not a JSON array of events: {e}"))?;
    Ok(events
        .into_iter()
        .map(
            |value| match serde_json::from_value::<Notification>(value) {
                Ok(n) => delivered(n, watch),
                Err(_) => Delivered {
                    event_id: None,
                    portal_id: None,
                    kind: "malformed".to_owned(),
                    touches: Vec::new(),
                },
            },
        )
        .collect())
}

/// Contacts' and companies' object type ids on the new developer platform.
const CONTACT_TYPE: &str = "0-1";
const COMPANY_TYPE: &str = "0-2";

fn delivered(n: Notification, watch: &Watch) -> Delivered {
    let kind = n.subscription_type.clone().unwrap_or_default();
    let (object, action) = match kind.split_once('.') {
        Some(("object", action)) => match n.object_type_id.as_deref() {
            Some(CONTACT_TYPE) => ("contact", action),
            Some(COMPANY_TYPE) => ("company", action),
            _ => ("", action),
        },
        Some((object, action)) => (object, action),
        None => ("", ""),
    };
    let id = n.object_id.clone();
    let watched = |fields: &rustc_hash::FxHashSet<String>| {
        n.property_name
            .as_deref()
            .is_some_and(|p| fields.contains(p))
    };
    let mut touches = Vec::new();
    match (object, action) {
        ("contact", "creation" | "restore") => touches.extend(id.map(Touch::Engaged)),
        ("contact", "propertyChange") if watched(&watch.engagement_fields) => {
            touches.extend(id.map(Touch::Engaged));
        }
        ("contact", "propertyChange") if watched(&watch.contact_fields) => {
            touches.extend(id.map(Touch::Contact));
        }
        ("contact", "deletion" | "privacyDeletion") => touches.extend(id.map(Touch::Gone)),
        ("contact", "merge") => {
            // The survivor (a merge may make a new record); the others
            // are gone. An id read again that no longer exists is skipped.
            let kept = [n.primary_object_id.clone(), n.new_object_id.clone()];
            touches.extend(kept.iter().flatten().cloned().map(Touch::Engaged));
            touches.extend(
                n.merged_object_ids
                    .iter()
                    .filter_map(id_text)
                    .filter(|m| !kept.iter().flatten().any(|k| k == m))
                    .map(Touch::Gone),
            );
        }
        ("contact", "associationChange") if !watch.company_fields.is_empty() => {
            let contact = match n.association_type.as_deref() {
                Some(t) if t.starts_with("CONTACT_TO_COMPANY") => n.from_object_id.clone(),
                Some(t) if t.starts_with("COMPANY_TO_CONTACT") => n.to_object_id.clone(),
                _ => None,
            };
            touches.extend(contact.map(Touch::Contact));
        }
        ("company", "propertyChange") if watched(&watch.company_fields) => {
            touches.extend(id.map(Touch::Company));
        }
        ("company", "merge") if !watch.company_fields.is_empty() => {
            touches.extend(n.primary_object_id.clone().map(Touch::Company));
        }
        _ => {}
    }
    Delivered {
        event_id: n.event_id,
        portal_id: n.portal_id,
        kind,
        touches,
    }
}
