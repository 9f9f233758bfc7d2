//! The device agent's HTTP API, `/agent/v1/...`, authenticated as the device with HTTP Basic (device id and
//! credential, as for SSH); failed logins are limited per address and device like SSH's.
//!
//! - `GET /agent/v1/device`: where the device keeps its tunnel (for `p2pvps-agent enroll`, which pins the
//!   host key fingerprint it gets here).
//! - `POST /agent/v1/facts`: the machine's facts, read by the agent, checked by `AgentFacts::validate`.

use crate::http::AppState;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use p2pvps_shared::agent::{AgentFacts, DeviceTunnel};
use std::net::SocketAddr;
use uuid::Uuid;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/agent/v1/device", axum::routing::get(device))
        .route("/agent/v1/facts", axum::routing::post(facts))
}

/// A refusal with a JSON `message`.
fn refuse(status: StatusCode, message: &str) -> Response {
    let mut response = (status, Json(serde_json::json!({ "message": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"p2pvps device\""),
        );
    }
    response
}

/// The device the request logs in as, with its tunnel, or the response refusing it.
async fn device_of(
    state: &AppState,
    address: SocketAddr,
    headers: &HeaderMap,
) -> Result<(Uuid, crate::devices::TunnelLogin), Response> {
    let Some((user, credential)) = crate::auth_guard::basic_credentials(headers) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "log in as the device: HTTP Basic with the device id and its credential",
        ));
    };
    let guard = &state.shared.agent_guard;
    if guard.is_blocked(address.ip(), &user) {
        return Err(refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins; try again in a minute",
        ));
    }
    let wrong = || refuse(StatusCode::UNAUTHORIZED, "wrong device id or credential");
    let Ok(id) = Uuid::parse_str(&user) else {
        guard.failed(address.ip(), &user);
        return Err(wrong());
    };
    match crate::devices::tunnel_login_by_credential(&state.shared.pool, id, &credential).await {
        Ok(Some(login)) => Ok((id, login)),
        Ok(None) => {
            guard.failed(address.ip(), &user);
            Err(wrong())
        }
        Err(e) => {
            tracing::error!(error = %e, "device lookup failed");
            Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "try again shortly"))
        }
    }
}

async fn device(
    State(state): State<AppState>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let (id, login) = match device_of(&state, address, &headers).await {
        Ok(d) => d,
        Err(refused) => return refused,
    };
    let shared = &state.shared;
    let (Some(port), Some(fingerprint)) = (shared.ssh_port, shared.ssh_fingerprint.clone()) else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server runs no SSH server for tunnels",
        );
    };
    Json(DeviceTunnel {
        device: id.to_string(),
        ssh_address: format!("{}:{port}", shared.public_host),
        host_key_fingerprint: fingerprint,
        tunnel_port: login.port,
        subdomain: login.subdomain,
    })
    .into_response()
}

async fn facts(
    State(state): State<AppState>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<AgentFacts>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (id, _) = match device_of(&state, address, &headers).await {
        Ok(d) => d,
        Err(refused) => return refused,
    };
    let facts = match body {
        Ok(Json(f)) => f,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    if let Err(e) = facts.validate() {
        return refuse(StatusCode::BAD_REQUEST, &e.to_string());
    }
    match crate::devices::record_facts(&state.shared.pool, id, &facts).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "recording facts failed");
            refuse(StatusCode::SERVICE_UNAVAILABLE, "try again shortly")
        }
    }
}
