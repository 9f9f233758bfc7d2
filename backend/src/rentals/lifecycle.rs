//! A rental's life after it is made: granted by hand, activated once paid (login, claim token, its
//! time), claimed by a marketplace buyer, extended by a renewal, ended (by hand, at its time, or with a
//! full refund when the device never gave access), with the offline-time refund at its end.

use super::{Rental, RentalError, announce, check_move, held_reason, is_held, new_login_name};
use crate::infra::crypto::SecretBox;
use crate::infra::events::RENTAL_ENDED_CHANNEL;
use p2pvps_shared::RentalState;
use sqlx::PgPool;
use uuid::Uuid;

/// Starts an active rental of `device` for `renter` for `hours`, by hand (no marketplace): a login name
/// and secret are generated, the secret stored encrypted. Returns the rental and the secret.
pub async fn grant(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &crate::infra::audit::Actor,
    secrets: &SecretBox,
    device: Uuid,
    renter: &p2pvps_shared::Email,
    hours: i32,
) -> Result<(Rental, String), RentalError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
    if !(1..=8760).contains(&hours) {
        return Err(RentalError::BadHours);
    }
    let price = sqlx::query!(
        "SELECT price_minor, currency FROM devices WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
        device
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(RentalError::NoDevice)?;
    let (price_minor, currency) = (price.price_minor, price.currency);
    let renter_id = sqlx::query_scalar!(
        "SELECT id FROM users WHERE email = $1 AND NOT disabled",
        renter.as_str()
    )
    .fetch_optional(&mut *conn)
    .await?;
    let renter_id = renter_id.ok_or(RentalError::NoRenter)?;
    if is_held(&mut *conn, device).await? {
        return Err(held_reason(&mut *conn, device).await?);
    }
    // Another renter's unpaid order reserves the device: granting it would make that order unpayable.
    let reserved = sqlx::query_scalar!(
        "SELECT EXISTS (SELECT 1 FROM rentals WHERE device_id = $1 AND state = 'ordered') AS \"exists!\"",
        device
    )
    .fetch_one(&mut *conn)
    .await?;
    if reserved {
        return Err(RentalError::Reserved);
    }
    let secret = crate::infra::crypto::new_token();
    let id = Uuid::new_v4();
    let rental = select_rentals!(
        with "WITH r AS (INSERT INTO rentals (id, device_id, renter_id, marketplace, order_ref, state, price_minor, \
         currency, starts_at, ends_at, login_name, login_secret_enc, device_password_enc) \
         VALUES ($1, $2, $3, 'admin', ($1::uuid)::text, 'active', $4, $5, now(), now() + make_interval(hours => $6), $7, $8, $9) \
         RETURNING *)",
        "FROM r",
        id,
        device,
        renter_id,
        price_minor.unwrap_or(0),
        currency.unwrap_or_else(|| "USD".to_owned()),
        hours,
        new_login_name(),
        secrets.seal(secret.as_bytes()),
        secrets.seal(crate::infra::crypto::new_token().as_bytes())
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match crate::infra::db::violated_constraint(&e) {
        Some("rentals_one_live_per_device") => RentalError::AlreadyRented,
        _ => RentalError::Db(e),
    })?;
    let rental = Rental::try_from(rental)?;
    announce(&mut *conn, id).await?;
    crate::infra::audit::record(
        conn,
        actor,
        "rental.grant",
        "rental",
        id,
        serde_json::json!({"device": device, "renter": renter.as_str(), "hours": hours}),
    )
    .await?;
    tx.commit().await?;
    Ok((rental, secret))
}

