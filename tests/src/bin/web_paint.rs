//! `web-paint`: time to first useful paint of the dashboard's device list in headless Chromium, for
//! `cargo xtask bench web`. It serves `WEB_DIR` from the real server on an empty database of its own
//! (`DATABASE_URL`, created and dropped by xtask), filled with one owner with `DEVICES` devices, and measures from navigation start until the
//! list's rows are painted: cold (fresh browser profile, empty cache) and warm (the same page again).
//! The peer, measured the same way in the same browser: the same rows as a server-rendered HTML page with
//! the dashboard's stylesheet and no script (what a classic server-rendered dashboard sends), served by
//! the same server from a copy of `WEB_DIR`. Prints one JSON object; it reports, never asserts.
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

/// Opens `path` (a page with the device list); returns the ms from navigation start to its rows' first
/// paint.
async fn painted(b: &Browser, path: &str) -> f64 {
    b.goto(path).await;
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
    let pool = p2pvps_server::infra::db::connect(Some(&url))
        .await
        .expect("connect");
    p2pvps_server::infra::db::migrate(&pool)
        .await
        .expect("migrate");
    println!("{}", measure(pool, web_dir, rounds).await);
}

async fn measure(
    pool: sqlx::PgPool,
    web_dir: std::path::PathBuf,
    rounds: usize,
) -> serde_json::Value {
    // A copy of the dashboard with the peer page added beside it.
    let served = std::env::temp_dir().join(format!("p2pvps-web-paint-{}", std::process::id()));
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&web_dir)
        .arg(&served)
        .status()
        .is_ok_and(|s| s.success());
    assert!(copied, "copying {} failed", web_dir.display());
    let app = TestApp::start_with(pool, {
        let served = served.clone();
        move |s| s.web_dir = Some(served)
    })
    .await;
    let owner = app.user("bench@example.com", Role::Owner).await;
    for i in 0..DEVICES {
        add_device(&owner, &format!("bench pi {i}")).await;
    }
    let list = owner
        .gql(
            "{ devices(first: 100) { nodes { name status tunnelPort subdomain } } }",
            json!({}),
        )
        .await;
    std::fs::write(
        served.join("peer-devices.html"),
        peer_page(&web_dir, list.data("devices.nodes")),
    )
    .expect("peer page");
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
        cold.push(painted(&b, "/devices").await);
        if let Some(f) = b
            .client
            .execute(FCP, vec![])
            .await
            .ok()
            .and_then(|v| v.as_f64())
        {
            fcp.push(f);
        }
        warm.push(painted(&b, "/devices").await);
        b.close().await;
    }
    let (mut peer_cold, mut peer_warm) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let b = Browser::start(&app.base, 1280).await;
        peer_cold.push(painted(&b, "/peer-devices.html").await);
        peer_warm.push(painted(&b, "/peer-devices.html").await);
        b.close().await;
    }
    app.stop().await;
    let _ = std::fs::remove_dir_all(&served);
    json!({
        "devices": DEVICES,
        "rounds": rounds,
        "cold_ms": median(cold),
        "warm_ms": median(warm),
        "first_contentful_paint_ms": median(fcp),
        "peer_cold_ms": median(peer_cold),
        "peer_warm_ms": median(peer_warm),
    })
}

/// The device list as a server would render it: a table with the same rows, the dashboard's stylesheet,
/// no script.
fn peer_page(web_dir: &std::path::Path, nodes: &serde_json::Value) -> String {
    let css = std::fs::read_dir(web_dir)
        .expect("web dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".css"))
        .unwrap_or_default();
    let escape = |v: &serde_json::Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
            .replace('&', "&amp;")
            .replace('<', "&lt;")
    };
    let rows: String = nodes
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|n| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&n["name"]),
                escape(&n["status"]),
                escape(&n["tunnelPort"]),
                escape(&n["subdomain"])
            )
        })
        .collect();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Devices</title>\
         <link rel=\"stylesheet\" href=\"/{css}\"></head><body><main><h1>Devices</h1>\
         <table id=\"devices\"><thead><tr><th>Name</th><th>Status</th><th>Port</th><th>Subdomain</th></tr>\
         </thead><tbody>{rows}</tbody></table></main></body></html>"
    )
}
