//! What every HTTP handler is given: the server's shared state, the GraphQL schema, the metrics and how
//! `/metrics` is guarded. Apart from the router so the agent API (and any other route module) can take it
//! without importing the router that mounts it.

use crate::app::state::Shared;
use crate::graphql::ApiSchema;
use crate::infra::metrics::Metrics;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub schema: ApiSchema,
    pub metrics: Arc<Metrics>,
    /// Opens `/metrics` on the main address; `None`: it is not served there.
    pub metrics_token: Option<MetricsToken>,
    pub web_dir: Option<PathBuf>,
}

/// The metrics bearer token, kept as its SHA-256: a presented token is hashed and the digests compared in
/// constant time, so the comparison's timing tells nothing about the token.
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl MetricsToken {
    pub fn new(token: &str) -> Self {
        Self(digest(token))
    }

    pub(super) fn admits(&self, presented: &str) -> bool {
        let presented = digest(presented);
        self.0
            .iter()
            .zip(presented.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
}
