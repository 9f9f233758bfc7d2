//! What the domains' database tests start from: accounts and devices made through the domain functions,
//! so the rows a test works on are the ones the application writes.

use crate::accounts::users::{self, User};
use crate::devices::{self, Device, DeviceError, NewDevice};
use crate::infra::audit::Actor;
use p2pvps_shared::{DeviceName, DeviceStatus, Email, Money, Password, Role};
use sqlx::PgPool;
use std::ops::RangeInclusive;
use uuid::Uuid;

/// The tunnel ports test devices are given.
pub const PORTS: RangeInclusive<u16> = 20_000..=20_099;

pub fn email(text: &str) -> Email {
    Email::parse(text).expect("a valid e-mail")
}

pub fn name(text: &str) -> DeviceName {
    DeviceName::parse(text).expect("a valid device name")
}

pub fn money(minor: i64, currency: &str) -> Money {
    Money::price(minor, currency).expect("a valid price")
}

/// A user `<local>@example.com` with `role`, signed up through [`users::create`].
pub async fn user(pool: &PgPool, local: &str, role: Role) -> User {
    let mut conn = pool.acquire().await.expect("a connection");
    let password = Password::parse("correct horse battery").expect("a valid password");
    users::create(
        &mut conn,
        None,
        &email(&format!("{local}@example.com")),
        &password,
        role,
        false,
    )
    .await
    .expect("the user is created")
}

/// Registers `new` for `owner` in its own transaction (committed when it succeeds).
pub async fn register(
    pool: &PgPool,
    owner: Uuid,
    new: &NewDevice,
) -> Result<(Device, String), DeviceError> {
    let mut tx = pool.begin().await?;
    let made = devices::create(&mut tx, &Actor::system(), owner, new, &PORTS).await?;
    tx.commit().await?;
    Ok(made)
}

/// A device of `owner`, not for rent and never connected, with its credential.
pub async fn device(pool: &PgPool, owner: Uuid, device_name: &str) -> (Device, String) {
    register(pool, owner, &NewDevice::named(name(device_name)))
        .await
        .expect("the device is registered")
}

/// A device the storefront sells: offered at `price` per period of `NewDevice::named`'s default length,
/// and online (as after its tunnel came up).
pub async fn device_for_rent(
    pool: &PgPool,
    owner: Uuid,
    device_name: &str,
    price: &Money,
) -> Device {
    let mut new = NewDevice::named(name(device_name));
    new.price = Some(price.clone());
    new.for_rent = true;
    let (device, _) = register(pool, owner, &new)
        .await
        .expect("the device is registered");
    online(pool, device.id).await
}

/// Records `device` online, as its tunnel coming up does, and returns it as it now is.
pub async fn online(pool: &PgPool, device: Uuid) -> Device {
    assert!(
        devices::status::record_status(pool, device, DeviceStatus::Online)
            .await
            .expect("the status is recorded")
    );
    devices::get(pool, device)
        .await
        .expect("the device is read")
        .expect("the device exists")
}

/// A rental granted by hand for an hour (no payment, no ledger entries) of a new device of a new owner
/// (`owner@example.com`) to a new renter (`renter@example.com`): a rental for money to be booked on.
pub async fn granted(pool: &PgPool) -> (crate::rentals::Rental, User, User) {
    let owner = user(pool, "owner", Role::Owner).await;
    let renter = user(pool, "renter", Role::Renter).await;
    let (device, _) = device(pool, owner.id, "granted").await;
    let mut tx = pool.begin().await.expect("a transaction");
    let (rental, _) = crate::rentals::lifecycle::grant(
        &mut tx,
        &Actor::system(),
        &crate::infra::crypto::SecretBox::generate(),
        device.id,
        &email(&renter.email),
        1,
    )
    .await
    .expect("the rental is granted");
    tx.commit().await.expect("committed");
    (rental, owner, renter)
}
