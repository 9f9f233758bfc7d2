//! Devices (tables `devices`, `device_status_history`): what an owner registers, its stable tunnel port and
//! subdomain, its hashed credential, and its connection status.
//!
//! Invariants: a live device's name is unique per owner, its port and subdomain unique among live devices;
//! the credential is returned in clear only by [`create`] and [`rotate_credential`].

use crate::infra::audit::{self, Actor};
use crate::infra::crypto;
use crate::infra::db::{decode_enum, violated_constraint};
use chrono::{DateTime, Utc};
use p2pvps_shared::{DeviceName, DeviceStatus, Hardware, Money, SubdomainLabel};
use rand::RngCore;
use sqlx::{PgConnection, PgPool};
use std::ops::RangeInclusive;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("you already have a device named \"{0}\"")]
    NameTaken(String),
    #[error("the subdomain \"{0}\" is taken")]
    SubdomainTaken(String),
    #[error("no free tunnel port left in {0}-{1}: widen --tunnel-ports or delete unused devices")]
    NoFreePort(u16, u16),
    #[error("no such device")]
    NotFound,
    #[error("the device is rented until {0}; it can be deleted when the rental ends")]
    Rented(String),
    #[error(
        "the device has an order waiting for payment; cancel it (or let its hold run out) before deleting the device"
    )]
    Ordered,
    #[error("a device listed for rent needs a price")]
    ForRentWithoutPrice,
    #[error("not an OpenSSH public key (expected a line like `ssh-ed25519 AAAA... comment`): {0}")]
    BadKey(String),
    #[error("this key is already registered on the device")]
    KeyExists,
    #[error("the device has no key with that fingerprint")]
    NoSuchKey,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What the device's agent last reported about itself (nothing for devices without the agent).
#[derive(Debug, Clone, Default)]
pub struct AgentReport {
    pub os: Option<String>,
    pub version: Option<String>,
    pub reported_at: Option<DateTime<Utc>>,
    /// The agent runs the owner's hooks when rentals start and end.
    pub runs_hooks: bool,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: Uuid,
    /// The device's id in the storefront (the device id is its login name and stays private).
    pub offer_id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: String,
    pub hardware: Hardware,
    pub price: Option<Money>,
    pub rental_hours: i32,
    pub for_rent: bool,
    pub status: DeviceStatus,
    pub last_seen: Option<DateTime<Utc>>,
    pub tunnel_port: u16,
    pub subdomain: String,
    /// Whether the gateway publishes the device's web server at its subdomain.
    pub web_publishing: bool,
    pub agent: AgentReport,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A `devices` row as the query macros read it (`select_devices!`); [`Device`] is its typed form.
pub struct DeviceRow {
    id: Uuid,
    offer_id: Uuid,
    owner_id: Uuid,
    name: String,
    description: String,
    cpu_model: Option<String>,
    cpu_cores: Option<i32>,
    memory_mb: Option<i32>,
    disk_gb: Option<i32>,
    arch: Option<String>,
    internet_mbps: Option<i32>,
    price_minor: Option<i64>,
    currency: Option<String>,
    rental_hours: i32,
    for_rent: bool,
    status: String,
    last_seen: Option<DateTime<Utc>>,
    tunnel_port: i32,
    subdomain: String,
    web_publishing: bool,
    os: Option<String>,
    agent_version: Option<String>,
    facts_reported_at: Option<DateTime<Utc>>,
    provisioner: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A checked query reading every column of [`DeviceRow`] between `$head` ("SELECT", "... RETURNING") and
/// `$tail` (the rest of the statement). The overrides (`!`, `?`) state each column's nullability, which
/// PostgreSQL does not report for `RETURNING`.
macro_rules! select_devices {
    ($head:literal, $tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::devices::DeviceRow,
            $head + " id AS \"id!\", offer_id AS \"offer_id!\", owner_id AS \"owner_id!\", name AS \"name!\", \
             description AS \"description!\", cpu_model AS \"cpu_model?\", cpu_cores AS \"cpu_cores?\", \
             memory_mb AS \"memory_mb?\", disk_gb AS \"disk_gb?\", arch AS \"arch?\", internet_mbps AS \
             \"internet_mbps?\", price_minor AS \"price_minor?\", currency AS \"currency?\", rental_hours AS \
             \"rental_hours!\", for_rent AS \"for_rent!\", status AS \"status!\", last_seen AS \
             \"last_seen?\", tunnel_port AS \"tunnel_port!\", subdomain AS \"subdomain!\", web_publishing AS \
             \"web_publishing!\", os AS \"os?\", agent_version AS \"agent_version?\", facts_reported_at AS \
             \"facts_reported_at?\", provisioner AS \"provisioner!\", created_at AS \"created_at!\", \
             updated_at AS \"updated_at!\" " + $tail
            $(, $arg)*
        )
    };
}

// Declared after the macro, so they can use it.
pub mod facts;
pub mod keys;
pub mod renting;
pub mod status;
pub mod tunnel_auth;
pub mod uptime;

impl TryFrom<DeviceRow> for Device {
    type Error = sqlx::Error;

