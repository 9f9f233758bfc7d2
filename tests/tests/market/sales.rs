//! Selling through OpenBazaar (the fake node): a paid order becomes an active rental, its buyer gets a
//! claim link (not a password), the listing comes down, and nothing is delivered twice, even when a pass
//! stops between delivering and marking the order handled.

use p2pvps_server::billing::ledger::DEFAULT_FEE_BPS;
use p2pvps_server::market::openbazaar::{Credentials, OpenBazaar};
use p2pvps_server::market::sales::{Report, SaleSettings, process_orders};
use p2pvps_server::market::{ListingSpec, Marketplace};
use p2pvps_shared::{Money, Role};
use p2pvps_tests::openbazaar::{Auth, FULFILLED, FakeNode, Schema, event, expect_event};
use p2pvps_tests::{Client, TestApp, add_device};
use serde_json::json;
use sqlx::PgPool;

async fn listed(app: &TestApp, ob: &OpenBazaar, device: &str, slug: &str) {
    let device: uuid::Uuid = device.parse().unwrap();
    let price = Money::price(300, "USD").unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    p2pvps_server::market::listings::mark_listed(&mut tx, "openbazaar", device, slug, &price)
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
    let settings = settings();

    // Other notifications before and after the order never stand in its way.
    node.notify("follow", json!({"peerId": "QmFan"}));
    let order = node.fund_order("rent-pi").unwrap();
    node.notify("moderatorAdd", json!({"peerId": "QmMod"}));
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
    let settings = settings();
    let order_id = node.fund_order("rent-pi").unwrap();
    // A pass that took the order and delivered it, then died before marking it handled.
    let orders = ob.new_orders().await.unwrap();
    let order = &orders[0];
    let mut tx = app.pool.begin().await.unwrap();
    let taken = p2pvps_server::rentals::orders::take_order(
        &mut tx,
        "openbazaar",
        &order.id,
        &order.slug,
        order.paid.as_ref(),
        DEFAULT_FEE_BPS,
    )
    .await
    .unwrap();
    let p2pvps_server::rentals::orders::Taken::New(rental) = taken else {
        panic!("new rental expected")
    };
    let first = p2pvps_server::rentals::lifecycle::activate(&mut tx, &app.secrets, rental.id)
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
    let again = p2pvps_server::rentals::lifecycle::activate(&mut conn, &app.secrets, rental.id)
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

/// Selling on `node` (cookie `c`), polling every `poll`.
fn market_settings(
    node: &FakeNode,
    poll: std::time::Duration,
) -> p2pvps_server::app::MarketSettings {
    market_with(node, "c", p2pvps_server::market::openbazaar::TIMEOUT, poll)
}

/// Selling on `node` with `cookie`, each call timing out after `timeout`, polling every `poll`.
fn market_with(
    node: &FakeNode,
    cookie: &str,
    timeout: std::time::Duration,
    poll: std::time::Duration,
) -> p2pvps_server::app::MarketSettings {
    let market =
        OpenBazaar::with_timeout(&node.url(), Credentials::Cookie(cookie.into()), timeout).unwrap();
    p2pvps_server::app::MarketSettings {
        market: std::sync::Arc::new(market),
        sale: settings(),
        poll,
    }
}

fn settings() -> SaleSettings {
    SaleSettings {
        fee_bps: DEFAULT_FEE_BPS,
        dashboard: "https://p2pvps.example".into(),
    }
}

/// A server selling on `node` (polling every `poll`), an owner's device offered for rent.
async fn selling(pool: PgPool, node: &FakeNode, poll: std::time::Duration) -> (TestApp, String) {
    selling_with(pool, market_settings(node, poll)).await
}

/// A server selling with `market`, an owner's device offered for rent.
async fn selling_with(
    pool: PgPool,
    market: p2pvps_server::app::MarketSettings,
) -> (TestApp, String) {
    let app = TestApp::start_with(pool, move |s| s.market = Some(market)).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    let r = owner
        .gql(
            "mutation { createDevice(input: {name: \"pi\", price: {minor: 300, currency: \"USD\"}, forRent: true}) { device { id } } }",
            json!({}),
        )
        .await;
    let device = r
        .ok()
        .data("createDevice.device.id")
        .as_str()
        .unwrap()
        .to_owned();
    (app, device)
}

fn slug_of(device: &str) -> String {
    p2pvps_server::market::reconcile::slug(device.parse().unwrap())
}

async fn go_online(app: &TestApp, device: &str) {
    p2pvps_server::devices::status::record_status(
        &app.pool,
        device.parse().unwrap(),
        p2pvps_shared::DeviceStatus::Online,
    )
    .await
    .unwrap();
}

async fn hinted_delivery(pool: PgPool, schema: Schema) {
    use std::time::Duration;
    let node = FakeNode::start(schema, Auth::Cookie("c".into())).await;
    let mut events = node.events();
    // Polling only every 10 minutes: anything sooner comes from the hint (or the change of the device).
    let (app, device) = selling(pool, &node, Duration::from_secs(600)).await;
    let slug = slug_of(&device);
    // Listed only once online (the first pass ran at start, before that).
    go_online(&app, &device).await;
    // The pass after the change: here the websocket's first connection wakes the worker too, so wait
    // for the listing by its event.
    node.notify("follow", json!({"peerId": "QmFan"}));
    expect_event(&mut events, &format!("listed {slug}"), 10, "").await;
    let order = node.fund_order(&slug).unwrap();
    expect_event(
        &mut events,
        &format!("fulfilled {order}"),
        2,
        "delivered within 2 s of the order",
    )
    .await;
    expect_event(&mut events, &format!("delisted {slug}"), 2, "").await;
    let state: String = sqlx::query_scalar("SELECT state FROM rentals")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "active");
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn with_the_websocket_hint_an_order_is_delivered_within_two_seconds_v4(pool: PgPool) {
    hinted_delivery(pool, Schema::V4).await;
}

#[sqlx::test(migrations = "../sql")]
async fn with_the_websocket_hint_an_order_is_delivered_within_two_seconds_v5(pool: PgPool) {
    hinted_delivery(pool, Schema::V5).await;
}

async fn polled_delivery_and_relisting(pool: PgPool, schema: Schema) {
    use std::time::Duration;
    let node = FakeNode::start(schema, Auth::Cookie("c".into())).await;
    node.refuse_websockets();
    let mut events = node.events();
    let poll = Duration::from_secs(1);
    let (app, device) = selling(pool, &node, poll).await;
    let slug = slug_of(&device);
    go_online(&app, &device).await;
    assert!(event(&mut events, &format!("listed {slug}"), poll * 5).await);
    let order = node.fund_order(&slug).unwrap();
    assert!(
        event(&mut events, &format!("fulfilled {order}"), poll * 3).await,
        "delivered within a poll interval (with slack for the pass itself)"
    );
    assert!(event(&mut events, &format!("delisted {slug}"), poll * 3).await);
    // The rental ends: the device is listed again, with a fresh expiry.
    let rental: uuid::Uuid = sqlx::query_scalar("SELECT id FROM rentals")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    p2pvps_server::rentals::lifecycle::end(
        &mut tx,
        &p2pvps_server::infra::audit::Actor::system(),
        rental,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(
        event(&mut events, &format!("listed {slug}"), poll * 5).await,
        "relisted"
    );
    let expiry = node.listing(&slug).unwrap()["metadata"]["expiry"]
        .as_str()
        .unwrap()
        .to_owned();
    let expiry = chrono::DateTime::parse_from_rfc3339(&expiry).unwrap();
    assert!(expiry > chrono::Utc::now() + chrono::Duration::days(20));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "p2pvps_marketplace_events_total{marketplace=\"openbazaar\",outcome=\"delivered\"} 1"
        ),
        "{metrics}"
    );
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn without_the_hint_polling_delivers_and_an_ended_rental_is_relisted_v4(pool: PgPool) {
    polled_delivery_and_relisting(pool, Schema::V4).await;
}

#[sqlx::test(migrations = "../sql")]
async fn without_the_hint_polling_delivers_and_an_ended_rental_is_relisted_v5(pool: PgPool) {
    polled_delivery_and_relisting(pool, Schema::V5).await;
}

#[sqlx::test(migrations = "../sql")]
async fn another_instance_takes_over_when_the_leader_goes(pool: PgPool) {
    use std::time::Duration;
    let node = FakeNode::start(Schema::V5, Auth::Cookie("c".into())).await;
    node.refuse_websockets();
    let mut events = node.events();
    let poll = Duration::from_secs(1);
    // The first instance leads: it lists the device once it comes online.
    let options = (*pool.connect_options()).clone();
    let (first, device) = selling(pool, &node, poll).await;
    let slug = slug_of(&device);
    go_online(&first, &device).await;
    expect_event(&mut events, &format!("listed {slug}"), 5, "").await;
    // A second instance (its own connection pool) on the same database waits as a follower; the leader
    // stops.
    let own_pool = sqlx::postgres::PgPoolOptions::new()
        .connect_with(options)
        .await
        .unwrap();
    let market = market_settings(&node, poll);
    let second = TestApp::start_with(own_pool, move |s| s.market = Some(market)).await;
    first.stop().await;
    let order = node.fund_order(&slug).unwrap();
    expect_event(
        &mut events,
        &format!("fulfilled {order}"),
        10,
        "the follower took over and delivered",
    )
    .await;
    second.stop().await;
}

/// The admin's view of the marketplace's passes.
async fn market_status(admin: &Client) -> serde_json::Value {
    let r = admin
        .gql(
            "{ marketplaces { name lastPassAt lastSuccessAt lastError lastErrorAt consecutiveFailures } }",
            json!({}),
        )
        .await;
    r.ok().data("marketplaces.0").clone()
}

/// The marketplace's status once a failed pass is recorded: checked after each `wanted` event of the
/// node's (a retry comes only after the failure was recorded), at most ten times.
async fn reported(
    admin: &Client,
    events: &mut tokio::sync::broadcast::Receiver<String>,
    wanted: &str,
) -> serde_json::Value {
    for _ in 0..10 {
        assert!(
            p2pvps_tests::openbazaar::event(events, wanted, std::time::Duration::from_secs(10))
                .await,
            "no `{wanted}` from the node"
        );
        let status = market_status(admin).await;
        if !status.is_null() && !status["lastError"].is_null() {
            return status;
        }
    }
    panic!("no failure was reported");
}

fn counted(metrics: &str, outcome: &str) -> bool {
    metrics.lines().any(|l| {
        l.starts_with("p2pvps_marketplace_events_total")
            && l.contains(&format!("outcome=\"{outcome}\""))
            && !l.ends_with(" 0")
    })
}

#[sqlx::test(migrations = "../sql")]
async fn node_failures_are_retried_with_backoff_counted_and_reported_and_nothing_is_half_applied(
    pool: PgPool,
) {
    use p2pvps_tests::openbazaar::Fault;
    use std::time::Duration;
    let node = FakeNode::start(Schema::V5, Auth::Cookie("c".into())).await;
    let mut events = node.events();
    let (app, device) = selling(pool, &node, Duration::from_secs(600)).await;
    let slug = slug_of(&device);
    go_online(&app, &device).await;
    expect_event(&mut events, &format!("listed {slug}"), 10, "").await;

    // The next two calls fail: a 500, then a body that is not JSON. The passes fail, back off (1 s, 2 s)
    // and the third delivers.
    node.fail_next(1, Fault::ServerError);
    node.fail_next(1, Fault::Garbage);
    let order = node.fund_order(&slug).unwrap();
    expect_event(
        &mut events,
        &format!("fulfilled {order}"),
        15,
        "delivered after the failures",
    )
    .await;
    expect_event(&mut events, &format!("read {order}"), 5, "").await;
    assert_eq!(fulfilments(&node), 1);
    let rentals: i64 = sqlx::query_scalar("SELECT count(*) FROM rentals")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rentals, 1);
    let metrics = app.metrics().await;
    assert!(counted(&metrics, "error-server"), "{metrics}");
    assert!(counted(&metrics, "error-decode"), "{metrics}");
    let admin = app.user("admin@example.com", Role::Admin).await;
    let status = market_status(&admin).await;
    assert_eq!(status["name"], "openbazaar");
    assert_eq!(status["consecutiveFailures"], 0);
    let last_error = status["lastError"].as_str().unwrap();
    assert!(last_error.contains("could not be read"), "{last_error}");
    assert!(status["lastSuccessAt"].as_str() > status["lastErrorAt"].as_str());
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn refused_credentials_are_reported_to_admins(pool: PgPool) {
    use std::time::Duration;
    let node = FakeNode::start(Schema::V5, Auth::Cookie("right".into())).await;
    let mut events = node.events();
    let market = market_with(
        &node,
        "wrong",
        Duration::from_secs(15),
        Duration::from_secs(600),
    );
    let (app, _device) = selling_with(pool, market).await;
    // Each refused call is an event of the node's; after one, the pass that made it is recorded.
    let admin = app.user("admin@example.com", Role::Admin).await;
    let status = reported(&admin, &mut events, "forbidden").await;
    assert_eq!(
        status["lastError"],
        "order pass: the marketplace refused our credentials"
    );
    assert!(status["consecutiveFailures"].as_i64().unwrap() >= 1);
    assert!(status["lastSuccessAt"].is_null());
    assert!(counted(&app.metrics().await, "error-auth"));
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn a_node_that_hangs_times_out_and_selling_resumes_when_it_answers(pool: PgPool) {
    use std::time::Duration;
    let node = FakeNode::start(Schema::V4, Auth::Cookie("c".into())).await;
    let mut events = node.events();
    let market = market_with(&node, "c", Duration::from_secs(1), Duration::from_secs(600));
    let (app, device) = selling_with(pool, market).await;
    let slug = slug_of(&device);
    go_online(&app, &device).await;
    expect_event(&mut events, &format!("listed {slug}"), 10, "").await;

    node.stall_on("/ob/notifications");
    let order = node.fund_order(&slug).unwrap();
    // The hinted pass hangs, times out after 1 s and is recorded; the retry hangs again.
    let admin = app.user("admin@example.com", Role::Admin).await;
    let status = reported(&admin, &mut events, "stalled /ob/notifications").await;
    assert_eq!(
        status["lastError"],
        "order pass: the marketplace did not answer within 1 s"
    );
    assert!(counted(&app.metrics().await, "error-timeout"));
    let rentals: i64 = sqlx::query_scalar("SELECT count(*) FROM rentals")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rentals, 0, "nothing taken while the node hangs");

    node.release();
    expect_event(
        &mut events,
        &format!("fulfilled {order}"),
        15,
        "delivered once the node answers",
    )
    .await;
    assert_eq!(fulfilments(&node), 1);
    app.stop().await;
}
