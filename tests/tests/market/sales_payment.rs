//! The real server binary selling on the fake node: only an order funded and paid in full becomes a
//! rental. A funded order the node holds PENDING (it reached the vendor offline) is confirmed with
//! `POST /ob/orderconfirmation`, then fulfilled with the claim link, once; so is one paid in a coin for a
//! dollar listing (the node converts the price). An unfunded order, an underpaid one and one paid in a
//! coin but made at an older, lower price are refused with their reason (table `refused_orders` and the
//! audit log), marked read, never confirmed nor delivered, and not examined again; the unfunded one is
//! delivered once the buyer pays it.

use p2pvps_tests::openbazaar::{
    AWAITING_FULFILLMENT, FULFILLED, FakeNode, PENDING, Purchase, Schema, expect_event,
    ledger_after_sales, listed_devices, market_args, node_with_basic_auth,
};
use p2pvps_tests::server::Server;
use sqlx::PgPool;
use tokio::sync::broadcast;

/// How many requests `call` (`METHOD /path`) the node has had.
fn count(node: &FakeNode, call: &str) -> usize {
    node.calls().iter().filter(|c| *c == call).count()
}

/// The node's events until `last` (which must come within 30 s), in order.
async fn events_until(events: &mut broadcast::Receiver<String>, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let until = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    let done = e == last;
                    seen.push(e);
                    if done {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
    .await;
    assert!(until.is_ok(), "no `{last}` within 30 s; saw {seen:?}");
    seen
}

/// A server selling on `node` (polling every second), started on `pool`.
async fn serve(pool: &PgPool, node: &FakeNode) -> (Server, tempfile::TempDir) {
    let data = p2pvps_tests::temp_dir("p2pvps-pay-");
    let args = market_args(node);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Server::start(pool, data.path(), &args).await, data)
}

