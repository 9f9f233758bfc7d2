//! The device agent's HTTP API, `/agent/v1/...`, authenticated as the device with HTTP Basic (device id and
//! credential, as for SSH); failed logins are limited per address and device like SSH's.
//!
//! - `GET /agent/v1/device`: where the device keeps its tunnel (for `p2pvps-agent enroll`, which pins the
//!   host key fingerprint it gets here).
//! - `POST /agent/v1/facts`: the machine's facts, read by the agent, checked by `AgentFacts::parse`.
//! - `GET /agent/v1/jobs?wait=SECONDS`: the hooks to run now (rentals starting or ending); with `wait`
//!   (at most 30) the answer waits for a rental of the device to change when there is nothing to do, so a
//!   start reaches the device at once without the agent polling fast.
//! - `POST /agent/v1/jobs/{rental}/{start|end}`: a hook's outcome (`JobOutcome`).

use crate::http::state::AppState;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use p2pvps_shared::HookAction;
use p2pvps_shared::agent::{AgentFacts, DeviceTunnel, JobOutcome};
use std::net::SocketAddr;
use uuid::Uuid;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/agent/v1/device", axum::routing::get(device))
        .route("/agent/v1/facts", axum::routing::post(facts))
        .route("/agent/v1/jobs", axum::routing::get(jobs))
        .route(
            "/agent/v1/jobs/{rental}/{action}",
            axum::routing::post(job_done),
        )
}

/// The longest a `GET /agent/v1/jobs` waits for work.
const MAX_WAIT: u64 = 30;

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
) -> Result<(Uuid, crate::devices::tunnel_auth::TunnelLogin), Response> {
    let Some((user, credential)) = crate::accounts::auth_guard::basic_credentials(headers) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "log in as the device: HTTP Basic with the device id and its credential",
        ));
    };
    let ip = state.shared.trusted_proxies.client(address.ip(), headers);
    let guard = &state.shared.agent_guard;
    if let Err(blocked) = guard.check(ip, &user) {
        let mut response = refuse(StatusCode::TOO_MANY_REQUESTS, &blocked.to_string());
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(blocked.retry_after_secs()),
        );
        return Err(response);
    }
    let wrong = || refuse(StatusCode::UNAUTHORIZED, "wrong device id or credential");
    let Ok(id) = Uuid::parse_str(&user) else {
        guard.failed(ip, &user);
        return Err(wrong());
    };
    match crate::devices::tunnel_auth::tunnel_login_by_credential(
        &state.shared.pool,
        id,
        &credential,
    )
    .await
    {
        Ok(Some(login)) => Ok((id, login)),
        Ok(None) => {
            guard.failed(ip, &user);
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
    let facts = match body.map(|Json(f)| f.parse()) {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let recorded = async {
        crate::devices::facts::record(&state.shared.pool, id, &facts).await?;
        if !facts.hooks {
            crate::rentals::provisioning::agent_runs_no_hooks(&state.shared.pool, id).await?;
        }
        Ok::<_, sqlx::Error>(())
    };
    match recorded.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "recording facts failed");
            refuse(StatusCode::SERVICE_UNAVAILABLE, "try again shortly")
        }
    }
}

#[derive(serde::Deserialize)]
struct JobsQuery {
    wait: Option<u64>,
}

async fn jobs(
    State(state): State<AppState>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<JobsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (id, _) = match device_of(&state, address, &headers).await {
        Ok(d) => d,
        Err(refused) => return refused,
    };
    let wait = match query {
        Ok(q) => q.wait.unwrap_or(0),
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    if wait > MAX_WAIT {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("wait must be at most {MAX_WAIT} seconds"),
        );
    }
    let shared = &state.shared;
    // Subscribed before looking, so a change committed meanwhile still wakes us.
    let mut changes = shared.bus.rental_changes();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        match crate::rentals::provisioning::jobs(&shared.pool, &shared.secrets, id).await {
            Ok(jobs) if !jobs.is_empty() || tokio::time::Instant::now() >= deadline => {
                return Json(jobs).into_response();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "listing provisioning jobs failed");
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "try again shortly");
            }
        }
        // Nothing yet: wait for a change of one of this device's rentals (or a lagged bus: look again).
        let changed = async {
            loop {
                match changes.recv().await {
                    Ok(change) if change.device == id => return true,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                }
            }
        };
        let woke = tokio::select! {
            woke = tokio::time::timeout_at(deadline, changed) => woke.unwrap_or(false),
            () = shared.shutdown.wait() => false,
        };
        if !woke {
            return Json(Vec::<p2pvps_shared::agent::ProvisionJob>::new()).into_response();
        }
    }
}

async fn job_done(
    State(state): State<AppState>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::extract::Path((rental, action)): axum::extract::Path<(String, String)>,
    body: Result<Json<JobOutcome>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (id, _) = match device_of(&state, address, &headers).await {
        Ok(d) => d,
        Err(refused) => return refused,
    };
    let Ok(rental) = Uuid::parse_str(&rental) else {
        return refuse(StatusCode::NOT_FOUND, "no such rental");
    };
    let Some(action) = HookAction::from_db(&action) else {
        return refuse(StatusCode::NOT_FOUND, "the hook is `start` or `end`");
    };
    let outcome = match body {
        Ok(Json(o)) => o,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    if let Err(e) = outcome.validate() {
        return refuse(StatusCode::BAD_REQUEST, &e.to_string());
    }
    match crate::rentals::provisioning::report(&state.shared.pool, id, rental, action, &outcome)
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e @ crate::rentals::provisioning::ProvisioningError::NotPending { .. }) => {
            refuse(StatusCode::CONFLICT, &e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, "recording a hook's outcome failed");
            refuse(StatusCode::SERVICE_UNAVAILABLE, "try again shortly")
        }
    }
}
