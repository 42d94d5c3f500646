//! `fake-crm`: serve a built-in fake CRM on a local address until stopped,
//! so admins and revops can try a model without a CRM account.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::CommandError;
use crate::fake::{FakeHubspot, FakePardot, FakePortals, HubspotConfig, PardotConfig};

/// Which CRM to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FakeKind {
    Hubspot,
    Pardot,
}

/// One of the fakes, for saving its state.
enum Fake {
    Hubspot(FakeHubspot),
    Pardot(FakePardot),
    /// Many HubSpot portals (their state is not saved).
    Portals(FakePortals),
}

impl Fake {
    fn save(&self, path: &Path) -> std::io::Result<bool> {
        match self {
            Self::Hubspot(fake) => fake.save_state(path),
            Self::Pardot(fake) => fake.save_state(path),
            Self::Portals(_) => Ok(false),
        }
    }
}

/// How `fake-crm` behaves beyond its kind and address.
#[derive(Clone, Debug, Default)]
pub struct FakeOptions {
    /// How many contacts or prospects to generate.
    pub records: u64,
    pub seed: u64,
    /// Keep client writes in this file across restarts.
    pub state: Option<std::path::PathBuf>,
    /// No rate or daily limits (benchmarks).
    pub unlimited: bool,
    /// Fault rates, `429=0.1,5xx=0.05,reset=0.02,malformed=0.02,slow=0.05`.
    pub faults: Option<String>,
    /// Error answers quote the request's Authorization header.
    pub echo_auth: bool,
    /// The HubSpot portal id or Pardot account id to answer as.
    pub portal_id: Option<u64>,
    /// Companies the people work at (0: about eight people each).
    pub companies: u64,
    /// Write a connection file for this fake here (with the example model
    /// and credential files beside it).
    pub write_connection: Option<std::path::PathBuf>,
    /// Send HubSpot webhooks for every contact change to this loopback URL.
    pub webhooks: Option<String>,
    /// HubSpot portals behind the one address (0 or 1: one).
    pub portals: usize,
}

/// The app secret the fake HubSpot signs its webhooks with.
pub const FAKE_APP_SECRET: &str = "fake-app-secret";

/// The example model and connections, built into the binary so that
/// `fake-crm --write-connection` works from any directory.
const EXAMPLE_MODEL: &str = include_str!("../../config/b2b.toml");
const EXAMPLE_HUBSPOT: &str = include_str!("../../config/hubspot.toml");
const EXAMPLE_PARDOT: &str = include_str!("../../config/pardot.toml");

/// What a fake accepts, to write into a connection file.
enum Credentials<'a> {
    Token(&'a str),
    Salesforce {
        client_id: &'a str,
        client_secret: &'a str,
        refresh_token: &'a str,
        business_unit_id: &'a str,
    },
}

/// Writes a file (creating it 0600: it may hold a secret).
fn write_private(path: &Path, text: &str) -> Result<(), CommandError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CommandError::Data(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(|e| CommandError::Data(format!("cannot write {}: {e}", path.display())))
}

