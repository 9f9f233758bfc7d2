//! The HTTP surface: `/graphql` (POST queries, GET GraphiQL or websocket subscriptions), `/healthz`,
//! `/metrics` (only with the metrics bearer token; the metrics listener serves it without), and the
//! dashboard's static files with a fallback to `index.html` for deep links.

pub mod agent_api;
pub mod client_address;
pub mod state;

use crate::accounts::sessions;
use crate::app::state::Shared;
use crate::graphql::context::{Credential, Viewer};
use crate::graphql::error::add_missing_codes;
use crate::graphql::session_cookie_name;
use crate::infra::metrics::HttpLabels;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::body::Bytes;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State, WebSocketUpgrade,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
pub use state::{AppState, MetricsToken};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

/// Largest request body accepted anywhere.
pub const MAX_BODY: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        // GraphiQL's own address, as printed by `cargo xtask run`/`demo` (GET /graphql serves it too).
        .route("/graphiql", get(graphiql))
        .route("/graphiql/", get(graphiql))
        .route("/healthz", get(healthz))
        .route("/payments/{provider}/callback", post(payment_callback))
        .route("/metrics", get(metrics_with_token))
        .merge(crate::http::agent_api::routes());
    if let Some(dir) = &state.web_dir {
        let files = ServeDir::new(dir).append_index_html_on_directories(true);
        router =
            router.fallback_service(files.fallback(get(spa_fallback).with_state(state.clone())));
    }
    router
        .layer(middleware::from_fn_with_state(state.clone(), cache_headers))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        // Enforced by the body extractors, so an oversized request still gets a GraphQL-shaped JSON error.
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Works out who is calling: `Authorization: Bearer` first, then the session cookie.
async fn viewer(shared: &Shared, headers: &HeaderMap, address: SocketAddr) -> Viewer {
    let credential = bearer(headers)
        .map(Credential::Bearer)
        .or_else(|| {
            session_cookie(headers, session_cookie_name(shared.cookie_secure))
                .map(Credential::Cookie)
        })
        .unwrap_or(Credential::None);
    let user = match &credential {
        Credential::Bearer(token) | Credential::Cookie(token) => {
            sessions::user_for_token(&shared.pool, token)
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "session lookup failed");
                    None
                })
        }
        Credential::None => None,
    };
    Viewer {
        user,
        credential,
        address: shared.trusted_proxies.client(address.ip(), headers),
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The session cookie's value; only the name in use counts (over HTTPS a plain `p2pvps_session`, which any
/// site under the parent domain could set, is ignored).
fn session_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// A browser's websocket from another site (`Origin` not ours) must not ride on the session cookie.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // Not a browser: no ambient cookie to abuse.
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
}

fn graphql_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": "BAD_USER_INPUT" } }]
    });
    (status, Json(body)).into_response()
}

async fn graphql_post(
    State(state): State<AppState>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    // A JSON content type cannot be sent cross-site without a CORS preflight, which we never grant: together
    // with the SameSite=Strict cookie this shuts out cross-site request forgery.
    if !is_json(&headers) {
        return graphql_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as JSON with `Content-Type: application/json`",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return graphql_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body is larger than 1 MiB",
            );
        }
        Err(e) => {
            return graphql_error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body: {e}"),
            );
        }
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return graphql_error(
                StatusCode::BAD_REQUEST,
                &format!("request body is not a GraphQL request in JSON ({{\"query\": ...}}): {e}"),
            );
        }
    };
    let viewer = viewer(&state.shared, &headers, address).await;
    let mut response = state.schema.execute(request.data(viewer)).await;
    add_missing_codes(&mut response);
    let cookies: Vec<HeaderValue> = response
        .http_headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    let mut out = Json(&response).into_response();
    for c in cookies {
        out.headers_mut().append(header::SET_COOKIE, c);
    }
    out.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out
}

async fn graphiql() -> Html<&'static str> {
    Html(GRAPHIQL_PAGE)
}

