//! The audit log's entries, as admins read them.

use async_graphql::{ID, Object};
use chrono::{DateTime, Utc};

pub struct AuditEntryObject(pub crate::infra::audit::Entry);

#[Object(name = "AuditEntry")]
impl AuditEntryObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// The acting user's id, if the actor was a user who still exists.
    async fn actor_id(&self) -> Option<ID> {
        self.0.actor_id.map(|id| ID(id.to_string()))
    }
    /// Who acted: an e-mail, `cli:<user>` or `system`.
    async fn actor(&self) -> &str {
        &self.0.actor_label
    }
    /// `noun.verb`, e.g. `device.create`.
    async fn action(&self) -> &str {
        &self.0.action
    }
    async fn target_type(&self) -> &str {
        &self.0.target_type
    }
    async fn target_id(&self) -> &str {
        &self.0.target_id
    }
    async fn detail(&self) -> async_graphql::Json<serde_json::Value> {
        async_graphql::Json(self.0.detail.clone())
    }
}
