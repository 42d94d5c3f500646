//! Credentials: secrets read from systemd credentials, a file or the
//! environment into `secrecy` types, and the access tokens they yield —
//! static, or OAuth tokens refreshed ahead of expiry and once more when the
//! CRM says a token expired.
//!
//! Secrets never reach logs, errors or `Debug` output: error messages name
//! where a secret was looked for, never what it is.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::CrmError;
use crate::config::{Auth, CrmKind, SecretSource};

/// Credentials given on the command line (`--credential NAME=PATH`), for
/// running `setup` or `sync` by hand with the files a systemd unit hands
/// over with `LoadCredential=`.
static GIVEN: std::sync::RwLock<Vec<(String, std::path::PathBuf)>> =
    std::sync::RwLock::new(Vec::new());

/// Reads credential `name` from `path` instead of `$CREDENTIALS_DIRECTORY`.
pub fn give_credential(name: &str, path: &std::path::Path) {
    GIVEN
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((name.to_owned(), path.to_owned()));
}

/// Reads a secret from where the config says it is.
pub fn read_secret(source: &SecretSource) -> Result<SecretString, CrmError> {
    let given = match source {
        SecretSource::Credential(name) => GIVEN
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, path)| path.clone()),
        _ => None,
    };
    let text = match source {
        SecretSource::Credential(_) if given.is_some() => {
            let path = given.unwrap_or_default();
            std::fs::read_to_string(&path).map_err(|e| {
                CrmError::Credentials(format!(
                    "{source}: cannot read {} (given with --credential): {e}",
                    path.display()
                ))
            })?
        }
        SecretSource::Credential(name) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                CrmError::Credentials(format!(
                    "{source}: $CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential={name}:..., or use file or env)"
                ))
            })?;
            let path = std::path::Path::new(&dir).join(name);
            std::fs::read_to_string(&path).map_err(|e| {
                CrmError::Credentials(format!("{source}: cannot read {}: {e}", path.display()))
            })?
        }
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| CrmError::Credentials(format!("{source}: {e}")))?,
        SecretSource::Env(name) => std::env::var(name)
            .map_err(|_| CrmError::Credentials(format!("{source} is not set")))?,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(CrmError::Credentials(format!("{source} is empty")));
    }
    let secret = SecretString::from(trimmed.to_owned());
    super::redact::register(&secret);
    Ok(secret)
}

/// Refresh this long before a token's stated expiry (or a quarter of its
/// lifetime, for short-lived tokens).
const REFRESH_AHEAD: Duration = Duration::from_secs(300);

struct Current {
    token: SecretString,
    /// When to refresh: ahead of the stated expiry. None: never expires (a
    /// static token, or a Salesforce session whose lifetime is not stated).
    refresh_at: Option<Instant>,
    /// Bumped on every refresh, so concurrent 401s refresh once.
    generation: u64,
}

enum Source {
    Static,
    Oauth {
        kind: CrmKind,
        client_id: String,
        client_secret: SecretString,
        refresh_token: Option<SecretString>,
        token_url: String,
    },
}

/// Hands out the current access token and refreshes OAuth tokens.
pub struct Tokens {
    source: Source,
    current: Mutex<Option<Current>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.source {
            Source::Static => "static",
            Source::Oauth { .. } => "oauth",
        };
        f.debug_struct("Tokens")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
}

impl Tokens {
    /// Reads the configured secrets (not the access token yet, for OAuth).
    pub fn new(kind: CrmKind, auth: &Auth) -> Result<Tokens, CrmError> {
        Ok(match auth {
            Auth::Token(source) => Tokens {
                source: Source::Static,
                current: Mutex::new(Some(Current {
                    token: read_secret(source)?,
                    refresh_at: None,
                    generation: 0,
                })),
            },
            Auth::Oauth {
                client_id,
                client_secret,
                refresh_token,
                token_url,
            } => Tokens {
                source: Source::Oauth {
                    kind,
                    client_id: client_id.clone(),
                    client_secret: read_secret(client_secret)?,
                    refresh_token: refresh_token.as_ref().map(read_secret).transpose()?,
                    token_url: token_url.clone(),
                },
                current: Mutex::new(None),
            },
        })
    }

