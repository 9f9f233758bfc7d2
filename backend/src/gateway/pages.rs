//! The gateway's own answers: small branded pages that never carry upstream details.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Response, StatusCode};

/// Every response body the gateway sends: a device's streamed body or one of these pages.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BodyError>;
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// An HTML page with a title and one sentence, with the status it explains.
pub fn page(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{code} {title} · p2pvps</title><style>\
         body{{font-family:system-ui,sans-serif;margin:0;display:grid;place-items:center;min-height:100vh;\
         background:#f5f6f8;color:#1d2330}}main{{max-width:32rem;padding:2rem;text-align:center}}\
         h1{{font-size:1.4rem}}p{{color:#4a5368}}small{{color:#8a93a6}}</style></head>\
         <body><main><small>p2pvps · {code}</small><h1>{title}</h1><p>{text}</p></main></body></html>",
        code = status.as_u16(),
        title = escape(title),
        text = escape(text),
    );
    let mut response = Response::new(full(html));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn bad_host() -> Response<Body> {
    page(
        StatusCode::BAD_REQUEST,
        "Bad request",
        "The request does not name a valid host.",
    )
}

pub fn unknown_site() -> Response<Body> {
    page(
        StatusCode::NOT_FOUND,
        "No such site",
        "No device is published at this address.",
    )
}

pub fn offline() -> Response<Body> {
    page(
        StatusCode::BAD_GATEWAY,
        "Site offline",
        "The device serving this site is not reachable right now. Try again in a minute.",
    )
}

pub fn timeout() -> Response<Body> {
    page(
        StatusCode::GATEWAY_TIMEOUT,
        "Site too slow",
        "The device serving this site did not answer in time.",
    )
}

pub fn busy() -> Response<Body> {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Site busy",
        "The device serving this site has too many requests in progress. Try again shortly.",
    )
}

pub fn unavailable() -> Response<Body> {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "The gateway cannot look up this site right now. Try again shortly.",
    )
}

/// A permanent redirect that keeps the method (308).
pub fn redirect(location: &str) -> Response<Body> {
    let mut response = page(
        StatusCode::PERMANENT_REDIRECT,
        "Moved to HTTPS",
        "This site is served over HTTPS.",
    );
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
