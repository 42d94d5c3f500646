//! Many fake HubSpot portals behind one address, as HubSpot serves every
//! portal from `api.hubapi.com`: the bearer token says which portal a
//! request is for. Each portal is a whole [`FakeHubspot`] with its own
//! people, writes, rate limits, daily budget and faults.
//!
//! A request whose token no portal holds gets HubSpot's 401. The fake's own
//! inspection routes (`/__fake/...`) take the portal's token too, or name
//! the portal by number in an `x-fake-portal` header.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;

use super::hubspot::{FakeHubspot, HubspotConfig};

/// The header that names a portal (1-based) on `/__fake/` routes.
pub const PORTAL_HEADER: &str = "x-fake-portal";

/// The private-app token portal `number` (1-based) accepts.
pub fn portal_token(number: usize) -> String {
    format!("pat-fake-portal-{number:04}")
}

/// Portal `number` (1-based) of a set made from `base`: its own seed
/// (so its own people and portal id) and token.
pub fn portal_config(base: &HubspotConfig, number: usize) -> HubspotConfig {
    let seed = base.seed + number as u64 - 1;
    HubspotConfig {
        seed,
        token: portal_token(number),
        portal_id: base.portal_id.map(|id| id + number as u64 - 1),
        ..base.clone()
    }
}

/// Several fake portals on one router.
#[derive(Clone, Debug)]
pub struct FakePortals {
    portals: Arc<Vec<FakeHubspot>>,
    routers: Arc<Vec<Router>>,
    by_token: Arc<HashMap<String, usize>>,
}

impl FakePortals {
    /// One portal per config, numbered from 1 in the order given; their
    /// tokens must differ.
    pub fn new(configs: Vec<HubspotConfig>) -> Result<FakePortals, String> {
        let mut by_token = HashMap::new();
        for (index, config) in configs.iter().enumerate() {
            if by_token.insert(config.token.clone(), index).is_some() {
                return Err(format!(
                    "portal {} has the same token as an earlier one",
                    index + 1
                ));
            }
        }
        Ok(FakePortals::assemble(configs, by_token))
    }

    fn assemble(configs: Vec<HubspotConfig>, by_token: HashMap<String, usize>) -> FakePortals {
        let portals: Vec<FakeHubspot> = configs.into_iter().map(FakeHubspot::new).collect();
        let routers = portals.iter().map(FakeHubspot::router).collect();
        FakePortals {
            portals: Arc::new(portals),
            routers: Arc::new(routers),
            by_token: Arc::new(by_token),
        }
    }

    /// `count` portals made from `base` by [`portal_config`] (numbered
    /// tokens never repeat).
    pub fn numbered(base: &HubspotConfig, count: usize) -> FakePortals {
        let configs: Vec<HubspotConfig> = (1..=count).map(|n| portal_config(base, n)).collect();
        let by_token = configs
            .iter()
            .enumerate()
            .map(|(i, c)| (c.token.clone(), i))
            .collect();
        FakePortals::assemble(configs, by_token)
    }

    /// Portal `number` (1-based).
    pub fn portal(&self, number: usize) -> Option<&FakeHubspot> {
        number.checked_sub(1).and_then(|i| self.portals.get(i))
    }

    pub fn len(&self) -> usize {
        self.portals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.portals.is_empty()
    }

    /// Starts every portal's webhook sender that is configured.
    pub fn start_webhooks(&self) {
        for portal in self.portals.iter() {
            portal.start_webhooks();
        }
    }

    /// Which portal a request is for, by its token or (inspection routes
    /// only) by the portal header.
    fn route_of(&self, request: &Request) -> Option<usize> {
        let headers = request.headers();
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(index) = bearer.and_then(|t| self.by_token.get(t)) {
            return Some(*index);
        }
        if request.uri().path().starts_with("/__fake/") {
            return headers
                .get(PORTAL_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok())
                .and_then(|n| n.checked_sub(1))
                .filter(|i| *i < self.portals.len());
        }
        None
    }

    /// The HTTP routes of every portal, dispatched by token.
    pub fn router(&self) -> Router {
        let portals = self.clone();
        Router::new().fallback(move |request: Request| {
            let portals = portals.clone();
            async move { portals.dispatch(request).await }
        })
    }

    async fn dispatch(&self, request: Request) -> Response {
        let Some(router) = self.route_of(&request).and_then(|i| self.routers.get(i)) else {
            return super::hubspot::error(
                StatusCode::UNAUTHORIZED,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            );
        };
        match router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
        .into_response()
    }
}
