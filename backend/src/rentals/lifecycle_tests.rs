//! The lifecycle against a real database: grant's refusals, end, expiry, the offline-time refund, and a
//! marketplace buyer's claim.

use super::{activate, claim, end, end_expired, grant};
use crate::billing::storefront::{self, Confirmer, OrderLimits};
use crate::infra::audit::Actor;
use crate::infra::crypto::SecretBox;
use crate::infra::testing::{self, email, money};
use crate::rentals::{self, Rental, RentalError};
use p2pvps_shared::{RentalState, Role, split_fee};
use sqlx::PgPool;
use uuid::Uuid;

async fn grant_now(
    pool: &PgPool,
    secrets: &SecretBox,
    device: Uuid,
    renter: &str,
    hours: i32,
) -> Result<(Rental, String), RentalError> {
    let mut tx = pool.begin().await?;
    let granted = grant(
        &mut tx,
        &Actor::system(),
        secrets,
        device,
        &email(renter),
        hours,
    )
    .await?;
    tx.commit().await?;
    Ok(granted)
}

async fn end_now(pool: &PgPool, id: Uuid) -> Result<Rental, RentalError> {
    let mut tx = pool.begin().await?;
    let ended = end(&mut tx, &Actor::system(), id).await?;
    tx.commit().await?;
    Ok(ended)
}

#[sqlx::test(migrations = "../sql")]
async fn grant_starts_an_active_rental_for_the_hours_asked(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    testing::user(&pool, "renter", Role::Renter).await;
    let price = money(250, "EUR");
    let device = testing::device_for_rent(&pool, owner.id, "pi", &price).await;
    let secrets = SecretBox::generate();
    let (rental, secret) = grant_now(&pool, &secrets, device.id, "renter@example.com", 5)
        .await
        .unwrap();
    assert_eq!(rental.state, RentalState::Active);
    assert_eq!(rental.marketplace, "admin");
    assert_eq!(rental.price, price, "at the device's price");
    let (starts, ends) = (rental.starts_at.unwrap(), rental.ends_at.unwrap());
    assert_eq!(ends - starts, chrono::TimeDelta::hours(5));
    assert!(rental.is_running());
    assert_eq!(rental.login_secret(&secrets).unwrap(), Some(secret));
}

