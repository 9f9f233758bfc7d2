//! Provisioning by the device agent (columns `start_hook`, `end_hook`, `hook_message` of `rentals`): the
//! hooks a device's agent has to run, and what it reports back. Which rentals get hooks is decided in the
//! database (trigger `rentals_hooks`), so every way a rental starts or ends is covered; this module only
//! hands the pending ones out and records their outcome.

use crate::infra::crypto::{CryptoError, SecretBox};
use p2pvps_shared::agent::{JobOutcome, ProvisionJob};
use p2pvps_shared::{HookAction, HookStatus};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    #[error("no {action} hook of this rental is waiting on this device")]
    NotPending { action: HookAction },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The hooks `device` should run now, oldest rental first: starts of active rentals, ends of finished ones.
pub async fn jobs(
    pool: &PgPool,
    secrets: &SecretBox,
    device: Uuid,
) -> Result<Vec<ProvisionJob>, ProvisioningError> {
    let rows = sqlx::query!(
        "SELECT id AS \"rental!\", 'start' AS \"action!\", login_name AS \"login!\", \
         COALESCE(device_password_enc, login_secret_enc) AS sealed, ends_at FROM rentals \
         WHERE device_id = $1 AND start_hook = 'pending' AND state = 'active' AND login_name IS NOT NULL \
         UNION ALL \
         SELECT id, 'end', login_name, NULL, NULL FROM rentals \
         WHERE device_id = $1 AND end_hook = 'pending' AND login_name IS NOT NULL \
         ORDER BY 1",
        device
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            let (rental, action, login, sealed, ends_at) =
                (row.rental, row.action, row.login, row.sealed, row.ends_at);
            let action = if action == "start" {
                HookAction::Start
            } else {
                HookAction::End
            };
            let password = sealed
                .map(|s| secrets.open(&s))
                .transpose()?
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            Ok(ProvisionJob {
                rental: rental.to_string(),
                action,
                login,
                password,
                ends_at: ends_at.map(|t| t.to_rfc3339()),
            })
        })
        .collect()
}

/// Records how a hook went. Reporting the same outcome again is accepted (the agent retries when it did
/// not hear the answer); anything else about a hook that is not pending is refused.
pub async fn report(
    pool: &PgPool,
    device: Uuid,
    rental: Uuid,
    action: HookAction,
    outcome: &JobOutcome,
) -> Result<(), ProvisioningError> {
    let status = if outcome.ok {
        HookStatus::Done
    } else {
        HookStatus::Failed
    };
    let message = Some(outcome.message.trim()).filter(|m| !m.is_empty());
    let mut tx = pool.begin().await?;
    // The column is chosen by which of two checked statements runs.
    let updated = match action {
        HookAction::Start => {
            sqlx::query!(
                "UPDATE rentals SET start_hook = $3, hook_message = $4, updated_at = now() \
                 WHERE id = $1 AND device_id = $2 AND (start_hook = 'pending' OR start_hook = $3)",
                rental,
                device,
                status.as_str(),
                message
            )
            .execute(&mut *tx)
            .await?
        }
        HookAction::End => {
            sqlx::query!(
                "UPDATE rentals SET end_hook = $3, hook_message = $4, updated_at = now() \
                 WHERE id = $1 AND device_id = $2 AND (end_hook = 'pending' OR end_hook = $3)",
                rental,
                device,
                status.as_str(),
                message
            )
            .execute(&mut *tx)
            .await?
        }
    }
    .rows_affected();
    if updated == 0 {
        return Err(ProvisioningError::NotPending { action });
    }
    crate::rentals::announce(&mut tx, rental).await?;
    tx.commit().await?;
    match (action, status) {
        (_, HookStatus::Failed) => {
            tracing::warn!(%rental, %device, %action, message = message.unwrap_or(""), "provisioning hook failed")
        }
        _ => tracing::info!(%rental, %device, %action, "provisioning hook done"),
    }
    Ok(())
}

/// The device's agent reported that it runs no hooks (any more): hooks still waiting for it will never
/// run, so they fail, for the owner to see, instead of leaving a renter waiting.
pub async fn agent_runs_no_hooks(pool: &PgPool, device: Uuid) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let stuck: Vec<Uuid> = sqlx::query_scalar!(
        "UPDATE rentals SET \
           start_hook = CASE WHEN start_hook = 'pending' THEN 'failed' ELSE start_hook END, \
           end_hook = CASE WHEN end_hook = 'pending' THEN 'failed' ELSE end_hook END, \
           hook_message = 'the device''s agent no longer runs hooks', updated_at = now() \
         WHERE device_id = $1 AND (start_hook = 'pending' OR end_hook = 'pending') RETURNING id",
        device
    )
    .fetch_all(&mut *tx)
    .await?;
    for rental in &stuck {
        crate::rentals::announce(&mut tx, *rental).await?;
    }
    tx.commit().await
}

/// Sets a failed hook pending again, for the device's owner (or an admin) once the cause is mended.
/// Returns the hook set to run again, or `None` when the rental has no failed hook.
pub async fn retry(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &crate::infra::audit::Actor,
    rental: Uuid,
) -> Result<Option<HookAction>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
    let action: Option<String> = sqlx::query_scalar!("UPDATE rentals SET \
           start_hook = CASE WHEN start_hook = 'failed' AND state = 'active' THEN 'pending' ELSE start_hook END, \
           end_hook = CASE WHEN end_hook = 'failed' THEN 'pending' ELSE end_hook END, \
           hook_message = NULL, updated_at = now() \
         WHERE id = $1 AND ((start_hook = 'failed' AND state = 'active') OR end_hook = 'failed') \
         RETURNING CASE WHEN end_hook = 'pending' THEN 'end' ELSE 'start' END AS \"action!\"", rental)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(action) = action else {
        return Ok(None);
    };
    let action = if action == "end" {
        HookAction::End
    } else {
        HookAction::Start
    };
    crate::rentals::announce(&mut *conn, rental).await?;
    crate::infra::audit::record(
        conn,
        actor,
        "rental.retry_provisioning",
        "rental",
        rental,
        serde_json::json!({ "hook": action.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(action))
}
