//! A device's connection status: each change recorded with its history and announced to every
//! instance (`NOTIFY device_status`).

use chrono::{DateTime, Utc};
use p2pvps_shared::DeviceStatus;
use sqlx::PgPool;
use uuid::Uuid;

/// Records a status change (and `last_seen`), appends it to the history and notifies every server instance
/// through `NOTIFY device_status` (delivered when the transaction commits). A repeated status only refreshes
/// `last_seen`.
pub async fn record_status(
    pool: &PgPool,
    id: Uuid,
    status: DeviceStatus,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let previous: Option<(String, Uuid)> = sqlx::query!(
        "SELECT status, owner_id FROM devices WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
        id
    )
    .map(|r| (r.status, r.owner_id))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((previous, owner_id)) = previous else {
        return Ok(false);
    };
    let at: DateTime<Utc> = sqlx::query_scalar!(
        "UPDATE devices SET status = $2, last_seen = now() WHERE id = $1 RETURNING last_seen AS \"last_seen!\"",
        id,
        status.as_str()
    )
    .fetch_one(&mut *tx)
    .await?;
    if previous != status.as_str() {
        sqlx::query!(
            "INSERT INTO device_status_history (device_id, status, at) VALUES ($1, $2, $3)",
            id,
            status.as_str(),
            at
        )
        .execute(&mut *tx)
        .await?;
        let payload = crate::infra::events::DeviceStatusEvent {
            device_id: id,
            owner_id,
            status,
            at,
        };
        sqlx::query!(
            "SELECT pg_notify($1, $2)",
            crate::infra::events::DEVICE_STATUS_CHANNEL,
            serde_json::to_string(&payload).map_err(|e| sqlx::Error::Encode(e.into()))?
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}
