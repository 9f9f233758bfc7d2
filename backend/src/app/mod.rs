//! Assembles a running server from settings and a database pool. Used by `p2pvps serve` and by the tests,
//! which start the real application on port 0.

pub mod state;

use crate::accounts::auth_guard::{AuthGuard, Quotas};
use crate::accounts::ratelimit::{AccountLimiter, AddressLimiter};
use crate::accounts::sessions;
use crate::graphql;
use crate::http::{self, AppState};
use crate::infra::crypto::SecretBox;
use crate::infra::events::Bus;
use crate::infra::metrics::Metrics;
use crate::infra::shutdown::{self, Shutdown, Trigger};
use sqlx::PgPool;
use state::Shared;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Everything `serve` needs besides the pool, already validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http: SocketAddr,
    /// The listener serving only `/metrics`; `None` runs none.
    pub metrics_listen: Option<SocketAddr>,
    /// A bearer token opening `/metrics` on the main HTTP address too; `None`: not there at all.
    pub metrics_token: Option<String>,
    /// The built dashboard; `None` serves the API only.
    pub web_dir: Option<PathBuf>,
    pub secrets: SecretBox,
    pub tunnel_ports: RangeInclusive<u16>,
    /// Failed dashboard log-ins allowed per address, per account from one address, per account overall.
    pub login_failures: Quotas,
    /// Reverse proxies whose forwarding headers name the client.
    pub trusted_proxies: crate::http::client_address::TrustedProxies,
    /// `signUp` and `changePassword` calls (each an Argon2 hash) allowed per address per minute.
    pub password_rate_per_address: u32,
    pub cookie_secure: bool,
    /// The host name users connect to, for the commands shown to them.
    pub public_host: String,
    /// The device tunnel server; `None` runs the HTTP side only.
    pub ssh: Option<crate::ssh::SshSettings>,
    /// The web gateway for devices' sites; `None` runs none.
    pub gateway: Option<crate::gateway::GatewaySettings>,
    /// A marketplace to sell devices on; `None` sells nowhere.
    pub market: Option<MarketSettings>,
    /// The platform's share of each payment, in basis points (marketplace and storefront alike).
    pub fee_bps: u32,
    /// How storefront orders are paid.
    pub payments: crate::billing::payments::Providers,
    /// How long an unpaid storefront order holds its device, and how many one renter may hold.
    pub orders: crate::billing::storefront::OrderLimits,
    /// `orderRental` calls allowed per account per minute.
    pub order_rate_per_account: u32,
}

pub use crate::market::sales::MarketSettings;

impl Settings {
    /// Defaults for a local instance: port 0, no dashboard, a fresh random key.
    pub fn for_tests(secrets: SecretBox) -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            metrics_token: None,
            web_dir: None,
            secrets,
            tunnel_ports: 6000..=6999,
            login_failures: Quotas {
                per_address_per_minute: 100,
                per_name_from_address_per_minute: 5,
                per_name_per_hour: Some(100),
            },
            password_rate_per_address: 100,
            trusted_proxies: Default::default(),
            cookie_secure: false,
            ssh: None,
            gateway: None,
            market: None,
            fee_bps: crate::billing::ledger::DEFAULT_FEE_BPS,
            payments: crate::billing::payments::Providers::default(),
            orders: crate::billing::storefront::OrderLimits::default(),
            order_rate_per_account: 100,
            public_host: "127.0.0.1".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the event listener: {0}")]
    Events(sqlx::Error),
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
}

/// A started server. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    /// The metrics listener's address, when it runs.
    pub metrics_addr: Option<SocketAddr>,
    /// The SSH server's address, when it runs.
    pub ssh_addr: Option<SocketAddr>,
    /// The web gateway's listeners, when it runs.
    pub gateway: Option<crate::gateway::Gateway>,
    pub pool: PgPool,
    shared: Arc<Shared>,
    trigger: Trigger,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn stop(self) -> std::io::Result<()> {
        self.trigger.fire();
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Waits until the server ends (after [`Running::trigger`] fired).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    pub fn trigger(&self) -> &Trigger {
        &self.trigger
    }

    /// Runs one pass of the periodic housekeeping now (tests, instead of waiting for its timer).
    pub async fn housekeep(&self) {
        housekeeping_pass(&self.shared).await;
    }
}

