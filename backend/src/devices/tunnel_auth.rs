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

#[cfg(test)]
mod tests {
    use super::{Site, TunnelLogin, site_by_subdomain, tunnel_login_by_credential};
    use crate::devices::{DeviceChanges, delete, rotate_credential, update};
    use crate::infra::audit::Actor;
    use crate::infra::testing;
    use p2pvps_shared::Role;
    use sqlx::PgPool;
    use uuid::Uuid;

    #[sqlx::test(migrations = "../sql")]
    async fn a_device_logs_in_with_its_credential_and_only_its_own(pool: PgPool) {
        let owner = testing::user(&pool, "owner", Role::Owner).await;
        let (pi, credential) = testing::device(&pool, owner.id, "pi").await;
        let (other, other_credential) = testing::device(&pool, owner.id, "other").await;
        let login = tunnel_login_by_credential(&pool, pi.id, &credential)
            .await
            .unwrap();
        assert_eq!(
            login,
            Some(TunnelLogin {
                port: pi.tunnel_port,
                subdomain: pi.subdomain.clone(),
            })
        );
        let crossed = tunnel_login_by_credential(&pool, pi.id, &other_credential).await;
        assert_eq!(crossed.unwrap(), None, "another device's credential");
        let unknown = tunnel_login_by_credential(&pool, Uuid::new_v4(), &credential).await;
        assert_eq!(unknown.unwrap(), None);
        assert!(
            tunnel_login_by_credential(&pool, other.id, &other_credential)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[sqlx::test(migrations = "../sql")]
    async fn a_rotated_credential_replaces_the_old_one_at_once(pool: PgPool) {
        let owner = testing::user(&pool, "owner", Role::Owner).await;
        let (pi, old) = testing::device(&pool, owner.id, "pi").await;
        let mut tx = pool.begin().await.unwrap();
        let (rotated, new) = rotate_credential(&mut tx, &Actor::system(), pi.id)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_ne!(new, old);
        assert_eq!(
            (rotated.tunnel_port, rotated.subdomain.as_str()),
            (pi.tunnel_port, pi.subdomain.as_str()),
            "the tunnel stays where it was"
        );
        assert_eq!(
            tunnel_login_by_credential(&pool, pi.id, &old)
                .await
                .unwrap(),
            None
        );
        assert!(
            tunnel_login_by_credential(&pool, pi.id, &new)
                .await
                .unwrap()
                .is_some()
        );
        let mut tx = pool.begin().await.unwrap();
        let unknown = rotate_credential(&mut tx, &Actor::system(), Uuid::new_v4()).await;
        assert!(
            matches!(unknown, Err(crate::devices::DeviceError::NotFound)),
            "{unknown:?}"
        );
    }

    #[sqlx::test(migrations = "../sql")]
    async fn a_deleted_device_neither_logs_in_nor_holds_its_site(pool: PgPool) {
        let owner = testing::user(&pool, "owner", Role::Owner).await;
        let (pi, credential) = testing::device(&pool, owner.id, "pi").await;
        let site = site_by_subdomain(&pool, &pi.subdomain).await.unwrap();
        assert_eq!(
            site,
            Some(Site {
                device: pi.id,
                web_publishing: pi.web_publishing,
            })
        );
        let mut tx = pool.begin().await.unwrap();
        let publish = DeviceChanges {
            web_publishing: Some(!pi.web_publishing),
            ..DeviceChanges::default()
        };
        update(&mut tx, &Actor::system(), pi.id, &publish)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let switched = site_by_subdomain(&pool, &pi.subdomain).await.unwrap();
        assert_eq!(switched.map(|s| s.web_publishing), Some(!pi.web_publishing));

        let mut tx = pool.begin().await.unwrap();
        delete(&mut tx, &Actor::system(), pi.id).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            tunnel_login_by_credential(&pool, pi.id, &credential)
                .await
                .unwrap(),
            None
        );
        assert_eq!(site_by_subdomain(&pool, &pi.subdomain).await.unwrap(), None);
    }
}
