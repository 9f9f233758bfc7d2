//! Rentals (table `rentals`): who rents which device, in which state, until when, with which login.
//! Read (the renter's secret decrypted only for the renter), granted by hand, ended, and taken from
//! marketplace orders exactly once. The lifecycle's allowed moves are `RentalState::may_become`.

use crate::infra::crypto::{CryptoError, SecretBox};
use crate::infra::db::{decode_enum, typed, typed_opt};
use chrono::{DateTime, Utc};
use p2pvps_shared::{HookStatus, Money, RentalState};
use sqlx::PgPool;
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
    /// The password the agent's start hook gives the renter's account on the device (sealed).
    pub device_password_enc: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    /// The device agent's hooks, on a device that runs them (`None` otherwise).
    pub start_hook: Option<HookStatus>,
    pub end_hook: Option<HookStatus>,
    pub hook_message: Option<String>,
}

/// A `rentals` row as the query macros read it (`select_rentals!`); [`Rental`] is its typed form.
pub struct RentalRow {
    id: Uuid,
    device_id: Uuid,
    renter_id: Option<Uuid>,
    marketplace: String,
    order_ref: String,
    state: String,
    price_minor: i64,
    currency: String,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    login_name: Option<String>,
    login_secret_enc: Option<Vec<u8>>,
    device_password_enc: Option<Vec<u8>>,
    created_at: DateTime<Utc>,
    start_hook: Option<String>,
    end_hook: Option<String>,
    hook_message: Option<String>,
}

/// A checked query of rentals (as `r`) reading every column of [`RentalRow`]: `select_rentals!("FROM
/// rentals r WHERE ...", args...)`, or with a leading `WITH r AS (...)` for writes that return the row.
/// The overrides (`!`, `?`) state each column's nullability, which PostgreSQL does not report through a CTE.
macro_rules! select_rentals {
    (with $cte:literal, $from:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::rentals::RentalRow,
            $cte + " SELECT r.id AS \"id!\", r.device_id AS \"device_id!\", r.renter_id AS \"renter_id?\", \
             r.marketplace AS \"marketplace!\", r.order_ref AS \"order_ref!\", r.state AS \"state!\", \
             r.price_minor AS \"price_minor!\", r.currency AS \"currency!\", r.starts_at AS \"starts_at?\", \
             r.ends_at AS \"ends_at?\", r.login_name AS \"login_name?\", r.login_secret_enc AS \"login_secret_enc?\", \
             r.device_password_enc AS \"device_password_enc?\", r.created_at AS \"created_at!\", \
             r.start_hook AS \"start_hook?\", r.end_hook AS \"end_hook?\", r.hook_message AS \"hook_message?\" " + $from
            $(, $arg)*
        )
    };
    ($from:literal $(, $arg:expr)* $(,)?) => {
        select_rentals!(with "", $from $(, $arg)*)
    };
}

// Declared after the macro, so they can use it.
pub mod jump;
pub mod lifecycle;
pub mod orders;
pub mod provisioning;

impl TryFrom<RentalRow> for Rental {
    type Error = sqlx::Error;

    fn try_from(row: RentalRow) -> Result<Self, sqlx::Error> {
        let currency = p2pvps_shared::Currency::parse(&row.currency)
            .map_err(|e| sqlx::Error::Decode(e.to_string().into()))?;
        Ok(Self {
            id: row.id,
            device_id: row.device_id,
            renter_id: row.renter_id,
            marketplace: row.marketplace,
            order_ref: row.order_ref,
            state: decode_enum(RentalState::from_db(&row.state), "state", &row.state)?,
            price: Money {
                minor: row.price_minor,
                currency,
            },
            starts_at: row.starts_at,
            ends_at: row.ends_at,
            login_name: row.login_name,
            login_secret_enc: row.login_secret_enc,
            device_password_enc: row.device_password_enc,
            created_at: row.created_at,
            start_hook: hook(row.start_hook, "start_hook")?,
            end_hook: hook(row.end_hook, "end_hook")?,
            hook_message: row.hook_message,
        })
    }
}

