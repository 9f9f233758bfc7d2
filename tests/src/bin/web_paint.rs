//! `web-paint`: time to first useful paint of the dashboard's device list in headless Chromium, for
//! `cargo xtask bench web`. It serves `WEB_DIR` from the real server on an empty database of its own
//! (`DATABASE_URL`, created and dropped by xtask), filled with one owner with `DEVICES` devices, and measures from navigation start until the
//! list's rows are painted: cold (fresh browser profile, empty cache) and warm (the same page again).
//! Prints one JSON object; it reports, never asserts.
//!
//! Usage: `DATABASE_URL=... web-paint WEB_DIR [ROUNDS]`

use p2pvps_shared::Role;
use p2pvps_tests::browser::Browser;
use p2pvps_tests::{PASSWORD, TestApp, add_device};
use serde_json::json;

const DEVICES: usize = 50;

/// Resolves with `performance.now()` (ms since navigation start) at the first frame after the device
/// rows exist.
const UNTIL_ROWS: &str = "const done = arguments[arguments.length - 1];
function check() {
  if (document.querySelector('#devices tbody tr')) {
    requestAnimationFrame(() => done(performance.now()));
  } else {
    requestAnimationFrame(check);
  }
}
check();";

const FCP: &str = "const e = performance.getEntriesByName('first-contentful-paint')[0]; return e ? e.startTime : null;";

/// Opens the device list; returns the ms from navigation start to its rows' first paint.
async fn painted(b: &Browser) -> f64 {
    b.goto("/devices").await;
    let t = b
        .client
        .execute_async(UNTIL_ROWS, vec![])
        .await
        .expect("rows");
    t.as_f64().unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let web_dir = std::path::PathBuf::from(args.next().expect("usage: web-paint WEB_DIR [ROUNDS]"));
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL: an empty database of its own");
    let pool = p2pvps_server::db::connect(Some(&url))
        .await
        .expect("connect");
    p2pvps_server::db::migrate(&pool).await.expect("migrate");
    println!("{}", measure(pool, web_dir, rounds).await);
}

async fn measure(
    pool: sqlx::PgPool,
    web_dir: std::path::PathBuf,
    rounds: usize,
) -> serde_json::Value {
    let app = TestApp::start_with(pool, move |s| s.web_dir = Some(web_dir)).await;
    let owner = app.user("bench@example.com", Role::Owner).await;
    for i in 0..DEVICES {
        add_device(&owner, &format!("bench pi {i}")).await;
    }
    // A session cookie for the browser.
    let login = app
        .anonymous()
        .gql(
            "mutation($i: LogInInput!) { logIn(input: $i) { expiresAt } }",
            json!({"i": {"email": "bench@example.com", "password": PASSWORD}}),
        )
        .await;
    let cookie = login
        .set_cookie
        .first()
        .and_then(|c| c.split(';').next())
        .and_then(|c| c.split_once('='))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .expect("session cookie");

    let (mut cold, mut warm, mut fcp) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let b = Browser::start(&app.base, 1280).await;
        // The session cookie, set from a page of the origin that loads nothing else.
        b.goto("/healthz").await;
        b.client
            .execute(
                "document.cookie = arguments[0] + '=' + arguments[1] + '; path=/'",
                vec![json!(cookie.0), json!(cookie.1)],
            )
            .await
            .expect("cookie");
        cold.push(painted(&b).await);
        if let Some(f) = b
            .client
            .execute(FCP, vec![])
            .await
            .ok()
            .and_then(|v| v.as_f64())
        {
            fcp.push(f);
        }
        warm.push(painted(&b).await);
        b.close().await;
    }
    app.stop().await;
    json!({
        "devices": DEVICES,
        "rounds": rounds,
        "cold_ms": median(cold),
        "warm_ms": median(warm),
        "first_contentful_paint_ms": median(fcp),
    })
}
