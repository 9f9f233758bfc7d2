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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    /// The device's subdomain. Only sites of registered devices get a label (bounded cardinality).
    pub site: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteBytesLabels {
    pub site: String,
    /// `request` (client to device) or `response` (device to client).
    pub direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteErrorLabels {
    pub site: String,
    /// `offline`, `connect`, `timeout`, `busy` or `protocol`.
    pub kind: String,
}

/// The web gateway's figures, per device site.
pub struct GatewayMetrics {
    pub requests: Family<SiteLabels, Counter>,
    pub bytes: Family<SiteBytesLabels, Counter>,
    pub upstream_errors: Family<SiteErrorLabels, Counter>,
    pub latency: Family<SiteLabels, Histogram, fn() -> Histogram>,
    /// Requests answered without reaching a device (`bad-host`, `unknown-site`, `not-published`, ...).
    pub refused: Family<RefusalLabels, Counter>,
}

impl GatewayMetrics {
    pub fn request(&self, site: &str) {
        self.requests.get_or_create(&site_label(site)).inc();
    }

    pub fn latency(&self, site: &str, seconds: f64) {
        self.latency
            .get_or_create(&site_label(site))
            .observe(seconds);
    }

    pub fn bytes(&self, site: &str, direction: &'static str, n: u64) {
        self.bytes
            .get_or_create(&SiteBytesLabels {
                site: site.to_owned(),
                direction: direction.to_owned(),
            })
            .inc_by(n);
    }

    pub fn upstream_error(&self, site: &str, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&SiteErrorLabels {
                site: site.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused
            .get_or_create(&RefusalLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }
}

fn site_label(site: &str) -> SiteLabels {
    SiteLabels {
        site: site.to_owned(),
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MarketLabels {
    pub marketplace: String,
    /// An order's outcome (`delivered`, `oversold`, `unknown`, `order-failed`), a listing change
    /// (`listed`, `delisted`, `listing-failed`) or a failed pass (`pass-failed`).
    pub outcome: String,
}

pub struct Metrics {
    pub gateway: GatewayMetrics,
    market: Family<MarketLabels, Counter>,
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
        let gateway = GatewayMetrics {
            requests: Family::default(),
            bytes: Family::default(),
            upstream_errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            refused: Family::default(),
        };
        registry.register(
            "gateway_requests",
            "Web requests carried to devices, per site",
            gateway.requests.clone(),
        );
        registry.register(
            "gateway_bytes",
            "Body bytes carried by the web gateway, per site and direction",
            gateway.bytes.clone(),
        );
        registry.register(
            "gateway_upstream_errors",
            "Web requests that could not be answered by the device, per site and kind",
            gateway.upstream_errors.clone(),
        );
        registry.register(
            "gateway_upstream_latency_seconds",
            "Time from a web request to the device's response headers, per site",
            gateway.latency.clone(),
        );
        registry.register(
            "gateway_refused_requests",
            "Web requests answered by the gateway itself, by reason",
            gateway.refused.clone(),
        );
        let market = Family::<MarketLabels, Counter>::default();
        registry.register(
            "marketplace_events",
            "Marketplace orders handled, listing changes and failed passes, by outcome",
            market.clone(),
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
            gateway,
            market,
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

    /// Counts `n` marketplace events of one outcome.
    pub fn market(&self, marketplace: &str, outcome: &str, n: usize) {
        if n > 0 {
            self.market
                .get_or_create(&MarketLabels {
                    marketplace: marketplace.to_owned(),
                    outcome: outcome.to_owned(),
                })
                .inc_by(n as u64);
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
