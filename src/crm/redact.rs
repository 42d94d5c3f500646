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

/// The secrets, and one automaton that finds any of them in a single pass
/// over a text (a daemon serving hundreds of portals holds hundreds of
/// tokens; every answer body is scanned once, not once per token). The
/// automaton holds copies of the secrets' bytes; like the registry, it is
/// never printed, logged or serialised.
struct Registry {
    secrets: Vec<SecretString>,
    matcher: Option<aho_corasick::AhoCorasick>,
}

static SECRETS: RwLock<Registry> = RwLock::new(Registry {
    secrets: Vec::new(),
    matcher: None,
});

/// Registers a secret: from now on it is scrubbed from answers and output.
pub fn register(secret: &SecretString) {
    let text = secret.expose_secret();
    if text.len() < SHORTEST {
        return;
    }
    let mut registry = SECRETS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if registry.secrets.iter().any(|s| s.expose_secret() == text) {
        return;
    }
    registry.secrets.push(secret.clone());
    // Longest first where two overlap, so a secret that contains another
    // is replaced whole.
    registry.matcher = aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
        .build(
            registry
                .secrets
                .iter()
                .map(|s| s.expose_secret().as_bytes()),
        )
        .ok();
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub fn text(text: &str) -> Cow<'_, str> {
    let registry = SECRETS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match &registry.matcher {
        Some(matcher) if matcher.is_match(text) => {
            Cow::Owned(matcher.replace_all(text, &vec![REDACTED; registry.secrets.len()]))
        }
        _ => Cow::Borrowed(text),
    }
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
    let registry = SECRETS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match &registry.matcher {
        Some(matcher) if matcher.is_match(bytes) => {
            Cow::Owned(matcher.replace_all_bytes(bytes, &vec![REDACTED; registry.secrets.len()]))
        }
        _ => Cow::Borrowed(bytes),
    }
}
