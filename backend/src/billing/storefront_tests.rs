//! The storefront against a real database: which orders are refused, what confirming writes (once), and
//! what cancelling, expiring and renewing do.

use super::{
    Confirmer, OrderLimits, Placed, StorefrontError, cancel, confirm, expire, place, renew,
};
use crate::billing::payments::{
    self, Opened, PaymentError, PaymentProvider, PaymentRequest, Providers,
};
use crate::infra::audit::Actor;
use crate::infra::crypto::SecretBox;
use crate::infra::testing::{self, money};
use crate::rentals::{self, RentalError, lifecycle::Activated};
use p2pvps_shared::{RentalState, Role};
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;

const FEE_BPS: u32 = 1_000;

/// A storefront over one test database, each call its own committed transaction.
struct Shop {
    pool: PgPool,
    secrets: SecretBox,
    providers: Providers,
    limits: OrderLimits,
}

impl Shop {
    fn new(pool: &PgPool) -> Self {
        Self::with(pool, Providers::default())
    }

    fn with(pool: &PgPool, providers: Providers) -> Self {
        Self {
            pool: pool.clone(),
            secrets: SecretBox::generate(),
            providers,
            limits: OrderLimits::default(),
        }
    }

    async fn place(&self, device: Uuid, renter: Uuid) -> Result<Placed, StorefrontError> {
        let mut tx = self.pool.begin().await?;
        let placed = place(
            &mut tx,
            &Actor::system(),
            &self.providers,
            &self.limits,
            device,
            renter,
        )
        .await?;
        tx.commit().await?;
        Ok(placed)
    }

    async fn confirm(&self, rental: Uuid, by: Confirmer) -> Result<Activated, StorefrontError> {
        let mut tx = self.pool.begin().await?;
        let activated = confirm(
            &mut tx,
            &Actor::system(),
            &self.secrets,
            &self.providers,
            rental,
            None,
            by,
            FEE_BPS,
        )
        .await?;
        tx.commit().await?;
        Ok(activated)
    }

    async fn cancel(&self, rental: Uuid) -> Result<rentals::Rental, StorefrontError> {
        let mut tx = self.pool.begin().await?;
        let cancelled = cancel(&mut tx, &Actor::system(), rental, "test").await?;
        tx.commit().await?;
        Ok(cancelled)
    }

    async fn renew(&self, rental: Uuid, renter: Uuid) -> Result<Placed, StorefrontError> {
        let mut tx = self.pool.begin().await?;
        let placed = renew(&mut tx, &Actor::system(), &self.providers, rental, renter).await?;
        tx.commit().await?;
        Ok(placed)
    }

