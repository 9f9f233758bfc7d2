//! The forward-only SSH server devices keep their tunnels to (russh).
//!
//! - `host_key`: the persistent Ed25519 host key and its fingerprint.
//! - `handler`: one connection's authentication and the refusal of everything but port forwarding.
//! - `jump`: renters reaching their rented device with `ssh -J` (a `direct-tcpip` to its subdomain).
//! - `tunnels`: which connection is each device's current one, and the public port listeners.
//!
//! There is no shell here, for anyone: the original's shared shell account reached the database.

mod deadline;
mod handler;
pub mod host_key;
mod jump;
mod tunnels;

use crate::infra::metrics::Metrics;
use crate::infra::shutdown::Shutdown;
use russh::keys::PrivateKey;
use russh::server::Config;
use russh::{MethodKind, MethodSet};
use sqlx::PgPool;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tunnels::SshShared;

/// How long a client may take to send its SSH identification.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client may take to authenticate once connected, by default.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct SshSettings {
    pub addr: SocketAddr,
    /// Address the devices' public ports listen on.
    pub tunnel_bind: IpAddr,
    pub host_key: PrivateKey,
    /// How long a client may take to authenticate once connected.
    pub auth_timeout: Duration,
}

/// Failed authentications allowed per minute from one address, and against one user name from one address.
const AUTH_FAILURES: crate::accounts::auth_guard::Quotas = crate::accounts::auth_guard::Quotas {
    per_address_per_minute: 60,
    per_name_from_address_per_minute: 10,
    per_name_per_hour: None,
};

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot listen for SSH on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

fn config(host_key: PrivateKey) -> Config {
    Config {
        methods: MethodSet::from(&[MethodKind::Password, MethodKind::PublicKey][..]),
        keys: vec![host_key],
        // Quiet tunnels are normal; dead peers are found by keepalives instead (90 s without an answer).
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        max_auth_attempts: 6,
        auth_rejection_time: Duration::from_secs(1),
        // OpenSSH probes with "none" first; answering that at once is not a timing leak.
        auth_rejection_time_initial: Some(Duration::ZERO),
        ..Config::default()
    }
}

/// A running SSH server.
pub struct SshServer {
    pub addr: SocketAddr,
    /// The devices' web servers published with `ssh -R SUBDOMAIN:80:...`, for the gateway.
    pub web: WebTunnels,
    pub fingerprint: String,
    /// The host key's public half (`ssh-ed25519 AAAA...`), for ready-made `known_hosts` lines.
    pub public_key: String,
}

/// Binds and starts accepting; returns once listening.
pub async fn start(
    settings: SshSettings,
    pool: PgPool,
    secrets: crate::infra::crypto::SecretBox,
    bus: crate::infra::events::Bus,
    metrics: Arc<Metrics>,
    stop: Shutdown,
) -> Result<SshServer, SshError> {
    let fingerprint = host_key::fingerprint(&settings.host_key);
    let public_key = host_key::public_openssh(&settings.host_key);
    let listener = TcpListener::bind(settings.addr)
        .await
        .map_err(|source| SshError::Bind {
            addr: settings.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SshError::Bind {
        addr: settings.addr,
        source,
    })?;
    let auth_timeout = settings.auth_timeout;
    let config = Arc::new(config(settings.host_key));
    let shared = Arc::new(SshShared {
        pool,
        secrets,
        bus,
        metrics,
        registry: tunnels::Registry::default(),
        tunnel_bind: settings.tunnel_bind,
        auth_guard: crate::accounts::auth_guard::AuthGuard::new(AUTH_FAILURES),
    });
    tracing::info!(%addr, %fingerprint, "SSH server listening");
    tokio::spawn(cut_ended_rentals(Arc::clone(&shared), stop.clone()));
    tokio::spawn(tunnels::retry_statuses(Arc::clone(&shared), stop.clone()));
    let web = WebTunnels(Arc::clone(&shared));
    tokio::spawn(accept_loop(listener, config, shared, auth_timeout, stop));
    Ok(SshServer {
        web,
        addr,
        fingerprint,
        public_key,
    })
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<Config>,
    shared: Arc<SshShared>,
    auth_timeout: Duration,
    stop: Shutdown,
) {
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "SSH accept failed");
                    continue;
                }
            },
            () = stop.wait() => return,
        };
        let config = Arc::clone(&config);
        let authenticated = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handler =
            handler::Connection::new(Arc::clone(&shared), Some(peer), Arc::clone(&authenticated));
        tokio::spawn(serve_connection(
            socket,
            peer,
            config,
            handler,
            authenticated,
            auth_timeout,
            stop.clone(),
        ));
    }
}

