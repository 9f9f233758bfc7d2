//! Developer tasks, in Rust so they need nothing but cargo:
//!
//! - `cargo xtask run [-- serve flags]`: install missing tools, build the dashboard, start a database if none
//!   is configured, and run the server on 127.0.0.1:8080.
//! - `cargo xtask test`: formatting, clippy, the release frontend build, the deployment files' check, then
//!   every test against Postgres.
//! - `cargo xtask demo`: the server, three users and a simulated device (the real agent and a real sshd),
//!   for a newcomer to rent a device within a minute.
//! - `cargo xtask chaos [KILLS]`: the long reliability tests (`tests/tests/chaos/`, test binary `chaos`).
//! - `cargo xtask fuzz [SECONDS]`: the fuzz targets under `fuzz/`, each for a bounded time.
//! - `cargo xtask sqlx-prepare`: refresh `.sqlx/`, the SQL macros' offline data (checked by `test`).
//! - `cargo xtask deploy-check`: `compose.yaml` validated by Compose, the Dockerfile linted; no engine.
//!
//! Tools are installed only when missing, so repeated runs are fast.

mod bench;
mod bench_gateway;
mod bench_graphql;
mod bench_order;
mod bench_web;
mod demo;
mod deploy;
mod fuzz;
mod layout;
mod postgres;
mod sqlx_data;
mod tools;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    // `cargo xtask run -- --http ...`: the `--` only separates our task from the flags it passes on.
    let rest: Vec<String> = args.skip_while(|a| a == "--").collect();
    let root = workspace_root()?;
    std::env::set_current_dir(&root)?;
    match task.as_str() {
        "run" => run(&root, &rest),
        "test" => test(&root),
        "demo" => demo::demo(&root),
        "fuzz" => fuzz::fuzz(&root, rest.first().map(String::as_str)),
        "chaos" => chaos(&root, rest.first().map(String::as_str)),
        "frontend" => build_frontend(&root),
        "pg-stop" => postgres::stop(&root),
        "deploy-check" => deploy::check(&root),
        "layout" => layout::check(&root),
        "sqlx-prepare" => sqlx_data::prepare(&root),
        "sqlx-check" => sqlx_data::check(&root),
        "bench" => bench(&root, rest.first().map(String::as_str)),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n  run [-- ARGS]  build everything and run the server (ARGS go to `p2pvps serve`)\n  \
                 test           fmt, clippy, frontend build and the whole test suite\n  \
                 demo           the server with demo users and a simulated device online (the real agent and sshd)\n  frontend       build the dashboard into target/dist\n  \
                 bench [tunnel|gateway|graphql|order|web]  benchmarks (all by default; report in target/bench/report.md)\n  \
                 chaos [KILLS]  SIGKILL the server KILLS times (default 50) mid-order, restart PostgreSQL under live tunnels, 1,000 renters beside hostile clients\n  \
                 fuzz [SECONDS] every fuzz target for SECONDS each (default 60)\n  \
                 deploy-check   validate compose.yaml and lint the Dockerfile (no Docker engine needed)\n  \
                 layout         the backend's layout rules: no import circle between files, no long file without a reason\n  \
                 sqlx-prepare   refresh .sqlx/, the query macros' offline data, after changing a statement or a migration\n  \
                 sqlx-check     fail when .sqlx/ is stale (part of `test`)\n  \
                 pg-stop        stop the private PostgreSQL started under target/pg"
            );
            if task.is_empty() {
                Ok(())
            } else {
                bail!("unknown task `{task}`")
            }
        }
    }
}

fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

/// Runs one benchmark or all of them and writes `target/bench/report.md` from their sections.
fn bench(root: &Path, which: Option<&str>) -> Result<()> {
    let mut sections = Vec::new();
    if matches!(which, None | Some("tunnel")) {
        sections.push(bench::tunnel(root)?);
    }
    if matches!(which, None | Some("gateway")) {
        sections.push(bench_gateway::gateway(root)?);
    }
    if matches!(which, None | Some("graphql")) {
        sections.push(bench_graphql::graphql(root)?);
    }
    if matches!(which, None | Some("order")) {
        sections.push(bench_order::order(root)?);
    }
    if matches!(which, None | Some("web")) {
        sections.push(bench_web::web(root)?);
    }
    if sections.is_empty() {
        bail!(
            "unknown benchmark `{}` (available: tunnel, gateway, graphql, order, web)",
            which.unwrap_or_default()
        );
    }
    let report = format!(
        "# p2pvps benchmarks\n\n{}\n{}",
        machine(root),
        sections.join("\n")
    );
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("report.md"), &report)?;
    // report.json: every benchmark's figures from its own file (those of this run and earlier ones).
    let mut parts = Vec::new();
    for name in ["tunnel", "gateway", "graphql", "order", "web"] {
        if let Ok(text) = std::fs::read_to_string(out.join(format!("{name}.json"))) {
            parts.push(format!("  \"{name}\": {}", text.trim()));
        }
    }
    std::fs::write(
        out.join("report.json"),
        format!("{{\n{}\n}}\n", parts.join(",\n")),
    )?;
    println!("{report}");
    Ok(())
}

/// The machine and the versions the figures were measured with, for the report's head.
fn machine(root: &Path) -> String {
    let first_line = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .map(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "not found".into())
    };
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let pg = postgres::bindir()
        .map(|b| {
            first_line(
                b.join("postgres").to_str().unwrap_or("postgres"),
                &["--version"],
            )
        })
        .unwrap_or_else(|_| "not found".into());
    format!(
        "Measured on {} cores ({cpu}), {memory} of memory, {}; p2pvps {} ({}), {}, {}, {pg}, {}, {}.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        first_line("uname", &["-sr"]),
        env!("CARGO_PKG_VERSION"),
        first_line("git", &["rev-parse", "--short", "HEAD"]),
        first_line("rustc", &["--version"]),
        first_line("ssh", &["-V"]),
        first_line("chromium", &["--version"]),
        first_line("wrk", &["--version"])
            .split(" Copyright")
            .next()
            .unwrap_or_default(),
    )
}

