//! `cargo xtask bench graphql`: an owner's "my devices" page — the dashboard's own `Devices` query, the
//! first 100 of the owner's 1,000 devices — over HTTP with a bearer token at 64 concurrent clients (wrk,
//! POST), side by side with pgbench running that page's SELECT on the same PostgreSQL at the same
//! concurrency. It reports, never asserts: figures go to `target/bench/graphql.json` and its section of
//! `report.md`.

use crate::bench::{
    Killer, free_port, median, migrate_with_owner, psql, wait_listening, with_database,
};
use crate::bench_gateway::wrk_figures;
use crate::{postgres, tools};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, Stdio};

const DEVICES: usize = 1000;
const CLIENTS: usize = 64;
const SECONDS: u32 = 8;
/// Runs of each side; the median (by rate) is reported.
const ROUNDS: usize = 3;
const QUERY: &str = "query Devices($after: String) { devices(first: 100, after: $after) { \
    nodes { id name status lastSeen tunnelPort subdomain rented forRent owner { email } } \
    pageInfo { hasNextPage endCursor } } }";

pub fn graphql(root: &Path) -> Result<String> {
    eprintln!("==> bench graphql: tools (wrk, pgbench) and release build");
    tools::ensure_wrk()?;
    let pgbench = postgres::bindir()?.join("pgbench");
    if !pgbench.is_file() {
        bail!(
            "no pgbench in {} (Debian package postgresql)",
            pgbench.display()
        );
    }
    let bin = crate::build_server(root, true)?;
    let admin_url = postgres::database_url(root)?;
    let db = format!("p2pvps_gqlbench_{}", std::process::id());
    psql(&admin_url, &format!("CREATE DATABASE {db}"))?;
    let url = with_database(&admin_url, &db);
    let work = root.join(format!("target/bench/graphql-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run(root, &bin, &url, &work, &pgbench);
    let _ = psql(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    let _ = std::fs::remove_dir_all(&work);
    result
}

struct Side {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn run(root: &Path, bin: &Path, url: &str, work: &Path, pgbench: &Path) -> Result<String> {
    let data = work.join("data");
    let serve = |args: &[&str]| crate::bench::server_command(bin, url, &data, args);
    migrate_with_owner(&serve)?;
    let owner = psql(
        url,
        "SELECT id FROM users WHERE email = 'bench@p2pvps.bench'",
    )?
    .trim()
    .to_owned();
    psql(
        url,
        &format!(
            "INSERT INTO devices (id, owner_id, name, tunnel_port, subdomain, credential_hash) \
             SELECT gen_random_uuid(), '{owner}', 'device-' || i, 20000 + i, 'device-' || i, \
             sha256(convert_to('not-a-credential-' || i, 'UTF8')) FROM generate_series(1, {DEVICES}) i"
        ),
    )?;
    let (http, ssh) = (free_port()?, free_port()?);
    let mut procs = Killer(Vec::new());
    procs.0.push(
        serve(&[
            "serve",
            "--http",
            &format!("127.0.0.1:{http}"),
            "--ssh",
            &format!("127.0.0.1:{ssh}"),
            "--log",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?,
    );
    wait_listening(http)?;
    let endpoint = format!("http://127.0.0.1:{http}/graphql");
    let token = log_in(&endpoint)?;
    let page = post(
        &endpoint,
        Some(&token),
        &serde_json::json!({"query": QUERY}),
    )?;
    let nodes = page["data"]["devices"]["nodes"]
        .as_array()
        .map_or(0, Vec::len);
    if nodes != 100 {
        bail!("the Devices query answered {nodes} devices, not 100: {page}");
    }

    eprintln!("==> bench graphql: {CLIENTS} clients, {SECONDS} s, {ROUNDS} rounds each side");
    let script = work.join("devices.lua");
    let body = serde_json::json!({"query": QUERY, "variables": {}}).to_string();
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = {body:?}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
        ),
    )?;
    let mut ours = Vec::new();
    for _ in 0..ROUNDS {
        let out = Command::new("wrk")
            .args([
                "-t2",
                &format!("-c{CLIENTS}"),
                &format!("-d{SECONDS}s"),
                "--latency",
                "-s",
            ])
            .arg(&script)
            .arg(&endpoint)
            .output()
            .context("running wrk")?;
        let (rate, p50_ms, p99_ms) =
            wrk_figures(&String::from_utf8_lossy(&out.stdout), "/graphql")?;
        ours.push(Side {
            rate,
            p50_ms,
            p99_ms,
        });
    }
    // The page's SELECT as the server sends it (the device list's columns, keyset order, 100 rows).
    let sql = work.join("devices.sql");
    std::fs::write(
        &sql,
        format!(
            "SELECT id, owner_id, name, description, cpu_model, cpu_cores, memory_mb, disk_gb, arch, internet_mbps, \
             price_minor, currency, rental_hours, for_rent, status, last_seen, tunnel_port, subdomain, web_publishing, \
             os, agent_version, facts_reported_at, provisioner, created_at, updated_at FROM devices d \
             WHERE deleted_at IS NULL AND owner_id = '{owner}' ORDER BY created_at, id LIMIT 100;\n"
        ),
    )?;
    let mut peer = Vec::new();
    for round in 0..ROUNDS {
        let prefix = work.join(format!("pgbench-{round}"));
        let out = Command::new(pgbench)
            .args([
                "-n",
                "-c",
                &CLIENTS.to_string(),
                "-j",
                "2",
                "-T",
                &SECONDS.to_string(),
                "-M",
                "prepared",
                "-l",
            ])
            .arg(format!("--log-prefix={}", prefix.display()))
            .arg("-f")
            .arg(&sql)
            .arg(url)
            .output()
            .context("running pgbench")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let rate: f64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("tps = "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| {
                format!(
                    "no tps in pgbench's output:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let (p50_ms, p99_ms) = pgbench_latencies(work, &format!("pgbench-{round}"))?;
        peer.push(Side {
            rate,
            p50_ms,
            p99_ms,
        });
    }
    let pick = |mut runs: Vec<Side>| {
        let mid = median(runs.iter().map(|s| s.rate).collect());
        let i = runs.iter().position(|s| s.rate == mid).unwrap_or(0);
        runs.swap_remove(i)
    };
    let (ours, peer) = (pick(ours), pick(peer));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let ratio = ours.rate / peer.rate.max(0.001);
    let json = crate::bench::serde_like_json(&[
        ("devices", DEVICES.to_string()),
        ("clients", CLIENTS.to_string()),
        ("seconds", SECONDS.to_string()),
        ("graphql_req_s", format!("{:.0}", ours.rate)),
        ("graphql_p50_ms", format!("{:.2}", ours.p50_ms)),
        ("graphql_p99_ms", format!("{:.2}", ours.p99_ms)),
        ("pgbench_tps", format!("{:.0}", peer.rate)),
        ("pgbench_p50_ms", format!("{:.2}", peer.p50_ms)),
        ("pgbench_p99_ms", format!("{:.2}", peer.p99_ms)),
        ("ratio", format!("{ratio:.2}")),
        ("cores", cores.to_string()),
    ]);
    std::fs::write(root.join("target/bench/graphql.json"), json)?;
    Ok(format!(
        "## GraphQL: an owner's device list ({cores} cores)\n\n\
         The dashboard's `Devices` query (first 100 of the owner's {DEVICES} devices, bearer token) at {CLIENTS} \
         concurrent clients (wrk), against pgbench running that page's SELECT on the same PostgreSQL with \
         {CLIENTS} clients; {SECONDS} s, median of {ROUNDS}.\n\n\
         | measure | p2pvps GraphQL | pgbench SELECT | ratio |\n|---|---|---|---|\n\
         | rate | {:.0} req/s | {:.0} tx/s | {ratio:.2}x |\n| p50 | {:.2} ms | {:.2} ms | |\n| p99 | {:.2} ms | {:.2} ms | |\n",
        ours.rate, peer.rate, ours.p50_ms, peer.p50_ms, ours.p99_ms, peer.p99_ms,
    ))
}

/// p50 and p99 (ms) of the transactions pgbench logged (`-l`: the third field is the latency in µs).
fn pgbench_latencies(dir: &Path, prefix: &str) -> Result<(f64, f64)> {
    let mut micros: Vec<f64> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix));
        if !is_log {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse().ok()) {
                micros.push(us);
            }
        }
    }
    if micros.is_empty() {
        bail!("pgbench logged no transactions");
    }
    micros.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize] / 1000.0;
    Ok((at(0.50), at(0.99)))
}

fn post(
    endpoint: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> Result<serde_json::Value> {
    let mut cmd = Command::new("curl");
    cmd.args(["-fsS", "-H", "content-type: application/json"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("authorization: Bearer {t}")]);
    }
    let out = cmd
        .args(["--data-binary", &body.to_string(), endpoint])
        .output()?;
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("GraphQL answer: {}", String::from_utf8_lossy(&out.stdout)))
}

fn log_in(endpoint: &str) -> Result<String> {
    let answer = post(
        endpoint,
        None,
        &serde_json::json!({
            "query": "mutation($i: LogInInput!) { logIn(input: $i) { token } }",
            "variables": {"i": {"email": "bench@p2pvps.bench", "password": "bench password long enough", "bearer": true}}
        }),
    )?;
    answer["data"]["logIn"]["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no token: {answer}"))
}