/// Writes a ready connection file for the fake at `url`: the example
/// connection of its kind, the example model beside it, and the secrets
/// the fake accepts in files beside it (named from the connection file).
fn write_connection(
    path: &Path,
    url: &str,
    credentials: &Credentials<'_>,
    unlimited: bool,
    webhooks: Option<&str>,
    shared_model: Option<&str>,
) -> Result<String, CommandError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = path
        .file_stem()
        .map_or_else(|| "fake".to_owned(), |s| s.to_string_lossy().into_owned());
    let model_name = match shared_model {
        Some(name) => name.to_owned(),
        None => {
            let name = format!("{stem}-model.toml");
            write_private(&dir.join(&name), EXAMPLE_MODEL)?;
            name
        }
    };
    let secret = |suffix: &str, value: &str| -> Result<String, CommandError> {
        let file = dir.join(format!("{stem}.{suffix}"));
        write_private(&file, value)?;
        let absolute = std::path::absolute(&file).unwrap_or(file);
        Ok(format!("{{ file = {:?} }}", absolute.display().to_string()))
    };
    let text = match credentials {
        Credentials::Token(token) => EXAMPLE_HUBSPOT
            .replace(
                "token = { credential = \"hubspot-token\" }",
                &format!("token = {}", secret("token", token)?),
            )
            .replace(
                "# base_url = \"https://api.hubapi.com\"",
                &format!("base_url = {url:?}"),
            ),
        Credentials::Salesforce {
            client_id,
            client_secret,
            refresh_token,
            business_unit_id,
        } => EXAMPLE_PARDOT
            .replace(
                "# base_url = \"https://pi.pardot.com\"",
                &format!("base_url = {url:?}"),
            )
            .replace(
                "business_unit_id = \"0Uv5g000000FAKEAAA\"",
                &format!("business_unit_id = {business_unit_id:?}"),
            )
            .replace(
                "client_id = \"3MVG9...your connected app\"",
                &format!("client_id = {client_id:?}"),
            )
            .replace(
                "client_secret = { credential = \"salesforce-client-secret\" }",
                &format!(
                    "client_secret = {}",
                    secret("client-secret", client_secret)?
                ),
            )
            .replace(
                "refresh_token = { credential = \"salesforce-refresh-token\" }",
                &format!(
                    "refresh_token = {}\ntoken_url = {:?}",
                    secret("refresh-token", refresh_token)?,
                    format!("{url}/services/oauth2/token")
                ),
            ),
    };
    let mut text = text.replacen(
        "model = \"b2b.toml\"",
        &format!("model = {model_name:?}"),
        1,
    );
    if unlimited && matches!(credentials, Credentials::Token(_)) {
        // The fake sets no rate limit: neither need we.
        text = text.replacen(
            "[limits]\n",
            "[limits]\nper_ten_seconds = 10000\nsearch_per_second = 1000\n",
            1,
        );
    }
    if let Some(target) = webhooks {
        text.push_str(&format!(
            "\n[webhooks]\nurl = {target:?}\nsecret = {}\n",
            secret("app-secret", FAKE_APP_SECRET)?
        ));
    }
    let header = format!(
        "# Written by `leadscored fake-crm --write-connection` for the fake CRM at {url}.\n# Its secrets are in the files named below; nothing here is a real account.\n\n"
    );
    write_private(path, &(header + &text))?;
    Ok(format!(
        "connection file for this fake: {} (model {model_name}, secrets beside it); try: leadscored setup --connection {0} && leadscored sync --once --dry-run --connection {0}",
        path.display()
    ))
}

/// Writes one connection file per fake portal into `dir` (created if
/// missing): `portal-0001.toml` and on, each with its token file beside
/// it; the model they share goes to `dir/models/` (every `.toml` directly
/// in `dir` is a connection).
fn write_portal_connections(
    dir: &Path,
    url: &str,
    portals: usize,
    unlimited: bool,
) -> Result<String, CommandError> {
    let models = dir.join("models");
    std::fs::create_dir_all(&models)
        .map_err(|e| CommandError::Data(format!("cannot create {}: {e}", models.display())))?;
    write_private(&models.join("b2b.toml"), EXAMPLE_MODEL)?;
    for number in 1..=portals {
        let token = crate::fake::portals::portal_token(number);
        let path = dir.join(format!("portal-{number:04}.toml"));
        let credentials = Credentials::Token(&token);
        write_connection(
            &path,
            url,
            &credentials,
            unlimited,
            None,
            Some("models/b2b.toml"),
        )?;
    }
    Ok(format!(
        "{portals} connection files for these portals in {} (portal-0001.toml and on, each token beside its file, the model in models/); create each portal's properties with `leadscored setup --connection FILE`, then: leadscored run --connections {0}",
        dir.display()
    ))
}

