//! Renewals through the storefront: a running rental's renter pays one more period, or cancels it.

use super::Shop;
use crate::billing::storefront::{Confirmer, StorefrontError};
use crate::infra::audit::Actor;
use crate::infra::testing::{self, money};
use crate::rentals::{self, RentalError};
use p2pvps_shared::{RentalState, Role};
use sqlx::PgPool;

#[sqlx::test(migrations = "../sql")]
async fn a_paid_renewal_extends_a_running_rental_by_one_period(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let other = testing::user(&pool, "other", Role::Renter).await;
    let device = testing::device_for_rent(&pool, owner.id, "pi", &money(100, "USD")).await;
    let shop = Shop::new(&pool);
    let placed = shop.place(device.id, renter.id).await.unwrap();
    let rental = placed.rental.id;
    let started = shop
        .confirm(rental, Confirmer::ByHand(owner.id))
        .await
        .unwrap()
        .rental;
    // The owner raised the price meanwhile: a renewal pays the current one.
    let raised = money(150, "USD");
    sqlx::query("UPDATE devices SET price_minor = $2 WHERE id = $1")
        .bind(device.id)
        .bind(raised.minor)
        .execute(&pool)
        .await
        .unwrap();

    let stranger = shop.renew(rental, other.id).await;
    assert!(
        matches!(
            stranger,
            Err(StorefrontError::Rental(RentalError::NotFound))
        ),
        "{stranger:?}"
    );
    let renewal = shop.renew(rental, renter.id).await.unwrap();
    assert_eq!(renewal.payment.purpose, "renewal");
    assert_eq!(renewal.payment.amount_minor, raised.minor);
    let waiting = shop.renew(rental, renter.id).await;
    assert!(
        matches!(waiting, Err(StorefrontError::PaymentWaiting)),
        "{waiting:?}"
    );
    let renewed = shop
        .confirm(rental, Confirmer::ByHand(owner.id))
        .await
        .unwrap()
        .rental;
    assert_eq!(renewed.state, RentalState::Active);
    assert_eq!(
        renewed.ends_at.unwrap() - started.ends_at.unwrap(),
        chrono::TimeDelta::hours(i64::from(device.rental_hours))
    );
    assert_eq!(renewed.login_name, started.login_name, "the same access");
    assert_eq!(shop.ledger_txns(rental).await, 2);
    let paid = crate::billing::ledger::balance(&pool, &format!("renter:{}", renter.id))
        .await
        .unwrap();
    assert_eq!(paid, [("USD".to_owned(), -(100 + raised.minor))]);
}

#[sqlx::test(migrations = "../sql")]
async fn a_cancelled_renewal_leaves_the_rental_as_it_was(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let device = testing::device_for_rent(&pool, owner.id, "pi", &money(100, "USD")).await;
    let shop = Shop::new(&pool);
    let rental = shop.place(device.id, renter.id).await.unwrap().rental.id;
    let started = shop
        .confirm(rental, Confirmer::ByHand(owner.id))
        .await
        .unwrap()
        .rental;
    shop.renew(rental, renter.id).await.unwrap();
    let kept = shop.cancel(rental).await.unwrap();
    assert_eq!(kept.state, RentalState::Active);
    assert_eq!(kept.ends_at, started.ends_at);
    let again = shop
        .confirm(rental, Confirmer::ByHand(owner.id))
        .await
        .unwrap();
    assert_eq!(again.rental.ends_at, started.ends_at, "nothing left to pay");
    assert_eq!(shop.ledger_txns(rental).await, 1);
    let nothing = shop.cancel(rental).await;
    assert!(
        matches!(nothing, Err(StorefrontError::NotOpen(RentalState::Active))),
        "{nothing:?}"
    );
}

#[sqlx::test(migrations = "../sql")]
async fn only_a_running_rental_for_rent_can_be_renewed(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let device = testing::device_for_rent(&pool, owner.id, "pi", &money(100, "USD")).await;
    let shop = Shop::new(&pool);
    let rental = shop.place(device.id, renter.id).await.unwrap().rental.id;
    let unpaid = shop.renew(rental, renter.id).await;
    assert!(
        matches!(unpaid, Err(StorefrontError::NotRenewable)),
        "{unpaid:?}"
    );
    shop.confirm(rental, Confirmer::ByHand(owner.id))
        .await
        .unwrap();
    sqlx::query("UPDATE devices SET for_rent = false WHERE id = $1")
        .bind(device.id)
        .execute(&pool)
        .await
        .unwrap();
    let withdrawn = shop.renew(rental, renter.id).await;
    assert!(
        matches!(
            withdrawn,
            Err(StorefrontError::Rental(RentalError::NotForRent))
        ),
        "{withdrawn:?}"
    );
}

#[sqlx::test(migrations = "../sql")]
async fn a_renewal_waiting_when_the_rental_ends_cannot_be_paid_any_more(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let device = testing::device_for_rent(&pool, owner.id, "pi", &money(100, "USD")).await;
    let shop = Shop::new(&pool);
    let rental = shop.place(device.id, renter.id).await.unwrap().rental.id;
    shop.confirm(rental, Confirmer::ByHand(owner.id))
        .await
        .unwrap();
    shop.renew(rental, renter.id).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    rentals::lifecycle::end(&mut tx, &Actor::system(), rental)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let late = shop.confirm(rental, Confirmer::ByHand(owner.id)).await;
    assert!(
        matches!(late, Err(StorefrontError::NotOpen(RentalState::Ended))),
        "{late:?}"
    );
    assert_eq!(
        shop.ledger_txns(rental).await,
        1,
        "the renewal was never paid"
    );
}
