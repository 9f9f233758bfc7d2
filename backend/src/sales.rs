//! Selling devices on marketplaces: each paid order becomes one rental with access, delivered once.
//!
//! For every order a marketplace reports: take it (one rental per marketplace order id, with its ledger
//! entries), start the rental (login, claim token, its time), deliver a note with a claim link (never the
//! password: fulfilment notes are visible to moderators), mark the order handled, and take the listing
//! down. Each step is idempotent, so a crash anywhere is repaired by the next pass: a delivered order is
//! not delivered again, a taken order is not taken again.

use crate::crypto::SecretBox;
use crate::marketplace::{MarketError, Marketplace, Order};
use crate::rentals::{self, Activated, RentalError, Taken};
use p2pvps_shared::RentalState;
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
    let mut tx = pool.begin().await?;
    let taken = rentals::take_order(
        &mut tx,
        name,
        &order.id,
        &order.slug,
        order.paid.as_ref(),
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
    let activated = rentals::activate(&mut tx, secrets, rental.id).await?;
    tx.commit().await?;
    market.deliver(order, &note(&activated, settings)).await?;
    market.mark_handled(order).await?;
    market.delist(&order.slug).await?;
    let mut conn = pool.acquire().await?;
    crate::listings::mark_withdrawn(&mut conn, name, &order.slug).await?;
    tracing::info!(marketplace = name, order = %order.id, rental = %activated.rental.id, "order delivered");
    Ok(Outcome::Delivered)
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
    bus: &crate::events::Bus,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    stop: crate::shutdown::Shutdown,
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
        let mut leadership = crate::leader::Leadership::new(crate::leader::MARKETPLACE_KEY);
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
            let listed = crate::reconcile::reconcile(&pool, market.as_ref()).await;
            let sold = process_orders(&pool, &secrets, market.as_ref(), &settings).await;
            if let Ok(l) = &listed {
                metrics.market(name, "listed", l.listed);
                metrics.market(name, "delisted", l.delisted);
                metrics.market(name, "listing-failed", l.failed);
            }
            if let Ok(r) = &sold {
                metrics.market(name, "delivered", r.delivered);
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
                crate::market_status::record(&pool, name, failure.as_deref().map_or(Ok(()), Err))
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
