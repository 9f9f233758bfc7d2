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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `to_device` or `from_device`.
    pub direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub request: String,
}

pub struct Metrics {
    registry: Registry,
    ssh_tunnels: Gauge,
    ssh_bytes: Family<DirectionLabels, Counter>,
    ssh_auth_failures: Counter,
    ssh_refusals: Family<RequestLabels, Counter>,
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
        let ssh_tunnels = Gauge::default();
        let ssh_bytes = Family::<DirectionLabels, Counter>::default();
        let ssh_auth_failures = Counter::default();
        let ssh_refusals = Family::<RequestLabels, Counter>::default();
        registry.register(
            "ssh_tunnels_open",
            "Devices with a live tunnel connection",
            ssh_tunnels.clone(),
        );
        registry.register(
            "ssh_tunnel_bytes",
            "Bytes carried through device tunnels",
            ssh_bytes.clone(),
        );
        registry.register(
            "ssh_auth_failures",
            "Failed SSH authentications",
            ssh_auth_failures.clone(),
        );
        registry.register(
            "ssh_refused_requests",
            "SSH requests refused, by kind",
            ssh_refusals.clone(),
        );
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
            ssh_tunnels,
            ssh_bytes,
            ssh_auth_failures,
            ssh_refusals,
            http_requests,
            http_duration,
            graphql_operations,
            login_refusals,
            db_pool_size,
            db_pool_idle,
        })
    }

    pub fn ssh_tunnels_open(&self, n: usize) {
        self.ssh_tunnels.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Bytes of one finished forwarded connection: `to_device` from the client, `from_device` back.
    pub fn bytes(&self, to_device: u64, from_device: u64) {
        for (direction, n) in [("to_device", to_device), ("from_device", from_device)] {
            self.ssh_bytes
                .get_or_create(&DirectionLabels {
                    direction: direction.to_owned(),
                })
                .inc_by(n);
        }
    }

    pub fn ssh_auth_failure(&self) {
        self.ssh_auth_failures.inc();
    }

    pub fn ssh_refused(&self, request: &str) {
        self.ssh_refusals
            .get_or_create(&RequestLabels {
                request: request.to_owned(),
            })
            .inc();
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