fn open_text(key: &SecretBox, sealed: Option<&[u8]>) -> Result<Option<String>, CryptoError> {
    sealed
        .map(|sealed| {
            key.open(sealed)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .transpose()
}

fn hook(text: Option<String>, column: &'static str) -> Result<Option<HookStatus>, sqlx::Error> {
    text.map(|t| decode_enum(HookStatus::from_db(&t), column, &t))
        .transpose()
}

impl Rental {
    /// Whether the renter's access is ready on the device: no start hook to wait for, or it succeeded.
    /// Until then the login is not handed out (a failed hook means broken access).
    pub fn access_ready(&self) -> bool {
        matches!(self.start_hook, None | Some(HookStatus::Done))
    }

    /// Active and not yet over: it grants access and may be renewed.
    pub fn is_running(&self) -> bool {
        self.state == RentalState::Active && self.ends_at.is_some_and(|e| e > Utc::now())
    }

    /// The renter's login secret (for our jump host) in clear.
    pub fn login_secret(&self, key: &SecretBox) -> Result<Option<String>, CryptoError> {
        open_text(key, self.login_secret_enc.as_deref())
    }

    /// The password of the renter's account on the device, when the device's agent makes it (a rental
    /// from before device passwords existed had the jump secret there).
    pub fn device_password(&self, key: &SecretBox) -> Result<Option<String>, CryptoError> {
        if self.start_hook.is_none() {
            return Ok(None);
        }
        open_text(
            key,
            self.device_password_enc
                .as_deref()
                .or(self.login_secret_enc.as_deref()),
        )
    }
}

/// Whose rentals to list: a renter's, those of an owner's devices, or all.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    All,
    RentedBy(Uuid),
    OfDevicesOwnedBy(Uuid),
}

impl Scope {
    /// (renter, owner) to filter on; `None` for either means any.
    fn ids(self) -> (Option<Uuid>, Option<Uuid>) {
        match self {
            Scope::All => (None, None),
            Scope::RentedBy(id) => (Some(id), None),
            Scope::OfDevicesOwnedBy(id) => (None, Some(id)),
        }
    }
}

/// Newest first, at most `limit`.
pub async fn list(pool: &PgPool, scope: Scope, limit: i64) -> Result<Vec<Rental>, sqlx::Error> {
    let (renter, owner) = scope.ids();
    let rows = select_rentals!(
        "FROM rentals r JOIN devices d ON d.id = r.device_id \
         WHERE ($1::uuid IS NULL OR r.renter_id = $1) AND ($2::uuid IS NULL OR d.owner_id = $2) \
         ORDER BY r.created_at DESC, r.id LIMIT $3",
        renter,
        owner,
        limit
    )
    .fetch_all(pool)
    .await?;
    typed(rows)
}

/// Rentals waiting for a payment (storefront orders, and running rentals with a renewal to pay), oldest
/// first (at most 100).
pub async fn open_orders(pool: &PgPool, scope: Scope) -> Result<Vec<Rental>, sqlx::Error> {
    let (renter, owner) = scope.ids();
    let rows = select_rentals!(
        "FROM rentals r JOIN devices d ON d.id = r.device_id \
         WHERE (r.state = 'ordered' OR (r.state = 'active' AND EXISTS (SELECT 1 FROM payments p \
                WHERE p.rental_id = r.id AND p.state = 'pending'))) \
         AND ($1::uuid IS NULL OR r.renter_id = $1) \
         AND ($2::uuid IS NULL OR d.owner_id = $2) ORDER BY r.created_at, r.id LIMIT 100",
        renter,
        owner
    )
    .fetch_all(pool)
    .await?;
    typed(rows)
}

#[derive(Debug, thiserror::Error)]
pub enum RentalError {
    #[error("no such device")]
    NoDevice,
    #[error("no user with that e-mail")]
    NoRenter,
    #[error("the device is already rented")]
    AlreadyRented,
    #[error(
        "the device is still removing its previous renter's access (its end hook has not succeeded yet)"
    )]
    CleaningUp,
    #[error("no such rental")]
    NotFound,
    #[error("the rental has already ended")]
    NotActive,
    #[error("hours must be between 1 and 8760")]
    BadHours,
    #[error("a rental cannot go from {from} to {to}")]
    BadMove { from: RentalState, to: RentalState },
    #[error("the device is not for rent")]
    NotForRent,
    #[error("the device is offline; it can be rented when it is back online")]
    Offline,
    #[error("you own this device")]
    OwnDevice,
    #[error("someone else has an order for this device waiting for payment")]
    Reserved,
    #[error(transparent)]
    Ledger(#[from] crate::billing::ledger::LedgerError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Announces a rental's change to every instance once the caller's transaction commits (subscriptions).
pub async fn announce(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_notify($1, json_build_object('rental', r.id, 'device', r.device_id, 'renter', r.renter_id, \
         'owner', d.owner_id, 'state', r.state)::text) FROM rentals r JOIN devices d ON d.id = r.device_id \
         WHERE r.id = $2",
        crate::infra::events::RENTAL_CHANGED_CHANNEL,
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a rental holds the device now (paid, provisioning, active or ending).
async fn is_held(conn: &mut sqlx::PgConnection, device: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT EXISTS (SELECT 1 FROM rentals WHERE device_id = $1 \
         AND (state IN ('paid', 'provisioning', 'active', 'ending') OR end_hook IN ('pending', 'failed'))) AS \"held!\"",
        device
    )
    .fetch_one(conn)
    .await
}

/// Why a held device cannot be let: rented, or its last renter's access not removed yet.
async fn held_reason(
    conn: &mut sqlx::PgConnection,
    device: Uuid,
) -> Result<RentalError, sqlx::Error> {
    let rented = sqlx::query_scalar!(
        "SELECT EXISTS (SELECT 1 FROM rentals WHERE device_id = $1 AND state IN ('paid', 'provisioning', 'active', 'ending')) AS \"rented!\"",
        device
    )
    .fetch_one(conn)
    .await?;
    Ok(if rented {
        RentalError::AlreadyRented
    } else {
        RentalError::CleaningUp
    })
}

/// A renter login name: `r` and nine random letters or digits (the `login_name` CHECK's shape).
fn new_login_name() -> String {
    use rand::RngCore;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut name = String::from("r");
    for _ in 0..9 {
        name.push(ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char);
    }
    name
}

/// Refuses a move the lifecycle does not allow.
pub fn check_move(from: RentalState, to: RentalState) -> Result<(), RentalError> {
    if from.may_become(to) {
        Ok(())
    } else {
        Err(RentalError::BadMove { from, to })
    }
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Rental>, sqlx::Error> {
    let row = select_rentals!("FROM rentals r WHERE r.id = $1", id)
        .fetch_optional(pool)
        .await?;
    typed_opt(row)
}

/// A rental locked for the caller's transaction.
pub async fn lock(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<Rental, RentalError> {
    let row = select_rentals!("FROM rentals r WHERE r.id = $1 FOR UPDATE", id)
        .fetch_optional(conn)
        .await?;
    typed_opt(row)?.ok_or(RentalError::NotFound)
}

/// Moves a locked rental to its next state, if the lifecycle allows it.
pub async fn advance(
    conn: &mut sqlx::PgConnection,
    rental: &Rental,
    to: RentalState,
) -> Result<Rental, RentalError> {
    check_move(rental.state, to)?;
    let moved = select_rentals!(
        with "WITH r AS (UPDATE rentals SET state = $2, updated_at = now() WHERE id = $1 AND state = $3 RETURNING *)",
        "FROM r",
        rental.id,
        to.as_str(),
        rental.state.as_str()
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| match crate::infra::db::violated_constraint(&e) {
        Some("rentals_one_live_per_device") => RentalError::AlreadyRented,
        _ => RentalError::Db(e),
    })?
    .ok_or(RentalError::NotFound)?;
    announce(conn, rental.id).await?;
    Ok(Rental::try_from(moved)?)
}

#[cfg(test)]
mod tests;
