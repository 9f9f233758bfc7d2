//! The GraphQL API: schema assembly, limits, and the per-operation metrics extension.
//!
//! The resolvers stay thin: they parse input (`inputs`, with the shared validators), ask `access` who may
//! do what, call the domain modules (`users`, `devices`, ...) that own the SQL, and translate their errors
//! (`error`).

pub mod access;
pub mod context;
pub mod error;
mod inputs;
pub mod limits;
mod loaders;
mod mutation;
mod query;
mod session;
mod subscription;
pub mod types;

pub use session::{SESSION_COOKIE, session_cookie_name};

use crate::infra::metrics::{GraphqlLabels, Metrics};
use async_graphql::dataloader::DataLoader;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::{Response, Schema, SchemaBuilder};
use std::sync::Arc;

pub type ApiSchema =
    Schema<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot>;

pub fn builder()
-> SchemaBuilder<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot> {
    Schema::build(
        query::QueryRoot,
        mutation::MutationRoot,
        subscription::SubscriptionRoot,
    )
    // Deep, wide or expensive queries are refused before they run (`limits`); the parser's own recursion
    // limit stays as a guard for the parser itself.
    .extension(limits::Limits)
    .limit_recursive_depth(32)
}

/// The schema in SDL, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

pub fn schema(shared: Arc<crate::app::state::Shared>, metrics: Arc<Metrics>) -> ApiSchema {
    let rented = DataLoader::new(loaders::Rented(shared.pool.clone()), tokio::spawn);
    let users = DataLoader::new(loaders::Users(shared.pool.clone()), tokio::spawn);
    builder()
        .data(rented)
        .data(users)
        .data(shared)
        .extension(OperationMetrics(metrics))
        .finish()
}

/// The operations the dashboard sends (`frontend/queries/`) and the introspection query: the only names
/// that get a metrics label of their own, so that clients cannot grow the label set without bound.
const KNOWN_OPERATIONS: &[&str] = &[
    "AddSshKey",
    "AllRentals",
    "AuditLog",
    "CancelOrder",
    "ChangePassword",
    "ClaimRental",
    "ConfirmPayment",
    "CreateDevice",
    "DeleteDevice",
    "Device",
    "DeviceStatusChanged",
    "Devices",
    "DisableUser",
    "IntrospectionQuery",
    "LogIn",
    "LogOut",
    "Me",
    "MyRentals",
    "Offers",
    "OrderRental",
    "PlatformEarnings",
    "RemoveSshKey",
    "RenewRental",
    "RentalChanged",
    "RetryProvisioning",
    "RotateCredential",
    "SetUserRole",
    "SetWebPublishing",
    "SignUp",
    "TunnelServerInfo",
    "Users",
];

/// The metrics label for an operation name: known names as they are, no name `anonymous`, others `other`.
fn operation_label(name: Option<&str>) -> &str {
    match name {
        None => "anonymous",
        Some(n) if KNOWN_OPERATIONS.contains(&n) => n,
        Some(_) => "other",
    }
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
        let operation = operation_label(operation_name).to_owned();
        self.0
            .graphql_operations
            .get_or_create(&GraphqlLabels { operation, outcome })
            .inc();
        response
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_dashboard_operation_has_its_own_label() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../frontend/queries");
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let doc = async_graphql::parser::parse_query(&text).unwrap();
            for (name, _) in doc.operations.iter() {
                let name = name.unwrap().as_str();
                assert_eq!(super::operation_label(Some(name)), name);
            }
        }
        assert_eq!(super::operation_label(Some("Probe")), "other");
    }
}
