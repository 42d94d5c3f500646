//! Redaction of the secrets this process holds from any text that leaves
//! it. Every secret leadscored reads or is given (tokens, client secrets,
//! refresh tokens, access tokens from a refresh) is registered here when it
//! enters; every CRM answer body is scrubbed before anything reads it, so a
//! proxy or error page that quotes our `Authorization` header cannot carry
//! the token into an error, a log line, the state or `/healthz`. The same
//! scrub runs again where text leaves (errors printed by `main`, health
//! reasons, run-log messages, failure reasons) as a second line of defence.
//!
//! The registry holds only what the process already holds in `secrecy`
//! types; it never prints, logs or serialises what it holds.

use std::borrow::Cow;
use std::sync::RwLock;

use secrecy::{ExposeSecret, SecretString};

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not scrubbed (they would match ordinary
/// text; no real token is this short).
const SHORTEST: usize = 8;

static SECRETS: RwLock<Vec<SecretString>> = RwLock::new(Vec::new());

/// Registers a secret: from now on it is scrubbed from answers and output.
pub fn register(secret: &SecretString) {
    let text = secret.expose_secret();
    if text.len() < SHORTEST {
        return;
    }
    let mut secrets = SECRETS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !secrets.iter().any(|s| s.expose_secret() == text) {
        secrets.push(secret.clone());
    }
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub fn text(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        let secret = secret.expose_secret();
        if out.contains(secret) {
            out = Cow::Owned(out.replace(secret, REDACTED));
        }
    }
    out
}

/// Owned convenience for [`text`].
pub fn string(text: String) -> String {
    match self::text(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(scrubbed) => scrubbed,
    }
}

/// `bytes` with every registered secret replaced by [`REDACTED`] (answer
/// bodies, before they are decoded or quoted).
pub fn bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    let secrets = SECRETS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = Cow::Borrowed(bytes);
    for secret in secrets.iter() {
        let needle = secret.expose_secret().as_bytes();
        if memchr::memmem::find(&out, needle).is_none() {
            continue;
        }
        let mut scrubbed = Vec::with_capacity(out.len());
        let mut rest: &[u8] = &out;
        while let Some(at) = memchr::memmem::find(rest, needle) {
            scrubbed.extend_from_slice(&rest[..at]);
            scrubbed.extend_from_slice(REDACTED.as_bytes());
            rest = &rest[at + needle.len()..];
        }
        scrubbed.extend_from_slice(rest);
        out = Cow::Owned(scrubbed);
    }
    out
}
