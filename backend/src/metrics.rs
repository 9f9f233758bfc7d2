//! Prometheus metrics, one registry per server instance (so tests can run several in one process).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use std::sync::Arc;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route (`/graphql`), never the raw path, so label cardinality stays bounded.
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GraphqlLabels {
    /// The client's operation name, or `anonymous`; cut to 64 characters.
    pub operation: String,
    /// `ok` or the first error's code (`UNAUTHENTICATED`, `BAD_USER_INPUT`, ...).
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<HttpLabels, Histogram>,
    pub graphql_operations: Family<GraphqlLabels, Counter>,
    pub login_refusals: Family<RefusalLabels, Counter>,
    db_pool_size: Gauge,
    db_pool_idle: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("p2pvps");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let graphql_operations = Family::<GraphqlLabels, Counter>::default();
        let login_refusals = Family::<RefusalLabels, Counter>::default();
        let db_pool_size = Gauge::default();
        let db_pool_idle = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests served",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http_duration.clone(),
        );
        registry.register(
            "graphql_operations",
            "GraphQL operations by name and outcome",
            graphql_operations.clone(),
        );
        registry.register(
            "login_refusals",
            "Refused log-in attempts by reason",
            login_refusals.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Open database connections",
            db_pool_size.clone(),
        );
        registry.register(
            "db_pool_idle_connections",
            "Idle database connections",
            db_pool_idle.clone(),
        );
        Arc::new(Self {
            registry,
            http_requests,
            http_duration,
            graphql_operations,
            login_refusals,
            db_pool_size,
            db_pool_idle,
        })
    }

    /// The text exposition format, with the pool gauges read now.
    pub fn render(&self, pool: &PgPool) -> String {
        self.db_pool_size.set(i64::from(pool.size()));
        self.db_pool_idle
            .set(i64::try_from(pool.num_idle()).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
