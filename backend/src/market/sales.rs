//! Selling devices on marketplaces: each order paid in full becomes one rental with access, delivered
//! once; the others are refused (table `refused_orders`) and never delivered.
//!
//! For every order a marketplace reports: check with the marketplace that it is funded and that the
//! amount paid is the listing's price or more (converted by the marketplace when paid in a coin; see
//! [`Refusal::check`]; a report is only a hint: an
//! OpenBazaar sale may be PENDING and unpaid, or a buyer's order may carry a lower amount); if not, record
//! the refusal with its reason, once, and mark the order handled. Otherwise take it (one rental per
//! marketplace order id, with its ledger entries), start the rental (login, claim token, its time),
//! deliver a note with a claim link (never the password: fulfilment notes are visible to moderators;
//! the marketplace accepts an order it holds for confirmation first), mark the order handled, and take
//! the listing down. Each step is idempotent, so a crash anywhere is repaired by the next pass: a
//! delivered order is not delivered again, a taken order is not taken again, a refused one is not
//! examined again (except an unfunded one once the marketplace announces it funded).

use crate::infra::crypto::SecretBox;
use crate::market::{MarketError, Marketplace, Order, Payment};
use crate::rentals::{self, RentalError, lifecycle::Activated, orders::Taken};
use p2pvps_shared::{Money, RentalState};
use sqlx::PgPool;

/// What the deliveries need to say.
#[derive(Debug, Clone)]
pub struct SaleSettings {
    /// The platform's fee, in basis points.
    pub fee_bps: u32,
    /// The dashboard's public base URL; claim links are `<base>/claim/<token>`.
    pub dashboard: String,
}

/// A marketplace and how to sell on it.
#[derive(Clone)]
pub struct MarketSettings {
    pub market: std::sync::Arc<dyn Marketplace>,
    pub sale: SaleSettings,
    /// How often listings and orders are checked without a hint from the marketplace.
    pub poll: std::time::Duration,
}