#[sqlx::test(migrations = "../sql")]
async fn grant_refuses_hours_outside_one_to_a_year(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    testing::user(&pool, "renter", Role::Renter).await;
    let (device, _) = testing::device(&pool, owner.id, "pi").await;
    let secrets = SecretBox::generate();
    for hours in [i32::MIN, -1, 0, 8761] {
        let refused = grant_now(&pool, &secrets, device.id, "renter@example.com", hours).await;
        assert!(
            matches!(refused, Err(RentalError::BadHours)),
            "{hours}: {refused:?}"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM rentals")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    let (year, _) = grant_now(&pool, &secrets, device.id, "renter@example.com", 8760)
        .await
        .unwrap();
    assert_eq!(
        year.ends_at.unwrap() - year.starts_at.unwrap(),
        chrono::TimeDelta::hours(8760)
    );
}

#[sqlx::test(migrations = "../sql")]
async fn grant_refuses_a_device_that_is_not_there(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    testing::user(&pool, "renter", Role::Renter).await;
    let secrets = SecretBox::generate();
    let unknown = grant_now(&pool, &secrets, Uuid::new_v4(), "renter@example.com", 1).await;
    assert!(matches!(unknown, Err(RentalError::NoDevice)), "{unknown:?}");
    let (device, _) = testing::device(&pool, owner.id, "pi").await;
    let mut tx = pool.begin().await.unwrap();
    crate::devices::delete(&mut tx, &Actor::system(), device.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let deleted = grant_now(&pool, &secrets, device.id, "renter@example.com", 1).await;
    assert!(matches!(deleted, Err(RentalError::NoDevice)), "{deleted:?}");
}

#[sqlx::test(migrations = "../sql")]
async fn grant_refuses_an_unknown_or_disabled_renter(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let (device, _) = testing::device(&pool, owner.id, "pi").await;
    let secrets = SecretBox::generate();
    let unknown = grant_now(&pool, &secrets, device.id, "nobody@example.com", 1).await;
    assert!(matches!(unknown, Err(RentalError::NoRenter)), "{unknown:?}");
    sqlx::query("UPDATE users SET disabled = true WHERE id = $1")
        .bind(renter.id)
        .execute(&pool)
        .await
        .unwrap();
    let disabled = grant_now(&pool, &secrets, device.id, "renter@example.com", 1).await;
    assert!(
        matches!(disabled, Err(RentalError::NoRenter)),
        "{disabled:?}"
    );
}

#[sqlx::test(migrations = "../sql")]
async fn a_rented_device_is_not_granted_again_until_its_rental_ends(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    testing::user(&pool, "first", Role::Renter).await;
    testing::user(&pool, "second", Role::Renter).await;
    let (device, _) = testing::device(&pool, owner.id, "pi").await;
    let secrets = SecretBox::generate();
    let (first, _) = grant_now(&pool, &secrets, device.id, "first@example.com", 2)
        .await
        .unwrap();
    let again = grant_now(&pool, &secrets, device.id, "second@example.com", 2).await;
    assert!(
        matches!(again, Err(RentalError::AlreadyRented)),
        "{again:?}"
    );
    end_now(&pool, first.id).await.unwrap();
    let (second, _) = grant_now(&pool, &secrets, device.id, "second@example.com", 2)
        .await
        .unwrap();
    assert_ne!(second.login_name, first.login_name, "a login of its own");
}

#[sqlx::test(migrations = "../sql")]
async fn a_device_whose_end_hook_has_not_run_is_not_let_again(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    testing::user(&pool, "renter", Role::Renter).await;
    let (device, _) = testing::device(&pool, owner.id, "pi").await;
    sqlx::query("UPDATE devices SET provisioner = true WHERE id = $1")
        .bind(device.id)
        .execute(&pool)
        .await
        .unwrap();
    let secrets = SecretBox::generate();
    let (rental, _) = grant_now(&pool, &secrets, device.id, "renter@example.com", 1)
        .await
        .unwrap();
    assert!(!rental.access_ready(), "the start hook is pending");
    let ended = end_now(&pool, rental.id).await.unwrap();
    assert_eq!(ended.end_hook, Some(p2pvps_shared::HookStatus::Pending));
    let refused = grant_now(&pool, &secrets, device.id, "renter@example.com", 1).await;
    assert!(
        matches!(refused, Err(RentalError::CleaningUp)),
        "{refused:?}"
    );
}

#[sqlx::test(migrations = "../sql")]
async fn end_moves_a_running_rental_to_ended_once(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    testing::user(&pool, "renter", Role::Renter).await;
    let (device, _) = testing::device(&pool, owner.id, "pi").await;
    let secrets = SecretBox::generate();
    let (rental, _) = grant_now(&pool, &secrets, device.id, "renter@example.com", 3)
        .await
        .unwrap();
    let ended = end_now(&pool, rental.id).await.unwrap();
    assert_eq!(ended.state, RentalState::Ended);
    assert!(
        ended.ends_at.unwrap() < rental.ends_at.unwrap(),
        "its time is cut short"
    );
    assert!(!ended.is_running());
    let stored = rentals::get(&pool, rental.id).await.unwrap().unwrap();
    assert_eq!(stored.state, RentalState::Ended);
    let twice = end_now(&pool, rental.id).await;
    assert!(matches!(twice, Err(RentalError::NotActive)), "{twice:?}");
    let unknown = end_now(&pool, Uuid::new_v4()).await;
    assert!(matches!(unknown, Err(RentalError::NotFound)), "{unknown:?}");
}

#[sqlx::test(migrations = "../sql")]
async fn only_rentals_whose_time_is_up_expire(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    testing::user(&pool, "renter", Role::Renter).await;
    let (over, _) = testing::device(&pool, owner.id, "over").await;
    let (running, _) = testing::device(&pool, owner.id, "running").await;
    let secrets = SecretBox::generate();
    let (over, _) = grant_now(&pool, &secrets, over.id, "renter@example.com", 1)
        .await
        .unwrap();
    let (running, _) = grant_now(&pool, &secrets, running.id, "renter@example.com", 1)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE rentals SET starts_at = now() - interval '2 hours', ends_at = now() - interval '1 hour' \
         WHERE id = $1",
    )
    .bind(over.id)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(end_expired(&pool).await.unwrap(), 1);
    let state = |id| {
        let pool = pool.clone();
        async move { rentals::get(&pool, id).await.unwrap().unwrap().state }
    };
    assert_eq!(state(over.id).await, RentalState::Ended);
    assert_eq!(state(running.id).await, RentalState::Active);
    assert_eq!(end_expired(&pool).await.unwrap(), 0, "nothing left to end");
}

#[sqlx::test(migrations = "../sql")]
async fn offline_time_beyond_the_grace_is_refunded_pro_rata_at_the_end(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let price = money(1_000, "USD");
    let device = testing::device_for_rent(&pool, owner.id, "pi", &price).await;
    let (secrets, providers, fee_bps) = (SecretBox::generate(), Default::default(), 1_000);
    let mut tx = pool.begin().await.unwrap();
    let placed = storefront::place(
        &mut tx,
        &Actor::system(),
        &providers,
        &OrderLimits::default(),
        device.id,
        renter.id,
    )
    .await
    .unwrap();
    let rental = placed.rental.id;
    storefront::confirm(
        &mut tx,
        &Actor::system(),
        &secrets,
        &providers,
        rental,
        None,
        Confirmer::ByHand(owner.id),
        fee_bps,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // Two hours into the rental, of which the device spent one offline; then it ends (one transaction,
    // so `now()` is the same instant throughout).
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE rentals SET starts_at = now() - interval '2 hours' WHERE id = $1")
        .bind(rental)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("DELETE FROM device_status_history WHERE device_id = $1")
        .bind(device.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO device_status_history (device_id, status, at) VALUES \
         ($1, 'online', now() - interval '3 hours'), ($1, 'offline', now() - interval '90 minutes'), \
         ($1, 'online', now() - interval '30 minutes')",
    )
    .bind(device.id)
    .execute(&mut *tx)
    .await
    .unwrap();
    end(&mut tx, &Actor::system(), rental).await.unwrap();
    tx.commit()
        .await
        .expect("the refund's ledger entries balance");

    let offline = chrono::TimeDelta::hours(1);
    let beyond = (offline - super::OFFLINE_GRACE).num_seconds();
    let refund = price.minor * beyond / chrono::TimeDelta::hours(2).num_seconds();
    assert!(refund > 0);
    let (fee, earning) = split_fee(price.minor, fee_bps);
    let fee_back = fee * beyond / chrono::TimeDelta::hours(2).num_seconds();
    let balance = |account: String| {
        let pool = pool.clone();
        async move {
            crate::billing::ledger::balance(&pool, &account)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        balance(format!("renter:{}", renter.id)).await,
        [("USD".to_owned(), -price.minor + refund)]
    );
    assert_eq!(
        balance("platform".to_owned()).await,
        [("USD".to_owned(), fee - fee_back)]
    );
    assert_eq!(
        balance(format!("owner:{}", owner.id)).await,
        [("USD".to_owned(), earning - (refund - fee_back))]
    );
}

#[sqlx::test(migrations = "../sql")]
async fn a_device_offline_within_the_grace_refunds_nothing(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let renter = testing::user(&pool, "renter", Role::Renter).await;
    let device = testing::device_for_rent(&pool, owner.id, "pi", &money(1_000, "USD")).await;
    let (secrets, providers) = (SecretBox::generate(), Default::default());
    let mut tx = pool.begin().await.unwrap();
    let placed = storefront::place(
        &mut tx,
        &Actor::system(),
        &providers,
        &OrderLimits::default(),
        device.id,
        renter.id,
    )
    .await
    .unwrap();
    storefront::confirm(
        &mut tx,
        &Actor::system(),
        &secrets,
        &providers,
        placed.rental.id,
        None,
        Confirmer::ByHand(owner.id),
        1_000,
    )
    .await
    .unwrap();
    sqlx::query("UPDATE rentals SET starts_at = now() - interval '2 hours' WHERE id = $1")
        .bind(placed.rental.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("DELETE FROM device_status_history WHERE device_id = $1")
        .bind(device.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO device_status_history (device_id, status, at) VALUES \
         ($1, 'online', now() - interval '3 hours'), ($1, 'offline', now() - interval '60 minutes'), \
         ($1, 'online', now() - interval '30 minutes')",
    )
    .bind(device.id)
    .execute(&mut *tx)
    .await
    .unwrap();
    end(&mut tx, &Actor::system(), placed.rental.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let refunds: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT txn_id) FROM ledger_entries WHERE rental_id = $1",
    )
    .bind(placed.rental.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        refunds, 1,
        "only the payment: 30 minutes offline is within the grace"
    );
}

#[sqlx::test(migrations = "../sql")]
async fn a_marketplace_buyer_claims_the_rental_once(pool: PgPool) {
    let owner = testing::user(&pool, "owner", Role::Owner).await;
    let buyer = testing::user(&pool, "buyer", Role::Renter).await;
    let other = testing::user(&pool, "other", Role::Renter).await;
    let (device, _) = testing::device(&pool, owner.id, "pi").await;
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO rentals (id, device_id, buyer_ref, marketplace, order_ref, state, price_minor, currency) \
         VALUES ($1, $2, 'order-1', 'openbazaar', 'order-1', 'paid', 500, 'USD')",
    )
    .bind(id)
    .bind(device.id)
    .execute(&pool)
    .await
    .unwrap();
    let secrets = SecretBox::generate();
    let mut tx = pool.begin().await.unwrap();
    let activated = activate(&mut tx, &secrets, id).await.unwrap();
    assert_eq!(activated.rental.state, RentalState::Active);
    let token = activated
        .claim_token
        .expect("a buyer without an account gets a claim token");
    let again = activate(&mut tx, &secrets, id).await.unwrap();
    assert_eq!(
        again.claim_token.as_deref(),
        Some(token.as_str()),
        "a retried delivery sends the same link"
    );
    assert_eq!(again.rental.login_name, activated.rental.login_name);
    tx.commit().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let wrong = claim(&mut tx, &Actor::system(), "not the token", buyer.id).await;
    assert!(matches!(wrong, Err(RentalError::NotFound)), "{wrong:?}");
    let claimed = claim(&mut tx, &Actor::system(), &token, buyer.id)
        .await
        .unwrap();
    assert_eq!(claimed.renter_id, Some(buyer.id));
    let twice = claim(&mut tx, &Actor::system(), &token, other.id).await;
    assert!(matches!(twice, Err(RentalError::NotFound)), "{twice:?}");
    let after = activate(&mut tx, &secrets, id).await.unwrap();
    assert_eq!(after.claim_token, None, "the token stopped working");
    assert_eq!(after.rental.renter_id, Some(buyer.id));
    tx.commit().await.unwrap();
}
