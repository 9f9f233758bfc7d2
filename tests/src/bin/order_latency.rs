//! `order-latency`: how long a buyer waits from funding an OpenBazaar order to the node holding their
//! login details (our fulfillment), for `cargo xtask bench order`. The real server binary
//! (`P2PVPS_SERVER_BIN`, the release build) sells on a fake node with the server's default poll interval;
//! in mode `hint` the node's websocket pushes each order (the server reads orders at once), in mode `poll`
//! the websocket is unreachable and only the poll finds them. Orders are funded at staggered times that
//! do not line up with the poll. Prints one JSON object; it reports, never asserts.
//!
//! Usage: `DATABASE_URL=... order-latency hint|poll [ORDERS]` (an empty database of its own).

use p2pvps_tests::openbazaar::{Schema, event, listed_devices, market_args, node_with_basic_auth};
use p2pvps_tests::server::Server;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let hint = match mode.as_str() {
        "hint" => true,
        "poll" => false,
        _ => {
            eprintln!("usage: order-latency hint|poll [ORDERS]");
            std::process::exit(2);
        }
    };
    let orders: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(8);
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL: an empty database of its own");
    let pool = p2pvps_server::infra::db::connect(Some(&url))
        .await
        .expect("connect");
    p2pvps_server::infra::db::migrate(&pool)
        .await
        .expect("migrate");

    let node = node_with_basic_auth(Schema::V5).await;
    if !hint {
        node.refuse_websockets();
    }
    let slugs = listed_devices(&pool, &node, orders).await;
    // The production poll interval: drop the tests' one-second `--market-poll`.
    let mut flags = market_args(&node);
    if let Some(i) = flags.iter().position(|f| f == "--market-poll") {
        flags.drain(i..i + 2);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let data = std::env::temp_dir().join(format!("p2pvps-order-latency-{}", std::process::id()));
    let mut events = node.events();
    let server = Server::start(&pool, &data, &flags).await;
    if hint {
        assert!(
            event(&mut events, "websocket open", Duration::from_secs(30)).await,
            "the server did not open the node's websocket"
        );
    }

    // Fund every order, spaced by a step that does not divide the poll interval, then collect when each
    // one's fulfillment reached the node.
    let step = Duration::from_millis(if hint { 300 } else { 3700 });
    let mut funded = Vec::new();
    let started = Instant::now();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    {
        let mut events = node.events();
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                if let Some(order) = e.strip_prefix("fulfilled ") {
                    let _ = done_tx.send((order.to_owned(), Instant::now()));
                }
            }
        });
    }
    for (i, slug) in slugs.iter().enumerate() {
        tokio::time::sleep_until((started + step * i as u32).into()).await;
        let order = node.fund_order(slug).expect("a listed slug");
        funded.push((order, Instant::now()));
    }
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while latencies.len() < funded.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some((order, at))) = tokio::time::timeout(left, done_rx.recv()).await else {
            break;
        };
        if let Some((_, t0)) = funded.iter().find(|(o, _)| *o == order) {
            latencies.push(at.duration_since(*t0).as_secs_f64() * 1000.0);
        }
    }
    server.kill().await;
    let _ = std::fs::remove_dir_all(&data);
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{}",
        serde_json::json!({
            "mode": mode,
            "orders": funded.len(),
            "delivered": latencies.len(),
            "median_ms": pick(0.5),
            "max_ms": pick(1.0),
            "min_ms": pick(0.0),
        })
    );
}
