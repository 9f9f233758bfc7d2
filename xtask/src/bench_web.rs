//! `cargo xtask bench web`: the dashboard's download size (wasm + JS, gzipped; goal < 300 KB) and its time
//! to first useful paint of the device list in headless Chromium (the `web_paint` tool in `tests/`).
//!
//! It reports, never asserts: figures go to `target/bench/web.json` and its section of `report.md`.

use crate::bench::{json_number, run_tool};
use crate::{build_frontend, postgres, tools};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, Stdio};

/// Budget for what a first visit downloads (wasm + JS, gzipped).
const BUDGET_KB: f64 = 300.0;

/// Bytes of `path` gzipped at the level servers use for static files (-9, as a precompressed asset).
fn gzipped(path: &Path) -> Result<u64> {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .stderr(Stdio::inherit())
        .output()
        .context("running gzip")?;
    if !out.status.success() {
        bail!("gzip failed on {}", path.display());
    }
    Ok(out.stdout.len() as u64)
}

pub fn web(root: &Path) -> Result<String> {
    eprintln!("==> bench web: dashboard release build");
    build_frontend(root)?;
    let dist = root.join("target/dist");
    let (mut raw, mut gz) = ([0u64; 3], [0u64; 3]);
    for entry in std::fs::read_dir(&dist)? {
        let path = entry?.path();
        let kind = match path.extension().and_then(|e| e.to_str()) {
            Some("wasm") => 0,
            Some("js") => 1,
            Some("css") => 2,
            _ => continue,
        };
        raw[kind] += std::fs::metadata(&path)?.len();
        gz[kind] += gzipped(&path)?;
    }
    let kb = |b: u64| b as f64 / 1000.0;
    let download = kb(gz[0] + gz[1]);

    eprintln!("==> bench web: first useful paint in headless Chromium");
    tools::ensure_browser()?;
    let admin_url = postgres::database_url(root)?;
    let paint = run_tool(
        &admin_url,
        "web_paint",
        &[dist.as_os_str(), "5".as_ref()],
        &[],
    )?;
    let field = |name: &str| json_number(&paint, name);
    let (cold, warm, fcp, devices) = (
        field("cold_ms"),
        field("warm_ms"),
        field("first_contentful_paint_ms"),
        field("devices"),
    );
    let (peer_cold, peer_warm) = (field("peer_cold_ms"), field("peer_warm_ms"));
    let json = format!(
        "{{\n  \"wasm_bytes\": {},\n  \"wasm_gzip_bytes\": {},\n  \"js_bytes\": {},\n  \"js_gzip_bytes\": {},\n  \
         \"css_gzip_bytes\": {},\n  \"download_gzip_kb\": {download:.1},\n  \"budget_kb\": {BUDGET_KB},\n  \
         \"paint\": {}\n}}\n",
        raw[0],
        gz[0],
        raw[1],
        gz[1],
        gz[2],
        paint.trim()
    );
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("web.json"), json)?;
    Ok(format!(
        "## Dashboard\n\n| measure | p2pvps (Yew SPA) | peer: the same rows server-rendered, no script | ratio | goal |\n\
         |---|---|---|---|---|\n\
         | wasm + JS, gzipped | {download:.1} KB (wasm {:.1} KB, JS {:.1} KB; CSS {:.1} KB more) | 0 KB | | < {BUDGET_KB} KB |\n\
         | device list ({devices} devices) painted, cold cache, median of 5 | {cold:.0} ms (first contentful paint {fcp:.0} ms) | {peer_cold:.0} ms | {:.1}x | |\n\
         | device list painted again, warm cache, median of 5 | {warm:.0} ms | {peer_warm:.0} ms | {:.1}x | |\n",
        kb(gz[0]),
        kb(gz[1]),
        kb(gz[2]),
        cold / peer_cold,
        warm / peer_warm,
    ))
}
