//! The direct storefront: anyone browses the devices for rent; a signed-in renter orders one, pays
//! through a payment provider, and the rental starts when the payment is confirmed.
//!
//! An order is a rental in state `ordered` (marketplace `direct`) with one payment; it reserves the device
//! until it is paid, cancelled, or left unpaid for the order hold (`--order-hold-minutes`, default
//! [`DEFAULT_ORDER_HOLD`]). A renter holds at most [`OrderLimits::max_unpaid`] unpaid orders at once, so one
//! account cannot reserve every device. Confirming a payment is one transaction (payment confirmed, rental
//! paid, ledger entries, rental started) and idempotent: confirming twice, or a provider's webhook retried,
//! starts nothing twice.

use crate::billing::payments::{self, Payment, PaymentError, PaymentRequest, Providers};
use crate::infra::audit::Actor;
use crate::infra::crypto::SecretBox;
use crate::rentals::{self, Rental, RentalError, lifecycle::Activated};
use p2pvps_shared::{Money, RentalState};
use sqlx::{PgConnection, PgPool};
use std::time::Duration;
use uuid::Uuid;

/// How long an unpaid order reserves its device, unless configured otherwise: long enough to pay by hand,
/// short enough that an abandoned order does not keep the device from other renters for long.
pub const DEFAULT_ORDER_HOLD: Duration = Duration::from_secs(30 * 60);

/// Unpaid storefront orders one renter may hold at once, unless configured otherwise.
pub const DEFAULT_MAX_UNPAID_ORDERS: u32 = 2;

/// What bounds the storefront orders of one renter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderLimits {
    /// How long an unpaid order reserves its device before the housekeeping cancels it.
    pub hold: Duration,
    /// Unpaid orders one renter may hold at once.
    pub max_unpaid: u32,
}

impl Default for OrderLimits {
    fn default() -> Self {
        Self {
            hold: DEFAULT_ORDER_HOLD,
            max_unpaid: DEFAULT_MAX_UNPAID_ORDERS,
        }
    }
}

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
    #[error("a payment for this rental is already waiting; pay or cancel it first")]
    PaymentWaiting,
    #[error("only a running rental can be renewed")]
    NotRenewable,
    #[error("payments through {0} are confirmed by the provider, not by hand")]
    NotByHand(String),
    #[error("the payment is {paid}, the order asks {asked}")]
    WrongAmount { paid: Money, asked: Money },
    #[error(
        "you have {open} unpaid orders open (at most {max} at a time); pay or cancel one before ordering another"
    )]
    TooManyUnpaid { open: i64, max: u32 },
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
/// default provider, in the caller's transaction. Refused when the renter already holds
/// `limits.max_unpaid` unpaid orders: the renter's user row is locked first, so concurrent orders of one
/// renter are counted one after the other and cannot pass the cap together.
pub async fn place(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &Actor,
    providers: &Providers,
    limits: &OrderLimits,
    device: Uuid,
    renter: Uuid,
) -> Result<Placed, StorefrontError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
    let open = rentals::orders::lock_unpaid_orders(&mut *conn, renter).await?;
    if open >= i64::from(limits.max_unpaid) {
        return Err(StorefrontError::TooManyUnpaid {
            open,
            max: limits.max_unpaid,
        });
    }
    let rental = rentals::orders::open_order(&mut *conn, device, renter).await?;
    let terms = crate::devices::renting::terms(&mut *conn, device)
        .await?
        .ok_or(RentalError::NoDevice)?;
    let description = format!("{} h on {}", terms.rental_hours, terms.name);
    let payment = open_payment(
        conn,
        actor,
        providers,
        rental.id,
        "order",
        &rental.price,
        &description,
    )
    .await?;
    tx.commit().await?;
    Ok(Placed { rental, payment })
}

