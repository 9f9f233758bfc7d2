//! Rentals (table `rentals`): who rents which device, in which state, until when, with which login.
//! Read (the renter's secret decrypted only for the renter), granted by hand, ended, and taken from
//! marketplace orders exactly once. The lifecycle's allowed moves are `RentalState::may_become`.

pub mod provisioning;

use crate::infra::crypto::{CryptoError, SecretBox};
use crate::infra::db::decode_enum;
use chrono::{DateTime, Utc};
use p2pvps_shared::{HookStatus, Money, RentalState};
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
    /// The password the agent's start hook gives the renter's account on the device (sealed).
    pub device_password_enc: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    /// The device agent's hooks, on a device that runs them (`None` otherwise).
    pub start_hook: Option<HookStatus>,
    pub end_hook: Option<HookStatus>,
    pub hook_message: Option<String>,
}

/// The columns every query of this table reads, in `FromRow` order.
macro_rules! rental_columns {
    () => {
        "r.id, r.device_id, r.renter_id, r.marketplace, r.order_ref, r.state, r.price_minor, \
    r.currency, r.starts_at, r.ends_at, r.login_name, r.login_secret_enc, r.device_password_enc, \
    r.created_at, r.start_hook, r.end_hook, r.hook_message"
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
            device_password_enc: row.try_get("device_password_enc")?,
            created_at: row.try_get("created_at")?,
            start_hook: hook(row, "start_hook")?,
            end_hook: hook(row, "end_hook")?,
            hook_message: row.try_get("hook_message")?,
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

fn hook(row: &PgRow, column: &'static str) -> Result<Option<HookStatus>, sqlx::Error> {
    let text: Option<String> = row.try_get(column)?;
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

/// Rentals waiting for a payment (storefront orders, and running rentals with a renewal to pay), oldest
/// first (at most 100).
pub async fn open_orders(pool: &PgPool, scope: Scope) -> Result<Vec<Rental>, sqlx::Error> {
    let (renter, owner) = scope.ids();
    sqlx::query_as::<_, Rental>(concat!(
        "SELECT ",
        rental_columns!(),
        " FROM rentals r JOIN devices d ON d.id = r.device_id \
         WHERE (r.state = 'ordered' OR (r.state = 'active' AND EXISTS (SELECT 1 FROM payments p \
                WHERE p.rental_id = r.id AND p.state = 'pending'))) \
         AND ($1::uuid IS NULL OR r.renter_id = $1) \
         AND ($2::uuid IS NULL OR d.owner_id = $2) ORDER BY r.created_at, r.id LIMIT 100"
    ))
    .bind(renter)
    .bind(owner)
    .fetch_all(pool)
    .await
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

/// Channel on which rental ends are announced (`{"rental": id, "device": id}`), so every instance cuts
/// the renter's live connections.
pub const RENTAL_ENDED_CHANNEL: &str = "rental_ended";

/// Channel on which every change of a rental's state is announced (see [`crate::infra::events::RentalChanged`]).
pub const RENTAL_CHANGED_CHANNEL: &str = "rental_changed";

/// Announces a rental's change to every instance once the caller's transaction commits (subscriptions).
pub async fn announce(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_notify($1, json_build_object('rental', r.id, 'device', r.device_id, 'renter', r.renter_id, \
         'owner', d.owner_id, 'state', r.state)::text) FROM rentals r JOIN devices d ON d.id = r.device_id \
         WHERE r.id = $2",
    )
    .bind(RENTAL_CHANGED_CHANNEL)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a rental holds the device now (paid, provisioning, active or ending).
async fn is_held(conn: &mut sqlx::PgConnection, device: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM rentals WHERE device_id = $1 \
         AND (state IN ('paid', 'provisioning', 'active', 'ending') OR end_hook IN ('pending', 'failed')))",
    )
    .bind(device)
    .fetch_one(conn)
    .await
}

/// Why a held device cannot be let: rented, or its last renter's access not removed yet.
async fn held_reason(
    conn: &mut sqlx::PgConnection,
    device: Uuid,
) -> Result<RentalError, sqlx::Error> {
    let rented: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM rentals WHERE device_id = $1 AND state IN ('paid', 'provisioning', 'active', 'ending'))",
    )
    .bind(device)
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

/// Starts an active rental of `device` for `renter` for `hours`, by hand (no marketplace): a login name
/// and secret are generated, the secret stored encrypted. Returns the rental and the secret.
pub async fn grant(
    conn: &mut sqlx::PgConnection,
    actor: &crate::infra::audit::Actor,
    secrets: &SecretBox,
    device: Uuid,
    renter: &p2pvps_shared::Email,
    hours: i32,
) -> Result<(Rental, String), RentalError> {
    if !(1..=8760).contains(&hours) {
        return Err(RentalError::BadHours);
    }
    let price: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT price_minor, currency FROM devices WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(device)
    .fetch_optional(&mut *conn)
    .await?;
    let (price_minor, currency) = price.ok_or(RentalError::NoDevice)?;
    let renter_id: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM users WHERE email = $1 AND NOT disabled")
            .bind(renter.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let renter_id = renter_id.ok_or(RentalError::NoRenter)?;
    if is_held(&mut *conn, device).await? {
        return Err(held_reason(&mut *conn, device).await?);
    }
    let secret = crate::infra::crypto::new_token();
    let id = Uuid::new_v4();
    let rental = sqlx::query_as::<_, Rental>(concat!(
        "WITH r AS (INSERT INTO rentals (id, device_id, renter_id, marketplace, order_ref, state, price_minor, \
         currency, starts_at, ends_at, login_name, login_secret_enc, device_password_enc) \
         VALUES ($1, $2, $3, 'admin', $1::text, 'active', $4, $5, now(), now() + make_interval(hours => $6), $7, $8, $9) \
         RETURNING *) SELECT ",
        rental_columns!(),
        " FROM r"
    ))
    .bind(id)
    .bind(device)
    .bind(renter_id)
    .bind(price_minor.unwrap_or(0))
    .bind(currency.unwrap_or_else(|| "USD".to_owned()))
    .bind(hours)
    .bind(new_login_name())
    .bind(secrets.seal(secret.as_bytes()))
    .bind(secrets.seal(crate::infra::crypto::new_token().as_bytes()))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match crate::infra::db::violated_constraint(&e) {
        Some("rentals_one_live_per_device") => RentalError::AlreadyRented,
        _ => RentalError::Db(e),
    })?;
    announce(&mut *conn, id).await?;
    crate::infra::audit::record(
        conn,
        actor,
        "rental.grant",
        "rental",
        id,
        serde_json::json!({"device": device, "renter": renter.as_str(), "hours": hours}),
    )
    .await?;
    Ok((rental, secret))
}

/// Ends an active rental now and announces it (the SSH server cuts the renter's connections).
pub async fn end(
    conn: &mut sqlx::PgConnection,
    actor: &crate::infra::audit::Actor,
    id: Uuid,
) -> Result<Rental, RentalError> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM rentals WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let state = state.ok_or(RentalError::NotFound)?;
    let state = RentalState::from_db(&state).ok_or(RentalError::NotActive)?;
    // Active → ending → ended. (A paid rental not started yet is started or refunded by its sale.)
    let through: &[RentalState] = match state {
        RentalState::Active => &[RentalState::Ending, RentalState::Ended],
        RentalState::Ending => &[RentalState::Ended],
        _ => return Err(RentalError::NotActive),
    };
    let mut from = state;
    for &to in through {
        check_move(from, to)?;
        from = to;
    }
    let rental = sqlx::query_as::<_, Rental>(concat!(
        "WITH r AS (UPDATE rentals SET state = 'ended', ends_at = LEAST(COALESCE(ends_at, now()), now()), \
         updated_at = now() WHERE id = $1 RETURNING *) SELECT ",
        rental_columns!(),
        " FROM r"
    ))
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    crate::billing::payments::fail_pending(&mut *conn, id).await?;
    refund_offline_time(&mut *conn, &rental).await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(RENTAL_ENDED_CHANNEL)
        .bind(serde_json::json!({"rental": id, "device": rental.device_id}).to_string())
        .execute(&mut *conn)
        .await?;
    announce(&mut *conn, id).await?;
    crate::infra::audit::record(
        conn,
        actor,
        "rental.end",
        "rental",
        id,
        serde_json::json!({}),
    )
    .await?;
    Ok(rental)
}