/// Prints a step header, so long runs show where they are.
fn step(n: usize, total: usize, what: &str) {
    eprintln!("\n==> [{n}/{total}] {what}");
}

/// Runs a command, failing with its command line when it fails.
fn sh(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("command failed ({status}): {shown}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

fn build_frontend(root: &Path) -> Result<()> {
    tools::ensure_frontend_tools(root)?;
    // Trunk --offline passes --offline to cargo: fetch first so new dependencies are present.
    sh(cargo().args(["fetch", "--target", "wasm32-unknown-unknown"]))?;
    // Trunk runs the first `wasm-opt` on PATH: npm's pinned binaryen, never Debian's (too old for rustc).
    let path = std::env::join_paths(std::iter::once(tools::wasm_opt_bin(root)?).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))?;
    sh(Command::new("trunk")
        .args(["build", "--release", "--offline", "--skip-version-check"])
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", root.join("target/trunk"))
        .env("TRUNK_OFFLINE", "true"))?;
    tools::graphiql_assets(root)
}

/// Builds the `p2pvps` binary (debug or release) and returns its path.
fn build_server(root: &Path, release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "-j",
        "2",
        "--package",
        "p2pvps-server",
        "--bin",
        "p2pvps",
    ]);
    if release {
        cmd.arg("--release");
    }
    sh(&mut cmd)?;
    Ok(root.join(if release {
        "target/release/p2pvps"
    } else {
        "target/debug/p2pvps"
    }))
}

fn run(root: &Path, extra: &[String]) -> Result<()> {
    let total = 4;
    step(1, total, "tools and dashboard");
    build_frontend(root)?;
    step(2, total, "database");
    let url = postgres::database_url(root)?;
    step(3, total, "server build");
    let server = build_server(root, false)?;
    step(4, total, "server (Ctrl-C stops it)");
    let data = root.join("target/p2pvps-data");
    sh(Command::new(server)
        .arg("serve")
        .args(extra)
        .env("DATABASE_URL", url)
        .env_remove("P2PVPS_CONFIG")
        .env("P2PVPS_DATA_DIR", data)
        .env("P2PVPS_WEB_DIR", root.join("target/dist")))
}

/// The long reliability tests, ignored in the normal suite: the real server SIGKILLed `kills` times
/// during order processing (see `tests/tests/chaos/main.rs`), figures printed at the end.
fn chaos(root: &Path, kills: Option<&str>) -> Result<()> {
    let kills = kills.unwrap_or("50");
    if kills.parse::<usize>().map_or(true, |k| k == 0) {
        bail!("cargo xtask chaos [KILLS]: KILLS is a whole number above 0");
    }
    let total = 2;
    step(
        1,
        total,
        "private PostgreSQL (one test stops and starts it) and builds",
    );
    let url = postgres::start(root)?;
    let (pg_stop, pg_start) = postgres::restart_commands(root)?;
    // The release server: the load run measures it as deployed.
    let server = build_server(root, true)?;
    // The server wants a dashboard to serve; these tests never open it.
    let web = root.join("target/chaos-web");
    std::fs::create_dir_all(&web)?;
    std::fs::write(
        web.join("index.html"),
        "<!doctype html><title>chaos</title>",
    )?;
    step(
        2,
        total,
        &format!(
            "{kills} SIGKILLs during order processing; PostgreSQL restarted under live tunnels; \
             1,000 renters over 100 devices beside hostile clients (CHAOS_LOAD_SECS, default 180)"
        ),
    );
    sh(cargo()
        .args([
            "test",
            "-j",
            "2",
            "-p",
            "p2pvps-tests",
            "--test",
            "chaos",
            "--",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DATABASE_URL", url)
        .env("P2PVPS_SERVER_BIN", server)
        .env("P2PVPS_LOG", "warn")
        .env("CHAOS_PG_STOP", pg_stop)
        .env("CHAOS_PG_START", pg_start)
        .env("P2PVPS_WEB_DIR", web)
        .env("CHAOS_KILLS", kills))
}

fn test(root: &Path) -> Result<()> {
    let total = 6;
    step(1, total, "cargo fmt --check, the backend's layout");
    sh(cargo().args(["fmt", "--all", "--", "--check"]))?;
    layout::check(root)?;
    step(
        2,
        total,
        "the SQL macros' offline data (.sqlx/), clippy (native and wasm)",
    );
    sqlx_data::check(root)?;
    sh(cargo().args(["clippy", "-j", "2", "--all-targets", "--", "-D", "warnings"]))?;
    tools::ensure_wasm_target()?;
    sh(cargo().args([
        "clippy",
        "-j",
        "2",
        "--package",
        "p2pvps-web",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ]))?;
    step(3, total, "frontend release build");
    build_frontend(root)?;
    step(4, total, "database, browser and the localtunnel client");
    let url = postgres::database_url(root)?;
    tools::ensure_browser()?;
    let lt = tools::localtunnel_client(root)?;
    step(5, total, "deployment files (compose.yaml, Dockerfile)");
    deploy::check(root)?;
    step(6, total, "test suite");
    sh(cargo()
        .args(["test", "-j", "2", "--workspace", "--exclude", "p2pvps-web"])
        .env("DATABASE_URL", url)
        .env("P2PVPS_WEB_DIR", root.join("target/dist"))
        .env("P2PVPS_LT", lt))
}