/// GET `/graphql`: a websocket upgrade for subscriptions, otherwise the GraphiQL page.
async fn graphql_get(
    State(state): State<AppState>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let is_upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return Html(GRAPHIQL_PAGE).into_response();
    }
    let protocol = match GraphQLProtocol::from_request_parts(&mut parts, &state).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let mut headers = parts.headers.clone();
    if !same_origin(&headers) {
        headers.remove(header::COOKIE);
    }
    let viewer = viewer(&state.shared, &headers, address).await;
    let shared = Arc::clone(&state.shared);
    let watcher = Arc::clone(&state.shared);
    let schema = state.schema.clone();
    let (who_tx, who_rx) = tokio::sync::watch::channel::<Option<Viewer>>(None);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let served = GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    // A token in the init payload (`{"authorization": "Bearer ..."}`) overrides the cookie.
                    let mut data = async_graphql::Data::default();
                    let token = payload
                        .get("authorization")
                        .or_else(|| payload.get("Authorization"))
                        .and_then(|v| v.as_str())
                        .and_then(|v| {
                            v.strip_prefix("Bearer ")
                                .or_else(|| v.strip_prefix("bearer "))
                        });
                    match token {
                        Some(token) => {
                            let mut headers = HeaderMap::new();
                            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(
                                |_| async_graphql::Error::new("malformed authorization"),
                            )?;
                            headers.insert(header::AUTHORIZATION, value);
                            let viewer = viewer_for_ws(&shared, &headers, viewer.address).await;
                            who_tx.send_replace(Some(viewer.clone()));
                            data.insert(viewer);
                        }
                        None => {
                            who_tx.send_replace(Some(viewer.clone()));
                            data.insert(viewer);
                        }
                    }
                    Ok(data)
                })
                .serve();
            // The connection lives as long as the access it was opened with.
            tokio::select! {
                () = served => {}
                () = access_revoked(&watcher, who_rx) => {
                    tracing::info!("closing a websocket: its user's access changed");
                }
            }
        })
}

/// Returns when the websocket's viewer no longer holds the access it connected with: their session ended,
/// they were disabled, or their role changed (on any instance).
async fn access_revoked(shared: &Shared, who: tokio::sync::watch::Receiver<Option<Viewer>>) {
    use tokio::sync::broadcast::error::RecvError;
    let mut access = shared.bus.user_access();
    loop {
        let concerned = match access.recv().await {
            Ok(event) => who
                .borrow()
                .as_ref()
                .and_then(|v| v.user.as_ref())
                .is_some_and(|u| u.id == event.user),
            Err(RecvError::Lagged(_)) => true,
            Err(RecvError::Closed) => return std::future::pending().await,
        };
        let Some(viewer) = who.borrow().clone().filter(|_| concerned) else {
            continue;
        };
        let (Some(user), Credential::Cookie(token) | Credential::Bearer(token)) =
            (&viewer.user, &viewer.credential)
        else {
            continue;
        };
        match crate::accounts::sessions::user_for_token(&shared.pool, token).await {
            Ok(Some(now)) if now.id == user.id && now.role == user.role => {}
            Ok(_) => return,
            Err(e) => tracing::warn!(error = %e, "cannot re-check a websocket's session"),
        }
    }
}

async fn viewer_for_ws(shared: &Shared, headers: &HeaderMap, ip: std::net::IpAddr) -> Viewer {
    viewer(shared, headers, SocketAddr::new(ip, 0)).await
}

/// A payment provider's callback (a BTCPay-style webhook). The provider checks its own signature; a
/// settled payment starts its rental. Answers 2xx only when the callback is fully handled, so the provider
/// retries otherwise (confirming is idempotent).
async fn payment_callback(
    State(state): State<AppState>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use crate::billing::payments::PaymentError as P;
    use crate::billing::storefront::StorefrontError as S;
    let shared = &state.shared;
    let result = crate::billing::storefront::settle_callback(
        &shared.pool,
        &shared.secrets,
        &shared.payments,
        &provider,
        &headers,
        &body,
        shared.fee_bps,
    )
    .await;
    let (status, message) = match result {
        Ok(Some(rental)) => {
            tracing::info!(%provider, %rental, "payment settled by the provider");
            (StatusCode::OK, "settled".to_owned())
        }
        Ok(None) => (StatusCode::OK, "nothing to settle".to_owned()),
        Err(e @ S::Payment(P::UnknownProvider(_) | P::NoCallbacks(_))) => {
            (StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e @ S::Payment(P::BadSignature)) => {
            tracing::warn!(%provider, "payment callback with a bad signature");
            (StatusCode::UNAUTHORIZED, e.to_string())
        }
        Err(e @ S::Payment(P::BadCallback(_))) => (StatusCode::BAD_REQUEST, e.to_string()),
        Err(
            e @ (S::Db(_) | S::Payment(P::Db(_)) | S::Rental(crate::rentals::RentalError::Db(_))),
        ) => {
            tracing::error!(%provider, error = %e, "payment callback failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "try again later".to_owned(),
            )
        }
        Err(e) => {
            // Paid for an order that is no longer open (cancelled, expired): an operator must refund.
            tracing::error!(%provider, error = %e, "payment callback could not be applied; refund by hand");
            (StatusCode::CONFLICT, e.to_string())
        }
    };
    (status, Json(serde_json::json!({ "message": message }))).into_response()
}

/// How long the health check waits for the database: an orchestrator's probe should learn of an outage
/// quickly, not after the pool's acquire timeout.
const HEALTH_DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn healthz(State(state): State<AppState>) -> Response {
    let checked = tokio::time::timeout(
        HEALTH_DB_TIMEOUT,
        sqlx::query_scalar!("SELECT 1 AS \"one!\"").fetch_one(&state.shared.pool),
    )
    .await
    .unwrap_or(Err(sqlx::Error::PoolTimedOut));
    match checked {
        Ok(_) => Json(serde_json::json!({"status": "ok", "database": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "unavailable", "database": "unreachable"})),
            )
                .into_response()
        }
    }
}

