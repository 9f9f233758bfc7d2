//! `cargo xtask bench gateway`: web requests through our gateway against the origin reached directly and
//! against the localtunnel reference server, side by side in one run, with wrk.
//!
//! One origin (a small keep-alive HTTP/1.1 server in this process) serves `/` (13 bytes) and `/1m` (1 MiB).
//! wrk loads it (a) directly, (b) through our gateway by a device's `ssh -R SUB:80`, (c) through our gateway
//! by the unmodified `lt` client, and (d) through the localtunnel reference server by the same `lt` client.
//! It reports, never asserts: figures go to `target/bench/gateway.json` and its section of `report.md`.

use crate::bench::{
    Killer, free_port, median, migrate_with_owner, psql, serde_like_json, wait_listening,
    with_database,
};
use crate::{postgres, tools};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CREDENTIAL: &str = "bench-credential-not-secret";
const DOMAIN: &str = "bench.test";
const CONNECTIONS: usize = 32;
const SECONDS: u32 = 8;
/// Rounds per figure; the median is reported (loopback on 2 cores is noisy).
const ROUNDS: usize = 3;

/// The origin: a thread per connection, keep-alive, `/1m` answers 1 MiB, anything else 13 bytes.
fn origin() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let small: Arc<Vec<u8>> = Arc::new(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n"
            .to_vec(),
    );
    let mut big = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        1 << 20
    )
    .into_bytes();
    big.extend((0..1u32 << 20).map(|i| (i % 251) as u8));
    let big = Arc::new(big);
    // The lt client connects to `localhost`, which may resolve to ::1 first.
    let v6 = TcpListener::bind(("::1", port)).ok();
    for listener in std::iter::once(listener).chain(v6) {
        let (small, big) = (Arc::clone(&small), Arc::clone(&big));
        std::thread::spawn(move || {
            for socket in listener.incoming().flatten() {
                let (small, big) = (Arc::clone(&small), Arc::clone(&big));
                std::thread::spawn(move || serve_origin(socket, &small, &big));
            }
        });
    }
    Ok(port)
}

fn serve_origin(mut socket: TcpStream, small: &[u8], big: &[u8]) {
    let _ = socket.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Answer every complete request head in the buffer (GETs only: no bodies).
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = &buf[..end];
            let reply = if head.starts_with(b"GET /1m ") {
                big
            } else {
                small
            };
            if socket.write_all(reply).is_err() {
                return;
            }
            buf.drain(..end + 4);
        }
        match socket.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The status of `GET path` with `Host: host` at 127.0.0.1:port, if any answer comes.
fn status(port: u16, host: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Waits until `host` answers 200 through `port` (its tunnel is up end to end).
fn wait_site(port: u16, host: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if status(port, host, "/") == Some(200) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{host} did not answer through port {port} within 60 s")
}

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU time per 1000 requests of the relay's server process and of its tunnel client (ms).
    server_cpu: f64,
    client_cpu: f64,
}

/// CPU time (user + system) a process has used so far, in milliseconds (from /proc/PID/stat).
fn cpu_ms(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of those.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    ticks * 10.0 // USER_HZ is 100 on Linux
}

/// `1.23ms`, `456.78us`, `1.02s` as milliseconds.
fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

fn wrk(port: u16, host: &str, path: &str, pids: (Option<u32>, Option<u32>)) -> Result<Figures> {
    let cpu_before = (cpu_ms(pids.0), cpu_ms(pids.1));
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{SECONDS}s"),
            "--latency",
        ])
        .args(["-H", &format!("Host: {host}")])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .context("running wrk")?;
    let (rps, p50_ms, p99_ms) = wrk_figures(
        &String::from_utf8_lossy(&out.stdout),
        &format!("{host}{path}"),
    )?;
    let requests = rps * f64::from(SECONDS) / 1000.0;
    let per_k = |before: f64, pid| (cpu_ms(pid) - before) / requests.max(0.001);
    Ok(Figures {
        rps,
        p50_ms,
        p99_ms,
        server_cpu: per_k(cpu_before.0, pids.0),
        client_cpu: per_k(cpu_before.1, pids.1),
    })
}

/// Requests per second, p50 and p99 (ms) from `wrk --latency`'s output; socket errors and non-2xx
/// answers to `what` are warned about.
pub(crate) fn wrk_figures(text: &str, what: &str) -> Result<(f64, f64, f64)> {
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    if let Some(errors) = field("Socket errors:") {
        eprintln!("    warning: socket errors through {what}: {errors}");
    }
    let errors = field("Non-2xx or 3xx responses:").unwrap_or("0");
    if errors != "0" {
        eprintln!("    warning: {errors} non-2xx answers from {what}");
    }
    Ok((
        rps,
        field("50%").and_then(millis).unwrap_or(f64::NAN),
        field("99%").and_then(millis).unwrap_or(f64::NAN),
    ))
}