/// How long a rented device may be offline in all before the renter is refunded for the rest.
pub const OFFLINE_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(30);

/// At a rental's end: if its device was offline for longer than [`OFFLINE_GRACE`] during it, the
/// renter is refunded that time beyond the grace, pro rata of what they paid.
async fn refund_offline_time(
    conn: &mut sqlx::PgConnection,
    rental: &Rental,
) -> Result<(), sqlx::Error> {
    let (Some(from), Some(to)) = (rental.starts_at, rental.ends_at) else {
        return Ok(());
    };
    let offline = crate::devices::offline_during(&mut *conn, rental.device_id, from, to).await?;
    let beyond = offline - OFFLINE_GRACE;
    if beyond <= chrono::TimeDelta::zero() {
        return Ok(());
    }
    let refunded = crate::billing::ledger::refund_share(
        conn,
        rental.id,
        beyond.num_seconds(),
        (to - from).num_seconds(),
        &format!(
            "device offline {} min during the rental",
            offline.num_minutes()
        ),
    )
    .await?;
    if !refunded.is_empty() {
        tracing::info!(rental = %rental.id, offline_min = offline.num_minutes(), ?refunded, "refunded offline time");
    }
    Ok(())
}

/// Extends a running rental by its device's rental period (a paid renewal).
pub async fn extend(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<Rental, RentalError> {
    let extended = sqlx::query_as::<_, Rental>(concat!(
        "WITH r AS (UPDATE rentals SET ends_at = ends_at + make_interval(hours => \
         (SELECT rental_hours FROM devices WHERE id = rentals.device_id)), updated_at = now() \
         WHERE id = $1 AND state = 'active' RETURNING *) SELECT ",
        rental_columns!(),
        " FROM r"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(RentalError::NotActive)?;
    announce(conn, id).await?;
    Ok(extended)
}

/// Refuses a move the lifecycle does not allow.
pub fn check_move(from: RentalState, to: RentalState) -> Result<(), RentalError> {
    if from.may_become(to) {
        Ok(())
    } else {
        Err(RentalError::BadMove { from, to })
    }
}

/// Ends every active rental whose time is up. Returns how many.
pub async fn end_expired(pool: &PgPool) -> Result<usize, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM rentals WHERE state = 'active' AND ends_at <= now() ORDER BY ends_at LIMIT 100",
    )
    .fetch_all(pool)
    .await?;
    let mut ended = 0;
    for id in ids {
        let mut tx = pool.begin().await?;
        match end(&mut tx, &crate::infra::audit::Actor::system(), id).await {
            Ok(_) => {
                tx.commit().await?;
                ended += 1;
            }
            // Ended meanwhile by someone else: nothing to do.
            Err(RentalError::NotActive | RentalError::NotFound) => {}
            Err(RentalError::Db(e)) => return Err(e),
            Err(e) => tracing::warn!(rental = %id, error = %e, "could not end an expired rental"),
        }
    }
    Ok(ended)
}

/// How long a failed start hook waits for the device owner's retry before its rental is ended and refunded.
pub const FAILED_START_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(30);

/// Ends, with a full refund, every active rental whose start hook failed and was not retried within
/// [`FAILED_START_GRACE`]: the renter never got access, so pays nothing, and the device's end hook then
/// cleans up and frees the device. Each rental is one transaction, checked again under its row lock (an
/// owner's retry meanwhile wins). Returns how many.
pub async fn refund_failed_starts(pool: &PgPool) -> Result<usize, sqlx::Error> {
    // A rental whose start hook failed longer ago than the grace ($1 seconds).
    macro_rules! stuck {
        () => {
            "state = 'active' AND start_hook = 'failed' AND updated_at <= now() - make_interval(secs => $1)"
        };
    }
    let grace = FAILED_START_GRACE.num_seconds() as f64;
    let ids: Vec<Uuid> = sqlx::query_scalar(concat!(
        "SELECT id FROM rentals WHERE ",
        stuck!(),
        " ORDER BY updated_at LIMIT 100"
    ))
    .bind(grace)
    .fetch_all(pool)
    .await?;
    let mut refunded = 0;
    for id in ids {
        let mut tx = pool.begin().await?;
        let still: Option<Uuid> = sqlx::query_scalar(concat!(
            "SELECT id FROM rentals WHERE id = $2 AND ",
            stuck!(),
            " FOR UPDATE"
        ))
        .bind(grace)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if still.is_none() {
            continue;
        }
        let actor = crate::infra::audit::Actor::system();
        match end(&mut tx, &actor, id).await {
            Ok(_) => {}
            Err(RentalError::Db(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(rental = %id, error = %e, "could not end a rental whose start hook failed");
                continue;
            }
        }
        let back = crate::billing::ledger::refund_share(
            &mut tx,
            id,
            1,
            1,
            "the device's start hook failed",
        )
        .await?;
        crate::infra::audit::record(
            &mut tx,
            &actor,
            "rental.refund_failed_start",
            "rental",
            id,
            serde_json::json!({ "refunded": back }),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(rental = %id, ?back, "start hook stayed failed: rental ended and refunded");
        refunded += 1;
    }
    Ok(refunded)
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Rental>, sqlx::Error> {
    sqlx::query_as::<_, Rental>(concat!(
        "SELECT ",
        rental_columns!(),
        " FROM rentals r WHERE r.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// What a renter's jump login grants: one device, until a time.
#[derive(Debug, Clone)]
pub struct JumpGrant {
    pub rental_id: Uuid,
    pub device_id: Uuid,
    pub subdomain: String,
    pub ends_at: DateTime<Utc>,
    /// The renter (none for a marketplace order not yet claimed).
    pub renter_id: Option<Uuid>,
}

/// Checks a jump login (rental login name + secret) of an active, unexpired rental.
pub async fn jump_login(
    pool: &PgPool,
    secrets: &SecretBox,
    login: &str,
    secret: &str,
) -> Result<Option<JumpGrant>, sqlx::Error> {
    // rental id, device id, subdomain, end, sealed secret, renter
    type JumpRow = (Uuid, Uuid, String, DateTime<Utc>, Vec<u8>, Option<Uuid>);
    let row: Option<JumpRow> = sqlx::query_as(
        "SELECT r.id, r.device_id, d.subdomain, r.ends_at, r.login_secret_enc, r.renter_id FROM rentals r \
         JOIN devices d ON d.id = r.device_id \
         WHERE r.login_name = $1 AND r.state = 'active' AND r.ends_at > now() AND d.deleted_at IS NULL \
         AND (r.start_hook IS NULL OR r.start_hook = 'done') \
         AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = r.renter_id AND u.disabled)",
    )
    .bind(login)
    .fetch_optional(pool)
    .await?;
    let Some((rental_id, device_id, subdomain, ends_at, sealed, renter_id)) = row else {
        return Ok(None);
    };
    let Ok(stored) = secrets.open(&sealed) else {
        tracing::error!(rental = %rental_id, "a rental secret cannot be decrypted with this server key");
        return Ok(None);
    };
    // Compare digests, so the comparison's time says nothing about the secret.
    let ok = crate::infra::crypto::token_hash(&String::from_utf8_lossy(&stored))
        == crate::infra::crypto::token_hash(secret);
    Ok(ok.then_some(JumpGrant {
        rental_id,
        device_id,
        subdomain,
        ends_at,
        renter_id,
    }))
}

/// Whether the rental still grants access (for connections that outlive a check).
pub async fn is_active(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM rentals WHERE id = $1 AND state = 'active' AND ends_at > now())")
        .bind(id)
        .fetch_one(pool)
        .await
}

/// The end of the rental while it is active, not over and its renter not disabled (`None` otherwise).
pub async fn active_until(
    pool: &PgPool,
    rental: Uuid,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT ends_at FROM rentals r WHERE id = $1 AND state = 'active' AND ends_at > now() \
         AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = r.renter_id AND u.disabled)",
    )
    .bind(rental)
    .fetch_optional(pool)
    .await
    .map(Option::flatten)
}

/// Devices `renter` holds an active rental of (whose connections a change of the renter's access concerns).
pub async fn devices_rented_by(pool: &PgPool, renter: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT device_id FROM rentals WHERE renter_id = $1 AND state = 'active'",
    )
    .bind(renter)
    .fetch_all(pool)
    .await
}

/// Until when the device is in a rental that grants access (`None`: not let now, or its renter is
/// disabled): its public port carries connections only then.
pub async fn device_let_until(
    pool: &PgPool,
    device: Uuid,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT max(ends_at) FROM rentals r WHERE device_id = $1 AND state = 'active' AND ends_at > now() \
         AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = r.renter_id AND u.disabled)",
    )
    .bind(device)
    .fetch_one(pool)
    .await
}

/// How a renter reaches the rented device: by its public tunnel port, or through our SSH server as a jump
/// host (no public port needed). The device account is the rental's login name (created on the device by
/// its provisioner); the jump password is the rental's secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionDetails {
    pub host: String,
    pub ssh_port: u16,
    pub device_port: u16,
    pub subdomain: String,
    pub login: String,
    pub port_command: String,
    pub jump_command: String,
}