/// Runs one connection to its end. A client that stalls before authenticating, or a server shutdown,
/// ends it: first politely (an SSH disconnect), then by shutting the socket down, since a peer that never
/// finished key exchange may never read the disconnect.
async fn serve_connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    config: Arc<Config>,
    handler: handler::Connection,
    authenticated: Arc<std::sync::atomic::AtomicBool>,
    auth_timeout: Duration,
    stop: Shutdown,
) {
    // A second handle on the same socket, to cut it whatever state the SSH session is in.
    let Ok((socket, cutter)) = socket
        .into_std()
        .and_then(|s| Ok((s.try_clone()?, s)))
        .and_then(|(s, c)| Ok((tokio::net::TcpStream::from_std(s)?, c)))
    else {
        return;
    };
    let cut = |reason: &str| {
        tracing::info!(%peer, reason, "closing SSH connection");
        let _ = cutter.shutdown(std::net::Shutdown::Both);
    };
    let session = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        russh::server::run_stream(config, socket, handler),
    )
    .await
    {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "SSH handshake failed");
            return;
        }
        Err(_) => return cut("no SSH identification in time"),
    };
    let handle = session.handle();
    let mut session = session;
    let deadline = tokio::time::sleep(auth_timeout);
    tokio::pin!(deadline);
    let mut deadline_passed = false;
    let reason = loop {
        tokio::select! {
            result = &mut session => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "SSH connection ended with an error");
                }
                return;
            }
            () = &mut deadline, if !deadline_passed => {
                deadline_passed = true;
                if !authenticated.load(std::sync::atomic::Ordering::Relaxed) {
                    break "authentication timeout";
                }
            }
            () = stop.wait() => break "server shutting down",
        }
    };
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, reason.into(), "en".into())
        .await;
    // Give the session a moment to send the disconnect and end by itself.
    if tokio::time::timeout(Duration::from_secs(2), &mut session)
        .await
        .is_err()
    {
        cut(reason);
    }
}

/// Opens connections to devices' web servers through their tunnels (the gateway's SSH upstream).
#[derive(Clone)]
pub struct WebTunnels(Arc<SshShared>);

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("the device has not published a web server over SSH")]
    NotPublished,
    #[error("the device did not open the connection: {0}")]
    Refused(russh::Error),
}

impl WebTunnels {
    /// Whether the device's web server is published over SSH right now.
    pub fn is_published(&self, device: uuid::Uuid) -> bool {
        self.0.registry.web(device).is_some()
    }

    /// A new connection to the device's web server, as a `forwarded-tcpip` channel naming `client`.
    pub async fn open(
        &self,
        device: uuid::Uuid,
        client: SocketAddr,
    ) -> Result<russh::ChannelStream<russh::server::Msg>, WebError> {
        let (handle, address) = self.0.registry.web(device).ok_or(WebError::NotPublished)?;
        let channel = handle
            .channel_open_forwarded_tcpip(
                address,
                80,
                client.ip().to_string(),
                u32::from(client.port()),
            )
            .await
            .map_err(WebError::Refused)?;
        Ok(channel.into_stream())
    }
}

/// When a rental ends (on any instance), cut the connections carried to its device's public port; when a
/// user's access changes (a renter disabled), check every device carrying connections.
async fn cut_ended_rentals(shared: Arc<SshShared>, stop: Shutdown) {
    let mut ended = shared.bus.rental_ended();
    let mut access = shared.bus.user_access();
    loop {
        let event = tokio::select! {
            e = ended.recv() => e,
            a = access.recv() => {
                match a {
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    // Only the devices this user rents are concerned.
                    Ok(a) => match crate::rentals::jump::devices_rented_by(&shared.pool, a.user).await {
                        Ok(devices) => recheck_carried(&shared, Some(&devices)).await,
                        Err(_) => recheck_carried(&shared, None).await,
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        recheck_carried(&shared, None).await;
                    }
                }
                continue;
            }
            () = stop.wait() => return,
        };
        match event {
            Ok(event) => {
                let cut = shared.registry.cut(event.device);
                if cut > 0 {
                    tracing::info!(device = %event.device, rental = %event.rental, cut, "rental ended; cut port connections");
                }
            }
            // Events were missed: every device carrying connections is checked against the database now.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "missed rental-end events; checking carried connections"
                );
                recheck_carried(&shared, None).await;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Cuts the port connections of every device (of `only`, when given) no longer let to a renter still
/// enabled.
async fn recheck_carried(shared: &SshShared, only: Option<&[uuid::Uuid]>) {
    let carrying = shared.registry.carrying();
    let devices = carrying
        .into_iter()
        .filter(|d| only.is_none_or(|only| only.contains(d)));
    for device in devices {
        if let Ok(None) = crate::rentals::jump::device_let_until(&shared.pool, device).await {
            let cut = shared.registry.cut(device);
            tracing::info!(%device, cut, "device no longer let; cut port connections");
        }
    }
}
