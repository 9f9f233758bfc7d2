//! The audit log: who changed what. Written in the same transaction as the change it records, so the log
//! and the data never disagree. Append-only (a trigger refuses updates and deletes).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// Who is acting: a signed-in user, or an operator at the command line, or the server itself.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Option<Uuid>,
    pub label: String,
}

impl Actor {
    pub fn user(id: Uuid, email: &str) -> Self {
        Self {
            id: Some(id),
            label: email.to_owned(),
        }
    }

    pub fn cli() -> Self {
        let who = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
        Self {
            id: None,
            label: format!("cli:{who}"),
        }
    }

    pub fn system() -> Self {
        Self {
            id: None,
            label: "system".to_owned(),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Entry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor_label: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub detail: serde_json::Value,
}

/// `action` is `noun.verb` (`device.create`); `detail` never holds a secret.
pub async fn record(
    conn: &mut PgConnection,
    actor: &Actor,
    action: &str,
    target_type: &str,
    target_id: impl ToString,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO audit_log (actor_id, actor_label, action, target_type, target_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        actor.id,
        &actor.label,
        action,
        target_type,
        target_id.to_string(),
        detail
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Newest first; `before` is the id of the last entry of the previous page.
pub async fn list(
    pool: &sqlx::PgPool,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query_as!(Entry, "SELECT id, at, actor_id, actor_label, action, target_type, target_id, detail FROM audit_log \
         WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2", before, limit)
    .fetch_all(pool)
    .await
}