/// Ends an active rental now and announces it (the SSH server cuts the renter's connections).
pub async fn end(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &crate::infra::audit::Actor,
    id: Uuid,
) -> Result<Rental, RentalError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
    let state = sqlx::query_scalar!("SELECT state FROM rentals WHERE id = $1 FOR UPDATE", id)
        .fetch_optional(&mut *conn)
        .await?;
    let state = state.ok_or(RentalError::NotFound)?;
    let state = RentalState::from_db(&state).ok_or(RentalError::NotActive)?;
    // Active → ending → ended. (A paid rental not started yet is started or refunded by its sale.)
    let through: &[RentalState] = match state {
        RentalState::Active => &[RentalState::Ending, RentalState::Ended],
        RentalState::Ending => &[RentalState::Ended],
        _ => return Err(RentalError::NotActive),
    };
    let mut from = state;
    for &to in through {
        check_move(from, to)?;
        from = to;
    }
    let rental = select_rentals!(
        with "WITH r AS (UPDATE rentals SET state = 'ended', ends_at = LEAST(COALESCE(ends_at, now()), now()), \
         updated_at = now() WHERE id = $1 RETURNING *)",
        "FROM r",
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    let rental = Rental::try_from(rental)?;
    crate::billing::payments::fail_pending(&mut *conn, id).await?;
    refund_offline_time(&mut *conn, &rental).await?;
    sqlx::query!(
        "SELECT pg_notify($1, $2)",
        RENTAL_ENDED_CHANNEL,
        serde_json::json!({"rental": id, "device": rental.device_id}).to_string()
    )
    .execute(&mut *conn)
    .await?;
    announce(&mut *conn, id).await?;
    crate::infra::audit::record(
        conn,
        actor,
        "rental.end",
        "rental",
        id,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(rental)
}

/// How long a rented device may be offline in all before the renter is refunded for the rest.
pub const OFFLINE_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(30);

/// At a rental's end: if its device was offline for longer than [`OFFLINE_GRACE`] during it, the
/// renter is refunded that time beyond the grace, pro rata of what they paid.
async fn refund_offline_time(
    conn: &mut sqlx::PgConnection,
    rental: &Rental,
) -> Result<(), sqlx::Error> {
    let (Some(from), Some(to)) = (rental.starts_at, rental.ends_at) else {
        return Ok(());
    };
    let offline =
        crate::devices::uptime::offline_during(&mut *conn, rental.device_id, from, to).await?;
    let beyond = offline - OFFLINE_GRACE;
    if beyond <= chrono::TimeDelta::zero() {
        return Ok(());
    }
    let refunded = crate::billing::ledger::refund_share(
        conn,
        rental.id,
        beyond.num_seconds(),
        (to - from).num_seconds(),
        &format!(
            "device offline {} min during the rental",
            offline.num_minutes()
        ),
    )
    .await?;
    if !refunded.is_empty() {
        tracing::info!(rental = %rental.id, offline_min = offline.num_minutes(), ?refunded, "refunded offline time");
    }
    Ok(())
}

/// Extends a running rental by its device's rental period (a paid renewal).
pub async fn extend(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<Rental, RentalError> {
    let extended = select_rentals!(
        with "WITH r AS (UPDATE rentals SET ends_at = ends_at + make_interval(hours => \
         (SELECT rental_hours FROM devices WHERE id = rentals.device_id)), updated_at = now() \
         WHERE id = $1 AND state = 'active' RETURNING *)",
        "FROM r",
        id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(RentalError::NotActive)?;
    announce(conn, id).await?;
    Ok(Rental::try_from(extended)?)
}

/// Ends every active rental whose time is up. Returns how many.
pub async fn end_expired(pool: &PgPool) -> Result<usize, sqlx::Error> {
    let ids = sqlx::query_scalar!(
        "SELECT id FROM rentals WHERE state = 'active' AND ends_at <= now() ORDER BY ends_at LIMIT 100"
    )
    .fetch_all(pool)
    .await?;
    let mut ended = 0;
    for id in ids {
        let mut tx = pool.begin().await?;
        match end(&mut tx, &crate::infra::audit::Actor::system(), id).await {
            Ok(_) => {
                tx.commit().await?;
                ended += 1;
            }
            // Ended meanwhile by someone else: nothing to do.
            Err(RentalError::NotActive | RentalError::NotFound) => {}
            Err(RentalError::Db(e)) => return Err(e),
            Err(e) => tracing::warn!(rental = %id, error = %e, "could not end an expired rental"),
        }
    }
    Ok(ended)
}

/// How long a failed start hook waits for the device owner's retry before its rental is ended and refunded.
pub const FAILED_START_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(30);

/// Ends, with a full refund, every active rental whose start hook failed and was not retried within
/// [`FAILED_START_GRACE`]: the renter never got access, so pays nothing, and the device's end hook then
/// cleans up and frees the device. Each rental is one transaction, checked again under its row lock (an
/// owner's retry meanwhile wins). Returns how many.
pub async fn refund_failed_starts(pool: &PgPool) -> Result<usize, sqlx::Error> {
    // Both queries pick a rental whose start hook failed longer ago than the grace ($1 seconds).
    let grace = FAILED_START_GRACE.num_seconds() as f64;
    let ids = sqlx::query_scalar!(
        "SELECT id FROM rentals WHERE state = 'active' AND start_hook = 'failed' \
         AND updated_at <= now() - make_interval(secs => $1) ORDER BY updated_at LIMIT 100",
        grace
    )
    .fetch_all(pool)
    .await?;
    let mut refunded = 0;
    for id in ids {
        let mut tx = pool.begin().await?;
        let still = sqlx::query_scalar!(
            "SELECT id FROM rentals WHERE id = $2 AND state = 'active' AND start_hook = 'failed' \
             AND updated_at <= now() - make_interval(secs => $1) FOR UPDATE",
            grace,
            id
        )
        .fetch_optional(&mut *tx)
        .await?;
        if still.is_none() {
            continue;
        }
        let actor = crate::infra::audit::Actor::system();
        match end(&mut tx, &actor, id).await {
            Ok(_) => {}
            Err(RentalError::Db(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(rental = %id, error = %e, "could not end a rental whose start hook failed");
                continue;
            }
        }
        let back = crate::billing::ledger::refund_share(
            &mut tx,
            id,
            1,
            1,
            "the device's start hook failed",
        )
        .await?;
        crate::infra::audit::record(
            &mut tx,
            &actor,
            "rental.refund_failed_start",
            "rental",
            id,
            serde_json::json!({ "refunded": back }),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(rental = %id, ?back, "start hook stayed failed: rental ended and refunded");
        refunded += 1;
    }
    Ok(refunded)
}

/// A marketplace rental with its access: the rental, and the claim token its buyer gets (the same token
/// every time until it is claimed, so a retried delivery sends the same link).
#[derive(Debug, Clone)]
pub struct Activated {
    pub rental: Rental,
    /// `None` once claimed.
    pub claim_token: Option<String>,
}

/// Starts a paid rental: a login and its secret, its time from now for the device's rental period, and
/// (for a marketplace buyer who has no account here yet) a claim token. An already active rental is returned as it is (with its unclaimed token).
pub async fn activate(
    conn: &mut sqlx::PgConnection,
    secrets: &SecretBox,
    rental: Uuid,
) -> Result<Activated, RentalError> {
    let current = super::lock(&mut *conn, rental).await?;
    let rental = if matches!(current.state, RentalState::Paid | RentalState::Provisioning) {
        if current.state == RentalState::Paid {
            check_move(RentalState::Paid, RentalState::Provisioning)?;
        }
        check_move(RentalState::Provisioning, RentalState::Active)?;
        let token = crate::infra::crypto::new_token();
        let secret = crate::infra::crypto::new_token();
        let started = select_rentals!(
            with "WITH r AS (UPDATE rentals SET state = 'active', starts_at = now(), \
             ends_at = now() + make_interval(hours => (SELECT rental_hours FROM devices WHERE id = rentals.device_id)), \
             login_name = $2, login_secret_enc = $3, device_password_enc = $6, \
             claim_hash = CASE WHEN renter_id IS NULL THEN $4::bytea END, \
             claim_secret_enc = CASE WHEN renter_id IS NULL THEN $5::bytea END, updated_at = now() \
             WHERE id = $1 RETURNING *)",
            "FROM r",
            rental,
            new_login_name(),
            secrets.seal(secret.as_bytes()),
            crate::infra::crypto::token_hash(&token),
            secrets.seal(token.as_bytes()),
            secrets.seal(crate::infra::crypto::new_token().as_bytes())
        )
        .fetch_one(&mut *conn)
        .await?;
        announce(&mut *conn, rental).await?;
        Rental::try_from(started)?
    } else if current.state == RentalState::Active {
        current
    } else {
        return Err(RentalError::NotActive);
    };
    let sealed = sqlx::query_scalar!(
        "SELECT claim_secret_enc FROM rentals WHERE id = $1",
        rental.id
    )
    .fetch_one(&mut *conn)
    .await?;
    let claim_token = sealed
        .map(|s| {
            secrets
                .open(&s)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .transpose()?;
    Ok(Activated {
        rental,
        claim_token,
    })
}

/// A signed-in user claims a marketplace rental with the token from its delivery: it becomes theirs, and
/// the token stops working.
pub async fn claim(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &crate::infra::audit::Actor,
    token: &str,
    renter: Uuid,
) -> Result<Rental, RentalError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
    let claimed = select_rentals!(
        with "WITH r AS (UPDATE rentals SET renter_id = $2, claim_hash = NULL, claim_secret_enc = NULL, updated_at = now() \
         WHERE claim_hash = $1 AND renter_id IS NULL AND state = 'active' RETURNING *)",
        "FROM r",
        crate::infra::crypto::token_hash(token),
        renter
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(RentalError::NotFound)?;
    let claimed = Rental::try_from(claimed)?;
    announce(&mut *conn, claimed.id).await?;
    crate::infra::audit::record(
        conn,
        actor,
        "rental.claim",
        "rental",
        claimed.id,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(claimed)
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
