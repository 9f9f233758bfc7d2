//! What every resolver knows: the shared server state and who is asking.

use super::error::{ApiError, ApiResult};
use crate::accounts::auth_guard::AuthGuard;
use crate::accounts::ratelimit::{AccountLimiter, AddressLimiter};
use crate::accounts::users::User;
use crate::infra::audit::Actor;
use crate::infra::crypto::SecretBox;
use crate::infra::events::Bus;
use async_graphql::Context;
use p2pvps_shared::Role;
use sqlx::PgPool;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

/// Server-wide state shared by all requests.
pub struct Shared {
    pub pool: PgPool,
    pub secrets: SecretBox,
    pub tunnel_ports: RangeInclusive<u16>,
    /// Reverse proxies whose forwarding headers name the client.
    pub trusted_proxies: crate::http::client_address::TrustedProxies,
    /// Failed dashboard log-ins.
    pub login_guard: AuthGuard,
    /// Password hashing on behalf of anyone (sign-up, password change), per address.
    pub password_limiter: AddressLimiter,
    pub bus: Bus,
    /// Mark the session cookie `Secure` (the dashboard is served over HTTPS).
    pub cookie_secure: bool,
    /// The SSH host key's fingerprint, for clients to pin.
    pub ssh_fingerprint: Option<String>,
    /// The SSH host key's public half, for `known_hosts` lines.
    pub ssh_public_key: Option<String>,
    /// The SSH server's port, when it runs.
    pub ssh_port: Option<u16>,
    /// The host name users connect to (SSH, device ports), as shown in ready-to-paste commands.
    pub public_host: String,
    /// How devices' sites are addressed, when the web gateway runs.
    pub web: Option<crate::gateway::WebAddress>,
    /// The gateway's subdomain lookups, told when a device's publishing changes.
    pub sites: Option<Arc<crate::gateway::upstream::Sites>>,
    /// The platform's share of each payment, in basis points.
    pub fee_bps: u32,
    /// How storefront orders are paid.
    pub payments: crate::billing::payments::Providers,
    /// The order hold and the cap on one renter's unpaid orders.
    pub orders: crate::billing::storefront::OrderLimits,
    /// `orderRental` calls, per account.
    pub order_limiter: AccountLimiter,
    /// Failed device logins on the agent API.
    pub agent_guard: AuthGuard,
    /// Fires when the server stops: long waits (the agent's job poll) answer at once.
    pub shutdown: crate::infra::shutdown::Shutdown,
}

/// How the request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    Cookie(String),
    Bearer(String),
}

/// The requester: a user (or nobody), the token used, and the client address.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: Option<User>,
    pub credential: Credential,
    pub address: IpAddr,
}

impl Viewer {
    pub fn user(&self) -> ApiResult<&User> {
        self.user.as_ref().ok_or_else(ApiError::unauthenticated)
    }

    pub fn admin(&self) -> ApiResult<&User> {
        let user = self.user()?;
        if user.role == Role::Admin {
            Ok(user)
        } else {
            Err(ApiError::forbidden("do this (admins only)"))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.role == Role::Admin)
    }

    pub fn actor(&self) -> ApiResult<Actor> {
        let user = self.user()?;
        Ok(Actor::user(user.id, &user.email))
    }
}

pub trait ContextExt {
    fn shared(&self) -> &Arc<Shared>;
    fn viewer(&self) -> &Viewer;
}

impl ContextExt for Context<'_> {
    fn shared(&self) -> &Arc<Shared> {
        // Both are inserted by the HTTP layer for every request; a schema built without them is a bug.
        self.data_unchecked::<Arc<Shared>>()
    }

    fn viewer(&self) -> &Viewer {
        self.data_unchecked::<Viewer>()
    }
}