impl std::fmt::Debug for MarketSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketSettings")
            .field("market", &self.market.name())
            .field("sale", &self.sale)
            .field("poll", &self.poll)
            .finish()
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub delivered: usize,
    /// Orders refused in this pass because they were not paid in full.
    pub refused: usize,
    pub oversold: usize,
    pub unknown: usize,
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SaleError {
    #[error(transparent)]
    Market(#[from] MarketError),
    #[error(transparent)]
    Rental(#[from] RentalError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Handles every order the marketplace reports now. One failing order does not stop the others; it
/// stays unhandled and is tried again on the next pass.
pub async fn process_orders(
    pool: &PgPool,
    secrets: &SecretBox,
    market: &dyn Marketplace,
    settings: &SaleSettings,
) -> Result<Report, MarketError> {
    let mut report = Report::default();
    for order in market.new_orders().await? {
        match process(pool, secrets, market, settings, &order).await {
            Ok(Outcome::Delivered) => report.delivered += 1,
            Ok(Outcome::Refused) => report.refused += 1,
            Ok(Outcome::Oversold) => report.oversold += 1,
            Ok(Outcome::Unknown) => report.unknown += 1,
            Ok(Outcome::Done) => {}
            Err(e) => {
                tracing::warn!(marketplace = market.name(), order = %order.id, error = %e, "order not handled; will retry");
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

enum Outcome {
    Delivered,
    Refused,
    Oversold,
    Unknown,
    Done,
}

async fn process(
    pool: &PgPool,
    secrets: &SecretBox,
    market: &dyn Marketplace,
    settings: &SaleSettings,
    order: &Order,
) -> Result<Outcome, SaleError> {
    let name = market.name();
    let taken_before = {
        let mut conn = pool.acquire().await?;
        rentals::orders::order_taken(&mut conn, name, &order.id).await?
    };
    // What a new order's buyer paid (a taken one was checked when it was taken).
    let mut paid = None;
    if !taken_before {
        match admit(pool, market, order).await? {
            Admission::Paid(money) => paid = Some(money),
            Admission::Unchecked => {}
            Admission::Refused => {
                market.mark_handled(order).await?;
                return Ok(Outcome::Refused);
            }
            Admission::RefusedBefore => {
                market.mark_handled(order).await?;
                return Ok(Outcome::Done);
            }
        }
    }
    let mut tx = pool.begin().await?;
    if paid.is_some() {
        // Refused earlier as unfunded, paid in full since.
        sqlx::query!(
            "DELETE FROM refused_orders WHERE marketplace = $1 AND order_ref = $2",
            name,
            &order.id
        )
        .execute(&mut *tx)
        .await?;
    }
    let taken = rentals::orders::take_order(
        &mut tx,
        name,
        &order.id,
        &order.slug,
        paid.as_ref(),
        settings.fee_bps,
    )
    .await?;
    let rental = match taken {
        Taken::New(r) | Taken::Seen(r)
            if matches!(
                r.state,
                RentalState::Paid | RentalState::Provisioning | RentalState::Active
            ) =>
        {
            r
        }
        Taken::Oversold(r) => {
            tx.commit().await?;
            tracing::warn!(marketplace = name, order = %order.id, rental = %r.id, "device sold twice; order recorded as refunded (refund it on the marketplace)");
            market.mark_handled(order).await?;
            return Ok(Outcome::Oversold);
        }
        Taken::UnknownListing => {
            tx.rollback().await?;
            tracing::warn!(marketplace = name, order = %order.id, slug = %order.slug, "order for a listing that is not ours; marked handled");
            market.mark_handled(order).await?;
            return Ok(Outcome::Unknown);
        }
        // Ended, refunded or cancelled since: nothing to deliver any more.
        Taken::Seen(_) | Taken::New(_) => {
            tx.commit().await?;
            market.mark_handled(order).await?;
            return Ok(Outcome::Done);
        }
    };
    let activated = rentals::lifecycle::activate(&mut tx, secrets, rental.id).await?;
    tx.commit().await?;
    market.deliver(order, &note(&activated, settings)).await?;
    market.mark_handled(order).await?;
    market.delist(&order.slug).await?;
    let mut conn = pool.acquire().await?;
    crate::market::listings::mark_withdrawn(&mut conn, name, &order.slug).await?;
    tracing::info!(marketplace = name, order = %order.id, rental = %activated.rental.id, "order delivered");
    Ok(Outcome::Delivered)
}

/// Whether a new order may become a rental.
enum Admission {
    /// Funded and paid in full: what the buyer paid.
    Paid(Money),
    /// Nothing to check: not for a listing of ours (taking it says so), or taken meanwhile.
    Unchecked,
    /// Refused now (recorded, with its reason).
    Refused,
    /// Refused in an earlier pass; nothing new to examine.
    RefusedBefore,
}

/// Why an order is not turned into a rental (`refused_orders.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// The marketplace does not hold the buyer's whole payment.
    Unfunded,
    /// Funded, but the marketplace does not say for how much.
    UnknownAmount,
    /// Paid in another currency than the listing's price, and the order does not show the price it
    /// was converted from.
    WrongCurrency,
    /// Paid less than the listing's price.
    Underpaid,
}

impl RefusalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Unfunded => "unfunded",
            RefusalReason::UnknownAmount => "unknown_amount",
            RefusalReason::WrongCurrency => "wrong_currency",
            RefusalReason::Underpaid => "underpaid",
        }
    }
}

/// An order's payment that falls short of the listing's price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RefusalReason,
    /// What the buyer's order says it pays, when the marketplace says.
    pub paid: Option<Money>,
    /// The listing's price as the order copies it, when the marketplace says.
    pub listed: Option<Money>,
    /// The listing's price.
    pub price: Money,
}

impl Refusal {
    /// The order's payment against the listing's price: what was paid when it is funded and pays the
    /// price or more. Paid in the price's currency, the amounts are compared. Paid in another one (a
    /// listing priced in dollars is paid in a coin), the conversion is the marketplace's (OpenBazaar
    /// refuses an order whose amount falls short of the price at its exchange rate, and calls it funded
    /// only once that amount is received; we have no rates of our own): the order must show that it was
    /// made at the listing's price or more.
    pub fn check(payment: &Payment, price: &Money) -> Result<Money, Refusal> {
        let refused = |reason| Refusal {
            reason,
            paid: payment.paid.clone(),
            listed: payment.listed.clone(),
            price: price.clone(),
        };
        let converted_from = payment
            .listed
            .as_ref()
            .filter(|l| l.currency == price.currency);
        match &payment.paid {
            _ if !payment.funded => Err(refused(RefusalReason::Unfunded)),
            None => Err(refused(RefusalReason::UnknownAmount)),
            Some(paid) if paid.currency == price.currency => {
                if paid.minor < price.minor {
                    Err(refused(RefusalReason::Underpaid))
                } else {
                    Ok(paid.clone())
                }
            }
            Some(paid) => match converted_from {
                None => Err(refused(RefusalReason::WrongCurrency)),
                Some(listed) if listed.minor < price.minor => {
                    Err(refused(RefusalReason::Underpaid))
                }
                Some(_) => Ok(paid.clone()),
            },
        }
    }

    /// The reason in words, with the amounts (for admins, the audit log and the server's log).
    pub fn detail(&self) -> String {
        let converted = self
            .paid
            .as_ref()
            .is_some_and(|p| p.currency != self.price.currency);
        let price = self.price.to_decimal_string();
        let paid = self.paid.as_ref().map(Money::to_decimal_string);
        match (self.reason, paid) {
            (RefusalReason::Unfunded, Some(paid)) => format!(
                "not funded: the buyer has not paid the order's {paid}; the listing's price is {price}"
            ),
            (RefusalReason::Unfunded, None) => {
                format!("not funded: the buyer has not paid; the listing's price is {price}")
            }
            (RefusalReason::UnknownAmount, _) | (_, None) => format!(
                "funded, but the marketplace does not say how much was paid; the listing's price is {price}"
            ),
            (RefusalReason::WrongCurrency, Some(paid)) => format!(
                "paid {paid}, another currency than the listing's price of {price}, and the order does not show the price it was converted from"
            ),
            (RefusalReason::Underpaid, Some(paid)) => match &self.listed {
                Some(listed) if converted => format!(
                    "paid {paid} for the listing at {}, less than its price of {price}",
                    listed.to_decimal_string()
                ),
                _ => format!("paid {paid}, less than the listing's price of {price}"),
            },
        }
    }
}

/// Checks a new order's payment with the marketplace, and records the refusal of one not paid in full
/// (with an `order.refuse` audit entry, in one transaction). An order refused before is not examined
/// again, unless it was refused as unfunded and the marketplace now announces it (an unread
/// notification: OpenBazaar notifies an order when it is funded).
async fn admit(
    pool: &PgPool,
    market: &dyn Marketplace,
    order: &Order,
) -> Result<Admission, SaleError> {
    let name = market.name();
    let (listed, before) = {
        let mut conn = pool.acquire().await?;
        let Some(listed) =
            crate::market::listings::device_for(&mut conn, name, &order.slug).await?
        else {
            return Ok(Admission::Unchecked);
        };
        let before: Option<String> = sqlx::query_scalar!(
            "SELECT reason FROM refused_orders WHERE marketplace = $1 AND order_ref = $2",
            name,
            &order.id
        )
        .fetch_optional(&mut *conn)
        .await?;
        (listed, before)
    };
    if let Some(reason) = before
        && (reason != RefusalReason::Unfunded.as_str() || order.notification.is_none())
    {
        return Ok(Admission::RefusedBefore);
    }
    let payment = market.payment(order).await?;
    let refusal = match Refusal::check(&payment, &listed.price) {
        Ok(paid) => return Ok(Admission::Paid(paid)),
        Err(refusal) => refusal,
    };
    let detail = refusal.detail();
    let mut tx = pool.begin().await?;
    let recorded = sqlx::query!("INSERT INTO refused_orders (marketplace, order_ref, listing, device_id, reason, detail, paid_minor,          paid_currency, price_minor, currency)          SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10          WHERE NOT EXISTS (SELECT 1 FROM rentals WHERE marketplace = $1 AND order_ref = $2)          ON CONFLICT (marketplace, order_ref) DO UPDATE SET reason = EXCLUDED.reason, detail = EXCLUDED.detail,          paid_minor = EXCLUDED.paid_minor, paid_currency = EXCLUDED.paid_currency, refused_at = now()", name, &order.id, &order.slug, listed.device, refusal.reason.as_str(), &detail, refusal.paid.as_ref().map(|p| p.minor), refusal.paid.as_ref().map(|p| p.currency.as_str()), refusal.price.minor, refusal.price.currency.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if recorded == 0 {
        // Taken meanwhile (by another instance): it is delivered as usual.
        tx.rollback().await?;
        return Ok(Admission::Unchecked);
    }
    crate::infra::audit::record(
        &mut tx,
        &crate::infra::audit::Actor::system(),
        "order.refuse",
        "order",
        format!("{name}:{}", order.id),
        serde_json::json!({
            "marketplace": name, "order": order.id, "listing": order.slug, "device": listed.device,
            "reason": refusal.reason.as_str(), "detail": detail,
        }),
    )
    .await?;
    tx.commit().await?;
    tracing::warn!(marketplace = name, order = %order.id, slug = %order.slug, reason = refusal.reason.as_str(), %detail, "order refused: not paid in full; not delivered (refund it on the marketplace if the buyer paid)");
    Ok(Admission::Refused)
}

/// The delivery note: where to claim the rental. No password (notes are kept in both parties' contracts
/// and shown to a moderator in a dispute); only letters, digits and URL characters (marketplaces escape
/// the rest).
fn note(activated: &Activated, settings: &SaleSettings) -> String {
    let ends = activated
        .rental
        .ends_at
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    match &activated.claim_token {
        Some(token) => format!(
            "Your p2pvps rental is ready until {ends}. Claim it (sign in or create a free account): {}/claim/{token} . Your login and ready-to-paste SSH commands are then on your Rentals page.",
            settings.dashboard.trim_end_matches('/')
        ),
        None => format!(
            "Your p2pvps rental is ready until {ends}. It is on your Rentals page at {}/rentals .",
            settings.dashboard.trim_end_matches('/')
        ),
    }
}

/// Runs the selling work for one marketplace until `stop`: on the instance holding leadership, every
/// `poll`, and at once when the marketplace hints at an order or a device's status or rental changes
/// (on any instance): reconcile listings, then handle orders.
/// Failures back off (1 s doubling up to `poll`); other instances check every few seconds whether the
/// leader is gone.
pub fn spawn(
    pool: PgPool,
    secrets: SecretBox,
    selling: MarketSettings,
    bus: &crate::infra::events::Bus,
    metrics: std::sync::Arc<crate::infra::metrics::Metrics>,
    stop: crate::infra::shutdown::Shutdown,
) {
    use std::time::Duration;
    let MarketSettings {
        market,
        sale: settings,
        poll,
    } = selling;
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let (mut statuses, mut ended) = (bus.subscribe(), bus.rental_ended());
    let changes = {
        let (wake, stop) = (std::sync::Arc::clone(&wake), stop.clone());
        async move {
            loop {
                let closed = tokio::select! {
                    s = statuses.recv() => matches!(s, Err(tokio::sync::broadcast::error::RecvError::Closed)),
                    e = ended.recv() => matches!(e, Err(tokio::sync::broadcast::error::RecvError::Closed)),
                    () = stop.wait() => return,
                };
                if closed {
                    return;
                }
                wake.notify_one();
            }
        }
    };
    tokio::spawn(changes);
    let watcher = {
        let (market, wake, stop) = (
            std::sync::Arc::clone(&market),
            std::sync::Arc::clone(&wake),
            stop.clone(),
        );
        async move {
            tokio::select! {
                () = market.watch(wake) => {}
                () = stop.wait() => {}
            }
        }
    };
    tokio::spawn(watcher);
    tokio::spawn(async move {
        let mut leadership =
            crate::infra::leader::Leadership::new(crate::infra::leader::MARKETPLACE_KEY);
        let follower_check = Duration::from_secs(3);
        let mut backoff = Duration::from_secs(1);
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wake.notified() => {}
                () = stop.wait() => return,
            }
            if !leadership.check(&pool).await {
                wait = follower_check;
                continue;
            }
            let name = market.name();
            let listed = crate::market::reconcile::reconcile(&pool, market.as_ref()).await;
            let sold = process_orders(&pool, &secrets, market.as_ref(), &settings).await;
            if let Ok(l) = &listed {
                metrics.market(name, "listed", l.listed);
                metrics.market(name, "delisted", l.delisted);
                metrics.market(name, "listing-failed", l.failed);
            }
            if let Ok(r) = &sold {
                metrics.market(name, "delivered", r.delivered);
                metrics.market(name, "refused", r.refused);
                metrics.market(name, "oversold", r.oversold);
                metrics.market(name, "unknown", r.unknown);
                metrics.market(name, "order-failed", r.failed);
            }
            if listed.is_err() || sold.is_err() {
                metrics.market(name, "pass-failed", 1);
            }
            if listed.is_err() {
                metrics.market(name, "error-database", 1);
            }
            if let Err(e) = &sold {
                metrics.market(name, &format!("error-{}", e.kind()), 1);
            }
            let failure = match (&listed, &sold) {
                (_, Err(e)) => Some(format!("order pass: {e}")),
                (Err(e), _) => Some(format!("listing pass: {e}")),
                (Ok(l), Ok(r)) if l.failed + r.failed > 0 => Some(format!(
                    "{} listing change(s) and {} order(s) failed; see the server's log",
                    l.failed, r.failed
                )),
                _ => None,
            };
            if let Err(e) =
                crate::market::status::record(&pool, name, failure.as_deref().map_or(Ok(()), Err))
                    .await
            {
                tracing::warn!(marketplace = name, error = %e, "could not record the marketplace's status");
            }
            match (&listed, &sold) {
                (Ok(l), Ok(r)) if l.failed == 0 && r.failed == 0 => {
                    if l.listed + l.delisted + r.delivered > 0 {
                        tracing::info!(
                            marketplace = name,
                            listed = l.listed,
                            delisted = l.delisted,
                            delivered = r.delivered,
                            "marketplace pass"
                        );
                    }
                    backoff = Duration::from_secs(1);
                    wait = poll;
                }
                _ => {
                    if let Err(e) = &listed {
                        tracing::warn!(marketplace = name, error = %e, "listing pass failed");
                    }
                    if let Err(e) = &sold {
                        tracing::warn!(marketplace = name, error = %e, "order pass failed");
                    }
                    wait = backoff.min(poll);
                    backoff = (backoff * 2).min(poll);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{Refusal, RefusalReason};
    use crate::market::Payment;
    use p2pvps_shared::Money;

    fn usd(minor: i64) -> Money {
        Money::price(minor, "USD").unwrap()
    }

    #[test]
    fn only_a_funded_order_paying_the_price_is_accepted() {
        let price = usd(300);
        let paying = |funded, paid: Option<Money>| Payment {
            funded,
            paid,
            listed: Some(usd(300)),
        };
        assert_eq!(
            Refusal::check(&paying(true, Some(usd(300))), &price),
            Ok(usd(300))
        );
        assert_eq!(
            Refusal::check(&paying(true, Some(usd(301))), &price),
            Ok(usd(301)),
            "more is fine"
        );
        let reason = |p: Payment| Refusal::check(&p, &price).unwrap_err().reason;
        assert_eq!(
            reason(paying(false, Some(usd(300)))),
            RefusalReason::Unfunded
        );
        assert_eq!(reason(paying(true, None)), RefusalReason::UnknownAmount);
        assert_eq!(
            reason(paying(true, Some(usd(299)))),
            RefusalReason::Underpaid
        );
        let detail = Refusal::check(&paying(true, Some(usd(200))), &price)
            .unwrap_err()
            .detail();
        assert_eq!(
            detail,
            "paid 2.00 USD, less than the listing's price of 3.00 USD"
        );
    }

    #[test]
    fn an_order_paid_in_another_currency_must_show_it_was_made_at_the_price() {
        let price = usd(300);
        let btc = Money::price(4_000, "BTC").unwrap();
        let paying = |listed: Option<Money>| Payment {
            funded: true,
            paid: Some(btc.clone()),
            listed,
        };
        // Converted by the marketplace from the listing's price (or more): accepted, for what was paid.
        assert_eq!(
            Refusal::check(&paying(Some(usd(300))), &price),
            Ok(btc.clone())
        );
        assert_eq!(
            Refusal::check(&paying(Some(usd(350))), &price),
            Ok(btc.clone())
        );
        // Made at a lower price (an older copy of the listing), or with no price to go by: refused.
        let lower = Refusal::check(&paying(Some(usd(200))), &price).unwrap_err();
        assert_eq!(lower.reason, RefusalReason::Underpaid);
        assert_eq!(
            lower.detail(),
            "paid 0.00004000 BTC for the listing at 2.00 USD, less than its price of 3.00 USD"
        );
        for listed in [None, Some(Money::price(300, "EUR").unwrap())] {
            let unknown = Refusal::check(&paying(listed), &price).unwrap_err();
            assert_eq!(unknown.reason, RefusalReason::WrongCurrency);
            assert_eq!(
                unknown.detail(),
                "paid 0.00004000 BTC, another currency than the listing's price of 3.00 USD, and the order does not show the price it was converted from"
            );
        }
        let unfunded = Payment {
            funded: false,
            ..paying(Some(usd(300)))
        };
        assert_eq!(
            Refusal::check(&unfunded, &price).unwrap_err().reason,
            RefusalReason::Unfunded
        );
    }
}
