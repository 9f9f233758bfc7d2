//! A device as something to rent: its terms, whether the storefront offers it, and who rents it now.

use super::Device;
use p2pvps_shared::Money;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// What renting a device means now: its name, owner, period and price, and whether it is offered.
#[derive(Debug, Clone)]
pub struct Terms {
    pub name: String,
    pub owner: Uuid,
    pub rental_hours: i32,
    pub price: Option<Money>,
    pub for_rent: bool,
}

/// A device's rental terms (`None` once it is deleted), read in the caller's transaction.
pub async fn terms(conn: &mut PgConnection, id: Uuid) -> Result<Option<Terms>, sqlx::Error> {
    let device = select_devices!(
        "SELECT ",
        " FROM devices WHERE id = $1 AND deleted_at IS NULL",
        id
    )
    .fetch_optional(conn)
    .await
    .and_then(crate::infra::db::typed_opt::<_, Device>)?;
    Ok(device.map(|d| Terms {
        name: d.name,
        owner: d.owner_id,
        rental_hours: d.rental_hours,
        price: d.price,
        for_rent: d.for_rent,
    }))
}

/// The devices anyone may rent now, for the storefront: offered and priced by their owner, online, not
/// let and not reserved by an open order. Cheapest first.
pub async fn offered(pool: &PgPool, limit: i64) -> Result<Vec<Device>, sqlx::Error> {
    select_devices!(
        "SELECT ",
        " FROM devices d WHERE deleted_at IS NULL \
         AND for_rent AND price_minor IS NOT NULL AND status = 'online' \
         AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = d.owner_id AND u.disabled) \
         AND NOT EXISTS (SELECT 1 FROM rentals r WHERE r.device_id = d.id \
              AND (r.state IN ('ordered', 'paid', 'provisioning', 'active', 'ending') \
                   OR r.end_hook IN ('pending', 'failed'))) \
         ORDER BY currency, price_minor, created_at, id LIMIT $1",
        limit
    )
    .fetch_all(pool)
    .await
    .and_then(crate::infra::db::typed)
}

/// The device behind a storefront offer id.
pub async fn by_offer(
    db: impl sqlx::PgExecutor<'_>,
    offer: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM devices WHERE offer_id = $1 AND deleted_at IS NULL",
        offer
    )
    .fetch_optional(db)
    .await
}

/// Whether `user` holds a live rental of the device (and so may see it).
pub async fn is_rented_by(pool: &PgPool, device_id: Uuid, user: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT EXISTS (SELECT 1 FROM rentals WHERE device_id = $1 AND renter_id = $2 \
         AND state IN ('paid', 'provisioning', 'active', 'ending')) AS \"exists!\"",
        device_id,
        user
    )
    .fetch_one(pool)
    .await
}

/// Which of `devices` have a live rental (their commercial state, separate from online/offline): one
/// query for a whole page of devices.
pub async fn rented_among(pool: &PgPool, devices: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT DISTINCT device_id FROM rentals WHERE device_id = ANY($1) \
         AND state IN ('paid', 'provisioning', 'active', 'ending')",
        devices
    )
    .fetch_all(pool)
    .await
}
