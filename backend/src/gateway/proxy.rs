//! One web request: route it by host, then carry it to the device and the answer back.
//!
//! Bodies stream both ways (never buffered whole); `Upgrade` requests (WebSocket) are piped both ways once
//! the device answers 101. The device sees `X-Forwarded-For`/`-Proto`/`-Host` set by us (any the client sent
//! are replaced: we are the edge), and no hop-by-hop headers.

use super::counted::Counted;
use super::host::{self, Route};
use super::localtunnel::{Localtunnel, SendError};
use super::pages::{self, Body};
use super::upstream::{Connector, Limits, Sites};
use crate::infra::metrics::Metrics;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// How long a device may take to start answering a request.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request waits for a free slot of a busy device.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every request needs, shared by the listeners.
pub struct State {
    pub domain: String,
    /// The HTTPS listener's public port, when plain HTTP requests for sites are redirected there.
    pub redirect_to: Option<u16>,
    pub sites: Arc<Sites>,
    pub limits: Limits,
    pub connector: Connector,
    pub localtunnel: Arc<Localtunnel>,
    pub client: Client<Connector, Counted<Incoming>>,
    pub metrics: Arc<Metrics>,
    /// How long a request or response body may go without data.
    pub body_idle: Duration,
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Answers one request. Never fails: every problem becomes a page.
pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    peer: SocketAddr,
    scheme: Scheme,
) -> Result<Response<Body>, std::convert::Infallible> {
    Ok(route(&state, req, peer, scheme).await)
}

async fn route(
    state: &Arc<State>,
    req: Request<Incoming>,
    peer: SocketAddr,
    scheme: Scheme,
) -> Response<Body> {
    let Some(authority) = authority(&req) else {
        state.metrics.gateway.refused("bad-host");
        return pages::bad_host();
    };
    let label = match host::route(&authority, &state.domain) {
        Ok(Route::Site(label)) => label,
        Ok(Route::Control) => return state.localtunnel.control(&req, peer).await,
        Err(e) => {
            tracing::debug!(%peer, host = %authority, error = %e, "refused request");
            state.metrics.gateway.refused("bad-host");
            return pages::bad_host();
        }
    };
    if let (Scheme::Http, Some(port)) = (scheme, state.redirect_to) {
        return pages::redirect(&https_location(&label, &state.domain, port, req.uri()));
    }
    let site = match state.sites.get(&label).await {
        Ok(Some(site)) if site.web_publishing => site,
        Ok(Some(_)) => {
            state.metrics.gateway.refused("not-published");
            return pages::unknown_site();
        }
        Ok(None) => {
            state.metrics.gateway.refused("unknown-site");
            return pages::unknown_site();
        }
        Err(e) => {
            tracing::warn!(error = %e, "site lookup failed");
            state.metrics.gateway.refused("lookup-failed");
            return pages::unavailable();
        }
    };
    let metrics = &state.metrics.gateway;
    metrics.request(&label);
    if !state.localtunnel.is_open(site.device) && !state.connector.is_published(site.device) {
        metrics.upstream_error(&label, "offline");
        return pages::offline();
    }
    let limit = state.limits.of(site.device);
    let permit = match tokio::time::timeout(QUEUE_TIMEOUT, limit.acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            metrics.upstream_error(&label, "busy");
            return pages::busy();
        }
    };
    forward(
        state,
        req,
        peer,
        scheme,
        &authority,
        &label,
        site.device,
        permit,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    state: &Arc<State>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    scheme: Scheme,
    authority: &str,
    label: &str,
    device: uuid::Uuid,
    permit: OwnedSemaphorePermit,
) -> Response<Body> {
    let metrics = &state.metrics.gateway;
    let upgrade = upgrade_protocol(req.headers());
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    // A device that runs `lt` is reached through it (origin-form URI on its own connections); otherwise
    // through its `ssh -R SUBDOMAIN:80` forward, by hyper's pooled client (absolute URI naming the device).
    let through_lt = state.localtunnel.is_open(device);
    let uri = if through_lt {
        Uri::try_from(path)
    } else {
        Uri::try_from(format!("http://{device}{path}"))
    };
    let Ok(uri) = uri else {
        metrics.refused("bad-path");
        return pages::page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The path is not valid.",
        );
    };
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = &upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol.clone());
    }
    set_forwarded(&mut parts.headers, peer, scheme, authority);
    let site: Arc<str> = Arc::from(label);
    let body = Counted::new(
        body,
        state.body_idle,
        Arc::clone(&state.metrics),
        Arc::clone(&site),
        "request",
        None,
    );
    let started = Instant::now();
    let request = Request::from_parts(parts, body);
    let sent = tokio::time::timeout(RESPONSE_TIMEOUT, async {
        if through_lt {
            match state.localtunnel.send(device, request).await {
                Ok((response, lease)) => Ok((response, Some(lease))),
                Err(SendError::Busy) => Err("busy"),
                Err(SendError::NoTunnel) => Err("offline"),
                Err(SendError::Http(_)) => Err("protocol"),
            }
        } else {
            match state.client.request(request).await {
                Ok(response) => Ok((response, None)),
                Err(e) if e.is_connect() => Err("connect"),
                Err(_) => Err("protocol"),
            }
        }
    })
    .await;
    let (mut response, lease) = match sent {
        Ok(Ok(answer)) => answer,
        Ok(Err(kind)) => {
            tracing::info!(site = label, kind, "device did not answer a web request");
            metrics.upstream_error(label, kind);
            return if kind == "busy" {
                pages::busy()
            } else {
                pages::offline()
            };
        }
        Err(_) => {
            metrics.upstream_error(label, "timeout");
            return pages::timeout();
        }
    };
    metrics.latency(label, started.elapsed().as_secs_f64());
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let device_upgrade = hyper::upgrade::on(&mut response);
        let metrics = Arc::clone(&state.metrics);
        tokio::spawn(async move {
            let _permit = permit;
            let (Ok(client), Ok(device)) = tokio::join!(client_upgrade, device_upgrade) else {
                return;
            };
            let (mut client, mut device) = (TokioIo::new(client), TokioIo::new(device));
            if let Ok((up, down)) = tokio::io::copy_bidirectional(&mut client, &mut device).await {
                metrics.gateway.bytes(&site, "request", up);
                metrics.gateway.bytes(&site, "response", down);
            }
        });
        let (mut parts, _) = response.into_parts();
        keep_cookies_to_the_site(&mut parts.headers, authority);
        return Response::from_parts(parts, pages::empty());
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    keep_cookies_to_the_site(&mut parts.headers, authority);
    let mut body = Counted::new(
        body,
        state.body_idle,
        Arc::clone(&state.metrics),
        site,
        "response",
        Some(permit),
    );
    if let Some(lease) = lease {
        body.on_done(Box::new(move || lease.give_back()));
    }
    Response::from_parts(parts, body.boxed())
}