/// The median of `ROUNDS` wrk runs (by req/s; its latencies with it).
fn measure(port: u16, host: &str, path: &str, pids: (Option<u32>, Option<u32>)) -> Result<Figures> {
    let mut runs = Vec::new();
    for _ in 0..ROUNDS {
        runs.push(wrk(port, host, path, pids)?);
    }
    let mid = median(runs.iter().map(|f| f.rps).collect());
    Ok(runs.into_iter().find(|f| f.rps == mid).unwrap_or_default())
}

pub fn gateway(root: &Path) -> Result<String> {
    eprintln!("==> bench gateway: tools (wrk, the lt client, the localtunnel reference server)");
    tools::ensure_wrk()?;
    let lt = tools::localtunnel_client(root)?;
    let reference = tools::localtunnel_reference_server(root)?;
    eprintln!("==> bench gateway: release build");
    let bin = crate::build_server(root, true)?;
    let admin_url = postgres::database_url(root)?;
    let db = format!("p2pvps_gwbench_{}", std::process::id());
    psql(&admin_url, &format!("CREATE DATABASE {db}"))?;
    let url = with_database(&admin_url, &db);
    let work = root.join(format!("target/bench/gateway-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run(root, &bin, &url, &work, &lt, &reference);
    let _ = psql(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run(
    root: &Path,
    bin: &Path,
    url: &str,
    work: &Path,
    lt: &Path,
    reference: &Path,
) -> Result<String> {
    let web = work.join("web");
    std::fs::create_dir_all(&web)?;
    std::fs::write(
        web.join("index.html"),
        "<!doctype html><title>bench</title>",
    )?;
    let (http, ssh_port, gateway_port, reference_port) =
        (free_port()?, free_port()?, free_port()?, free_port()?);
    let mut procs = Killer(Vec::new());
    let data = work.join("data");
    let serve = |args: &[&str]| crate::bench::server_command(bin, url, &data, args);
    migrate_with_owner(&serve)?;
    let rows = psql(
        url,
        &format!(
            "INSERT INTO devices (id, owner_id, name, tunnel_port, subdomain, credential_hash) \
             SELECT gen_random_uuid(), (SELECT id FROM users LIMIT 1), s, 30000 + i, s, \
             sha256(convert_to('{CREDENTIAL}', 'UTF8')) FROM unnest(ARRAY['bssh', 'blt']) WITH ORDINALITY AS t(s, i) \
             RETURNING subdomain || ' ' || id"
        ),
    )?;
    let id_of = |sub: &str| {
        rows.lines()
            .find_map(|l| l.strip_prefix(&format!("{sub} ")))
            .map(str::to_owned)
            .with_context(|| format!("bench device {sub} missing"))
    };
    let (ssh_device, lt_device) = (id_of("bssh")?, id_of("blt")?);
    let server = serve(&[
        "serve",
        "--http",
        &format!("127.0.0.1:{http}"),
        "--ssh",
        &format!("127.0.0.1:{ssh_port}"),
        "--tunnel-bind",
        "127.0.0.1",
        "--domain",
        DOMAIN,
        "--gateway-http",
        &format!("127.0.0.1:{gateway_port}"),
        "--web-dir",
        web.to_str().context("path")?,
        "--log",
        "warn",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()?;
    let server_pid = Some(server.id());
    procs.0.push(server);
    wait_listening(ssh_port)?;
    wait_listening(gateway_port)?;

    let origin = origin()?;
    eprintln!(
        "==> bench gateway: devices publish the origin (ssh -R, lt) and lt joins the reference server"
    );
    let askpass = work.join("askpass");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{CREDENTIAL}'\n"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))?;
    }
    let ssh = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-N",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
        ])
        .arg(format!(
            "UserKnownHostsFile={}",
            work.join("known_hosts").display()
        ))
        .args([
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
        ])
        .args([
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "LogLevel=ERROR",
            "-p",
        ])
        .arg(ssh_port.to_string())
        .args(["-R", &format!("bssh:80:127.0.0.1:{origin}")])
        .arg(format!("{ssh_device}@127.0.0.1"))
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting ssh")?;
    let ssh_pid = Some(ssh.id());
    procs.0.push(ssh);
    let ours_lt = Command::new(lt)
        .arg("--host")
        .arg(format!(
            "http://{lt_device}:{CREDENTIAL}@127.0.0.1:{gateway_port}"
        ))
        .args(["--subdomain", "blt", "--port", &origin.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("starting lt")?;
    let ours_lt_pid = Some(ours_lt.id());
    procs.0.push(ours_lt);
    let reference_server = Command::new("node")
        .arg(reference)
        .args([
            "--port",
            &reference_port.to_string(),
            "--domain",
            "ref.test",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the localtunnel reference server (node)")?;
    let reference_pid = Some(reference_server.id());
    procs.0.push(reference_server);
    wait_listening(reference_port)?;
    let reference_lt = Command::new(lt)
        .arg("--host")
        .arg(format!("http://127.0.0.1:{reference_port}"))
        .args(["--subdomain", "brefx", "--port", &origin.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("starting lt")?;
    let reference_lt_pid = Some(reference_lt.id());
    procs.0.push(reference_lt);
    let targets = [
        ("origin directly", origin, "origin".to_owned(), (None, None)),
        (
            "p2pvps via ssh -R",
            gateway_port,
            format!("bssh.{DOMAIN}"),
            (server_pid, ssh_pid),
        ),
        (
            "p2pvps via lt",
            gateway_port,
            format!("blt.{DOMAIN}"),
            (server_pid, ours_lt_pid),
        ),
        (
            "localtunnel server via lt",
            reference_port,
            "brefx.ref.test".to_owned(),
            (reference_pid, reference_lt_pid),
        ),
    ];
    for (_, port, host, _) in &targets {
        wait_site(*port, host)?;
    }

    let mut rows = Vec::new();
    for (size, path) in [("13 B", "/"), ("1 MiB", "/1m")] {
        for (name, port, host, pids) in &targets {
            eprintln!("    {size} through {name}: wrk -c{CONNECTIONS} {SECONDS} s x {ROUNDS}");
            rows.push((size, *name, measure(*port, host, path, *pids)?));
        }
    }
    let direct = |size: &str| {
        rows.iter()
            .find(|(s, n, _)| *s == size && *n == "origin directly")
            .map_or(f64::NAN, |r| r.2.rps)
    };
    let of = |size: &str, name: &str| {
        rows.iter()
            .find(|(s, n, _)| *s == size && *n == name)
            .map_or(f64::NAN, |r| r.2.rps)
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = format!(
        "## Gateway ({cores} cores; wrk -t2 -c{CONNECTIONS}, {SECONDS} s, median of {ROUNDS}; one origin)\n\n\
         | response | path | req/s | p50 | p99 | vs direct | relay server CPU / 1k req | tunnel client CPU / 1k req |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    let mut json = Vec::new();
    for (size, name, f) in &rows {
        let ratio = f.rps / direct(size);
        md.push_str(&format!(
            "| {size} | {name} | {:.0} | {:.2} ms | {:.2} ms | {ratio:.2}x | {:.0} ms | {:.0} ms |\n",
            f.rps, f.p50_ms, f.p99_ms, f.server_cpu, f.client_cpu
        ));
        let key = format!("{size} {name}")
            .replace([' ', '-'], "_")
            .to_lowercase();
        json.push((format!("{key}_rps"), format!("{:.1}", f.rps)));
        json.push((format!("{key}_p50_ms"), format!("{:.3}", f.p50_ms)));
        json.push((format!("{key}_p99_ms"), format!("{:.3}", f.p99_ms)));
    }
    for size in ["13 B", "1 MiB"] {
        let reference = of(size, "localtunnel server via lt");
        let vs_reference = of(size, "p2pvps via lt") / reference;
        if reference > 0.0 {
            md.push_str(&format!(
                "\n{size}: p2pvps via lt does {vs_reference:.1}x the req/s of the localtunnel reference \
                 server (same lt client, same origin).\n"
            ));
        } else {
            md.push_str(&format!(
                "\n{size}: the localtunnel reference server completed no request in {SECONDS} s.\n"
            ));
        }
        json.push((
            format!("{}_lt_vs_reference", size.replace(' ', "_").to_lowercase()),
            format!("{vs_reference:.2}"),
        ));
    }
    md.push('\n');
    json.push(("cores".to_owned(), cores.to_string()));
    let fields: Vec<(&str, String)> = json.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    std::fs::write(
        root.join("target/bench/gateway.json"),
        serde_like_json(&fields),
    )?;
    Ok(md)
}
