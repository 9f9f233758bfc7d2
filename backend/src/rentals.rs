//! Rentals (table `rentals`): who rents which device, in which state, until when, with which login.
//! The marketplace issue adds the lifecycle; here they are read, with the renter's secret decrypted only for
//! the renter.

use crate::crypto::{CryptoError, SecretBox};
use crate::db::decode_enum;
use chrono::{DateTime, Utc};
use p2pvps_shared::{Money, RentalState};
use sqlx::{PgPool, Row, postgres::PgRow};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Rental {
    pub id: Uuid,
    pub device_id: Uuid,
    pub renter_id: Option<Uuid>,
    pub marketplace: String,
    pub order_ref: String,
    pub state: RentalState,
    pub price: Money,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub login_name: Option<String>,
    pub login_secret_enc: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
}

/// The columns every query of this table reads, in `FromRow` order.
macro_rules! rental_columns {
    () => {
        "r.id, r.device_id, r.renter_id, r.marketplace, r.order_ref, r.state, r.price_minor, \
    r.currency, r.starts_at, r.ends_at, r.login_name, r.login_secret_enc, r.created_at"
    };
}

impl<'r> sqlx::FromRow<'r, PgRow> for Rental {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let state: String = row.try_get("state")?;
        let currency: String = row.try_get("currency")?;
        let currency = p2pvps_shared::Currency::parse(&currency)
            .map_err(|e| sqlx::Error::Decode(e.to_string().into()))?;
        Ok(Self {
            id: row.try_get("id")?,
            device_id: row.try_get("device_id")?,
            renter_id: row.try_get("renter_id")?,
            marketplace: row.try_get("marketplace")?,
            order_ref: row.try_get("order_ref")?,
            state: decode_enum(RentalState::from_db(&state), "state", &state)?,
            price: Money {
                minor: row.try_get("price_minor")?,
                currency,
            },
            starts_at: row.try_get("starts_at")?,
            ends_at: row.try_get("ends_at")?,
            login_name: row.try_get("login_name")?,
            login_secret_enc: row.try_get("login_secret_enc")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

impl Rental {
    /// The renter's login secret in clear.
    pub fn login_secret(&self, key: &SecretBox) -> Result<Option<String>, CryptoError> {
        self.login_secret_enc
            .as_deref()
            .map(|sealed| {
                key.open(sealed)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
            .transpose()
    }
}

/// Whose rentals to list: a renter's, those of an owner's devices, or all.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    All,
    RentedBy(Uuid),
    OfDevicesOwnedBy(Uuid),
}

/// Newest first, at most `limit`.
pub async fn list(pool: &PgPool, scope: Scope, limit: i64) -> Result<Vec<Rental>, sqlx::Error> {
    let (renter, owner) = match scope {
        Scope::All => (None, None),
        Scope::RentedBy(id) => (Some(id), None),
        Scope::OfDevicesOwnedBy(id) => (None, Some(id)),
    };
    sqlx::query_as::<_, Rental>(concat!(
        "SELECT ",
        rental_columns!(),
        " FROM rentals r JOIN devices d ON d.id = r.device_id \
         WHERE ($1::uuid IS NULL OR r.renter_id = $1) AND ($2::uuid IS NULL OR d.owner_id = $2) \
         ORDER BY r.created_at DESC, r.id LIMIT $3"
    ))
    .bind(renter)
    .bind(owner)
    .bind(limit)
    .fetch_all(pool)
    .await
}
