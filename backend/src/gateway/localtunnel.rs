//! The localtunnel protocol, for the unmodified `lt` client (npm `localtunnel` 2.0.2).
//!
//! The client asks the control endpoint (the bare domain) for a tunnel: `GET /SUBDOMAIN` or `GET /?new`,
//! authenticated here as a device by the user-info of its `--host` URL (axios sends it as Basic auth). We
//! answer with a TCP port; the client opens `max_conn_count` plain TCP sockets to it and pipes each into a
//! connection to its local web server. Each socket then carries HTTP/1.1 from us: it is one keep-alive
//! connection of the tunnel's pool.
//!
//! Unlike the reference server: every control request is authenticated, a device gets only its own
//! subdomain, data sockets are accepted only from the address that made the control request and only up
//! to `max_conn_count`, and a device's newer tunnel replaces its older one at once.

use super::counted::Counted;
use super::host::WebAddress;
use super::pages::{self, Body};
use crate::accounts::auth_guard::AuthGuard;
use crate::devices;
use crate::infra::metrics::Metrics;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sqlx::PgPool;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use uuid::Uuid;

/// Sockets a client keeps open per tunnel (the client opens exactly this many).
pub const MAX_SOCKETS: usize = 10;
/// A tunnel with no socket for this long is closed (its client is gone).
const IDLE_GRACE: Duration = Duration::from_secs(30);
/// How long a request waits for a free socket of the device's tunnel.
const SOCKET_WAIT: Duration = Duration::from_secs(10);
/// Failed control authentications allowed per minute, per address and per device from one address.
const FAILURES: crate::accounts::auth_guard::Quotas = crate::accounts::auth_guard::Quotas {
    per_address_per_minute: 60,
    per_name_from_address_per_minute: 10,
    per_name_per_hour: None,
};

/// An HTTP/1.1 connection over one data socket; it holds one of its tunnel's slots while it lives.
pub type Sender = hyper::client::conn::http1::SendRequest<Counted<Incoming>>;

/// A connection lent to one request; [`Lease::give_back`] returns it to its tunnel once the response is read.
pub struct Lease {
    tunnel: Arc<Tunnel>,
    sender: Sender,
}

impl Lease {
    pub fn give_back(self) {
        self.tunnel.put(self.sender);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the device's localtunnel client has no open socket")]
    NoTunnel,
    #[error("every socket of the device's localtunnel client stayed busy")]
    Busy,
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// One device's tunnel. Its connections are pooled here rather than in hyper's client: there are only
/// `MAX_SOCKETS` of them and no way to open more, so a request waits for one to be free.
struct Tunnel {
    id: u64,
    port: u16,
    /// Connections ready for a request; `ready` has one permit per entry.
    idle: Mutex<Vec<Sender>>,
    ready: Semaphore,
    slots: Arc<Semaphore>,
    listener: Mutex<Option<AbortHandle>>,
}

impl Tunnel {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Sender>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a connection available, forgetting those whose socket has closed meanwhile.
    fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        let before = idle.len();
        idle.retain(|s| !s.is_closed());
        let dropped = before - idle.len();
        self.ready.forget_permits(dropped);
        idle.push(sender);
        self.ready.add_permits(1);
    }

    /// A connection ready for a request, waiting until `deadline` for one.
    async fn take(&self, deadline: tokio::time::Instant) -> Option<Sender> {
        loop {
            let permit = tokio::time::timeout_at(deadline, self.ready.acquire())
                .await
                .ok()?
                .ok()?;
            permit.forget();
            let Some(mut sender) = self.idle().pop() else {
                continue;
            };
            // Ready once its previous response was read; an error means the socket is gone.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn close(&self) {
        if let Some(l) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            l.abort();
        }
        self.ready.close();
        self.idle().clear();
    }
}

pub struct Localtunnel {
    pool: PgPool,
    metrics: Arc<Metrics>,
    address: WebAddress,
    bind: IpAddr,
    ports: Option<RangeInclusive<u16>>,
    guard: AuthGuard,
    tunnels: Mutex<HashMap<Uuid, Arc<Tunnel>>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// A refusal: status and the message the client (or its `DEBUG=localtunnel:*` output) shows.
struct Refusal(StatusCode, String);

impl Localtunnel {
    pub fn new(
        pool: PgPool,
        metrics: Arc<Metrics>,
        address: WebAddress,
        bind: IpAddr,
        ports: Option<RangeInclusive<u16>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            metrics,
            address,
            bind,
            ports,
            guard: AuthGuard::new(FAILURES),
            tunnels: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
        })
    }

