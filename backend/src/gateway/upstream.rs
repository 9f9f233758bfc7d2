//! Connections to devices' web servers, pooled and reused by hyper's client.
//!
//! A request for a device is sent to `http://<device id>/...`: the client pools keep-alive connections per
//! device, and [`Connector`] opens new ones through the device's SSH connection (a `forwarded-tcpip`
//! channel). Connections of a replaced or closed tunnel fail and are dropped by the pool. (A localtunnel
//! client's sockets are pooled by `localtunnel` itself.)

use crate::devices::{self, tunnel_auth::Site};
use crate::ssh::WebTunnels;
use futures::future::BoxFuture;
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use sqlx::PgPool;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("not a device address: {0}")]
    BadAddress(String),
    #[error("the device has no web tunnel")]
    Offline,
    #[error(transparent)]
    Ssh(#[from] crate::ssh::WebError),
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// One byte stream to a device's web server.
pub struct Upstream(Box<dyn Stream>);

impl Connection for Upstream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Upstream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// Opens connections to devices for hyper's client; the URI's host is the device id.
#[derive(Clone)]
pub struct Connector {
    pub ssh: Option<WebTunnels>,
    /// Named as the originator of the channels (connections are pooled, so not the client's address;
    /// the client's address travels in `X-Forwarded-For`).
    pub origin: SocketAddr,
}

impl Connector {
    /// Whether the device's web server can be reached now.
    pub fn is_published(&self, device: Uuid) -> bool {
        self.ssh.as_ref().is_some_and(|s| s.is_published(device))
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Upstream>;
    type Error = UpstreamError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let device = uri
                .host()
                .and_then(|h| Uuid::parse_str(h).ok())
                .ok_or_else(|| UpstreamError::BadAddress(uri.to_string()))?;
            let ssh = this.ssh.as_ref().ok_or(UpstreamError::Offline)?;
            let stream = ssh.open(device, this.origin).await?;
            Ok(TokioIo::new(Upstream(Box::new(stream))))
        })
    }
}

/// How long a subdomain lookup is trusted: an owner's change reaches the gateway within this time.
const SITE_TTL: Duration = Duration::from_secs(2);
/// Entries kept before the cache is emptied (a flood of random subdomains cannot grow it further).
const SITE_CACHE_MAX: usize = 10_000;

/// Subdomain → device lookups, cached briefly so a busy site does not query the database per request.
pub struct Sites {
    pool: PgPool,
    cache: Mutex<HashMap<String, (Instant, Option<Site>)>>,
}

impl Sites {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn get(&self, label: &str) -> Result<Option<Site>, sqlx::Error> {
        if let Some((at, site)) = self.lock().get(label)
            && at.elapsed() < SITE_TTL
        {
            return Ok(*site);
        }
        let site = devices::tunnel_auth::site_by_subdomain(&self.pool, label).await?;
        let mut cache = self.lock();
        if cache.len() >= SITE_CACHE_MAX {
            cache.clear();
        }
        cache.insert(label.to_owned(), (Instant::now(), site));
        Ok(site)
    }

    /// Drops what is known of `label`, so a change made on this instance applies to the next request.
    /// (Other instances see it when their entry expires.)
    pub fn forget(&self, label: &str) {
        self.lock().remove(label);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<Site>)>> {
        // Every update is one insert or a clear: a poisoned lock still holds a consistent map.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Requests in progress per device; more wait briefly, then get 503 (a device is a small computer).
pub struct Limits {
    per_device: usize,
    map: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
}

impl Limits {
    pub fn new(per_device: usize) -> Self {
        Self {
            per_device,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn of(&self, device: Uuid) -> Arc<Semaphore> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry(device)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_device))),
        )
    }
}
