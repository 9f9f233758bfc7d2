//! Listing reconciliation: the devices that should be for rent on a marketplace (offered by their owner,
//! priced, online, not let nor reserved by a storefront order) against what is listed there, converged
//! on every pass. Listings are also refreshed before their expiry.

use crate::market::listings;
use crate::market::{ListingSpec, MarketError, Marketplace};
use chrono::{Duration, Utc};
use p2pvps_shared::Money;
use sqlx::PgPool;
use uuid::Uuid;

/// How long a listing stays valid on the marketplace, and how often it is renewed before that.
const LISTING_LIFETIME_DAYS: i64 = 30;
const REFRESH_AFTER_DAYS: i64 = 7;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub listed: usize,
    pub delisted: usize,
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The listing name of a device: ours, stable, never derived from its title.
pub fn slug(device: Uuid) -> String {
    format!("rent-{}", device.simple())
}

struct Wanted {
    device: Uuid,
    name: String,
    description: String,
    price: Money,
    hours: i32,
    listed_fresh: bool,
}

/// One pass for one marketplace.
pub async fn reconcile(pool: &PgPool, market: &dyn Marketplace) -> Result<Changes, ReconcileError> {
    let name = market.name();
    // What to list is what the storefront offers (one definition of "for rent now").
    let offered = crate::devices::renting::offered(pool, i64::MAX).await?;
    let fresh = listings::fresh(pool, name, REFRESH_AFTER_DAYS).await?;
    let wanted: Vec<Wanted> = offered
        .into_iter()
        .filter_map(|d| {
            let price = d.price?;
            Some(Wanted {
                listed_fresh: fresh.contains(&(d.id, price.clone())),
                device: d.id,
                name: d.name,
                description: d.description,
                price,
                hours: d.rental_hours,
            })
        })
        .collect();
    let mut changes = Changes::default();
    for w in wanted.iter().filter(|w| !w.listed_fresh) {
        let spec = ListingSpec {
            slug: slug(w.device),
            title: format!("VPS rental: {} ({} h)", w.name, w.hours),
            description: if w.description.is_empty() {
                format!(
                    "A small computer rented for {} hours, reached over SSH.",
                    w.hours
                )
            } else {
                w.description.clone()
            },
            price: w.price.clone(),
            expiry: Utc::now() + Duration::days(LISTING_LIFETIME_DAYS),
        };
        match market.list(&spec).await {
            Ok(()) => {
                let mut conn = pool.acquire().await?;
                listings::mark_listed(&mut conn, name, w.device, &spec.slug, &w.price).await?;
                changes.listed += 1;
            }
            Err(e) => {
                log_failure(name, &spec.slug, "list", &e);
                changes.failed += 1;
            }
        }
    }
    let keep: Vec<Uuid> = wanted.iter().map(|w| w.device).collect();
    let stale = listings::listed_except(pool, name, &keep).await?;
    for slug in stale {
        match market.delist(&slug).await {
            Ok(()) => {
                let mut conn = pool.acquire().await?;
                listings::mark_withdrawn(&mut conn, name, &slug).await?;
                changes.delisted += 1;
            }
            Err(e) => {
                log_failure(name, &slug, "delist", &e);
                changes.failed += 1;
            }
        }
    }
    Ok(changes)
}

fn log_failure(marketplace: &str, slug: &str, what: &str, e: &MarketError) {
    tracing::warn!(marketplace, slug, what, error = %e, transient = e.is_transient(), "listing change failed; will retry");
}