async fn pending_order_is_confirmed_then_fulfilled_once(pool: PgPool, schema: Schema) {
    let node = node_with_basic_auth(schema).await;
    let slugs = listed_devices(&pool, &node, 2).await;
    // Ordered while the store was offline, then paid: the node holds it PENDING, funded, notified.
    let order = node
        .place_order(
            &slugs[0],
            Purchase {
                offline: true,
                ..Purchase::default()
            },
        )
        .unwrap();
    assert!(node.pay(&order));
    let sale = node.sale(&order).unwrap();
    assert_eq!(
        (sale.state, sale.funded, sale.confirmed),
        (PENDING, true, false)
    );

    let mut events = node.events();
    let (server, data) = serve(&pool, &node).await;
    let seen = events_until(&mut events, &format!("read {order}")).await;
    let confirmed = seen.iter().position(|e| *e == format!("confirmed {order}"));
    let fulfilled = seen.iter().position(|e| *e == format!("fulfilled {order}"));
    assert!(
        confirmed.is_some() && confirmed < fulfilled,
        "confirmed, then fulfilled: {seen:?}"
    );
    let sale = node.sale(&order).unwrap();
    assert_eq!(sale.state, FULFILLED);
    let note = sale.fulfillment.unwrap()["note"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(note.contains("https://p2pvps.example/claim/"), "{note}");

    // A later pass (a second order, on the other device, delivered after the first was handled) finds
    // nothing more to do for the first. That order pays the dollar listing in a coin, as real buyers do
    // (their node converted the price): it is delivered, for what was paid.
    let later = node
        .place_order(
            &slugs[1],
            Purchase {
                currency: Some("BCH".into()),
                amount: Some(4_000),
                ..Purchase::default()
            },
        )
        .unwrap();
    assert!(node.pay(&later));
    expect_event(
        &mut events,
        &format!("fulfilled {later}"),
        30,
        "a later pass delivers the second order",
    )
    .await;
    let calls = node.calls();
    assert_eq!(
        count(&node, "POST /ob/orderconfirmation"),
        1,
        "only the PENDING order is confirmed, once: {calls:#?}"
    );
    assert_eq!(
        count(&node, "POST /ob/orderfulfillment"),
        2,
        "each order fulfilled once: {calls:#?}"
    );
    let rentals: Vec<(String, String)> = sqlx::query_as(
        "SELECT order_ref, state FROM rentals WHERE marketplace = 'openbazaar' ORDER BY order_ref",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rentals,
        [
            (order.clone(), "active".to_owned()),
            (later, "active".to_owned())
        ]
    );
    let prices: Vec<(i64, String)> = sqlx::query_as(
        "SELECT price_minor, currency FROM rentals WHERE marketplace = 'openbazaar' ORDER BY order_ref",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(prices, [(300, "USD".to_owned()), (4_000, "BCH".to_owned())]);
    assert_eq!(ledger_after_sales(&pool).await, (0, 2));
    server.kill().await;
    drop(data);
}

#[sqlx::test(migrations = "../sql")]
async fn a_funded_order_left_pending_is_confirmed_then_fulfilled_once_v4(pool: PgPool) {
    pending_order_is_confirmed_then_fulfilled_once(pool, Schema::V4).await;
}

#[sqlx::test(migrations = "../sql")]
async fn a_funded_order_left_pending_is_confirmed_then_fulfilled_once_v5(pool: PgPool) {
    pending_order_is_confirmed_then_fulfilled_once(pool, Schema::V5).await;
}

async fn orders_not_paid_in_full_are_refused_once(pool: PgPool, schema: Schema) {
    let node = node_with_basic_auth(schema).await;
    // Listed at 3.00 USD each.
    let slugs = listed_devices(&pool, &node, 2).await;
    // Reached the store offline and not paid: PENDING, unfunded, no notification.
    let unfunded = node
        .place_order(
            &slugs[0],
            Purchase {
                offline: true,
                ..Purchase::default()
            },
        )
        .unwrap();
    // A buyer's order for 2.00 USD, paid (the node compares the funding with the order's own amount):
    // PENDING and funded.
    let underpaid = node
        .place_order(
            &slugs[0],
            Purchase {
                offline: true,
                amount: Some(200),
                ..Purchase::default()
            },
        )
        .unwrap();
    assert!(node.pay(&underpaid));
    // Paid in BCH, converted from an older copy of the listing at 2.00 USD: awaiting fulfillment.
    let other_currency = node
        .place_order(
            &slugs[0],
            Purchase {
                currency: Some("BCH".into()),
                amount: Some(2_667),
                listing_price: Some(200),
                ..Purchase::default()
            },
        )
        .unwrap();
    assert!(node.pay(&other_currency));
    assert_eq!(node.sale(&unfunded).unwrap().state, PENDING);
    assert_eq!(node.sale(&underpaid).unwrap().state, PENDING);
    assert_eq!(
        node.sale(&other_currency).unwrap().state,
        AWAITING_FULFILLMENT
    );

    let mut events = node.events();
    let (server, data) = serve(&pool, &node).await;
    // The refused orders are handled (read) in the order they came, the unfunded one first.
    for order in [&underpaid, &other_currency] {
        expect_event(
            &mut events,
            &format!("read {order}"),
            30,
            "a refused order is marked read",
        )
        .await;
    }
    // A later pass: the refused orders, still PENDING or awaiting fulfillment on the node, come again.
    let good = node.fund_order(&slugs[1]).unwrap();
    expect_event(
        &mut events,
        &format!("fulfilled {good}"),
        30,
        "a paid order is still delivered",
    )
    .await;

    let calls = node.calls();
    for order in [&unfunded, &underpaid, &other_currency] {
        let sale = node.sale(order).unwrap();
        assert!(sale.fulfillment.is_none(), "{order} not delivered");
        assert_ne!(sale.state, FULFILLED);
        assert_eq!(
            count(&node, &format!("GET /ob/order/{order}")),
            1,
            "{order} examined once: {calls:#?}"
        );
    }
    assert_eq!(
        count(&node, "POST /ob/orderconfirmation"),
        0,
        "nothing refused is confirmed: {calls:#?}"
    );
    let refused: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT order_ref, reason, detail FROM refused_orders WHERE marketplace = 'openbazaar' \
         ORDER BY order_ref",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        refused,
        [
            (
                unfunded.clone(),
                "unfunded".to_owned(),
                "not funded: the buyer has not paid the order's 3.00 USD; the listing's price is 3.00 USD"
                    .to_owned()
            ),
            (
                underpaid.clone(),
                "underpaid".to_owned(),
                "paid 2.00 USD, less than the listing's price of 3.00 USD".to_owned()
            ),
            (
                other_currency.clone(),
                "underpaid".to_owned(),
                "paid 0.00002667 BCH for the listing at 2.00 USD, less than its price of 3.00 USD"
                    .to_owned()
            ),
        ]
    );
    let audited: Vec<(String, String)> = sqlx::query_as(
        "SELECT target_id, detail->>'reason' FROM audit_log WHERE action = 'order.refuse' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        audited,
        [
            (format!("openbazaar:{unfunded}"), "unfunded".to_owned()),
            (format!("openbazaar:{underpaid}"), "underpaid".to_owned()),
            (
                format!("openbazaar:{other_currency}"),
                "underpaid".to_owned()
            ),
        ]
    );
    let rentals: Vec<String> =
        sqlx::query_scalar("SELECT order_ref FROM rentals WHERE marketplace = 'openbazaar'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rentals, [good], "only the paid order is a rental");
    assert_eq!(ledger_after_sales(&pool).await, (0, 1), "one payment");
    assert!(
        node.listing(&slugs[0]).is_some(),
        "the device is still for rent"
    );

    // The buyer of the unfunded order pays it in full: the node notifies it, and it is confirmed and
    // delivered after all (never dropped).
    assert!(node.pay(&unfunded));
    let seen = events_until(&mut events, &format!("read {unfunded}")).await;
    assert!(
        seen.contains(&format!("confirmed {unfunded}"))
            && seen.contains(&format!("fulfilled {unfunded}")),
        "{seen:?}"
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM refused_orders WHERE order_ref = $1")
        .bind(&unfunded)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "no longer refused");
    let state: String = sqlx::query_scalar("SELECT state FROM rentals WHERE order_ref = $1")
        .bind(&unfunded)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "active");
    for order in [&underpaid, &other_currency] {
        assert!(node.sale(order).unwrap().fulfillment.is_none());
    }
    server.kill().await;
    drop(data);
}

#[sqlx::test(migrations = "../sql")]
async fn orders_not_paid_in_full_are_refused_once_and_never_delivered_v4(pool: PgPool) {
    orders_not_paid_in_full_are_refused_once(pool, Schema::V4).await;
}

#[sqlx::test(migrations = "../sql")]
async fn orders_not_paid_in_full_are_refused_once_and_never_delivered_v5(pool: PgPool) {
    orders_not_paid_in_full_are_refused_once(pool, Schema::V5).await;
}
