//! `fake-crm`: serve a built-in fake CRM on a local address until stopped,
//! so admins and revops can try a model without a CRM account.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::CommandError;
use crate::fake::{FakeHubspot, FakePardot, HubspotConfig, PardotConfig};

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
}

impl Fake {
    fn save(&self, path: &Path) -> std::io::Result<bool> {
        match self {
            Self::Hubspot(fake) => fake.save_state(path),
            Self::Pardot(fake) => fake.save_state(path),
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
    let (fake, router, banner) = match kind {
        FakeKind::Hubspot => {
            let mut config = HubspotConfig {
                contacts: records,
                seed,
                faults: faults.clone(),
                portal_id,
                ..HubspotConfig::default()
            };
            if unlimited {
                config.per_ten_seconds = 100_000_000;
                config.search_per_second = 10_000_000;
                config.daily = u64::MAX / 2;
            }
            let banner = format!(
                "fake HubSpot portal {} with {records} contacts (seed {seed}); bearer token: {}",
                config.portal(),
                config.token
            );
            let fake = FakeHubspot::new(config);
            if let Some(path) = state {
                fake.load_state(path).map_err(CommandError::Data)?;
            }
            (Fake::Hubspot(fake.clone()), fake.router(), banner)
        }
        FakeKind::Pardot => {
            let mut config = PardotConfig {
                prospects: records,
                seed,
                faults,
                account_id: portal_id,
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
            let fake = FakePardot::new(config);
            if let Some(path) = state {
                fake.load_state(path).map_err(CommandError::Data)?;
            }
            (Fake::Pardot(fake.clone()), fake.router(), banner)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        eprintln!("{banner}; on http://{addr}");
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
        Ok(())
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
