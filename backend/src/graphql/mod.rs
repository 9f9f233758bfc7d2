//! The GraphQL API: schema assembly, limits, and the per-operation metrics extension.
//!
//! The resolvers stay thin: they parse input with the shared validators, check who may do what, and call the
//! domain modules (`users`, `devices`, ...) that own the SQL.

pub mod context;
pub mod error;
mod loaders;
mod mutation;
mod query;
mod subscription;
pub mod types;

pub use mutation::SESSION_COOKIE;

use crate::metrics::{GraphqlLabels, Metrics};
use async_graphql::dataloader::DataLoader;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::{Response, Schema, SchemaBuilder};
use std::sync::Arc;

pub type ApiSchema =
    Schema<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot>;

/// Deep or expensive queries are refused before they run.
pub const MAX_DEPTH: usize = 10;
pub const MAX_COMPLEXITY: usize = 1000;

pub fn builder()
-> SchemaBuilder<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot> {
    Schema::build(
        query::QueryRoot,
        mutation::MutationRoot,
        subscription::SubscriptionRoot,
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .limit_recursive_depth(32)
}

/// The schema in SDL, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

pub fn schema(shared: Arc<context::Shared>, metrics: Arc<Metrics>) -> ApiSchema {
    let rented = DataLoader::new(loaders::Rented(shared.pool.clone()), tokio::spawn);
    let users = DataLoader::new(loaders::Users(shared.pool.clone()), tokio::spawn);
    builder()
        .data(rented)
        .data(users)
        .data(shared)
        .extension(OperationMetrics(metrics))
        .finish()
}

/// Counts operations by name and outcome (`ok` or the first error's code).
struct OperationMetrics(Arc<Metrics>);

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationMetricsExt(Arc::clone(&self.0)))
    }
}

struct OperationMetricsExt(Arc<Metrics>);

#[async_trait::async_trait]
impl Extension for OperationMetricsExt {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let response = next.run(ctx, operation_name).await;
        let outcome = response
            .errors
            .first()
            .map(|e| {
                e.extensions
                    .as_ref()
                    .and_then(|x| x.get("code"))
                    .map_or_else(
                        || "BAD_USER_INPUT".to_owned(),
                        |v| v.to_string().trim_matches('"').to_owned(),
                    )
            })
            .unwrap_or_else(|| "ok".to_owned());
        let operation: String = operation_name
            .unwrap_or("anonymous")
            .chars()
            .take(64)
            .collect();
        self.0
            .graphql_operations
            .get_or_create(&GraphqlLabels { operation, outcome })
            .inc();
        response
    }
}