impl ConnectionDetails {
    pub fn new(host: &str, ssh_port: u16, device_port: u16, subdomain: &str, login: &str) -> Self {
        Self {
            host: host.to_owned(),
            ssh_port,
            device_port,
            subdomain: subdomain.to_owned(),
            login: login.to_owned(),
            port_command: format!("ssh -p {device_port} {login}@{host}"),
            jump_command: format!("ssh -J {login}@{host}:{ssh_port} {login}@{subdomain}"),
        }
    }
}

/// What became of a marketplace order.
#[derive(Debug, Clone)]
pub enum Taken {
    /// A new rental, paid and waiting for its access (the payment is in the ledger).
    New(Rental),
    /// The order was taken before (a retry, a restart, another instance): nothing was written.
    Seen(Rental),
    /// The device was already let: the order is recorded as refunded (payment and full refund in the
    /// ledger), for the marketplace to pay back.
    Oversold(Rental),
    /// No listing of ours has that name.
    UnknownListing,
}

/// Turns a paid marketplace order into a rental, exactly once however often it is seen: keyed on
/// (marketplace, order id), in the caller's transaction, with its ledger entries. The caller has checked
/// that the order is paid in full (`sales` refuses the others); `paid` is what the buyer paid.
pub async fn take_order(
    conn: &mut sqlx::PgConnection,
    marketplace: &'static str,
    order_ref: &str,
    listing: &str,
    paid: Option<&Money>,
    fee_bps: u32,
) -> Result<Taken, RentalError> {
    if let Some(rental) = by_order(&mut *conn, marketplace, order_ref).await? {
        return Ok(Taken::Seen(rental));
    }
    let Some(listed) =
        crate::market::listings::device_for(&mut *conn, marketplace, listing).await?
    else {
        return Ok(Taken::UnknownListing);
    };
    // Serialises with other sales and grants of the device.
    sqlx::query("SELECT 1 FROM devices WHERE id = $1 FOR UPDATE")
        .bind(listed.device)
        .execute(&mut *conn)
        .await?;
    let let_now = is_held(&mut *conn, listed.device).await?;
    let price = paid.cloned().unwrap_or_else(|| listed.price.clone());
    let state = if let_now { "refunded" } else { "paid" };
    let inserted = sqlx::query_as::<_, Rental>(concat!(
        "WITH r AS (INSERT INTO rentals (id, device_id, buyer_ref, marketplace, order_ref, state, price_minor, currency) \
         VALUES ($1, $2, $3, $4, $3, $5, $6, $7) ON CONFLICT (marketplace, order_ref) DO NOTHING RETURNING *) SELECT ",
        rental_columns!(),
        " FROM r"
    ))
    .bind(Uuid::new_v4())
    .bind(listed.device)
    .bind(order_ref)
    .bind(marketplace)
    .bind(state)
    .bind(price.minor)
    .bind(price.currency.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(rental) = inserted else {
        // Taken meanwhile by another instance.
        return by_order(&mut *conn, marketplace, order_ref)
            .await?
            .map(Taken::Seen)
            .ok_or(RentalError::NotFound);
    };
    if price.minor > 0 {
        let payer = crate::billing::ledger::Payer::Marketplace(marketplace);
        crate::billing::ledger::record_payment(
            conn,
            rental.id,
            listed.owner,
            &payer,
            &price,
            fee_bps,
        )
        .await?;
        if let_now {
            crate::billing::ledger::record_refund(
                conn,
                rental.id,
                listed.owner,
                &payer,
                &price,
                fee_bps,
                "device already let",
            )
            .await?;
        }
    }
    announce(&mut *conn, rental.id).await?;
    Ok(if let_now {
        Taken::Oversold(rental)
    } else {
        Taken::New(rental)
    })
}

/// Whether the marketplace order has been taken (as a rental of any state) already.
pub async fn order_taken(
    conn: &mut sqlx::PgConnection,
    marketplace: &str,
    order_ref: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM rentals WHERE marketplace = $1 AND order_ref = $2)",
    )
    .bind(marketplace)
    .bind(order_ref)
    .fetch_one(conn)
    .await
}

