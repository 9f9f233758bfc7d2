//! How a device's connection is recognised: by its credential or a registered key (SSH, the agent API,
//! the localtunnel control request), and what it may then forward; and the gateway's lookup of a
//! subdomain's device.

use crate::infra::crypto;
use sqlx::PgPool;
use uuid::Uuid;

/// What an authenticated device connection may forward: its own port, and its subdomain for the web.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelLogin {
    pub port: u16,
    pub subdomain: String,
}

fn tunnel_login(row: Option<(i32, String)>) -> Option<TunnelLogin> {
    let (port, subdomain) = row?;
    Some(TunnelLogin {
        port: u16::try_from(port).ok()?,
        subdomain,
    })
}

/// The tunnel of a live device whose credential matches (the SSH password method).
pub async fn tunnel_login_by_credential(
    pool: &PgPool,
    id: Uuid,
    credential: &str,
) -> Result<Option<TunnelLogin>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT tunnel_port, subdomain FROM devices WHERE id = $1 AND credential_hash = $2 AND deleted_at IS NULL",
        id,
        crypto::token_hash(credential)
    )
    .map(|r| (r.tunnel_port, r.subdomain))
    .fetch_optional(pool)
    .await?;
    Ok(tunnel_login(row))
}

/// The tunnel of a live device that registered the public key with this fingerprint.
pub async fn tunnel_login_by_key(
    pool: &PgPool,
    id: Uuid,
    fingerprint: &str,
) -> Result<Option<TunnelLogin>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT d.tunnel_port, d.subdomain FROM devices d JOIN device_ssh_keys k ON k.device_id = d.id \
         WHERE d.id = $1 AND k.fingerprint = $2 AND d.deleted_at IS NULL",
        id,
        fingerprint
    )
    .map(|r| (r.tunnel_port, r.subdomain))
    .fetch_optional(pool)
    .await?;
    Ok(tunnel_login(row))
}

/// The gateway's view of a subdomain: which device holds it and whether its web server is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    pub device: Uuid,
    pub web_publishing: bool,
}

/// The live device holding `subdomain`, if any.
pub async fn site_by_subdomain(
    pool: &PgPool,
    subdomain: &str,
) -> Result<Option<Site>, sqlx::Error> {
    let row: Option<(Uuid, bool)> = sqlx::query!(
        "SELECT id, web_publishing FROM devices WHERE subdomain = $1 AND deleted_at IS NULL",
        subdomain
    )
    .map(|r| (r.id, r.web_publishing))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(device, web_publishing)| Site {
        device,
        web_publishing,
    }))
}
