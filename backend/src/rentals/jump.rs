//! What a rental grants while it runs: the renter's jump login through our SSH server, the checks that
//! connections outliving a login repeat, and the ready-to-paste ways to reach the device.

use crate::infra::crypto::SecretBox;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// What a renter's jump login grants: one device, until a time.
#[derive(Debug, Clone)]
pub struct JumpGrant {
    pub rental_id: Uuid,
    pub device_id: Uuid,
    pub subdomain: String,
    pub ends_at: DateTime<Utc>,
    /// The renter (none for a marketplace order not yet claimed).
    pub renter_id: Option<Uuid>,
}

/// Checks a jump login (rental login name + secret) of an active, unexpired rental.
pub async fn jump_login(
    pool: &PgPool,
    secrets: &SecretBox,
    login: &str,
    secret: &str,
) -> Result<Option<JumpGrant>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT r.id, r.device_id, d.subdomain, r.ends_at AS \"ends_at!\", \
         r.login_secret_enc AS \"sealed!\", r.renter_id FROM rentals r \
         JOIN devices d ON d.id = r.device_id \
         WHERE r.login_name = $1 AND r.state = 'active' AND r.ends_at > now() AND d.deleted_at IS NULL \
         AND (r.start_hook IS NULL OR r.start_hook = 'done') \
         AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = r.renter_id AND u.disabled)",
        login
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (rental_id, device_id, subdomain, ends_at, sealed, renter_id) = (
        row.id,
        row.device_id,
        row.subdomain,
        row.ends_at,
        row.sealed,
        row.renter_id,
    );
    let Ok(stored) = secrets.open(&sealed) else {
        tracing::error!(rental = %rental_id, "a rental secret cannot be decrypted with this server key");
        return Ok(None);
    };
    // Compare digests, so the comparison's time says nothing about the secret.
    let ok = crate::infra::crypto::token_hash(&String::from_utf8_lossy(&stored))
        == crate::infra::crypto::token_hash(secret);
    Ok(ok.then_some(JumpGrant {
        rental_id,
        device_id,
        subdomain,
        ends_at,
        renter_id,
    }))
}

/// Whether the rental still grants access (for connections that outlive a check).
pub async fn is_active(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!("SELECT EXISTS (SELECT 1 FROM rentals WHERE id = $1 AND state = 'active' AND ends_at > now()) AS \"exists!\"", id)
        .fetch_one(pool)
        .await
}

/// The end of the rental while it is active, not over and its renter not disabled (`None` otherwise).
pub async fn active_until(
    pool: &PgPool,
    rental: Uuid,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT ends_at FROM rentals r WHERE id = $1 AND state = 'active' AND ends_at > now() \
         AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = r.renter_id AND u.disabled)",
        rental
    )
    .fetch_optional(pool)
    .await
    .map(Option::flatten)
}

/// Devices `renter` holds an active rental of (whose connections a change of the renter's access concerns).
pub async fn devices_rented_by(pool: &PgPool, renter: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT DISTINCT device_id FROM rentals WHERE renter_id = $1 AND state = 'active'",
        renter
    )
    .fetch_all(pool)
    .await
}

/// Until when the device is in a rental that grants access (`None`: not let now, or its renter is
/// disabled): its public port carries connections only then.
pub async fn device_let_until(
    pool: &PgPool,
    device: Uuid,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!("SELECT max(ends_at) FROM rentals r WHERE device_id = $1 AND state = 'active' AND ends_at > now() \
         AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = r.renter_id AND u.disabled)", device)
    .fetch_one(pool)
    .await
}

/// How a renter reaches the rented device: by its public tunnel port, or through our SSH server as a jump
/// host (no public port needed). The device account is the rental's login name (created on the device by
/// its provisioner); the jump password is the rental's secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionDetails {
    pub host: String,
    pub ssh_port: u16,
    pub device_port: u16,
    pub subdomain: String,
    pub login: String,
    pub port_command: String,
    pub jump_command: String,
}

impl ConnectionDetails {
    pub fn new(host: &str, ssh_port: u16, device_port: u16, subdomain: &str, login: &str) -> Self {
        Self {
            host: host.to_owned(),
            ssh_port,
            device_port,
            subdomain: subdomain.to_owned(),
            login: login.to_owned(),
            port_command: format!("ssh -p {device_port} {login}@{host}"),
            jump_command: format!("ssh -J {login}@{host}:{ssh_port} {login}@{subdomain}"),
        }
    }
}
