//! Built-in fake CRMs on 127.0.0.1 for tests, benchmarks and demos: stateful,
//! with the real APIs' shapes, limits and errors, and people generated
//! deterministically from a seed.
//!
//! Nothing here is used by the product's scoring or sync path; it stands in
//! for HubSpot and Pardot where no account may be used.

mod faults;
pub mod hubspot;
mod limits;
pub mod pardot;
pub mod people;
pub mod portals;
mod store;

pub use store::StateHeader;

pub use hubspot::{FakeHubspot, HubspotConfig};
pub use pardot::{FakePardot, PardotConfig};
pub use people::{PeopleSpec, Person, Persona};
pub use portals::FakePortals;

/// A fake CRM running in-process on an ephemeral port; stops when dropped.
#[derive(Debug)]
pub struct RunningFake {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RunningFake {
    /// The base URL clients use, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningFake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a fake HubSpot on 127.0.0.1 with an ephemeral port, on the
/// current tokio runtime.
pub async fn spawn_hubspot(fake: FakeHubspot) -> std::io::Result<RunningFake> {
    fake.start_webhooks();
    spawn(fake.router()).await
}

/// Starts a fake Pardot on 127.0.0.1 with an ephemeral port, on the current
/// tokio runtime.
pub async fn spawn_pardot(fake: FakePardot) -> std::io::Result<RunningFake> {
    spawn(fake.router()).await
}

async fn spawn(router: axum::Router) -> std::io::Result<RunningFake> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(%error, "fake CRM stopped");
        }
    });
    Ok(RunningFake {
        addr,
        stop: Some(stop),
    })
}

/// Starts many fake HubSpot portals behind one address on 127.0.0.1 with
/// an ephemeral port, on the current tokio runtime.
pub async fn spawn_portals(portals: FakePortals) -> std::io::Result<RunningFake> {
    portals.start_webhooks();
    spawn(portals.router()).await
}
