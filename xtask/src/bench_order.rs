//! `cargo xtask bench order`: from a buyer funding an OpenBazaar order to the node holding their login
//! details, with the node's websocket hint and without it (polling only, the server's default 30 s), each
//! on a database of its own (the `order_latency` tool in `tests/`). Goal: < 2 s with the hint.
//!
//! It reports, never asserts: figures go to `target/bench/order.json` and its section of `report.md`.

use crate::bench::{json_number, run_tool};
use crate::postgres;
use anyhow::Result;
use std::path::Path;

/// Orders measured per mode: the polling mode spaces them 3.7 s apart, so it takes about a minute.
const ORDERS: [(&str, usize); 2] = [("hint", 20), ("poll", 8)];

pub fn order(root: &Path) -> Result<String> {
    eprintln!("==> bench order: release builds");
    let bin = crate::build_server(root, true)?;
    let web = root.join(format!("target/bench/order-web-{}", std::process::id()));
    std::fs::create_dir_all(&web)?;
    std::fs::write(
        web.join("index.html"),
        "<!doctype html><title>bench</title>",
    )?;
    let admin_url = postgres::database_url(root)?;
    let mut results = Vec::new();
    for (mode, orders) in ORDERS {
        eprintln!("==> bench order: {orders} orders, {mode}");
        let orders = orders.to_string();
        let out = run_tool(
            &admin_url,
            "order_latency",
            &[mode.as_ref(), orders.as_ref()],
            &[
                ("P2PVPS_SERVER_BIN", bin.as_os_str()),
                ("P2PVPS_WEB_DIR", web.as_os_str()),
                ("P2PVPS_LOG", "warn".as_ref()),
            ],
        )?;
        results.push(out);
    }
    let _ = std::fs::remove_dir_all(&web);
    let field = json_number;
    let (hint, poll) = (&results[0], &results[1]);
    std::fs::write(
        root.join("target/bench/order.json"),
        format!("{{\n  \"hint\": {hint},\n  \"poll\": {poll}\n}}\n"),
    )?;
    let row = |json: &str| {
        format!(
            "{:.0} ms (max {:.0} ms, {}/{} delivered)",
            field(json, "median_ms"),
            field(json, "max_ms"),
            field(json, "delivered"),
            field(json, "orders")
        )
    };
    Ok(format!(
        "## Order to credentials (OpenBazaar)\n\n| measure | with websocket hint | polling only (30 s) | hint vs polling |\n\
         |---|---|---|---|\n| funded order → fulfillment with login at the node, median | {} | {} | {:.0}x sooner |\n\n\
         Goal: < 2 s with the hint.\n",
        row(hint),
        row(poll),
        field(poll, "median_ms") / field(hint, "median_ms"),
    ))
}
