//! The server's agent API (`/agent/v1`), logged in as the device.

use p2pvps_shared::agent::{AgentFacts, DeviceTunnel, JobOutcome, ProvisionJob};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("cannot reach the server: {0}")]
    Network(String),
}

pub struct Api {
    http: reqwest::Client,
    base: String,
    device: String,
    credential: String,
}

impl Api {
    pub fn new(server: &str, device: &str, credential: &str) -> Result<Self, ApiError> {
        // TLS (an https:// server) on ring, checked against the system's certificate store.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            // Above the longest wait of `GET /agent/v1/jobs` (30 s).
            .timeout(Duration::from_secs(45))
            .connect_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| ApiError::Network(e.to_string()))?;
        Ok(Self {
            http,
            base: server.trim_end_matches('/').to_owned(),
            device: device.to_owned(),
            credential: credential.to_owned(),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        let resp = req
            .basic_auth(&self.device, Some(&self.credential))
            .send()
            .await
            .map_err(|e| ApiError::Network(e.without_url().to_string()))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let message = body["message"].as_str().unwrap_or("no reason given");
        Err(ApiError::Refused(format!("{status}: {message}")))
    }

    /// Where this device keeps its tunnel (and the host key to pin).
    pub async fn device(&self) -> Result<DeviceTunnel, ApiError> {
        let resp = self
            .send(self.http.get(format!("{}/agent/v1/device", self.base)))
            .await?;
        resp.json()
            .await
            .map_err(|e| ApiError::Refused(format!("unexpected answer: {e}")))
    }

    pub async fn report(&self, facts: &AgentFacts) -> Result<(), ApiError> {
        self.send(
            self.http
                .post(format!("{}/agent/v1/facts", self.base))
                .json(facts),
        )
        .await
        .map(drop)
    }

    /// The hooks to run now; waits up to `wait` seconds for one when there is none.
    pub async fn jobs(&self, wait: u64) -> Result<Vec<ProvisionJob>, ApiError> {
        let resp = self
            .send(
                self.http
                    .get(format!("{}/agent/v1/jobs", self.base))
                    .query(&[("wait", wait)]),
            )
            .await?;
        resp.json()
            .await
            .map_err(|e| ApiError::Refused(format!("unexpected answer: {e}")))
    }

    /// Tells the server how a hook went.
    pub async fn job_done(&self, job: &ProvisionJob, outcome: &JobOutcome) -> Result<(), ApiError> {
        self.send(
            self.http
                .post(format!(
                    "{}/agent/v1/jobs/{}/{}",
                    self.base, job.rental, job.action
                ))
                .json(outcome),
        )
        .await
        .map(drop)
    }
}