/// The host the client asked for: `:authority` (HTTP/2 and absolute URIs), else `Host`.
fn authority(req: &Request<Incoming>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_owned());
    }
    let value = req.headers().get(header::HOST)?;
    value.to_str().ok().map(str::to_owned)
}

fn https_location(label: &str, domain: &str, port: u16, uri: &Uri) -> String {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if port == 443 {
        format!("https://{label}.{domain}{path}")
    } else {
        format!("https://{label}.{domain}:{port}{path}")
    }
}

/// The protocol of an HTTP/1.1 `Upgrade` request (`Connection: upgrade` and an `Upgrade` header).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Headers that describe one connection, not the message (RFC 9110 7.6.1), plus those `Connection` names.
/// Drops every `Set-Cookie` of a device's response that names a `Domain` other than the site's own host
/// (or below it), and any that cannot be read: a site must not set cookies for its parent domain, where
/// they would reach the dashboard and every other device's site ("cookie tossing").
fn keep_cookies_to_the_site(headers: &mut HeaderMap, authority: &str) {
    if !headers.contains_key(header::SET_COOKIE) {
        return;
    }
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_ascii_lowercase();
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in cookies {
        let allowed = value
            .to_str()
            .ok()
            .and_then(|v| cookie::Cookie::parse(v).ok())
            .is_some_and(|c| match c.domain() {
                None => true,
                Some(domain) => {
                    let domain = domain.trim_start_matches('.').to_ascii_lowercase();
                    domain == host || domain.ends_with(&format!(".{host}"))
                }
            });
        if allowed {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

fn set_forwarded(headers: &mut HeaderMap, peer: SocketAddr, scheme: Scheme, authority: &str) {
    let set = |headers: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set(headers, "x-forwarded-for", &peer.ip().to_string());
    set(headers, "x-forwarded-proto", scheme.as_str());
    set(headers, "x-forwarded-host", authority);
    // HTTP/2 requests carry the host as `:authority`; the device's HTTP/1.1 server wants `Host`.
    if !headers.contains_key(header::HOST) {
        set(headers, "host", authority);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_for_the_parent_domain_are_dropped() {
        let mut h = HeaderMap::new();
        for c in [
            "own=1; Path=/",
            "tossed=1; Domain=example.com; Path=/",
            "dotted=1; Domain=.Example.com",
            "mine=1; Domain=pi.example.com",
            "below=1; Domain=a.pi.example.com",
            "other=1; Domain=evil-pi.example.com",
        ] {
            h.append(header::SET_COOKIE, HeaderValue::from_static(c));
        }
        keep_cookies_to_the_site(&mut h, "pi.example.com:8443");
        let kept: Vec<&str> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            kept,
            [
                "own=1; Path=/",
                "mine=1; Domain=pi.example.com",
                "below=1; Domain=a.pi.example.com"
            ]
        );
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_with_those_connection_names() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn upgrades_need_both_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&h), None);
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(
            upgrade_protocol(&h),
            Some(HeaderValue::from_static("websocket"))
        );
    }

    #[test]
    fn forwarded_headers_replace_what_the_client_sent() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        set_forwarded(
            &mut h,
            "10.0.0.7:5000".parse().unwrap(),
            Scheme::Https,
            "pi.p2pvps.example",
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "pi.p2pvps.example");
        assert_eq!(h["host"], "pi.p2pvps.example");
    }

    #[test]
    fn redirects_keep_the_path_and_name_the_port() {
        let uri: Uri = "/a?b=1".parse().unwrap();
        assert_eq!(
            https_location("pi", "x.example", 443, &uri),
            "https://pi.x.example/a?b=1"
        );
        assert_eq!(
            https_location("pi", "x.example", 8443, &uri),
            "https://pi.x.example:8443/a?b=1"
        );
    }
}
