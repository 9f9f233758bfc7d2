//! The public keys a device may authenticate with instead of its credential (table `device_ssh_keys`).

use super::DeviceError;
use crate::infra::audit::{self, Actor};
use crate::infra::db::violated_constraint;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A public key a device may authenticate with instead of its credential.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SshKey {
    pub fingerprint: String,
    pub public_key: String,
    pub created_at: DateTime<Utc>,
}

/// Registers an OpenSSH public key (`authorized_keys` line) for the device.
pub async fn add_key(
    conn: &mut PgConnection,
    actor: &Actor,
    device: Uuid,
    line: &str,
) -> Result<SshKey, DeviceError> {
    let line = line.trim();
    if line.len() > 16_384 {
        return Err(DeviceError::BadKey("too long".into()));
    }
    let key = russh::keys::PublicKey::from_openssh(line)
        .map_err(|e| DeviceError::BadKey(e.to_string()))?;
    let fingerprint = key.fingerprint(russh::keys::HashAlg::Sha256).to_string();
    // Stored without the comment: it can hold a user's e-mail or host name, which we do not need.
    let public_key = key
        .to_openssh()
        .map_err(|e| DeviceError::BadKey(e.to_string()))?;
    let public_key = public_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let key = sqlx::query_as!(SshKey, "INSERT INTO device_ssh_keys (device_id, fingerprint, public_key) \
         SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM devices WHERE id = $1 AND deleted_at IS NULL) \
         RETURNING fingerprint, public_key, created_at", device, &fingerprint, &public_key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| match violated_constraint(&e) {
        Some("device_ssh_keys_pkey") => DeviceError::KeyExists,
        _ => DeviceError::Db(e),
    })?
    .ok_or(DeviceError::NotFound)?;
    audit::record(
        conn,
        actor,
        "device.add_ssh_key",
        "device",
        device,
        serde_json::json!({"fingerprint": fingerprint}),
    )
    .await?;
    Ok(key)
}

pub async fn remove_key(
    conn: &mut PgConnection,
    actor: &Actor,
    device: Uuid,
    fingerprint: &str,
) -> Result<(), DeviceError> {
    let done = sqlx::query!(
        "DELETE FROM device_ssh_keys WHERE device_id = $1 AND fingerprint = $2",
        device,
        fingerprint
    )
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(DeviceError::NoSuchKey);
    }
    audit::record(
        conn,
        actor,
        "device.remove_ssh_key",
        "device",
        device,
        serde_json::json!({"fingerprint": fingerprint}),
    )
    .await?;
    Ok(())
}

pub async fn keys(pool: &PgPool, device: Uuid) -> Result<Vec<SshKey>, sqlx::Error> {
    sqlx::query_as!(SshKey, "SELECT fingerprint, public_key, created_at FROM device_ssh_keys WHERE device_id = $1 ORDER BY created_at", device)
    .fetch_all(pool)
    .await
}