    fn try_from(row: DeviceRow) -> Result<Self, sqlx::Error> {
        let price = match (row.price_minor, row.currency) {
            (Some(minor), Some(currency)) => Some(
                Money::price(minor, &currency)
                    .map_err(|e| sqlx::Error::Decode(e.to_string().into()))?,
            ),
            _ => None,
        };
        Ok(Self {
            id: row.id,
            offer_id: row.offer_id,
            owner_id: row.owner_id,
            name: row.name,
            description: row.description,
            hardware: Hardware {
                cpu_model: row.cpu_model,
                cpu_cores: row.cpu_cores,
                memory_mb: row.memory_mb,
                disk_gb: row.disk_gb,
                arch: row.arch,
                internet_mbps: row.internet_mbps,
            },
            price,
            rental_hours: row.rental_hours,
            for_rent: row.for_rent,
            status: decode_enum(DeviceStatus::from_db(&row.status), "status", &row.status)?,
            last_seen: row.last_seen,
            tunnel_port: u16::try_from(row.tunnel_port)
                .map_err(|e| sqlx::Error::Decode(e.into()))?,
            subdomain: row.subdomain,
            web_publishing: row.web_publishing,
            agent: AgentReport {
                os: row.os,
                version: row.agent_version,
                reported_at: row.facts_reported_at,
                runs_hooks: row.provisioner,
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Everything an owner sets when registering a device (already validated).
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub name: DeviceName,
    pub subdomain: Option<SubdomainLabel>,
    pub description: String,
    pub hardware: Hardware,
    pub price: Option<Money>,
    pub rental_hours: i32,
    pub for_rent: bool,
}

impl NewDevice {
    pub fn named(name: DeviceName) -> Self {
        Self {
            name,
            subdomain: None,
            description: String::new(),
            hardware: Hardware::default(),
            price: None,
            rental_hours: 24,
            for_rent: false,
        }
    }
}

/// Changes an owner may make; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct DeviceChanges {
    pub name: Option<DeviceName>,
    pub description: Option<String>,
    pub hardware: Option<Hardware>,
    pub price: Option<Money>,
    pub rental_hours: Option<i32>,
    pub for_rent: Option<bool>,
    pub web_publishing: Option<bool>,
}

/// A subdomain nobody chose: a letter then nine letters or digits (about 2^51 possibilities).
fn random_subdomain() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut label = String::with_capacity(10);
    label.push((b'a' + (rng.next_u32() % 26) as u8) as char);
    for _ in 0..9 {
        label.push(ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char);
    }
    label
}

fn map_unique(e: sqlx::Error, name: &str, subdomain: &str) -> DeviceError {
    match violated_constraint(&e) {
        Some("devices_owner_name") => DeviceError::NameTaken(name.to_owned()),
        Some("devices_subdomain") => DeviceError::SubdomainTaken(subdomain.to_owned()),
        _ => DeviceError::Db(e),
    }
}

/// Registers a device with the lowest free port of `ports`. Returns it with its credential (shown once).
pub async fn create(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &Actor,
    owner_id: Uuid,
    new: &NewDevice,
    ports: &RangeInclusive<u16>,
) -> Result<(Device, String), DeviceError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
    if new.for_rent && new.price.is_none() {
        return Err(DeviceError::ForRentWithoutPrice);
    }
    // Serialises port allocation: "lowest free port" read and insert must not interleave between instances.
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('p2pvps.devices.tunnel_port'))")
        .execute(&mut *conn)
        .await?;
    let port: Option<i32> = sqlx::query_scalar!("SELECT p AS \"p!\" FROM generate_series($1::int, $2::int) p \
         WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.tunnel_port = p AND d.deleted_at IS NULL) \
         ORDER BY p LIMIT 1", i32::from(*ports.start()), i32::from(*ports.end()))
    .fetch_optional(&mut *conn)
    .await?;
    let port = port.ok_or(DeviceError::NoFreePort(*ports.start(), *ports.end()))?;
    let subdomain = match &new.subdomain {
        Some(label) => label.as_str().to_owned(),
        None => random_subdomain(),
    };
    let credential = crypto::new_token();
    let hw = &new.hardware;
    let device = select_devices!("INSERT INTO devices (id, owner_id, name, description, cpu_model, cpu_cores, memory_mb, disk_gb, arch, \
         internet_mbps, price_minor, currency, rental_hours, for_rent, tunnel_port, subdomain, credential_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING ", "", Uuid::new_v4(), owner_id, new.name.as_str(), &new.description, hw.cpu_model.as_deref(), hw.cpu_cores, hw.memory_mb, hw.disk_gb, hw.arch.as_deref(), hw.internet_mbps, new.price.as_ref().map(|p| p.minor), new.price.as_ref().map(|p| p.currency.as_str()), new.rental_hours, new.for_rent, port, &subdomain, crypto::token_hash(&credential))
    .fetch_one(&mut *conn)
    .await.and_then(Device::try_from)
    .map_err(|e| map_unique(e, new.name.as_str(), &subdomain))?;
    sqlx::query!(
        "INSERT INTO device_status_history (device_id, status) VALUES ($1, 'new')",
        device.id
    )
    .execute(&mut *conn)
    .await?;
    audit::record(
        conn,
        actor,
        "device.create",
        "device",
        device.id,
        serde_json::json!({"name": device.name, "port": device.tunnel_port, "subdomain": device.subdomain}),
    )
    .await?;
    tx.commit().await?;
    Ok((device, credential))
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Device>, sqlx::Error> {
    select_devices!(
        "SELECT ",
        " FROM devices WHERE id = $1 AND deleted_at IS NULL",
        id
    )
    .fetch_optional(pool)
    .await
    .and_then(crate::infra::db::typed_opt)
}

/// Whose devices a page lists.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    All,
    OwnedBy(Uuid),
    RentedBy(Uuid),
}

/// Keyset page ordered by (created_at, id).
pub async fn page(
    pool: &PgPool,
    scope: Scope,
    status: Option<DeviceStatus>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Device>, sqlx::Error> {
    let (owner, renter) = match scope {
        Scope::All => (None, None),
        Scope::OwnedBy(id) => (Some(id), None),
        Scope::RentedBy(id) => (None, Some(id)),
    };
    select_devices!("SELECT ", " FROM devices d WHERE deleted_at IS NULL \
         AND ($1::uuid IS NULL OR owner_id = $1) \
         AND ($2::uuid IS NULL OR EXISTS (SELECT 1 FROM rentals r WHERE r.device_id = d.id AND r.renter_id = $2 \
              AND r.state IN ('paid', 'provisioning', 'active', 'ending'))) \
         AND ($3::text IS NULL OR status = $3) \
         AND ($4::timestamptz IS NULL OR (created_at, id) > ($4, $5)) \
         ORDER BY created_at, id LIMIT $6", owner, renter, status.map(DeviceStatus::as_str), after.map(|a| a.0), after.map(|a| a.1), limit)
    .fetch_all(pool)
    .await.and_then(crate::infra::db::typed)
}

/// The end of the device's live rental, if it has one. Locks the device row when called in a transaction.
async fn live_rental_end(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Option<DateTime<Utc>>>, sqlx::Error> {
    sqlx::query!(
        "SELECT 1 AS locked FROM devices WHERE id = $1 FOR UPDATE",
        id
    )
    .fetch_optional(&mut *conn)
    .await?;
    let row = sqlx::query!("SELECT ends_at FROM rentals WHERE device_id = $1 AND state IN ('paid', 'provisioning', 'active', 'ending')", id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.ends_at))
}

pub async fn update(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &Actor,
    id: Uuid,
    changes: &DeviceChanges,
) -> Result<Device, DeviceError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
    let hw = changes.hardware.as_ref();
    let name = changes.name.as_ref().map(DeviceName::as_str);
    let device = select_devices!("UPDATE devices SET name = COALESCE($2, name), description = COALESCE($3, description), \
         cpu_model = CASE WHEN $4 THEN $5 ELSE cpu_model END, cpu_cores = CASE WHEN $4 THEN $6 ELSE cpu_cores END, \
         memory_mb = CASE WHEN $4 THEN $7 ELSE memory_mb END, disk_gb = CASE WHEN $4 THEN $8 ELSE disk_gb END, \
         arch = CASE WHEN $4 THEN $9 ELSE arch END, internet_mbps = CASE WHEN $4 THEN $10 ELSE internet_mbps END, \
         price_minor = COALESCE($11, price_minor), currency = COALESCE($12, currency), \
         rental_hours = COALESCE($13, rental_hours), for_rent = COALESCE($14, for_rent), \
         web_publishing = COALESCE($15, web_publishing), updated_at = now() \
         WHERE id = $1 AND deleted_at IS NULL RETURNING ", "", id, name, changes.description.as_deref(), hw.is_some(), hw.and_then(|h| h.cpu_model.clone()), hw.and_then(|h| h.cpu_cores), hw.and_then(|h| h.memory_mb), hw.and_then(|h| h.disk_gb), hw.and_then(|h| h.arch.clone()), hw.and_then(|h| h.internet_mbps), changes.price.as_ref().map(|p| p.minor), changes.price.as_ref().map(|p| p.currency.as_str()), changes.rental_hours, changes.for_rent, changes.web_publishing)
    .fetch_optional(&mut *conn)
    .await.and_then(crate::infra::db::typed_opt)
    .map_err(|e| match violated_constraint(&e) {
        Some("devices_for_rent_needs_price") => DeviceError::ForRentWithoutPrice,
        _ => map_unique(e, name.unwrap_or_default(), ""),
    })?
    .ok_or(DeviceError::NotFound)?;
    let mut changed: Vec<&str> = Vec::new();
    for (set, field) in [
        (changes.name.is_some(), "name"),
        (changes.description.is_some(), "description"),
        (changes.hardware.is_some(), "hardware"),
        (changes.price.is_some(), "price"),
        (changes.rental_hours.is_some(), "rentalHours"),
        (changes.for_rent.is_some(), "forRent"),
        (changes.web_publishing.is_some(), "webPublishing"),
    ] {
        if set {
            changed.push(field);
        }
    }
    audit::record(
        conn,
        actor,
        "device.update",
        "device",
        id,
        serde_json::json!({"fields": changed}),
    )
    .await?;
    tx.commit().await?;
    Ok(device)
}

/// Replaces the credential; the old one stops working at once. Returns the new one (shown once).
pub async fn rotate_credential(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &Actor,
    id: Uuid,
) -> Result<(Device, String), DeviceError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
    let credential = crypto::new_token();
    let device = select_devices!("UPDATE devices SET credential_hash = $2, updated_at = now() WHERE id = $1 AND deleted_at IS NULL \
         RETURNING ", "", id, crypto::token_hash(&credential))
    .fetch_optional(&mut *conn)
    .await.and_then(crate::infra::db::typed_opt)?
    .ok_or(DeviceError::NotFound)?;
    audit::record(
        conn,
        actor,
        "device.rotate_credential",
        "device",
        id,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok((device, credential))
}

/// Deletes a device that is not rented. Its rows stay for the history; its name, port and subdomain are freed.
pub async fn delete(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &Actor,
    id: Uuid,
) -> Result<(), DeviceError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
    if let Some(ends) = live_rental_end(conn, id).await? {
        let until = ends.map_or_else(|| "it ends".to_owned(), |t| t.to_rfc3339());
        return Err(DeviceError::Rented(until));
    }
    // A renter's unpaid order would be left unpayable, its device gone.
    let ordered = sqlx::query_scalar!(
        "SELECT EXISTS (SELECT 1 FROM rentals WHERE device_id = $1 AND state = 'ordered') AS \"exists!\"",
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    if ordered {
        return Err(DeviceError::Ordered);
    }
    let done = sqlx::query!("UPDATE devices SET deleted_at = now(), for_rent = false WHERE id = $1 AND deleted_at IS NULL", id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DeviceError::NotFound);
    }
    sqlx::query!("DELETE FROM device_ssh_keys WHERE device_id = $1", id)
        .execute(&mut *conn)
        .await?;
    audit::record(
        conn,
        actor,
        "device.delete",
        "device",
        id,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests;