    async fn count(&self, sql: &'static str, rental: Uuid) -> i64 {
        sqlx::query_scalar(sql)
            .bind(rental)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn ledger_txns(&self, rental: Uuid) -> i64 {
        self.count(
            "SELECT count(DISTINCT txn_id) FROM ledger_entries WHERE rental_id = $1",
            rental,
        )
        .await
    }

    async fn offered(&self) -> Vec<Uuid> {
        crate::devices::renting::offered(&self.pool, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect()
    }
}

fn refused_with(result: Result<Placed, StorefrontError>) -> RentalError {
    match result {
        Err(StorefrontError::Rental(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[sqlx::test(migrations = "../sql")]
async fn an_order_waits_for_payment_at_the_devices_price_and_reserves_it(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let price = money(1_500, "BTC");
    let device = testing::device_for_rent(&pool, owner.id, "pi", &price).await;
    let shop = Shop::new(&pool);
    assert_eq!(shop.offered().await, [device.id]);
    let placed = shop.place(device.id, renter.id).await.unwrap();
    assert_eq!(placed.rental.state, RentalState::Ordered);
    assert_eq!(placed.rental.marketplace, "direct");
    assert_eq!(placed.rental.renter_id, Some(renter.id));
    assert_eq!(placed.rental.price, price);
    assert_eq!(placed.payment.state, "pending");
    assert_eq!(placed.payment.purpose, "order");
    assert_eq!(placed.payment.provider, "manual");
    assert_eq!(
        (
            placed.payment.amount_minor,
            placed.payment.currency.as_str()
        ),
        (price.minor, "BTC"),
        "paid in the price's own currency"
    );
    assert!(placed.payment.instructions.contains("0.00001500 BTC"));
    assert!(shop.offered().await.is_empty(), "reserved while unpaid");
    assert_eq!(
        shop.ledger_txns(placed.rental.id).await,
        0,
        "nothing paid yet"
    );
}

#[sqlx::test(migrations = "../sql")]
async fn an_owner_cannot_order_their_own_device(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let device = testing::device_for_rent(&pool, owner.id, "pi", &money(100, "USD")).await;
    let refused = refused_with(Shop::new(&pool).place(device.id, owner.id).await);
    assert!(matches!(refused, RentalError::OwnDevice), "{refused:?}");
}

#[sqlx::test(migrations = "../sql")]
async fn a_device_not_for_rent_or_unknown_cannot_be_ordered(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let (device, _) = testing::device(&pool, owner.id, "pi").await;
    testing::online(&pool, device.id).await;
    let shop = Shop::new(&pool);
    let refused = refused_with(shop.place(device.id, renter.id).await);
    assert!(matches!(refused, RentalError::NotForRent), "{refused:?}");
    let refused = refused_with(shop.place(Uuid::new_v4(), renter.id).await);
    assert!(matches!(refused, RentalError::NoDevice), "{refused:?}");
}

#[sqlx::test(migrations = "../sql")]
async fn an_offline_device_cannot_be_ordered(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let mut new = crate::devices::NewDevice::named(testing::name("never-connected"));
    new.price = Some(money(100, "USD"));
    new.for_rent = true;
    let (never, _) = testing::register(&pool, owner.id, &new).await.unwrap();
    let gone = testing::device_for_rent(&pool, owner.id, "gone", &money(100, "USD")).await;
    crate::devices::status::record_status(&pool, gone.id, p2pvps_shared::DeviceStatus::Offline)
        .await
        .unwrap();
    let shop = Shop::new(&pool);
    for device in [never.id, gone.id] {
        let refused = refused_with(shop.place(device, renter.id).await);
        assert!(matches!(refused, RentalError::Offline), "{refused:?}");
    }
}

#[sqlx::test(migrations = "../sql")]
async fn an_unpaid_order_keeps_others_from_ordering_the_device_until_cancelled(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let first = testing::user(&pool, "first", Role::Renter).await;
    let second = testing::user(&pool, "second", Role::Renter).await;
    let device = testing::device_for_rent(&pool, owner.id, "pi", &money(100, "USD")).await;
    let shop = Shop::new(&pool);
    let placed = shop.place(device.id, first.id).await.unwrap();
    let refused = refused_with(shop.place(device.id, second.id).await);
    assert!(matches!(refused, RentalError::Reserved), "{refused:?}");

    let cancelled = shop.cancel(placed.rental.id).await.unwrap();
    assert_eq!(cancelled.state, RentalState::Cancelled);
    let payment = payments::for_rental(&pool, placed.rental.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payment.state, "failed", "its payment is given up");
    assert_eq!(
        shop.offered().await,
        [device.id],
        "the device is free again"
    );
    shop.place(device.id, second.id).await.unwrap();

    let twice = shop.cancel(placed.rental.id).await;
    assert!(
        matches!(twice, Err(StorefrontError::NotOpen(RentalState::Cancelled))),
        "{twice:?}"
    );
    let paid_late = shop
        .confirm(placed.rental.id, Confirmer::ByHand(owner.id))
        .await;
    assert!(
        matches!(
            paid_late,
            Err(StorefrontError::NotOpen(RentalState::Cancelled))
        ),
        "{paid_late:?}"
    );
}

#[sqlx::test(migrations = "../sql")]
async fn a_rented_device_cannot_be_ordered(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let first = testing::user(&pool, "first", Role::Renter).await;
    let second = testing::user(&pool, "second", Role::Renter).await;
    let device = testing::device_for_rent(&pool, owner.id, "pi", &money(100, "USD")).await;
    let shop = Shop::new(&pool);
    let placed = shop.place(device.id, first.id).await.unwrap();
    shop.confirm(placed.rental.id, Confirmer::ByHand(owner.id))
        .await
        .unwrap();
    let refused = refused_with(shop.place(device.id, second.id).await);
    assert!(matches!(refused, RentalError::AlreadyRented), "{refused:?}");
}

#[sqlx::test(migrations = "../sql")]
async fn a_renter_holds_at_most_the_limit_of_unpaid_orders(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let mut shop = Shop::new(&pool);
    shop.limits.max_unpaid = 2;
    let mut devices = Vec::new();
    for name in ["a", "b", "c"] {
        devices.push(testing::device_for_rent(&pool, owner.id, name, &money(100, "USD")).await);
    }
    let first = shop.place(devices[0].id, renter.id).await.unwrap();
    shop.place(devices[1].id, renter.id).await.unwrap();
    let refused = shop.place(devices[2].id, renter.id).await;
    assert!(
        matches!(
            refused,
            Err(StorefrontError::TooManyUnpaid { open: 2, max: 2 })
        ),
        "{refused:?}"
    );
    // A paid order no longer counts.
    shop.confirm(first.rental.id, Confirmer::ByHand(owner.id))
        .await
        .unwrap();
    shop.place(devices[2].id, renter.id).await.unwrap();
}

#[sqlx::test(migrations = "../sql")]
async fn confirming_twice_starts_the_rental_and_records_the_payment_once(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let price = money(1_999, "USD");
    let device = testing::device_for_rent(&pool, owner.id, "pi", &price).await;
    let shop = Shop::new(&pool);
    let placed = shop.place(device.id, renter.id).await.unwrap();
    let rental = placed.rental.id;
    let first = shop
        .confirm(rental, Confirmer::ByHand(owner.id))
        .await
        .unwrap();
    assert_eq!(first.rental.state, RentalState::Active);
    assert!(first.rental.is_running());
    assert_eq!(first.claim_token, None, "the renter has an account");
    let second = shop
        .confirm(rental, Confirmer::ByHand(owner.id))
        .await
        .unwrap();
    assert_eq!(second.rental.login_name, first.rental.login_name);
    assert_eq!(second.rental.ends_at, first.rental.ends_at, "not extended");
    assert_eq!(shop.ledger_txns(rental).await, 1);
    let (fee, earning) = p2pvps_shared::split_fee(price.minor, FEE_BPS);
    let owner_earned = crate::billing::ledger::owner_earnings(&pool, owner.id)
        .await
        .unwrap();
    assert_eq!(owner_earned, [("USD".to_owned(), earning)]);
    let platform = crate::billing::ledger::balance(&pool, "platform")
        .await
        .unwrap();
    assert_eq!(platform, [("USD".to_owned(), fee)]);
    let confirmed = shop
        .count(
            "SELECT count(*) FROM payments WHERE rental_id = $1 AND state = 'confirmed'",
            rental,
        )
        .await;
    assert_eq!(confirmed, 1);
}

/// A provider that confirms its own payments (a webhook), never by hand.
struct Webhooked;

#[async_trait::async_trait]
impl PaymentProvider for Webhooked {
    fn name(&self) -> &'static str {
        "hooked"
    }

    async fn open(&self, request: &PaymentRequest<'_>) -> Result<Opened, PaymentError> {
        Ok(Opened {
            external_ref: format!("inv-{}", request.payment),
            instructions: String::new(),
            checkout_url: Some("https://pay.example/inv".to_owned()),
        })
    }
}

#[sqlx::test(migrations = "../sql")]
async fn a_provider_confirms_only_the_amount_asked_and_nobody_confirms_it_by_hand(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let price = money(700, "EUR");
    let device = testing::device_for_rent(&pool, owner.id, "pi", &price).await;
    let shop = Shop::with(&pool, Providers::new(Arc::new(Webhooked)));
    let placed = shop.place(device.id, renter.id).await.unwrap();
    assert_eq!(placed.payment.provider, "hooked");
    let rental = placed.rental.id;
    let by_hand = shop.confirm(rental, Confirmer::ByHand(owner.id)).await;
    assert!(
        matches!(&by_hand, Err(StorefrontError::NotByHand(p)) if p == "hooked"),
        "{by_hand:?}"
    );
    for paid in [money(699, "EUR"), money(701, "EUR"), money(700, "USD")] {
        let wrong = shop
            .confirm(rental, Confirmer::Provider(paid.clone()))
            .await;
        assert!(
            matches!(&wrong, Err(StorefrontError::WrongAmount { paid: p, asked }) if *p == paid && *asked == price),
            "{paid}: {wrong:?}"
        );
    }
    assert_eq!(shop.ledger_txns(rental).await, 0);
    let paid = shop
        .confirm(rental, Confirmer::Provider(price.clone()))
        .await
        .unwrap();
    assert_eq!(paid.rental.state, RentalState::Active);
    assert_eq!(shop.ledger_txns(rental).await, 1);
}

#[sqlx::test(migrations = "../sql")]
async fn orders_left_unpaid_past_the_hold_expire(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let old = testing::device_for_rent(&pool, owner.id, "old", &money(100, "USD")).await;
    let fresh = testing::device_for_rent(&pool, owner.id, "fresh", &money(100, "USD")).await;
    let shop = Shop::new(&pool);
    let old = shop.place(old.id, renter.id).await.unwrap();
    let fresh = shop.place(fresh.id, renter.id).await.unwrap();
    let hold = std::time::Duration::from_secs(30 * 60);
    sqlx::query("UPDATE rentals SET created_at = now() - interval '31 minutes' WHERE id = $1")
        .bind(old.rental.id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(expire(&pool, hold).await.unwrap(), 1);
    let state = |id| {
        let pool = pool.clone();
        async move { rentals::get(&pool, id).await.unwrap().unwrap().state }
    };
    assert_eq!(state(old.rental.id).await, RentalState::Cancelled);
    assert_eq!(state(fresh.rental.id).await, RentalState::Ordered);
    assert_eq!(expire(&pool, hold).await.unwrap(), 0);
}

#[path = "renewal_tests.rs"]
mod renewals;

#[sqlx::test(migrations = "../sql")]
async fn an_unpaid_order_keeps_the_device_from_being_deleted_or_granted_to_another(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let buyer = testing::user(&pool, "buyer", Role::Renter).await;
    let other = testing::user(&pool, "other", Role::Renter).await;
    let device = testing::device_for_rent(&pool, owner.id, "pi", &money(100, "USD")).await;
    let shop = Shop::new(&pool);
    let placed = shop.place(device.id, buyer.id).await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let deleted = crate::devices::delete(&mut tx, &Actor::system(), device.id).await;
    assert!(
        matches!(deleted, Err(crate::devices::DeviceError::Ordered)),
        "{deleted:?}"
    );
    drop(tx);
    let mut tx = pool.begin().await.unwrap();
    let granted = rentals::lifecycle::grant(
        &mut tx,
        &Actor::system(),
        &shop.secrets,
        device.id,
        &testing::email(&other.email),
        2,
    )
    .await;
    assert!(matches!(granted, Err(RentalError::Reserved)), "{granted:?}");
    drop(tx);

    // Once the order is cancelled the device may go.
    shop.cancel(placed.rental.id).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    crate::devices::delete(&mut tx, &Actor::system(), device.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}