/// Serves a fake CRM on `listen` until SIGINT or SIGTERM, keeping client
/// writes in `options.state` when given.
pub fn fake_crm(
    kind: FakeKind,
    listen: SocketAddr,
    options: &FakeOptions,
) -> Result<(), CommandError> {
    let FakeOptions {
        records,
        seed,
        unlimited,
        echo_auth,
        portal_id,
        companies,
        ..
    } = *options;
    let state = options.state.as_deref();
    let mut faults = crate::fake::hubspot::Faults {
        echo_auth,
        ..Default::default()
    };
    if let Some(spec) = &options.faults {
        faults.apply_spec(spec).map_err(CommandError::Data)?;
    }
    if !listen.ip().is_loopback() {
        return Err(CommandError::Data(format!(
            "--listen {listen}: the fake CRM serves on a loopback address only (127.0.0.1 or ::1)"
        )));
    }
    let portals = options.portals.max(1);
    if portals > 1 {
        let refused = match kind {
            FakeKind::Pardot => Some("--portals: many portals are served for HubSpot only"),
            FakeKind::Hubspot if state.is_some() => {
                Some("--portals: --state keeps one portal's writes; leave it out")
            }
            FakeKind::Hubspot if options.webhooks.is_some() => {
                Some("--portals: --webhooks is for one portal; leave it out")
            }
            FakeKind::Hubspot => None,
        };
        if let Some(why) = refused {
            return Err(CommandError::Data(why.to_owned()));
        }
    }
    // One portal's settings (each of many portals takes its own seed and
    // token from them).
    let hubspot_config = || {
        let mut config = HubspotConfig {
            contacts: records,
            seed,
            faults: faults.clone(),
            portal_id,
            companies,
            ..HubspotConfig::default()
        };
        if unlimited {
            config.per_ten_seconds = 100_000_000;
            config.search_per_second = 10_000_000;
            config.daily = u64::MAX / 2;
        }
        config
    };
    let (fake, router, banner, secrets) = match kind {
        FakeKind::Hubspot if portals > 1 => {
            let config = hubspot_config();
            let set = FakePortals::numbered(&config, portals);
            let banner = format!(
                "{portals} fake HubSpot portals with {records} contacts each (seeds {seed}..={}); bearer tokens {} to {}",
                seed + portals as u64 - 1,
                crate::fake::portals::portal_token(1),
                crate::fake::portals::portal_token(portals),
            );
            let router = set.router();
            (Fake::Portals(set), router, banner, (String::new(), None))
        }
        FakeKind::Hubspot => {
            let mut config = hubspot_config();
            if let Some(target) = &options.webhooks {
                let hooks =
                    crate::fake::hubspot::webhooks::FakeWebhooks::new(target, FAKE_APP_SECRET)
                        .map_err(CommandError::Data)?;
                config.webhooks = Some(hooks);
            }
            let mut banner = format!(
                "fake HubSpot portal {} with {records} contacts (seed {seed}); bearer token: {}",
                config.portal(),
                config.token
            );
            if let Some(target) = &options.webhooks {
                banner.push_str(&format!(
                    "; webhooks to {target}, signed with app secret {FAKE_APP_SECRET}"
                ));
            }
            let secrets = (config.token.clone(), None);
            let fake = FakeHubspot::new(config);
            if let Some(path) = state {
                fake.load_state(path).map_err(CommandError::Data)?;
            }
            (Fake::Hubspot(fake.clone()), fake.router(), banner, secrets)
        }
        FakeKind::Pardot if options.webhooks.is_some() => {
            return Err(CommandError::Data(
                "--webhooks: Account Engagement (Pardot) sends no webhooks".to_owned(),
            ));
        }
        FakeKind::Pardot => {
            let mut config = PardotConfig {
                prospects: records,
                seed,
                faults,
                account_id: portal_id,
                companies,
                ..PardotConfig::default()
            };
            if unlimited {
                config.daily = u64::MAX / 2;
            }
            let banner = format!(
                "fake Pardot account {} with {records} prospects (seed {seed}); bearer token: {}; Pardot-Business-Unit-Id: {}",
                config.account(),
                config.token,
                config.business_unit_id
            );
            let secrets = (
                config.token.clone(),
                Some((
                    config.client_id.clone(),
                    config.client_secret.clone(),
                    config.refresh_token.clone(),
                    config.business_unit_id.clone(),
                )),
            );
            let fake = FakePardot::new(config);
            if let Some(path) = state {
                fake.load_state(path).map_err(CommandError::Data)?;
            }
            (Fake::Pardot(fake.clone()), fake.router(), banner, secrets)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match &fake {
            Fake::Hubspot(hubspot) => hubspot.start_webhooks(),
            Fake::Portals(set) => set.start_webhooks(),
            Fake::Pardot(_) => {}
        }
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        eprintln!("{banner}; on http://{addr}");
        if let (Some(dir), Fake::Portals(set)) = (&options.write_connection, &fake) {
            eprintln!("{}", write_portal_connections(dir, &format!("http://{addr}"), set.len(), unlimited)?);
        } else if let Some(path) = &options.write_connection {
            let url = format!("http://{addr}");
            let credentials = match &secrets {
                (token, None) => Credentials::Token(token),
                (_, Some((client_id, client_secret, refresh_token, unit))) => {
                    Credentials::Salesforce {
                        client_id,
                        client_secret,
                        refresh_token,
                        business_unit_id: unit,
                    }
                }
            };
            let webhooks = options.webhooks.as_deref();
            eprintln!(
                "{}",
                write_connection(path, &url, &credentials, unlimited, webhooks, None)?
            );
        }
        let server = axum::serve(listener, router).with_graceful_shutdown(shutdown_signal());
        match state {
            None => server.await?,
            Some(path) => {
                let saver = async {
                    let mut tick = tokio::time::interval(Duration::from_secs(1));
                    loop {
                        tick.tick().await;
                        if let Err(error) = fake.save(path) {
                            tracing::warn!(%error, path = %path.display(), "could not save the fake CRM's state");
                        }
                    }
                };
                tokio::select! {
                    served = server => served?,
                    () = saver => {}
                }
                fake.save(path).map_err(|error| {
                    CommandError::Data(format!("{}: could not save the state: {error}", path.display()))
                })?;
            }
        }
        Ok::<(), CommandError>(())
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
