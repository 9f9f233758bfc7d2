//! Selling through OpenBazaar (the fake node): a paid order becomes an active rental, its buyer gets a
//! claim link (not a password), the listing comes down, and nothing is delivered twice, even when a pass
//! stops between delivering and marking the order handled.

use p2pvps_server::ledger::DEFAULT_FEE_BPS;
use p2pvps_server::marketplace::openbazaar::{Credentials, OpenBazaar};
use p2pvps_server::marketplace::{ListingSpec, Marketplace};
use p2pvps_server::sales::{Report, SaleSettings, process_orders};
use p2pvps_shared::{Money, Role};
use p2pvps_tests::openbazaar::{Auth, FULFILLED, FakeNode, Schema};
use p2pvps_tests::{TestApp, add_device};
use serde_json::json;
use sqlx::PgPool;

async fn listed(app: &TestApp, ob: &OpenBazaar, device: &str, slug: &str) {
    let device: uuid::Uuid = device.parse().unwrap();
    let price = Money::price(300, "USD").unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    p2pvps_server::listings::mark_listed(&mut tx, "openbazaar", device, slug, &price)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    ob.list(&ListingSpec {
        slug: slug.into(),
        title: format!("VPS rental ({slug})"),
        description: "24 hours".into(),
        price,
        expiry: chrono::Utc::now() + chrono::Duration::days(30),
    })
    .await
    .unwrap();
}

fn fulfilments(node: &FakeNode) -> usize {
    node.calls()
        .iter()
        .filter(|c| *c == "POST /ob/orderfulfillment")
        .count()
}

#[sqlx::test(migrations = "../sql")]
async fn a_paid_order_is_delivered_once_and_claimed_by_its_buyer(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    let (device, _) = add_device(&owner, "pi").await;
    let node = FakeNode::start(Schema::V5, Auth::Cookie("c".into())).await;
    let ob = OpenBazaar::new(&node.url(), Credentials::Cookie("c".into())).unwrap();
    listed(&app, &ob, &device, "rent-pi").await;
    let settings = SaleSettings {
        fee_bps: DEFAULT_FEE_BPS,
        dashboard: "https://p2pvps.example".into(),
    };

    node.notify("follow", json!({"peerId": "QmFan"}));
    let order = node.fund_order("rent-pi").unwrap();
    let report = process_orders(&app.pool, &app.secrets, &ob, &settings)
        .await
        .unwrap();
    assert_eq!(
        report,
        Report {
            delivered: 1,
            ..Report::default()
        }
    );
    let sale = node.sale(&order).unwrap();
    assert_eq!(sale.state, FULFILLED);
    let note = sale.fulfillment.unwrap()["note"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!note.to_lowercase().contains("password"), "{note}");
    let token = note
        .split("https://p2pvps.example/claim/")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a claim link in the note")
        .to_owned();
    assert!(node.listing("rent-pi").is_none(), "delisted once let");

    // Nothing more to do on the next pass.
    let report = process_orders(&app.pool, &app.secrets, &ob, &settings)
        .await
        .unwrap();
    assert_eq!(report, Report::default());
    assert_eq!(fulfilments(&node), 1);

    // The buyer claims the rental and finds the login and commands; the link works once.
    let renter = app.user("buyer@example.com", Role::Renter).await;
    let claim = "mutation($t: String!) { claimRental(token: $t) { id state } }";
    renter.gql(claim, json!({"t": token})).await.ok();
    let mine = renter
        .gql(
            "{ rentals(first: 5) { state login { name } connection { jumpCommand } } }",
            json!({}),
        )
        .await;
    mine.ok();
    assert_eq!(mine.data("rentals.0.state"), "ACTIVE");
    assert!(
        mine.data("rentals.0.login.name")
            .as_str()
            .unwrap()
            .starts_with('r')
    );
    let other = app.user("late@example.com", Role::Renter).await;
    other
        .gql(claim, json!({"t": token}))
        .await
        .assert_code("NOT_FOUND");
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn a_pass_cut_off_after_delivering_does_not_deliver_again(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    let (device, _) = add_device(&owner, "pi").await;
    let node = FakeNode::start(Schema::V4, Auth::Cookie("c".into())).await;
    let ob = OpenBazaar::new(&node.url(), Credentials::Cookie("c".into())).unwrap();
    listed(&app, &ob, &device, "rent-pi").await;
    let settings = SaleSettings {
        fee_bps: DEFAULT_FEE_BPS,
        dashboard: "https://p2pvps.example".into(),
    };
    let order_id = node.fund_order("rent-pi").unwrap();
    // A pass that took the order and delivered it, then died before marking it handled.
    let orders = ob.new_orders().await.unwrap();
    let order = &orders[0];
    let mut tx = app.pool.begin().await.unwrap();
    let taken = p2pvps_server::rentals::take_order(
        &mut tx,
        "openbazaar",
        &order.id,
        &order.slug,
        order.paid.as_ref(),
        DEFAULT_FEE_BPS,
    )
    .await
    .unwrap();
    let p2pvps_server::rentals::Taken::New(rental) = taken else {
        panic!("new rental expected")
    };
    let first = p2pvps_server::rentals::activate(&mut tx, &app.secrets, rental.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    ob.deliver(order, "first delivery").await.unwrap();

    // The next pass finishes the job: same rental, same claim token, no second delivery.
    let report = process_orders(&app.pool, &app.secrets, &ob, &settings)
        .await
        .unwrap();
    assert_eq!(report.delivered, 1);
    assert_eq!(fulfilments(&node), 1);
    assert_eq!(
        node.sale(&order_id).unwrap().fulfillment.unwrap()["note"],
        "first delivery"
    );
    let mut conn = app.pool.acquire().await.unwrap();
    let again = p2pvps_server::rentals::activate(&mut conn, &app.secrets, rental.id)
        .await
        .unwrap();
    assert_eq!(again.claim_token, first.claim_token);
    let rentals: i64 = sqlx::query_scalar("SELECT count(*) FROM rentals")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rentals, 1);
    assert!(
        process_orders(&app.pool, &app.secrets, &ob, &settings)
            .await
            .unwrap()
            .eq(&Report::default())
    );
    app.stop().await;
}