async fn by_order(
    conn: &mut sqlx::PgConnection,
    marketplace: &str,
    order_ref: &str,
) -> Result<Option<Rental>, sqlx::Error> {
    sqlx::query_as::<_, Rental>(concat!(
        "SELECT ",
        rental_columns!(),
        " FROM rentals r WHERE r.marketplace = $1 AND r.order_ref = $2"
    ))
    .bind(marketplace)
    .bind(order_ref)
    .fetch_optional(conn)
    .await
}

/// A marketplace rental with its access: the rental, and the claim token its buyer gets (the same token
/// every time until it is claimed, so a retried delivery sends the same link).
#[derive(Debug, Clone)]
pub struct Activated {
    pub rental: Rental,
    /// `None` once claimed.
    pub claim_token: Option<String>,
}

/// Starts a paid rental: a login and its secret, its time from now for the device's rental period, and
/// (for a marketplace buyer who has no account here yet) a claim token. An already active rental is returned as it is (with its unclaimed token).
pub async fn activate(
    conn: &mut sqlx::PgConnection,
    secrets: &SecretBox,
    rental: Uuid,
) -> Result<Activated, RentalError> {
    let current = sqlx::query_as::<_, Rental>(concat!(
        "SELECT ",
        rental_columns!(),
        " FROM rentals r WHERE r.id = $1 FOR UPDATE"
    ))
    .bind(rental)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(RentalError::NotFound)?;
    let rental = if matches!(current.state, RentalState::Paid | RentalState::Provisioning) {
        if current.state == RentalState::Paid {
            check_move(RentalState::Paid, RentalState::Provisioning)?;
        }
        check_move(RentalState::Provisioning, RentalState::Active)?;
        let token = crate::infra::crypto::new_token();
        let secret = crate::infra::crypto::new_token();
        let started = sqlx::query_as::<_, Rental>(concat!(
            "WITH r AS (UPDATE rentals SET state = 'active', starts_at = now(), \
             ends_at = now() + make_interval(hours => (SELECT rental_hours FROM devices WHERE id = rentals.device_id)), \
             login_name = $2, login_secret_enc = $3, device_password_enc = $6, \
             claim_hash = CASE WHEN renter_id IS NULL THEN $4 END, \
             claim_secret_enc = CASE WHEN renter_id IS NULL THEN $5 END, updated_at = now() \
             WHERE id = $1 RETURNING *) SELECT ",
            rental_columns!(),
            " FROM r"
        ))
        .bind(rental)
        .bind(new_login_name())
        .bind(secrets.seal(secret.as_bytes()))
        .bind(crate::infra::crypto::token_hash(&token))
        .bind(secrets.seal(token.as_bytes()))
        .bind(secrets.seal(crate::infra::crypto::new_token().as_bytes()))
        .fetch_one(&mut *conn)
        .await?;
        announce(&mut *conn, rental).await?;
        started
    } else if current.state == RentalState::Active {
        current
    } else {
        return Err(RentalError::NotActive);
    };
    let sealed: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT claim_secret_enc FROM rentals WHERE id = $1")
            .bind(rental.id)
            .fetch_one(&mut *conn)
            .await?;
    let claim_token = sealed
        .map(|s| {
            secrets
                .open(&s)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .transpose()?;
    Ok(Activated {
        rental,
        claim_token,
    })
}

/// A signed-in user claims a marketplace rental with the token from its delivery: it becomes theirs, and
/// the token stops working.
pub async fn claim(
    conn: &mut sqlx::PgConnection,
    token: &str,
    renter: Uuid,
) -> Result<Rental, RentalError> {
    let claimed = sqlx::query_as::<_, Rental>(concat!(
        "WITH r AS (UPDATE rentals SET renter_id = $2, claim_hash = NULL, claim_secret_enc = NULL, updated_at = now() \
         WHERE claim_hash = $1 AND renter_id IS NULL AND state = 'active' RETURNING *) SELECT ",
        rental_columns!(),
        " FROM r"
    ))
    .bind(crate::infra::crypto::token_hash(token))
    .bind(renter)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(RentalError::NotFound)?;
    announce(conn, claimed.id).await?;
    Ok(claimed)
}

/// Opens a storefront order: the renter's rental of the device, waiting for payment, at the device's
/// price for one rental period. The device must be for rent, priced, online, not let and not reserved
/// by another open order; the order reserves it.
pub async fn open_order(
    conn: &mut sqlx::PgConnection,
    device: Uuid,
    renter: Uuid,
) -> Result<Rental, RentalError> {
    type DeviceRow = (Uuid, bool, Option<i64>, Option<String>, String);
    let row: Option<DeviceRow> = sqlx::query_as(
        "SELECT owner_id, for_rent, price_minor, currency, status FROM devices \
         WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(device)
    .fetch_optional(&mut *conn)
    .await?;
    let (owner, for_rent, price_minor, currency, status) = row.ok_or(RentalError::NoDevice)?;
    let (Some(price_minor), Some(currency), true) = (price_minor, currency, for_rent) else {
        return Err(RentalError::NotForRent);
    };
    if owner == renter {
        return Err(RentalError::OwnDevice);
    }
    if status != "online" {
        return Err(RentalError::Offline);
    }
    if is_held(&mut *conn, device).await? {
        return Err(held_reason(&mut *conn, device).await?);
    }
    let id = Uuid::new_v4();
    let order = sqlx::query_as::<_, Rental>(concat!(
        "WITH r AS (INSERT INTO rentals (id, device_id, renter_id, marketplace, order_ref, state, price_minor, currency) \
         VALUES ($1, $2, $3, 'direct', $1::text, 'ordered', $4, $5) RETURNING *) SELECT ",
        rental_columns!(),
        " FROM r"
    ))
    .bind(id)
    .bind(device)
    .bind(renter)
    .bind(price_minor)
    .bind(currency)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match crate::infra::db::violated_constraint(&e) {
        Some("rentals_one_open_order_per_device") => RentalError::Reserved,
        _ => RentalError::Db(e),
    })?;
    announce(conn, id).await?;
    Ok(order)
}

/// Locks `renter`'s user row for the caller's transaction and counts their storefront orders waiting for
/// payment. The lock (`FOR NO KEY UPDATE`: it does not block rows referencing the user) serialises one
/// renter's orders, so a count taken under it stays true until the transaction ends.
pub async fn lock_unpaid_orders(
    conn: &mut sqlx::PgConnection,
    renter: Uuid,
) -> Result<i64, RentalError> {
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE")
        .bind(renter)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(RentalError::NoRenter)?;
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM rentals WHERE renter_id = $1 AND state = 'ordered' AND marketplace = 'direct'",
    )
    .bind(renter)
    .fetch_one(conn)
    .await?)
}