    fn tunnels(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Tunnel>>> {
        self.tunnels.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_open(&self, device: Uuid) -> bool {
        self.tunnels().contains_key(&device)
    }

    /// Sends a request (origin-form URI) through one of the device's sockets, waiting briefly for a free
    /// one. The lease goes back once the response body has been read.
    pub async fn send(
        &self,
        device: Uuid,
        req: Request<Counted<Incoming>>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let tunnel = self
            .tunnels()
            .get(&device)
            .cloned()
            .ok_or(SendError::NoTunnel)?;
        let deadline = tokio::time::Instant::now() + SOCKET_WAIT;
        let mut sender = tunnel.take(deadline).await.ok_or_else(|| {
            if tunnel.slots.available_permits() == MAX_SOCKETS {
                SendError::NoTunnel
            } else {
                SendError::Busy
            }
        })?;
        let response = sender.send_request(req).await?;
        Ok((response, Lease { tunnel, sender }))
    }

    /// Answers a request to the control endpoint.
    pub async fn control(
        self: &Arc<Self>,
        req: &Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        if req.method() != hyper::Method::GET {
            return json(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({"message": "use GET"}),
            );
        }
        let wanted = match control_request(req.uri().path(), req.uri().query()) {
            ControlRequest::Status => {
                return json(
                    StatusCode::OK,
                    &serde_json::json!({"tunnels": self.tunnels().len()}),
                );
            }
            ControlRequest::New => None,
            ControlRequest::Named(name) => Some(name),
            ControlRequest::Unknown => return pages::unknown_site(),
        };
        match self.open(req, peer, wanted).await {
            Ok(body) => json(StatusCode::OK, &body),
            Err(Refusal(status, message)) => {
                tracing::info!(%peer, %status, message, "refused a localtunnel client");
                self.metrics.gateway.refused("localtunnel-control");
                let mut response = json(status, &serde_json::json!({ "message": message }));
                if status == StatusCode::UNAUTHORIZED {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"p2pvps device\""),
                    );
                }
                response
            }
        }
    }