/// Opens a payment with the default provider for `purpose` (`order` or `renewal`), records it pending
/// and audits it. At most one payment waits per rental.
async fn open_payment(
    conn: &mut PgConnection,
    actor: &Actor,
    providers: &Providers,
    rental: Uuid,
    purpose: &str,
    price: &Money,
    description: &str,
) -> Result<Payment, StorefrontError> {
    let provider = providers.default_provider();
    let id = Uuid::new_v4();
    let opened = provider
        .open(&PaymentRequest {
            payment: id,
            rental,
            amount: price,
            description,
        })
        .await?;
    let payment = payments::insert(
        &mut *conn,
        id,
        rental,
        purpose,
        provider.name(),
        price,
        &opened,
    )
    .await?
    .ok_or(StorefrontError::PaymentWaiting)?;
    crate::infra::audit::record(
        conn,
        actor,
        if purpose == "renewal" { "rental.renewal_order" } else { "rental.order" },
        "rental",
        rental,
        serde_json::json!({"provider": provider.name(), "price": price.to_decimal_string(), "for": description}),
    )
    .await?;
    Ok(payment)
}

/// Who confirms a payment: a person (admin or the device's owner, for providers confirmed by hand), or the
/// provider itself (its verified callback, with the amount it says was paid).
#[derive(Debug, Clone)]
pub enum Confirmer {
    ByHand(Uuid),
    Provider(Money),
}

/// Confirms the payment waiting on a rental: an order's starts the rental (payment confirmed, rental
/// paid, the payment and its split in the ledger, then its login and time); a renewal's extends a running
/// rental by one period. With nothing waiting (confirmed before: a double click, a retried webhook), the
/// rental is returned as it is. `only` restricts it to one payment (a provider's callback names its own).
#[allow(clippy::too_many_arguments)]
pub async fn confirm(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &Actor,
    secrets: &SecretBox,
    providers: &Providers,
    rental: Uuid,
    only: Option<Uuid>,
    by: Confirmer,
    fee_bps: u32,
) -> Result<Activated, StorefrontError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
    let current = rentals::lock(&mut *conn, rental).await?;
    let pending = payments::pending_locked(&mut *conn, rental)
        .await?
        .filter(|p| only.is_none_or(|id| id == p.id));
    let Some(payment) = pending else {
        return match current.state {
            RentalState::Paid | RentalState::Provisioning | RentalState::Active => {
                Ok(rentals::lifecycle::activate(conn, secrets, rental).await?)
            }
            other => Err(StorefrontError::NotOpen(other)),
        };
    };
    let provider = providers.get(&payment.provider)?;
    let asked = Money::price(payment.amount_minor, &payment.currency)
        .map_err(|e| sqlx::Error::Decode(e.to_string().into()))?;
    let confirmed_by = match &by {
        Confirmer::ByHand(user) if provider.confirmed_by_hand() => Some(*user),
        Confirmer::ByHand(_) => return Err(StorefrontError::NotByHand(payment.provider)),
        Confirmer::Provider(paid) if *paid != asked => {
            return Err(StorefrontError::WrongAmount {
                paid: paid.clone(),
                asked,
            });
        }
        Confirmer::Provider(_) => None,
    };
    let renter = current.renter_id.ok_or(StorefrontError::NotAnOrder)?;
    let renewal = payment.purpose == "renewal";
    if renewal {
        if !current.is_running() {
            return Err(StorefrontError::NotRenewable);
        }
    } else if current.state != RentalState::Ordered {
        return Err(StorefrontError::NotOpen(current.state));
    }
    payments::settle(&mut *conn, payment.id, "confirmed", confirmed_by).await?;
    let owner = crate::devices::renting::terms(&mut *conn, current.device_id)
        .await?
        .ok_or(RentalError::NoDevice)?
        .owner;
    if renewal {
        rentals::lifecycle::extend(&mut *conn, rental).await?;
    } else {
        rentals::advance(&mut *conn, &current, RentalState::Paid).await?;
    }
    crate::billing::ledger::record_payment(
        &mut *conn,
        rental,
        owner,
        &crate::billing::ledger::Payer::Renter(renter),
        &asked,
        fee_bps,
    )
    .await
    .map_err(RentalError::from)?;
    let activated = rentals::lifecycle::activate(&mut *conn, secrets, rental).await?;
    crate::infra::audit::record(
        conn,
        actor,
        if renewal {
            "rental.renew"
        } else {
            "rental.pay"
        },
        "rental",
        rental,
        serde_json::json!({"provider": payment.provider, "byHand": confirmed_by.is_some()}),
    )
    .await?;
    tx.commit().await?;
    Ok(activated)
}