/// A rental locked for the caller's transaction.
pub async fn lock(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<Rental, RentalError> {
    sqlx::query_as::<_, Rental>(concat!(
        "SELECT ",
        rental_columns!(),
        " FROM rentals r WHERE r.id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(RentalError::NotFound)
}

/// Moves a locked rental to its next state, if the lifecycle allows it.
pub async fn advance(
    conn: &mut sqlx::PgConnection,
    rental: &Rental,
    to: RentalState,
) -> Result<Rental, RentalError> {
    check_move(rental.state, to)?;
    let moved = sqlx::query_as::<_, Rental>(concat!(
        "WITH r AS (UPDATE rentals SET state = $2, updated_at = now() WHERE id = $1 AND state = $3 RETURNING *) SELECT ",
        rental_columns!(),
        " FROM r"
    ))
    .bind(rental.id)
    .bind(to.as_str())
    .bind(rental.state.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| match crate::infra::db::violated_constraint(&e) {
        Some("rentals_one_live_per_device") => RentalError::AlreadyRented,
        _ => RentalError::Db(e),
    })?
    .ok_or(RentalError::NotFound)?;
    announce(conn, rental.id).await?;
    Ok(moved)
}

/// Storefront orders left unpaid for longer than `hold`, oldest first (at most 100).
pub async fn stale_orders(
    pool: &PgPool,
    hold: std::time::Duration,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM rentals WHERE state = 'ordered' AND created_at < now() - make_interval(secs => $1) \
         ORDER BY created_at LIMIT 100",
    )
    .bind(hold.as_secs_f64())
    .fetch_all(pool)
    .await
}
