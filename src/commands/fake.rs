//! `fake-crm`: serve a built-in fake CRM on a local address until stopped,
//! so admins and revops can try a model without a CRM account.

use std::net::SocketAddr;

use super::CommandError;
use crate::fake::{FakeHubspot, HubspotConfig};

/// Which CRM to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FakeKind {
    Hubspot,
    Pardot,
}

/// Serves a fake CRM on `listen` until SIGINT or SIGTERM.
pub fn fake_crm(
    kind: FakeKind,
    listen: SocketAddr,
    contacts: u64,
    seed: u64,
) -> Result<(), CommandError> {
    if !listen.ip().is_loopback() {
        return Err(CommandError::Data(format!(
            "--listen {listen}: the fake CRM serves on a loopback address only (127.0.0.1 or ::1)"
        )));
    }
    if kind == FakeKind::Pardot {
        return Err(CommandError::Data(
            "the fake Pardot is not available yet; use --kind hubspot".to_owned(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = HubspotConfig { contacts, seed, ..HubspotConfig::default() };
        let token = config.token.clone();
        let fake = FakeHubspot::new(config);
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        eprintln!("fake HubSpot with {contacts} contacts (seed {seed}) on http://{addr}; bearer token: {token}");
        crate::fake::hubspot::serve(listener, fake, shutdown_signal()).await?;
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
