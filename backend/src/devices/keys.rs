//! The public keys a device may authenticate with instead of its credential (table `device_ssh_keys`).

use super::DeviceError;
use crate::infra::audit::{self, Actor};
use crate::infra::db::violated_constraint;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
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
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &Actor,
    device: Uuid,
    line: &str,
) -> Result<SshKey, DeviceError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
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
    tx.commit().await?;
    Ok(key)
}

pub async fn remove_key(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &Actor,
    device: Uuid,
    fingerprint: &str,
) -> Result<(), DeviceError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
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
    tx.commit().await?;
    Ok(())
}

pub async fn keys(pool: &PgPool, device: Uuid) -> Result<Vec<SshKey>, sqlx::Error> {
    sqlx::query_as!(SshKey, "SELECT fingerprint, public_key, created_at FROM device_ssh_keys WHERE device_id = $1 ORDER BY created_at", device)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::{add_key, keys, remove_key};
    use crate::devices::DeviceError;
    use crate::devices::tunnel_auth::tunnel_login_by_key;
    use crate::infra::audit::Actor;
    use crate::infra::testing;
    use p2pvps_shared::Role;
    use russh::keys::PrivateKey;
    use russh::keys::ssh_key::HashAlg;
    use russh::keys::ssh_key::private::Ed25519Keypair;
    use sqlx::PgPool;
    use uuid::Uuid;

    /// A fresh Ed25519 key: its `authorized_keys` line (with `comment`) and its fingerprint.
    fn public_key(seed: u8, comment: &str) -> (String, String) {
        let key = PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]));
        let public = key.public_key();
        let line = format!("{} {comment}", public.to_openssh().unwrap());
        (line, public.fingerprint(HashAlg::Sha256).to_string())
    }

    async fn add(pool: &PgPool, device: Uuid, line: &str) -> Result<super::SshKey, DeviceError> {
        let mut tx = pool.begin().await?;
        let key = add_key(&mut tx, &Actor::system(), device, line).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn remove(pool: &PgPool, device: Uuid, fingerprint: &str) -> Result<(), DeviceError> {
        let mut tx = pool.begin().await?;
        remove_key(&mut tx, &Actor::system(), device, fingerprint).await?;
        tx.commit().await?;
        Ok(())
    }

    #[sqlx::test(migrations = "../sql")]
    async fn a_key_is_stored_without_its_comment_and_logs_the_device_in(pool: PgPool) {
        let owner = testing::user(&pool, "owner", Role::Owner).await;
        let (pi, _) = testing::device(&pool, owner.id, "pi").await;
        let (line, fingerprint) = public_key(1, "alice@laptop.example");
        let key = add(&pool, pi.id, &format!("  {line}\n")).await.unwrap();
        assert_eq!(key.fingerprint, fingerprint);
        assert!(key.public_key.starts_with("ssh-ed25519 AAAA"));
        assert!(!key.public_key.contains("alice"), "{}", key.public_key);
        let login = tunnel_login_by_key(&pool, pi.id, &fingerprint)
            .await
            .unwrap();
        assert_eq!(login.map(|l| l.port), Some(pi.tunnel_port));
        let listed = keys(&pool, pi.id).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].fingerprint, fingerprint);
    }

    #[sqlx::test(migrations = "../sql")]
    async fn text_that_is_not_a_public_key_is_refused(pool: PgPool) {
        let owner = testing::user(&pool, "owner", Role::Owner).await;
        let (pi, _) = testing::device(&pool, owner.id, "pi").await;
        let (line, _) = public_key(2, "");
        let truncated = &line[..line.len() - 10];
        let long = format!("{line} {}", "x".repeat(16_384));
        for bad in [
            "",
            "hello",
            "ssh-ed25519",
            "ssh-ed25519 not-base64!",
            truncated,
            &long,
        ] {
            let refused = add(&pool, pi.id, bad).await;
            assert!(
                matches!(refused, Err(DeviceError::BadKey(_))),
                "{bad:?}: {refused:?}"
            );
        }
        assert!(keys(&pool, pi.id).await.unwrap().is_empty());
    }

    #[sqlx::test(migrations = "../sql")]
    async fn the_same_key_is_registered_once_per_device(pool: PgPool) {
        let owner = testing::user(&pool, "owner", Role::Owner).await;
        let (pi, _) = testing::device(&pool, owner.id, "pi").await;
        let (other, _) = testing::device(&pool, owner.id, "other").await;
        let (line, _) = public_key(3, "first");
        let (renamed, _) = public_key(3, "same key, another comment");
        add(&pool, pi.id, &line).await.unwrap();
        let twice = add(&pool, pi.id, &renamed).await;
        assert!(matches!(twice, Err(DeviceError::KeyExists)), "{twice:?}");
        add(&pool, other.id, &line).await.unwrap();
        let nowhere = add(&pool, Uuid::new_v4(), &line).await;
        assert!(matches!(nowhere, Err(DeviceError::NotFound)), "{nowhere:?}");
    }

    #[sqlx::test(migrations = "../sql")]
    async fn a_removed_key_no_longer_logs_the_device_in(pool: PgPool) {
        let owner = testing::user(&pool, "owner", Role::Owner).await;
        let (pi, _) = testing::device(&pool, owner.id, "pi").await;
        let (other, _) = testing::device(&pool, owner.id, "other").await;
        let (line, fingerprint) = public_key(4, "");
        add(&pool, pi.id, &line).await.unwrap();
        let elsewhere = remove(&pool, other.id, &fingerprint).await;
        assert!(
            matches!(elsewhere, Err(DeviceError::NoSuchKey)),
            "{elsewhere:?}"
        );
        remove(&pool, pi.id, &fingerprint).await.unwrap();
        assert_eq!(
            tunnel_login_by_key(&pool, pi.id, &fingerprint)
                .await
                .unwrap(),
            None
        );
        let twice = remove(&pool, pi.id, &fingerprint).await;
        assert!(matches!(twice, Err(DeviceError::NoSuchKey)), "{twice:?}");
    }

    #[sqlx::test(migrations = "../sql")]
    async fn a_deleted_devices_keys_go_with_it(pool: PgPool) {
        let owner = testing::user(&pool, "owner", Role::Owner).await;
        let (pi, _) = testing::device(&pool, owner.id, "pi").await;
        let (line, fingerprint) = public_key(5, "");
        add(&pool, pi.id, &line).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        crate::devices::delete(&mut tx, &Actor::system(), pi.id)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            tunnel_login_by_key(&pool, pi.id, &fingerprint)
                .await
                .unwrap(),
            None
        );
        assert!(keys(&pool, pi.id).await.unwrap().is_empty());
    }
}
