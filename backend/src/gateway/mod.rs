//! The web gateway: every device's web server at `SUBDOMAIN.DOMAIN`, over HTTP and HTTPS.
//!
//! - `host`: which site a request's host names (or the control endpoint).
//! - `proxy`: one request carried to the device and back (streaming, upgrades, forwarded headers).
//! - `upstream`: connections to devices through their tunnels, pooled by hyper's client; the subdomain
//!   cache; per-device request limits.
//! - `localtunnel`: the control endpoint and data sockets of the unmodified `lt` client.
//! - `pages`: the gateway's own small pages (404, 502, ...).
//! - `tls`: certificates (files or a generated local CA) behind a trait ACME can implement later.

mod counted;
pub mod host;
pub mod localtunnel;
mod pages;
mod proxy;
pub mod tls;
pub mod upstream;

use crate::infra::metrics::Metrics;
use crate::infra::shutdown::Shutdown;
use crate::ssh::WebTunnels;
pub use host::WebAddress;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use proxy::{Scheme, State};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Requests in progress per device; more wait (then get 503).
const REQUESTS_PER_DEVICE: usize = 64;
/// Idle keep-alive connections kept per device (as many as may be busy: a burst must not end in closing
/// connections that the next burst reopens), and for how long.
const IDLE_PER_DEVICE: usize = REQUESTS_PER_DEVICE;
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit on a request's head (request line and headers); larger ones get 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a client may take to send a request's head, or to finish a TLS handshake (slowloris).
const HEAD_TIMEOUT: Duration = Duration::from_secs(20);
/// How long in-flight requests may finish when the server stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Lower-case domain; sites are its direct subdomains.
    pub domain: String,
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    /// Required with `https`.
    pub tls: Option<Arc<dyn tls::CertSource>>,
    /// Redirect plain-HTTP site requests to HTTPS (when both listeners run).
    pub redirect_to_https: bool,
    /// Where localtunnel clients' data ports listen, and which ports they may use (any free one if `None`).
    pub localtunnel_bind: std::net::IpAddr,
    pub localtunnel_ports: Option<std::ops::RangeInclusive<u16>>,
    /// How long a request or response body may go without data before the exchange is cut.
    pub body_idle_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "the HTTPS listener needs a certificate (--tls-cert and --tls-key, or --tls-self-signed)"
    )]
    NoCertificate,
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A running gateway.
pub struct Gateway {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub address: WebAddress,
    /// The subdomain lookups, which a change of a device's publishing must forget.
    pub sites: Arc<upstream::Sites>,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), GatewayError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| GatewayError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Binds the listeners and starts serving; returns once listening.
pub async fn start(
    settings: GatewaySettings,
    pool: PgPool,
    metrics: Arc<Metrics>,
    ssh: Option<WebTunnels>,
    stop: Shutdown,
) -> Result<Gateway, GatewayError> {
    let tls = match (&settings.https, &settings.tls) {
        (Some(_), Some(source)) => Some(TlsAcceptor::from(tls::server_config(Arc::clone(source))?)),
        (Some(_), None) => return Err(GatewayError::NoCertificate),
        (None, _) => None,
    };
    let http = match settings.http {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let https = match settings.https {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let https_port = https.as_ref().map(|(_, a)| a.port());
    let address = match (https_port, &http) {
        (Some(port), _) => WebAddress {
            scheme: "https",
            domain: settings.domain.clone(),
            port: Some(port).filter(|p| *p != 443),
        },
        (None, Some((_, addr))) => WebAddress {
            scheme: "http",
            domain: settings.domain.clone(),
            port: Some(addr.port()).filter(|p| *p != 80),
        },
        (None, None) => WebAddress {
            scheme: "https",
            domain: settings.domain.clone(),
            port: None,
        },
    };
    let localtunnel = localtunnel::Localtunnel::new(
        pool.clone(),
        Arc::clone(&metrics),
        address.clone(),
        settings.localtunnel_bind,
        settings.localtunnel_ports.clone(),
    );
    let connector = upstream::Connector {
        ssh,
        origin: http
            .as_ref()
            .or(https.as_ref())
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |(_, a)| *a),
    };
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(IDLE_PER_DEVICE)
        .pool_timer(TokioTimer::new())
        .build(connector.clone());
    let sites = Arc::new(upstream::Sites::new(pool));
    let state = Arc::new(State {
        domain: settings.domain.clone(),
        redirect_to: https_port.filter(|_| settings.redirect_to_https && http.is_some()),
        sites: Arc::clone(&sites),
        limits: upstream::Limits::new(REQUESTS_PER_DEVICE),
        connector,
        localtunnel,
        client,
        metrics,
        body_idle: settings.body_idle_timeout,
    });
    let gateway = Gateway {
        http: http.as_ref().map(|(_, a)| *a),
        https: https.as_ref().map(|(_, a)| *a),
        address,
        sites,
    };
    if let Some((listener, addr)) = http {
        tracing::info!(%addr, domain = %settings.domain, "web gateway listening (HTTP)");
        tokio::spawn(serve(listener, None, Arc::clone(&state), stop.clone()));
    }
    if let Some((listener, addr)) = https {
        tracing::info!(%addr, domain = %settings.domain, "web gateway listening (HTTPS)");
        tokio::spawn(serve(listener, tls, state, stop));
    }
    Ok(gateway)
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    builder
}

/// Accepts connections until stopped, then lets in-flight requests finish (for a while).
async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, state: Arc<State>, stop: Shutdown) {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(builder());
    let scheme = if tls.is_some() {
        Scheme::Https
    } else {
        Scheme::Http
    };
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "gateway accept failed");
                    continue;
                }
            },
            () = stop.wait() => break,
        };
        let _ = socket.set_nodelay(true);
        let state = Arc::clone(&state);
        let service = service_fn(move |req| proxy::handle(Arc::clone(&state), req, peer, scheme));
        let builder = Arc::clone(&builder);
        match &tls {
            None => {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(socket), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "gateway connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream =
                        match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(socket)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "gateway connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("gateway stopped with requests still in progress");
    }
}
