//! Chaos (run by `cargo xtask chaos`, ignored in the normal suite, which has the two fixed cases in
//! `sales_crash.rs`): the real server binary is SIGKILLed at a random point of OpenBazaar order processing,
//! `CHAOS_KILLS` times (50 by default), restarted each time, with a new order funded before each start.
//! In the end every order is delivered exactly once and marked read, each has one active rental, the
//! ledger balances, and no rental is left half-started.

use p2pvps_tests::openbazaar::{
    FULFILLED, Schema, killed_at, listed_devices, market_args, node_with_basic_auth,
};
use p2pvps_tests::server::Server;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where an order's processing can be cut: each is a request the server makes to the node for it.
const POINTS: &[&str] = &[
    "/ob/notifications",
    "/ob/sales",
    "/ob/order/",
    "/ob/orderfulfillment",
    "/ob/marknotificationasread",
];

#[sqlx::test(migrations = "../sql")]
#[ignore = "long: run by `cargo xtask chaos`"]
async fn sigkill_at_random_points_of_order_processing_loses_and_repeats_nothing(pool: PgPool) {
    let kills: usize = std::env::var("CHAOS_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(50);
    let node = node_with_basic_auth(Schema::V5).await;
    let slugs = listed_devices(&pool, &node, kills).await;
    // Every event the node emits, kept in order (a reader that never falls behind).
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let changed = Arc::new(tokio::sync::Notify::new());
    {
        let (seen, changed, mut events) = (seen.clone(), changed.clone(), node.events());
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                seen.lock().unwrap().push(e);
                changed.notify_waiters();
            }
        });
    }
    let data = std::env::temp_dir().join(format!("p2pvps-chaos-{}", uuid::Uuid::new_v4()));
    let args = market_args(&node);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut orders = Vec::new();
    let mut cut_at: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, slug) in slugs.iter().enumerate() {
        orders.push(node.fund_order(slug).expect("a listed slug"));
        let point = POINTS[(uuid::Uuid::new_v4().as_u128() % POINTS.len() as u128) as usize];
        killed_at(&node, &pool, &data, &args, point).await;
        *cut_at.entry(point).or_default() += 1;
        eprintln!("kill {}/{kills} at {point}", i + 1);
    }

    // Left alone at last, the server finishes what every killed one left.
    let last = Server::start(&pool, &data, &args).await;
    let everything_read = async {
        loop {
            let notified = changed.notified();
            let done = {
                let seen = seen.lock().unwrap();
                orders
                    .iter()
                    .all(|o| seen.iter().any(|e| *e == format!("read {o}")))
            };
            if done {
                return;
            }
            notified.await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), everything_read)
        .await
        .expect("every order's notification marked read within 120 s of the last start");
    last.kill().await;

    let seen = seen.lock().unwrap().clone();
    for order in &orders {
        assert_eq!(node.sale(order).unwrap().state, FULFILLED, "{order}");
        let applied = seen
            .iter()
            .filter(|e| **e == format!("fulfilled {order}"))
            .count();
        assert_eq!(applied, 1, "{order} fulfilled {applied} times");
    }
    let rentals: Vec<(String, String)> = sqlx::query_as(
        "SELECT order_ref, state FROM rentals WHERE marketplace = 'openbazaar' ORDER BY order_ref",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut expected: Vec<(String, String)> = orders
        .iter()
        .map(|o| (o.clone(), "active".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(rentals, expected, "one active rental per order");
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT rental_id, currency FROM ledger_entries GROUP BY rental_id, currency \
         HAVING sum(amount_minor) <> 0) x",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(unbalanced, 0, "every rental's ledger sums to zero");
    let payments: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_entries WHERE account = 'marketplace:openbazaar'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(payments, orders.len() as i64, "one payment per order");
    println!(
        "chaos: {kills} SIGKILLs survived (cut at {cut_at:?}); {} orders checked: each fulfilled once \
         and read, one active rental each, {payments} payments, ledger balanced",
        orders.len()
    );
    let _ = std::fs::remove_dir_all(data);
}
