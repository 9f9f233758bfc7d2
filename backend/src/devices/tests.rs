//! Registering, changing and deleting devices against a real database: the uniqueness of names,
//! subdomains and ports, the price rule, and no deletion while rented.

use super::{DeviceChanges, DeviceError, NewDevice, create, delete, get, update};
use crate::infra::audit::Actor;
use crate::infra::crypto::SecretBox;
use crate::infra::testing::{self, PORTS, email, money, name};
use p2pvps_shared::{DeviceStatus, Role, SubdomainLabel};
use sqlx::PgPool;
use uuid::Uuid;

fn with_subdomain(device_name: &str, label: &str) -> NewDevice {
    let mut new = NewDevice::named(name(device_name));
    new.subdomain = Some(SubdomainLabel::parse(label).unwrap());
    new
}

async fn delete_now(pool: &PgPool, id: Uuid) -> Result<(), DeviceError> {
    let mut tx = pool.begin().await?;
    delete(&mut tx, &Actor::system(), id).await?;
    tx.commit().await?;
    Ok(())
}

#[sqlx::test(migrations = "../sql")]
async fn a_new_device_gets_the_lowest_free_port_a_subdomain_and_a_credential(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let (first, credential) = testing::device(&pool, owner.id, "first").await;
    let (second, other_credential) = testing::device(&pool, owner.id, "second").await;
    assert_eq!(first.tunnel_port, *PORTS.start());
    assert_eq!(second.tunnel_port, *PORTS.start() + 1);
    assert_eq!(first.status, DeviceStatus::New);
    assert!(!first.for_rent);
    for device in [&first, &second] {
        let label = &device.subdomain;
        assert_eq!(label.len(), 10);
        assert!(label.starts_with(|c: char| c.is_ascii_lowercase()));
        assert!(
            label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{label}"
        );
    }
    assert_ne!(first.subdomain, second.subdomain);
    assert_ne!(credential, other_credential);
    assert_ne!(
        first.offer_id, first.id,
        "the storefront never shows the device id"
    );
    let history: Vec<String> =
        sqlx::query_scalar("SELECT status FROM device_status_history WHERE device_id = $1")
            .bind(first.id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(history, ["new"]);
}

#[sqlx::test(migrations = "../sql")]
async fn a_name_is_unique_per_owner_only(pool: PgPool) {
    let alice = testing::user(&pool, "alice", Role::Owner).await;
    let bob = testing::user(&pool, "bob", Role::Owner).await;
    testing::device(&pool, alice.id, "pi").await;
    let again = testing::register(&pool, alice.id, &NewDevice::named(name("pi"))).await;
    assert!(
        matches!(&again, Err(DeviceError::NameTaken(n)) if n == "pi"),
        "{again:?}"
    );
    let (bobs, _) = testing::device(&pool, bob.id, "pi").await;
    assert_eq!(bobs.owner_id, bob.id);

    let (other, _) = testing::device(&pool, alice.id, "other").await;
    let mut tx = pool.begin().await.unwrap();
    let renamed = update(
        &mut tx,
        &Actor::system(),
        other.id,
        &DeviceChanges {
            name: Some(name("pi")),
            ..DeviceChanges::default()
        },
    )
    .await;
    assert!(
        matches!(&renamed, Err(DeviceError::NameTaken(n)) if n == "pi"),
        "{renamed:?}"
    );
}

#[sqlx::test(migrations = "../sql")]
async fn a_chosen_subdomain_is_unique_among_all_owners(pool: PgPool) {
    let alice = testing::user(&pool, "alice", Role::Owner).await;
    let bob = testing::user(&pool, "bob", Role::Owner).await;
    let (mine, _) = testing::register(&pool, alice.id, &with_subdomain("pi", "my-site"))
        .await
        .unwrap();
    assert_eq!(mine.subdomain, "my-site");
    for owner in [alice.id, bob.id] {
        let taken = testing::register(&pool, owner, &with_subdomain("other", "My-Site")).await;
        assert!(
            matches!(&taken, Err(DeviceError::SubdomainTaken(s)) if s == "my-site"),
            "{taken:?}"
        );
    }
}

#[sqlx::test(migrations = "../sql")]
async fn a_device_offered_for_rent_needs_a_price(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let mut new = NewDevice::named(name("pi"));
    new.for_rent = true;
    let unpriced = testing::register(&pool, owner.id, &new).await;
    assert!(
        matches!(unpriced, Err(DeviceError::ForRentWithoutPrice)),
        "{unpriced:?}"
    );
    let (device, _) = testing::device(&pool, owner.id, "pi").await;
    let offer = DeviceChanges {
        for_rent: Some(true),
        ..DeviceChanges::default()
    };
    let mut tx = pool.begin().await.unwrap();
    let offered = update(&mut tx, &Actor::system(), device.id, &offer).await;
    assert!(
        matches!(offered, Err(DeviceError::ForRentWithoutPrice)),
        "{offered:?}"
    );
    drop(tx);
    let priced = DeviceChanges {
        price: Some(money(250, "USD")),
        ..offer
    };
    let mut tx = pool.begin().await.unwrap();
    let offered = update(&mut tx, &Actor::system(), device.id, &priced)
        .await
        .unwrap();
    assert!(offered.for_rent);
    assert_eq!(offered.price, Some(money(250, "USD")));
}

#[sqlx::test(migrations = "../sql")]
async fn no_device_is_registered_when_every_port_is_taken(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let ports = 30_000..=30_001;
    let mut tx = pool.begin().await.unwrap();
    for device_name in ["a", "b"] {
        create(
            &mut tx,
            &Actor::system(),
            owner.id,
            &NewDevice::named(name(device_name)),
            &ports,
        )
        .await
        .unwrap();
    }
    let full = create(
        &mut tx,
        &Actor::system(),
        owner.id,
        &NewDevice::named(name("c")),
        &ports,
    )
    .await;
    assert!(
        matches!(full, Err(DeviceError::NoFreePort(30_000, 30_001))),
        "{full:?}"
    );
}

#[sqlx::test(migrations = "../sql")]
async fn a_deleted_device_frees_its_name_subdomain_and_port(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let (gone, _) = testing::register(&pool, owner.id, &with_subdomain("pi", "my-site"))
        .await
        .unwrap();
    delete_now(&pool, gone.id).await.unwrap();
    assert!(get(&pool, gone.id).await.unwrap().is_none());
    let twice = delete_now(&pool, gone.id).await;
    assert!(matches!(twice, Err(DeviceError::NotFound)), "{twice:?}");
    let (again, _) = testing::register(&pool, owner.id, &with_subdomain("pi", "my-site"))
        .await
        .unwrap();
    assert_ne!(again.id, gone.id);
    assert_eq!(again.tunnel_port, gone.tunnel_port);
    let unknown = delete_now(&pool, Uuid::new_v4()).await;
    assert!(matches!(unknown, Err(DeviceError::NotFound)), "{unknown:?}");
}

#[sqlx::test(migrations = "../sql")]
async fn a_rented_device_is_not_deleted_until_its_rental_ends(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let (device, _) = testing::device(&pool, owner.id, "pi").await;
    let mut tx = pool.begin().await.unwrap();
    let (rental, _) = crate::rentals::lifecycle::grant(
        &mut tx,
        &Actor::system(),
        &SecretBox::generate(),
        device.id,
        &email(&renter.email),
        2,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let refused = delete_now(&pool, device.id).await;
    let until = rental.ends_at.unwrap().to_rfc3339();
    assert!(
        matches!(&refused, Err(DeviceError::Rented(t)) if *t == until),
        "{refused:?}"
    );
    assert!(get(&pool, device.id).await.unwrap().is_some());
    let mut tx = pool.begin().await.unwrap();
    crate::rentals::lifecycle::end(&mut tx, &Actor::system(), rental.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    delete_now(&pool, device.id).await.unwrap();
    assert!(get(&pool, device.id).await.unwrap().is_none());
}
