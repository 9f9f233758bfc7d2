//! The direct storefront: anyone browses the devices for rent; a signed-in renter orders one, pays
//! through a payment provider, and the rental starts when the payment is confirmed.
//!
//! An order is a rental in state `ordered` (marketplace `direct`) with one payment; it reserves the device
//! until it is paid, cancelled, or left unpaid for [`ORDER_HOLD`]. Confirming a payment is one transaction
//! (payment confirmed, rental paid, ledger entries, rental started) and idempotent: confirming twice, or a
//! provider's webhook retried, starts nothing twice.

use crate::audit::Actor;
use crate::crypto::SecretBox;
use crate::payments::{self, Payment, PaymentError, PaymentRequest, Providers};
use crate::rentals::{self, Activated, Rental, RentalError};
use p2pvps_shared::{Money, RentalState};
use sqlx::{PgConnection, PgPool};
use std::time::Duration;
use uuid::Uuid;

/// How long an unpaid order reserves its device.
pub const ORDER_HOLD: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum StorefrontError {
    #[error(transparent)]
    Rental(#[from] RentalError),
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error("this order is not waiting for payment (it is {0})")]
    NotOpen(RentalState),
    #[error("this is not a storefront order")]
    NotAnOrder,
    #[error("payments through {0} are confirmed by the provider, not by hand")]
    NotByHand(String),
    #[error("the payment is {paid}, the order asks {asked}")]
    WrongAmount { paid: Money, asked: Money },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A new order: the rental waiting for payment and the payment opened for it.
#[derive(Debug, Clone)]
pub struct Placed {
    pub rental: Rental,
    pub payment: Payment,
}

/// Orders `device` for `renter` at its price for one rental period, and opens its payment with the
/// default provider, in the caller's transaction.
pub async fn place(
    conn: &mut PgConnection,
    actor: &Actor,
    providers: &Providers,
    device: Uuid,
    renter: Uuid,
) -> Result<Placed, StorefrontError> {
    let rental = rentals::open_order(&mut *conn, device, renter).await?;
    let (name, hours): (String, i32) =
        sqlx::query_as("SELECT name, rental_hours FROM devices WHERE id = $1")
            .bind(device)
            .fetch_one(&mut *conn)
            .await?;
    let provider = providers.default_provider();
    let description = format!("{hours} h on {name}");
    let opened = provider
        .open(&PaymentRequest {
            rental: rental.id,
            amount: &rental.price,
            description: &description,
        })
        .await?;
    let payment = payments::insert(
        &mut *conn,
        rental.id,
        provider.name(),
        &rental.price,
        &opened,
    )
    .await?;
    crate::audit::record(
        conn,
        actor,
        "rental.order",
        "rental",
        rental.id,
        serde_json::json!({"device": device, "provider": provider.name(), "price": rental.price.to_decimal_string()}),
    )
    .await?;
    Ok(Placed { rental, payment })
}

/// Who confirms a payment: a person (admin or the device's owner, for providers confirmed by hand), or the
/// provider itself (its verified callback, with the amount it says was paid).
#[derive(Debug, Clone)]
pub enum Confirmer {
    ByHand(Uuid),
    Provider(Money),
}

/// Confirms an order's payment and starts the rental: payment confirmed, rental paid, the payment and its
/// split in the ledger, then the rental's login and time. An order already confirmed is returned as it is.
pub async fn confirm(
    conn: &mut PgConnection,
    actor: &Actor,
    secrets: &SecretBox,
    providers: &Providers,
    rental: Uuid,
    by: Confirmer,
    fee_bps: u32,
) -> Result<Activated, StorefrontError> {
    let current = rentals::lock(&mut *conn, rental).await?;
    if current.marketplace != "direct" {
        return Err(StorefrontError::NotAnOrder);
    }
    let payment = payments::for_rental_locked(&mut *conn, rental)
        .await?
        .ok_or(StorefrontError::NotAnOrder)?;
    match current.state {
        RentalState::Ordered => {}
        // Confirmed before (a double click, a retried webhook): nothing more to do.
        RentalState::Paid | RentalState::Provisioning | RentalState::Active => {
            return Ok(rentals::activate(conn, secrets, rental).await?);
        }
        other => return Err(StorefrontError::NotOpen(other)),
    }
    let provider = providers.get(&payment.provider)?;
    let confirmed_by = match &by {
        Confirmer::ByHand(user) if provider.confirmed_by_hand() => Some(*user),
        Confirmer::ByHand(_) => return Err(StorefrontError::NotByHand(payment.provider)),
        Confirmer::Provider(paid) if *paid != current.price => {
            return Err(StorefrontError::WrongAmount {
                paid: paid.clone(),
                asked: current.price.clone(),
            });
        }
        Confirmer::Provider(_) => None,
    };
    payments::settle(&mut *conn, payment.id, "confirmed", confirmed_by).await?;
    let paid = rentals::advance(&mut *conn, &current, RentalState::Paid).await?;
    let renter = paid.renter_id.ok_or(StorefrontError::NotAnOrder)?;
    let owner: Uuid = sqlx::query_scalar("SELECT owner_id FROM devices WHERE id = $1")
        .bind(paid.device_id)
        .fetch_one(&mut *conn)
        .await?;
    if paid.price.minor > 0 {
        crate::ledger::record_payment(
            &mut *conn,
            rental,
            owner,
            &crate::ledger::Payer::Renter(renter),
            &paid.price,
            fee_bps,
        )
        .await
        .map_err(RentalError::from)?;
    }
    let activated = rentals::activate(&mut *conn, secrets, rental).await?;
    crate::audit::record(
        conn,
        actor,
        "rental.pay",
        "rental",
        rental,
        serde_json::json!({"provider": payment.provider, "byHand": confirmed_by.is_some()}),
    )
    .await?;
    Ok(activated)
}

/// Cancels an order waiting for payment (its renter, the device's owner or an admin; or the expiry):
/// the device is free again and the payment will not be taken.
pub async fn cancel(
    conn: &mut PgConnection,
    actor: &Actor,
    rental: Uuid,
    reason: &str,
) -> Result<Rental, StorefrontError> {
    let current = rentals::lock(&mut *conn, rental).await?;
    if current.marketplace != "direct" {
        return Err(StorefrontError::NotAnOrder);
    }
    if current.state != RentalState::Ordered {
        return Err(StorefrontError::NotOpen(current.state));
    }
    let cancelled = rentals::advance(&mut *conn, &current, RentalState::Cancelled).await?;
    if let Some(payment) = payments::for_rental_locked(&mut *conn, rental).await? {
        payments::settle(&mut *conn, payment.id, "failed", None).await?;
    }
    crate::audit::record(
        conn,
        actor,
        "rental.cancel",
        "rental",
        rental,
        serde_json::json!({"reason": reason}),
    )
    .await?;
    Ok(cancelled)
}

/// Cancels orders left unpaid longer than `hold`. Returns how many.
pub async fn expire(pool: &PgPool, hold: Duration) -> Result<usize, StorefrontError> {
    let mut expired = 0;
    for id in rentals::stale_orders(pool, hold).await? {
        let mut tx = pool.begin().await?;
        match cancel(&mut tx, &Actor::system(), id, "unpaid in time").await {
            Ok(_) => {
                tx.commit().await?;
                expired += 1;
            }
            // Paid or cancelled meanwhile.
            Err(StorefrontError::NotOpen(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(expired)
}

/// A provider's callback: verified by the provider, then the payment it settles is confirmed.
/// `Ok(None)` for callbacks that settle nothing.
pub async fn settle_callback(
    pool: &PgPool,
    secrets: &SecretBox,
    providers: &Providers,
    provider: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    fee_bps: u32,
) -> Result<Option<Uuid>, StorefrontError> {
    let p = providers.get(provider)?;
    let Some(settled) = p.webhook(headers, body)? else {
        return Ok(None);
    };
    let mut tx = pool.begin().await?;
    let rental = payments::rental_of(&mut tx, p.name(), &settled.external_ref)
        .await?
        .ok_or_else(|| {
            PaymentError::BadCallback(format!("no payment {:?}", settled.external_ref))
        })?;
    confirm(
        &mut tx,
        &Actor::system(),
        secrets,
        providers,
        rental,
        Confirmer::Provider(settled.paid),
        fee_bps,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(rental))
}