pub async fn start(settings: Settings, pool: PgPool) -> Result<Running, AppError> {
    // Every TLS client in the process (reqwest) uses ring, the provider the gateway and russh use too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (trigger, stop) = shutdown::channel();
    let bus = Bus::start(&pool, stop.clone())
        .await
        .map_err(AppError::Events)?;
    let metrics = Metrics::new();
    let ssh = match settings.ssh.clone() {
        Some(ssh) => {
            let server = crate::ssh::start(
                ssh,
                pool.clone(),
                settings.secrets.clone(),
                bus.clone(),
                Arc::clone(&metrics),
                stop.clone(),
            );
            Some(server.await?)
        }
        None => None,
    };
    let gateway = match settings.gateway.clone() {
        Some(gateway) => Some(
            crate::gateway::start(
                gateway,
                pool.clone(),
                Arc::clone(&metrics),
                ssh.as_ref().map(|s| s.web.clone()),
                stop.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let shared = Arc::new(Shared {
        web: gateway.as_ref().map(|g| g.address.clone()),
        sites: gateway.as_ref().map(|g| Arc::clone(&g.sites)),
        ssh_fingerprint: ssh.as_ref().map(|s| s.fingerprint.clone()),
        ssh_public_key: ssh.as_ref().map(|s| s.public_key.clone()),
        ssh_port: ssh.as_ref().map(|s| s.addr.port()),
        public_host: settings.public_host.clone(),
        pool: pool.clone(),
        secrets: settings.secrets.clone(),
        tunnel_ports: settings.tunnel_ports.clone(),
        login_guard: AuthGuard::new(settings.login_failures),
        trusted_proxies: settings.trusted_proxies.clone(),
        password_limiter: AddressLimiter::per_minute(
            "sign-ups and password changes",
            settings.password_rate_per_address,
        ),
        bus,
        cookie_secure: settings.cookie_secure,
        fee_bps: settings.fee_bps,
        payments: settings.payments.clone(),
        orders: settings.orders,
        order_limiter: AccountLimiter::per_minute("orders", settings.order_rate_per_account),
        agent_guard: AuthGuard::new(Quotas {
            per_address_per_minute: 20,
            per_name_from_address_per_minute: 5,
            per_name_per_hour: None,
        }),
        shutdown: stop.clone(),
    });
    let schema = graphql::schema(Arc::clone(&shared), Arc::clone(&metrics));
    spawn_housekeeping(Arc::clone(&shared), stop.clone());
    if let Some(m) = settings.market.clone() {
        crate::market::sales::spawn(
            pool.clone(),
            settings.secrets.clone(),
            m,
            &shared.bus,
            Arc::clone(&metrics),
            stop.clone(),
        );
    }
    let state = AppState {
        shared: Arc::clone(&shared),
        schema,
        metrics,
        metrics_token: settings
            .metrics_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(http::MetricsToken::new),
        web_dir: settings.web_dir.clone(),
    };
    let listener = TcpListener::bind(settings.http)
        .await
        .map_err(|source| AppError::Bind {
            addr: settings.http,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| AppError::Bind {
        addr: settings.http,
        source,
    })?;
    let metrics_listener = match settings.metrics_listen {
        Some(at) => {
            let l = TcpListener::bind(at)
                .await
                .map_err(|source| AppError::Bind { addr: at, source })?;
            let bound = l
                .local_addr()
                .map_err(|source| AppError::Bind { addr: at, source })?;
            Some((l, bound))
        }
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(|(_, a)| *a);
    let metrics_app = http::metrics_router(state.clone());
    let app = http::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        let stop_metrics = stop.clone();
        let main = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.wait().await })
            .into_future();
        match metrics_listener {
            Some((l, _)) => {
                let metrics = axum::serve(l, metrics_app)
                    .with_graceful_shutdown(async move { stop_metrics.wait().await })
                    .into_future();
                tokio::try_join!(main, metrics).map(|_| ())
            }
            None => main.await,
        }
    });
    Ok(Running {
        addr,
        metrics_addr,
        ssh_addr: ssh.map(|s| s.addr),
        gateway,
        pool,
        shared,
        trigger,
        task,
    })
}

/// Periodic work every 30 s: end expired rentals, cancel orders left unpaid, purge expired sessions, forget idle rate-limit keys.
/// (Every instance runs it; each step is idempotent and row-locked, so running it twice is harmless.)
fn spawn_housekeeping(shared: Arc<Shared>, stop: Shutdown) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.wait() => return,
            }
            housekeeping_pass(&shared).await;
        }
    });
}

async fn housekeeping_pass(shared: &Shared) {
    match crate::rentals::lifecycle::end_expired(&shared.pool).await {
        Ok(n) if n > 0 => tracing::info!(ended = n, "ended expired rentals"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "ending expired rentals failed"),
    }
    if let Err(e) = crate::rentals::lifecycle::refund_failed_starts(&shared.pool).await {
        tracing::warn!(error = %e, "refunding rentals whose start hook failed did not finish");
    }
    match crate::billing::storefront::expire(&shared.pool, shared.orders.hold).await {
        Ok(n) if n > 0 => {
            tracing::info!(cancelled = n, "cancelled storefront orders left unpaid")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cancelling unpaid orders failed"),
    }
    shared.login_guard.forget_idle();
    shared.agent_guard.forget_idle();
    shared.password_limiter.forget_idle();
    shared.order_limiter.forget_idle();
    match sessions::purge_expired(&shared.pool).await {
        Ok(n) if n > 0 => tracing::info!(removed = n, "purged expired sessions"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "session purge failed"),
    }
}