/// `/metrics` on the main address: 404 unless a metrics token is configured, then 401 without it.
async fn metrics_with_token(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = &state.metrics_token else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !bearer(&headers).is_some_and(|presented| token.admits(&presented)) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "send the metrics token as `Authorization: Bearer TOKEN`, or scrape the metrics listener",
        )
            .into_response();
    }
    metrics(State(state)).await
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&state.shared.pool),
    )
        .into_response()
}

/// Deep links (`/devices/42`) get `index.html`; a missing asset (`/app-123.wasm`) gets a real 404 so a stale
/// page fails visibly instead of parsing HTML as wasm.
async fn spa_fallback(
    State(state): State<AppState>,
    method: Method,
    uri: axum::http::Uri,
) -> Response {
    let last = uri.path().rsplit('/').next().unwrap_or_default();
    if method != Method::GET || last.contains('.') {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(dir) = &state.web_dir else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match tokio::fs::read(dir.join("index.html")).await {
        Ok(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            html,
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Trunk's hashed file names (`p2pvps-web-<16 hex>.js`) never change content: cache them for a year.
/// Everything else (index.html above all) is revalidated every time.
async fn cache_headers(request: Request, next: Next) -> Response {
    let hashed = is_hashed_asset(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() && !response.headers().contains_key(header::CACHE_CONTROL) {
        let value = if hashed {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}

fn is_hashed_asset(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let stem = name.split('.').next().unwrap_or_default();
    stem.split(['-', '_'])
        .any(|part| part.len() == 16 && part.bytes().all(|b| b.is_ascii_hexdigit()))
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "static".to_owned(), |p| p.as_str().to_owned());
    let start = Instant::now();
    let response = next.run(request).await;
    let labels = HttpLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    state.metrics.http_requests.get_or_create(&labels).inc();
    state
        .metrics
        .http_duration
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    response
}

/// The metrics listener's routes: `/metrics` and nothing else (it is reachable only where the operator
/// bound it, so it asks for no token).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// True when `dir` holds a built dashboard.
pub fn has_index(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

/// GraphiQL, with its scripts served by us from `/graphiql/` (the stock page loads them from a CDN and shows
/// nothing on a closed network). `cargo xtask` copies them there from the npm packages.
const GRAPHIQL_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>p2pvps GraphiQL</title>
<link rel="stylesheet" href="/graphiql/graphiql.min.css">
<style>html,body,#graphiql{height:100%;margin:0}</style>
</head>
<body>
<div id="graphiql"><noscript>GraphiQL needs JavaScript.</noscript></div>
<script src="/graphiql/react.production.min.js"></script>
<script src="/graphiql/react-dom.production.min.js"></script>
<script src="/graphiql/graphiql.min.js"></script>
<script>
  if (!window.GraphiQL) {
    document.getElementById('graphiql').textContent =
      'GraphiQL assets are missing from the web directory: build them with `cargo xtask run`.';
  } else {
    // Queries and mutations over HTTP with the session cookie; subscriptions need a graphql-ws client.
    const fetcher = GraphiQL.createFetcher({ url: location.origin + '/graphql' });
    ReactDOM.createRoot(document.getElementById('graphiql')).render(
      React.createElement(GraphiQL, { fetcher, defaultEditorToolsVisibility: true }));
  }
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_assets() {
        assert!(is_hashed_asset("/p2pvps-web-1a2b3c4d5e6f7a8b_bg.wasm"));
        assert!(is_hashed_asset("/p2pvps-web-1a2b3c4d5e6f7a8b.js"));
        assert!(!is_hashed_asset("/index.html"));
        assert!(!is_hashed_asset("/graphiql/graphiql.min.js"));
    }

    #[test]
    fn origin_checks() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h));
        h.insert(
            header::HOST,
            HeaderValue::from_static("p2pvps.example:8080"),
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://p2pvps.example:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h));
    }

    #[test]
    fn metrics_token_admits_only_itself() {
        let token = MetricsToken::new("s3cret-scrape-token");
        assert!(token.admits("s3cret-scrape-token"));
        assert!(!token.admits("s3cret-scrape-toke"));
        assert!(!token.admits(""));
    }

    #[test]
    fn credentials_from_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; p2pvps_session=tok; b=2"),
        );
        assert_eq!(
            session_cookie(&h, session_cookie_name(false)).as_deref(),
            Some("tok")
        );
        assert_eq!(
            session_cookie(&h, session_cookie_name(true)),
            None,
            "over HTTPS only the __Host- cookie counts"
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer xyz"),
        );
        assert_eq!(bearer(&h).as_deref(), Some("xyz"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(bearer(&h), None);
    }
}
