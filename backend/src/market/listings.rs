//! Listings (table `listings`): which device is offered on which marketplace under which name. Our own
//! slug → device map: a marketplace's order names the listing, and this says which device it bought.

use p2pvps_shared::Money;
use sqlx::PgConnection;
use uuid::Uuid;

/// The device a listing offers, with its owner and the price it was listed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub device: Uuid,
    pub owner: Uuid,
    pub price: Money,
}

/// Records that `device` is listed on `marketplace` as `external_ref` at `price` (again, if it was before).
pub async fn mark_listed(
    conn: &mut PgConnection,
    marketplace: &str,
    device: Uuid,
    external_ref: &str,
    price: &Money,
) -> Result<(), sqlx::Error> {
    sqlx::query!("INSERT INTO listings (id, device_id, marketplace, external_ref, state, price_minor, currency) \
         VALUES ($1, $2, $3, $4, 'listed', $5, $6) \
         ON CONFLICT (marketplace, device_id) DO UPDATE SET external_ref = EXCLUDED.external_ref, \
         state = 'listed', price_minor = EXCLUDED.price_minor, currency = EXCLUDED.currency, updated_at = now()", Uuid::new_v4(), device, marketplace, external_ref, price.minor, price.currency.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// The device behind a listing name (listed now or withdrawn since: an order may arrive after delisting).
pub async fn device_for(
    conn: &mut PgConnection,
    marketplace: &str,
    external_ref: &str,
) -> Result<Option<Listed>, sqlx::Error> {
    let row: Option<(Uuid, Uuid, i64, String)> = sqlx::query!(
        "SELECT l.device_id, d.owner_id, l.price_minor, l.currency FROM listings l \
         JOIN devices d ON d.id = l.device_id WHERE l.marketplace = $1 AND l.external_ref = $2",
        marketplace,
        external_ref
    )
    .map(|r| (r.device_id, r.owner_id, r.price_minor, r.currency))
    .fetch_optional(conn)
    .await?;
    row.map(|(device, owner, minor, currency)| {
        Money::price(minor, &currency)
            .map(|price| Listed {
                device,
                owner,
                price,
            })
            .map_err(|e| sqlx::Error::Decode(e.to_string().into()))
    })
    .transpose()
}

/// Records that the listing was taken down (its device was let, or is no longer for rent).
pub async fn mark_withdrawn(
    conn: &mut PgConnection,
    marketplace: &str,
    external_ref: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE listings SET state = 'withdrawn', updated_at = now() WHERE marketplace = $1 AND external_ref = $2", marketplace, external_ref)
    .execute(conn)
    .await?;
    Ok(())
}

/// A listing as admins and owners read it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Listing {
    pub device_id: Uuid,
    pub device_name: String,
    pub marketplace: String,
    pub external_ref: String,
    pub state: String,
    pub price_minor: i64,
    pub currency: String,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Every listing, or those of one owner's devices; most recently changed first (at most 200).
pub async fn list(pool: &sqlx::PgPool, owner: Option<Uuid>) -> Result<Vec<Listing>, sqlx::Error> {
    sqlx::query_as!(
        Listing,
        "SELECT l.device_id, d.name AS device_name, l.marketplace, l.external_ref, l.state, l.price_minor, \
         l.currency, l.updated_at FROM listings l JOIN devices d ON d.id = l.device_id \
         WHERE d.deleted_at IS NULL AND ($1::uuid IS NULL OR d.owner_id = $1) \
         ORDER BY l.updated_at DESC, l.id LIMIT 200",
        owner
    )
    .fetch_all(pool)
    .await
}

/// Devices listed on `marketplace` at their current price and renewed within `days`: (device, price).
pub async fn fresh(
    pool: &sqlx::PgPool,
    marketplace: &str,
    days: i64,
) -> Result<Vec<(Uuid, Money)>, sqlx::Error> {
    let rows: Vec<(Uuid, i64, String)> = sqlx::query!(
        "SELECT device_id, price_minor, currency FROM listings WHERE marketplace = $1 AND state = 'listed' \
         AND updated_at > now() - make_interval(days => $2)",
        marketplace,
        i32::try_from(days).unwrap_or(i32::MAX)
    )
    .map(|r| (r.device_id, r.price_minor, r.currency))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(d, minor, currency)| Some((d, Money::price(minor, &currency).ok()?)))
        .collect())
}

/// The names of the listings on `marketplace` still up for devices other than `keep`.
pub async fn listed_except(
    pool: &sqlx::PgPool,
    marketplace: &str,
    keep: &[Uuid],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT external_ref FROM listings WHERE marketplace = $1 AND state = 'listed' \
         AND NOT (device_id = ANY($2))",
        marketplace,
        keep
    )
    .fetch_all(pool)
    .await
}
