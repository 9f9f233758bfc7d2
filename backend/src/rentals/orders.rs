//! Where rentals come from: marketplace orders (taken exactly once per order id, with their ledger
//! entries) and storefront orders (a reservation of the device until paid, capped per renter, expired
//! after the order hold).

use super::{Rental, RentalError, announce, held_reason, is_held};
use p2pvps_shared::Money;
use sqlx::PgPool;
use uuid::Uuid;

/// What became of a marketplace order.
#[derive(Debug, Clone)]
pub enum Taken {
    /// A new rental, paid and waiting for its access (the payment is in the ledger).
    New(Rental),
    /// The order was taken before (a retry, a restart, another instance): nothing was written.
    Seen(Rental),
    /// The device was already let: the order is recorded as refunded (payment and full refund in the
    /// ledger), for the marketplace to pay back.
    Oversold(Rental),
    /// No listing of ours has that name.
    UnknownListing,
}

/// Turns a paid marketplace order into a rental, exactly once however often it is seen: keyed on
/// (marketplace, order id), in the caller's transaction, with its ledger entries. The caller has checked
/// that the order is paid in full (`sales` refuses the others); `paid` is what the buyer paid.
pub async fn take_order(
    conn: &mut sqlx::PgConnection,
    marketplace: &'static str,
    order_ref: &str,
    listing: &str,
    paid: Option<&Money>,
    fee_bps: u32,
) -> Result<Taken, RentalError> {
    if let Some(rental) = by_order(&mut *conn, marketplace, order_ref).await? {
        return Ok(Taken::Seen(rental));
    }
    let Some(listed) =
        crate::market::listings::device_for(&mut *conn, marketplace, listing).await?
    else {
        return Ok(Taken::UnknownListing);
    };
    // Serialises with other sales and grants of the device.
    sqlx::query!(
        "SELECT 1 AS locked FROM devices WHERE id = $1 FOR UPDATE",
        listed.device
    )
    .fetch_optional(&mut *conn)
    .await?;
    let let_now = is_held(&mut *conn, listed.device).await?;
    let price = paid.cloned().unwrap_or_else(|| listed.price.clone());
    let state = if let_now { "refunded" } else { "paid" };
    let inserted = select_rentals!(
        with "WITH r AS (INSERT INTO rentals (id, device_id, buyer_ref, marketplace, order_ref, state, price_minor, currency) \
         VALUES ($1, $2, $3, $4, $3, $5, $6, $7) ON CONFLICT (marketplace, order_ref) DO NOTHING RETURNING *)",
        "FROM r",
        Uuid::new_v4(),
        listed.device,
        order_ref,
        marketplace,
        state,
        price.minor,
        price.currency.as_str()
    )
    .fetch_optional(&mut *conn)
    .await?;
    let inserted: Option<Rental> = crate::infra::db::typed_opt(inserted)?;
    let Some(rental) = inserted else {
        // Taken meanwhile by another instance.
        return by_order(&mut *conn, marketplace, order_ref)
            .await?
            .map(Taken::Seen)
            .ok_or(RentalError::NotFound);
    };
    if price.minor > 0 {
        let payer = crate::billing::ledger::Payer::Marketplace(marketplace);
        crate::billing::ledger::record_payment(
            conn,
            rental.id,
            listed.owner,
            &payer,
            &price,
            fee_bps,
        )
        .await?;
        if let_now {
            crate::billing::ledger::record_refund(
                conn,
                rental.id,
                listed.owner,
                &payer,
                &price,
                fee_bps,
                "device already let",
            )
            .await?;
        }
    }
    announce(&mut *conn, rental.id).await?;
    Ok(if let_now {
        Taken::Oversold(rental)
    } else {
        Taken::New(rental)
    })
}

/// Whether the marketplace order has been taken (as a rental of any state) already.
pub async fn order_taken(
    conn: &mut sqlx::PgConnection,
    marketplace: &str,
    order_ref: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT EXISTS (SELECT 1 FROM rentals WHERE marketplace = $1 AND order_ref = $2) AS \"exists!\"",
        marketplace,
        order_ref
    )
    .fetch_one(conn)
    .await
}

async fn by_order(
    conn: &mut sqlx::PgConnection,
    marketplace: &str,
    order_ref: &str,
) -> Result<Option<Rental>, sqlx::Error> {
    let row = select_rentals!(
        "FROM rentals r WHERE r.marketplace = $1 AND r.order_ref = $2",
        marketplace,
        order_ref
    )
    .fetch_optional(conn)
    .await?;
    crate::infra::db::typed_opt(row)
}

/// Opens a storefront order: the renter's rental of the device, waiting for payment, at the device's
/// price for one rental period. The device must be for rent, priced, online, not let and not reserved
/// by another open order; the order reserves it.
pub async fn open_order(
    conn: &mut sqlx::PgConnection,
    device: Uuid,
    renter: Uuid,
) -> Result<Rental, RentalError> {
    let row = sqlx::query!(
        "SELECT owner_id, for_rent, price_minor, currency, status FROM devices \
         WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
        device
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(RentalError::NoDevice)?;
    let (owner, for_rent, price_minor, currency, status) = (
        row.owner_id,
        row.for_rent,
        row.price_minor,
        row.currency,
        row.status,
    );
    let (Some(price_minor), Some(currency), true) = (price_minor, currency, for_rent) else {
        return Err(RentalError::NotForRent);
    };
    if owner == renter {
        return Err(RentalError::OwnDevice);
    }
    if status != "online" {
        return Err(RentalError::Offline);
    }
    if is_held(&mut *conn, device).await? {
        return Err(held_reason(&mut *conn, device).await?);
    }
    let id = Uuid::new_v4();
    let order = select_rentals!(
        with "WITH r AS (INSERT INTO rentals (id, device_id, renter_id, marketplace, order_ref, state, price_minor, currency) \
         VALUES ($1, $2, $3, 'direct', ($1::uuid)::text, 'ordered', $4, $5) RETURNING *)",
        "FROM r",
        id,
        device,
        renter,
        price_minor,
        currency
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match crate::infra::db::violated_constraint(&e) {
        Some("rentals_one_open_order_per_device") => RentalError::Reserved,
        _ => RentalError::Db(e),
    })?;
    announce(conn, id).await?;
    Ok(Rental::try_from(order)?)
}

/// Locks `renter`'s user row for the caller's transaction and counts their storefront orders waiting for
/// payment. The lock (`FOR NO KEY UPDATE`: it does not block rows referencing the user) serialises one
/// renter's orders, so a count taken under it stays true until the transaction ends.
pub async fn lock_unpaid_orders(
    conn: &mut sqlx::PgConnection,
    renter: Uuid,
) -> Result<i64, RentalError> {
    sqlx::query!(
        "SELECT 1 AS locked FROM users WHERE id = $1 FOR NO KEY UPDATE",
        renter
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(RentalError::NoRenter)?;
    Ok(sqlx::query_scalar!("SELECT count(*) AS \"count!\" FROM rentals WHERE renter_id = $1 AND state = 'ordered' AND marketplace = 'direct'", renter)
    .fetch_one(conn)
    .await?)
}

/// Storefront orders left unpaid for longer than `hold`, oldest first (at most 100).
pub async fn stale_orders(
    pool: &PgPool,
    hold: std::time::Duration,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!("SELECT id FROM rentals WHERE state = 'ordered' AND created_at < now() - make_interval(secs => $1) \
         ORDER BY created_at LIMIT 100", hold.as_secs_f64())
    .fetch_all(pool)
    .await
}
