//! The ledger: payments and refunds balance per currency, owners see their earnings, and the database
//! refuses an unbalanced transaction.

use p2pvps_server::billing::ledger::{self, DEFAULT_FEE_BPS, Payer};
use p2pvps_shared::{Money, Role};
use p2pvps_tests::{TestApp, add_device, rent};
use sqlx::PgPool;

#[sqlx::test(migrations = "../sql")]
async fn a_payment_is_split_between_platform_and_owner_and_a_refund_reverses_its_share(
    pool: PgPool,
) {
    let app = TestApp::start(pool).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    app.user("r@example.com", Role::Renter).await;
    let (device, _) = add_device(&owner, "pi").await;
    let rental = rent(&app.pool, &app.secrets, &device, "r@example.com", "rled").await;
    let owner_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE email = 'o@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let payer = Payer::Marketplace("openbazaar");

    let mut tx = app.pool.begin().await.unwrap();
    let paid = Money::price(300, "USD").unwrap();
    ledger::record_payment(&mut tx, rental, owner_id, &payer, &paid, DEFAULT_FEE_BPS)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let usd = |v: i64| vec![("USD".to_owned(), v)];
    assert_eq!(
        ledger::owner_earnings(&app.pool, owner_id).await.unwrap(),
        usd(270)
    );
    assert_eq!(
        ledger::balance(&app.pool, "platform").await.unwrap(),
        usd(30)
    );
    assert_eq!(
        ledger::balance(&app.pool, "marketplace:openbazaar")
            .await
            .unwrap(),
        usd(-300)
    );

    // A pro-rata refund of a third.
    let mut tx = app.pool.begin().await.unwrap();
    let refund = Money::price(100, "USD").unwrap();
    ledger::record_refund(
        &mut tx,
        rental,
        owner_id,
        &payer,
        &refund,
        DEFAULT_FEE_BPS,
        "device offline",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        ledger::owner_earnings(&app.pool, owner_id).await.unwrap(),
        usd(180)
    );
    assert_eq!(
        ledger::balance(&app.pool, "platform").await.unwrap(),
        usd(20)
    );
    let total: i64 = sqlx::query_scalar("SELECT sum(amount_minor)::bigint FROM ledger_entries")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(total, 0, "balanced overall");

    // The database refuses a transaction that does not balance, at commit.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO ledger_entries (txn_id, account, amount_minor, currency) VALUES (gen_random_uuid(), 'platform', 5, 'USD')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let err = tx.commit().await.unwrap_err();
    assert!(err.to_string().contains("does not balance"), "{err}");
    // And entries cannot be changed afterwards.
    let err = sqlx::query("UPDATE ledger_entries SET amount_minor = 1")
        .execute(&app.pool)
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn a_marketplace_order_becomes_one_rental_however_often_it_is_seen(pool: PgPool) {
    use p2pvps_server::rentals::{orders::Taken, orders::take_order};
    let app = TestApp::start(pool).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    let (device, _) = add_device(&owner, "pi").await;
    let device: uuid::Uuid = device.parse().unwrap();
    let price = Money::price(300, "USD").unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    p2pvps_server::market::listings::mark_listed(&mut tx, "openbazaar", device, "rent-pi", &price)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let take = |order: &'static str, slug: &'static str| {
        let pool = app.pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let taken = take_order(&mut tx, "openbazaar", order, slug, None, DEFAULT_FEE_BPS)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            taken
        }
    };
    let Taken::New(rental) = take("QmOrder1", "rent-pi").await else {
        panic!("a new rental expected")
    };
    assert_eq!(rental.state, p2pvps_shared::RentalState::Paid);
    assert_eq!(rental.device_id, device);
    assert_eq!(rental.price, price);
    // Seen again (a retry after a crash, or another instance): the same rental, nothing written twice.
    let Taken::Seen(again) = take("QmOrder1", "rent-pi").await else {
        panic!("the order was taken before")
    };
    assert_eq!(again.id, rental.id);
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_entries")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(entries, 3, "one payment: payer, platform, owner");

    // A second buyer of the same device while it is let: recorded, and refunded in full.
    let Taken::Oversold(second) = take("QmOrder2", "rent-pi").await else {
        panic!("oversold expected")
    };
    assert_eq!(second.state, p2pvps_shared::RentalState::Refunded);
    let owner_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE email = 'o@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        ledger::owner_earnings(&app.pool, owner_id).await.unwrap(),
        vec![("USD".to_owned(), 270)]
    );
    assert!(matches!(
        take("QmOrder3", "rent-unknown").await,
        Taken::UnknownListing
    ));
    app.stop().await;
}
