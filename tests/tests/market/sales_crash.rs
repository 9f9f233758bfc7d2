//! The real server binary, killed with SIGKILL in the middle of handling an OpenBazaar order and started
//! again: the order is delivered exactly once and marked read, one rental, a balanced ledger (asserted on
//! the fake node's call log and the database).

use p2pvps_tests::openbazaar::{
    FULFILLED, Schema, expect_event, killed_at, ledger_after_sales, listed_devices, market_args,
    node_with_basic_auth,
};
use p2pvps_tests::server::Server;
use sqlx::PgPool;

/// Kills the server when its request to `stall` reaches the node, starts it again, and checks that the
/// order ends delivered once and read.
async fn crash_at(pool: PgPool, schema: Schema, stall: &str) {
    let node = node_with_basic_auth(schema).await;
    let slug = listed_devices(&pool, &node, 1).await.remove(0);
    let order = node.fund_order(&slug).unwrap();
    let data = p2pvps_tests::temp_dir("p2pvps-crash-");
    let args = market_args(&node);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut events, mut all) = (node.events(), node.events());
    killed_at(&node, &pool, data.path(), &args, stall).await;
    let second = Server::start(&pool, data.path(), &args).await;
    expect_event(
        &mut events,
        &format!("read {order}"),
        30,
        "the order's notification is marked read after the restart",
    )
    .await;
    let sale = node.sale(&order).unwrap();
    assert_eq!(sale.state, FULFILLED);
    // Exactly one fulfilment applied by the node (it refuses a second), however many were sent.
    let mut applied = 0;
    while let Ok(e) = all.try_recv() {
        applied += usize::from(e == format!("fulfilled {order}"));
    }
    assert_eq!(applied, 1);
    let calls = node.calls();
    let sent = calls
        .iter()
        .filter(|c| *c == "POST /ob/orderfulfillment")
        .count();
    if stall == "/ob/marknotificationasread" {
        // Delivered before the kill: the restarted server sees the order fulfilled and sends nothing.
        assert_eq!(sent, 1, "{calls:#?}");
    } else {
        assert!((1..=2).contains(&sent), "{calls:#?}");
    }
    let rentals: Vec<(String, String)> =
        sqlx::query_as("SELECT order_ref, state FROM rentals WHERE marketplace = 'openbazaar'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rentals, [(order.clone(), "active".to_owned())]);
    let (unbalanced, payments) = ledger_after_sales(&pool).await;
    assert_eq!(unbalanced, 0);
    assert_eq!(payments, 1, "one payment recorded");
    second.kill().await;
    drop(data);
}

#[sqlx::test(migrations = "../sql")]
async fn killed_between_delivering_and_marking_read_it_delivers_once(pool: PgPool) {
    crash_at(pool, Schema::V5, "/ob/marknotificationasread").await;
}

#[sqlx::test(migrations = "../sql")]
async fn killed_while_delivering_it_delivers_once_after_the_restart(pool: PgPool) {
    crash_at(pool, Schema::V4, "/ob/orderfulfillment").await;
}
