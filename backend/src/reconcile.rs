//! Listing reconciliation: the devices that should be for rent on a marketplace (offered by their owner,
//! priced, online, not let nor reserved by a storefront order) against what is listed there, converged
//! on every pass. Listings are also refreshed before their expiry.

use crate::listings;
use crate::marketplace::{ListingSpec, MarketError, Marketplace};
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
    let rows: Vec<(Uuid, String, String, i64, String, i32, bool)> = sqlx::query_as(
        "SELECT d.id, d.name, d.description, d.price_minor, d.currency, d.rental_hours, \
         COALESCE(l.state = 'listed' AND l.price_minor = d.price_minor AND l.currency = d.currency \
                  AND l.updated_at > now() - make_interval(days => $2), false) \
         FROM devices d LEFT JOIN listings l ON l.device_id = d.id AND l.marketplace = $1 \
         WHERE d.deleted_at IS NULL AND d.for_rent AND d.status = 'online' AND d.price_minor IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM rentals r WHERE r.device_id = d.id \
                         AND r.state IN ('ordered', 'paid', 'provisioning', 'active', 'ending'))",
    )
    .bind(name)
    .bind(REFRESH_AFTER_DAYS as i32)
    .fetch_all(pool)
    .await?;
    let wanted: Vec<Wanted> = rows
        .into_iter()
        .filter_map(
            |(device, dname, description, minor, currency, hours, fresh)| {
                Some(Wanted {
                    device,
                    name: dname,
                    description,
                    price: Money::price(minor, &currency).ok()?,
                    hours,
                    listed_fresh: fresh,
                })
            },
        )
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
    let stale: Vec<(String,)> = sqlx::query_as(
        "SELECT external_ref FROM listings WHERE marketplace = $1 AND state = 'listed' \
         AND NOT (device_id = ANY($2))",
    )
    .bind(name)
    .bind(wanted.iter().map(|w| w.device).collect::<Vec<_>>())
    .fetch_all(pool)
    .await?;
    for (slug,) in stale {
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