    /// Whether a rejected token can be replaced by refreshing.
    pub fn refreshable(&self) -> bool {
        matches!(self.source, Source::Oauth { .. })
    }

    /// The token to send now, refreshed first when it expires soon; with
    /// its generation, to pass to [`Tokens::expired`].
    pub async fn get(&self, http: &reqwest::Client) -> Result<(SecretString, u64), CrmError> {
        let mut current = self.current.lock().await;
        let fresh = current
            .as_ref()
            .is_some_and(|c| c.refresh_at.is_none_or(|at| Instant::now() < at));
        if !fresh {
            let generation = current.as_ref().map_or(0, |c| c.generation) + 1;
            *current = Some(self.refresh(http, generation).await?);
        }
        match current.as_ref() {
            Some(c) => Ok((c.token.clone(), c.generation)),
            None => Err(CrmError::Credentials("no access token".to_owned())),
        }
    }

    /// The CRM rejected the token of `generation` as expired: refresh,
    /// unless another request already did.
    pub async fn expired(&self, http: &reqwest::Client, generation: u64) -> Result<(), CrmError> {
        if !self.refreshable() {
            return Err(CrmError::Auth(
                "the CRM says the access token expired, and a static token cannot be refreshed"
                    .to_owned(),
            ));
        }
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| c.generation > generation) {
            return Ok(());
        }
        *current = Some(self.refresh(http, generation + 1).await?);
        Ok(())
    }

    async fn refresh(&self, http: &reqwest::Client, generation: u64) -> Result<Current, CrmError> {
        let Source::Oauth {
            kind,
            client_id,
            client_secret,
            refresh_token,
            token_url,
        } = &self.source
        else {
            return Err(CrmError::Credentials(
                "a static token has no refresh".to_owned(),
            ));
        };
        let mut form: Vec<(&str, &str)> = vec![
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.expose_secret()),
        ];
        match refresh_token {
            Some(token) => {
                form.push(("grant_type", "refresh_token"));
                form.push(("refresh_token", token.expose_secret()));
            }
            None => form.push(("grant_type", "client_credentials")),
        }
        let response = http.post(token_url).form(&form).send().await.map_err(|e| {
            CrmError::Auth(format!(
                "token refresh at {token_url} failed: {}",
                without_url(&e)
            ))
        })?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            // A refused refresh may quote what it was sent: scrub it first.
            let body = super::redact::bytes(&body);
            // OAuth error bodies name the problem, never the secret.
            let reason = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    let error = v
                        .get("error")
                        .and_then(|e| e.as_str())
                        .or_else(|| v.get("status").and_then(|e| e.as_str()))?
                        .to_owned();
                    let description = v
                        .get("error_description")
                        .or_else(|| v.get("message"))
                        .and_then(|e| e.as_str())
                        .unwrap_or("");
                    Some(format!("{error}: {description}"))
                })
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(CrmError::Auth(format!(
                "{} token refresh was refused ({reason}); check the OAuth client and refresh token",
                kind.as_str()
            )));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| CrmError::Auth(format!("token refresh answer is not valid: {e}")))?;
        if parsed.refresh_token.is_some() {
            tracing::debug!(
                "the token endpoint returned a refresh token; the configured one stays in use"
            );
        }
        tracing::info!(generation, "access token refreshed");
        let token = SecretString::from(parsed.access_token);
        super::redact::register(&token);
        if let Some(refresh) = parsed.refresh_token {
            super::redact::register(&SecretString::from(refresh));
        }
        Ok(Current {
            token,
            refresh_at: parsed.expires_in.map(|s| {
                let lifetime = Duration::from_secs(s);
                Instant::now() + lifetime - REFRESH_AHEAD.min(lifetime / 4)
            }),
            generation,
        })
    }
}

/// A transport error's text without its URL (query strings can carry ids).
pub(crate) fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}