    async fn open(
        self: &Arc<Self>,
        req: &Request<hyper::body::Incoming>,
        peer: SocketAddr,
        wanted: Option<String>,
    ) -> Result<serde_json::Value, Refusal> {
        let (user, credential) = basic_auth(req).ok_or_else(|| {
            Refusal(
                StatusCode::UNAUTHORIZED,
                format!(
                    "log in as your device: lt --host https://DEVICE_ID:CREDENTIAL@{} --subdomain SUBDOMAIN --port PORT",
                    self.address.domain
                ),
            )
        })?;
        if let Err(blocked) = self.guard.check(peer.ip(), &user) {
            return Err(Refusal(StatusCode::TOO_MANY_REQUESTS, blocked.to_string()));
        }
        let wrong = || {
            Refusal(
                StatusCode::UNAUTHORIZED,
                "wrong device id or credential".into(),
            )
        };
        let device = Uuid::parse_str(&user).map_err(|_| {
            self.guard.failed(peer.ip(), &user);
            wrong()
        })?;
        let login =
            devices::tunnel_auth::tunnel_login_by_credential(&self.pool, device, &credential)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "device lookup failed");
                    Refusal(StatusCode::SERVICE_UNAVAILABLE, "try again shortly".into())
                })?;
        let Some(login) = login else {
            self.guard.failed(peer.ip(), &user);
            return Err(wrong());
        };
        if let Some(name) = &wanted
            && *name != login.subdomain
        {
            return Err(Refusal(
                StatusCode::FORBIDDEN,
                format!(
                    "this device may only use its own subdomain `{}`",
                    login.subdomain
                ),
            ));
        }
        let site = devices::tunnel_auth::site_by_subdomain(&self.pool, &login.subdomain)
            .await
            .ok()
            .flatten();
        if !site.is_some_and(|s| s.web_publishing) {
            return Err(Refusal(
                StatusCode::FORBIDDEN,
                "web publishing is switched off for this device (its owner can switch it on)"
                    .into(),
            ));
        }
        let port = self.start(device, peer.ip()).await.map_err(|e| {
            tracing::warn!(error = %e, "no port for a localtunnel tunnel");
            Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "no free tunnel port; try again later".into(),
            )
        })?;
        tracing::info!(%device, subdomain = %login.subdomain, port, client = %peer.ip(), "localtunnel tunnel open");
        Ok(serde_json::json!({
            "id": login.subdomain,
            "port": port,
            "max_conn_count": MAX_SOCKETS,
            "url": self.address.url(&login.subdomain),
        }))
    }

    async fn bind(&self) -> std::io::Result<TcpListener> {
        match &self.ports {
            None => TcpListener::bind((self.bind, 0)).await,
            Some(range) => {
                let len = u32::from(*range.end() - *range.start()) + 1;
                let offset = rand::Rng::random_range(&mut rand::rng(), 0..len);
                for port in ports_from(range, offset) {
                    if let Ok(l) = TcpListener::bind((self.bind, port)).await {
                        return Ok(l);
                    }
                }
                Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "every port of --localtunnel-ports is in use",
                ))
            }
        }
    }

    /// Opens the device's tunnel (replacing an older one) and returns its data port.
    async fn start(self: &Arc<Self>, device: Uuid, client: IpAddr) -> std::io::Result<u16> {
        let listener = self.bind().await?;
        let port = listener.local_addr()?.port();
        let tunnel = Arc::new(Tunnel {
            id: self
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            port,
            idle: Mutex::new(Vec::new()),
            ready: Semaphore::new(0),
            slots: Arc::new(Semaphore::new(MAX_SOCKETS)),
            listener: Mutex::new(None),
        });
        let task = tokio::spawn(accept(
            Arc::clone(self),
            device,
            client,
            Arc::clone(&tunnel),
            listener,
        ));
        *tunnel.listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        if let Some(old) = self.tunnels().insert(device, tunnel) {
            tracing::info!(%device, port = old.port, "replaced the device's older localtunnel tunnel");
            old.close();
        }
        Ok(port)
    }

    /// Forgets the tunnel if it is still the device's current one.
    fn remove(&self, device: Uuid, id: u64) {
        let mut tunnels = self.tunnels();
        if tunnels.get(&device).is_some_and(|t| t.id == id)
            && let Some(t) = tunnels.remove(&device)
        {
            t.close();
        }
    }
}

/// The ports of `range`, from its `offset`-th one on, wrapping around. The data port is drawn at random:
/// an unmodified client's data sockets carry nothing but their source address and this port, so the
/// port is the tunnel's only secret towards other hosts behind the client's address (a shared NAT). It is
/// a weak one (16 bits, and a scan finds it), which is why the address check stays; devices that need
/// more use the SSH tunnel, whose every connection is authenticated.
fn ports_from(range: &RangeInclusive<u16>, offset: u32) -> impl Iterator<Item = u16> + '_ {
    let len = u32::from(*range.end() - *range.start()) + 1;
    (0..len).map(move |i| {
        // Below 2^16, as both are: the sum stays in range.
        *range.start() + ((offset + i) % len) as u16
    })
}

