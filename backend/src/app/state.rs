//! The server's state shared by every request and task of the API (HTTP, GraphQL, the agent API):
//! settings, limits and handles built once by [`super::start`].

use crate::accounts::auth_guard::AuthGuard;
use crate::accounts::ratelimit::{AccountLimiter, AddressLimiter};
use crate::infra::crypto::SecretBox;
use crate::infra::events::Bus;
use sqlx::PgPool;
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