/// Opens a renewal of a running rental for its renter: one more period at the device's current price,
/// paid like an order; the rental is extended when the payment is confirmed.
pub async fn renew(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &Actor,
    providers: &Providers,
    rental: Uuid,
    renter: Uuid,
) -> Result<Placed, StorefrontError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
    let current = rentals::lock(&mut *conn, rental).await?;
    if current.renter_id != Some(renter) {
        return Err(RentalError::NotFound.into());
    }
    if !current.is_running() {
        return Err(StorefrontError::NotRenewable);
    }
    let terms = crate::devices::renting::terms(&mut *conn, current.device_id).await?;
    let Some((terms, price)) = terms
        .filter(|t| t.for_rent)
        .and_then(|t| t.price.clone().map(|p| (t, p)))
    else {
        return Err(RentalError::NotForRent.into());
    };
    let description = format!("{} more h on {}", terms.rental_hours, terms.name);
    let payment = open_payment(
        conn,
        actor,
        providers,
        rental,
        "renewal",
        &price,
        &description,
    )
    .await?;
    tx.commit().await?;
    Ok(Placed {
        rental: current,
        payment,
    })
}

/// Cancels what waits for payment on a rental (its renter, the device's owner or an admin; or the
/// expiry): an order (the device is free again) or a renewal (the rental runs to its end as it was).
pub async fn cancel(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &Actor,
    rental: Uuid,
    reason: &str,
) -> Result<Rental, StorefrontError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
    let current = rentals::lock(&mut *conn, rental).await?;
    let pending = payments::pending_locked(&mut *conn, rental).await?;
    let (result, action) = match (current.state, &pending) {
        (RentalState::Ordered, _) if current.marketplace == "direct" => (
            rentals::advance(&mut *conn, &current, RentalState::Cancelled).await?,
            "rental.cancel",
        ),
        (RentalState::Active, Some(p)) if p.purpose == "renewal" => {
            (current.clone(), "rental.renewal_cancel")
        }
        (state, _) => return Err(StorefrontError::NotOpen(state)),
    };
    if let Some(payment) = pending {
        payments::settle(&mut *conn, payment.id, "failed", None).await?;
    }
    crate::infra::audit::record(
        conn,
        actor,
        action,
        "rental",
        rental,
        serde_json::json!({"reason": reason}),
    )
    .await?;
    tx.commit().await?;
    Ok(result)
}

/// Cancels orders left unpaid longer than `hold`, with their payments. Returns how many.
pub async fn expire(pool: &PgPool, hold: Duration) -> Result<usize, StorefrontError> {
    let mut expired = 0;
    for id in rentals::orders::stale_orders(pool, hold).await? {
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
    let (payment, rental, state) = payments::rental_of(&mut tx, p.name(), &settled.external_ref)
        .await?
        .ok_or_else(|| {
            PaymentError::BadCallback(format!("no payment {:?}", settled.external_ref))
        })?;
    if state != "pending" {
        // Settled before (providers retry their callbacks).
        return Ok(Some(rental));
    }
    confirm(
        &mut tx,
        &Actor::system(),
        secrets,
        providers,
        rental,
        Some(payment),
        Confirmer::Provider(settled.paid),
        fee_bps,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(rental))
}

#[cfg(test)]
#[path = "storefront_tests.rs"]
mod tests;