/// Accepts the client's data sockets (only from its address, at most `MAX_SOCKETS` at a time) and makes
/// each an HTTP/1.1 connection; closes the tunnel after `IDLE_GRACE` without any socket.
async fn accept(
    lt: Arc<Localtunnel>,
    device: Uuid,
    client: IpAddr,
    tunnel: Arc<Tunnel>,
    listener: TcpListener,
) {
    let mut tick = tokio::time::interval(IDLE_GRACE / 3);
    let mut empty_since: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tick.tick() => {
                if tunnel.slots.available_permits() < MAX_SOCKETS {
                    empty_since = None;
                } else if empty_since.get_or_insert_with(Instant::now).elapsed() >= IDLE_GRACE {
                    tracing::info!(%device, port = tunnel.port, "localtunnel client gone; tunnel closed");
                    lt.remove(device, tunnel.id);
                    return;
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "localtunnel accept failed");
                continue;
            }
        };
        if peer.ip() != client {
            tracing::info!(%device, %peer, "refused a localtunnel socket from another address");
            lt.metrics.gateway.refused("localtunnel-foreign-socket");
            continue;
        }
        let Ok(slot) = Arc::clone(&tunnel.slots).try_acquire_owned() else {
            lt.metrics.gateway.refused("localtunnel-too-many-sockets");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handshake = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await;
        let Ok((sender, connection)) = handshake else {
            continue;
        };
        // The connection runs until the client closes the socket (or hands it to an upgrade); its slot
        // is free again then.
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "localtunnel socket ended with an error");
            }
        });
        tunnel.put(sender);
    }
}

/// What a request to the control endpoint asks for (the client's `GET /?new` or `GET /NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRequest {
    /// `/api/status`.
    Status,
    /// `/?new`: a tunnel under the device's own subdomain.
    New,
    /// `/NAME`: a tunnel for that subdomain (lower-cased; checked against the device's own later).
    Named(String),
    Unknown,
}

/// Reads the control request from the path and query: the localtunnel client's protocol, untrusted.
pub fn control_request(path: &str, query: Option<&str>) -> ControlRequest {
    if path == "/api/status" {
        return ControlRequest::Status;
    }
    match path.strip_prefix('/') {
        Some("") if query.is_some_and(|q| q.split('&').any(|p| p == "new")) => ControlRequest::New,
        Some("") | Some("favicon.ico") => ControlRequest::Unknown,
        Some(name) if !name.contains('/') => ControlRequest::Named(name.to_ascii_lowercase()),
        _ => ControlRequest::Unknown,
    }
}

fn basic_auth(req: &Request<hyper::body::Incoming>) -> Option<(String, String)> {
    crate::accounts::auth_guard::basic_credentials(req.headers())
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(pages::full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::{ControlRequest, control_request};

    #[test]
    fn data_ports_start_anywhere_in_the_range_and_cover_it_once() {
        let range = 40_000..=40_009;
        let from_3: Vec<u16> = super::ports_from(&range, 3).collect();
        assert_eq!(
            from_3,
            [
                40_003, 40_004, 40_005, 40_006, 40_007, 40_008, 40_009, 40_000, 40_001, 40_002
            ]
        );
        let whole = 0..=u16::MAX;
        let ports: Vec<u16> = super::ports_from(&whole, 65_535).take(2).collect();
        assert_eq!(ports, [65_535, 0]);
        assert_eq!(super::ports_from(&(7..=7), 0).collect::<Vec<_>>(), [7]);
    }

    #[test]
    fn control_requests_are_read_from_the_path_and_query() {
        assert_eq!(control_request("/api/status", None), ControlRequest::Status);
        assert_eq!(control_request("/", Some("new")), ControlRequest::New);
        assert_eq!(control_request("/", Some("a=1&new")), ControlRequest::New);
        assert_eq!(control_request("/", Some("renew")), ControlRequest::Unknown);
        assert_eq!(control_request("/", None), ControlRequest::Unknown);
        assert_eq!(
            control_request("/favicon.ico", None),
            ControlRequest::Unknown
        );
        assert_eq!(
            control_request("/My-Pi", Some("new")),
            ControlRequest::Named("my-pi".into())
        );
        assert_eq!(control_request("/a/b", None), ControlRequest::Unknown);
        assert_eq!(control_request("", None), ControlRequest::Unknown);
    }
}
