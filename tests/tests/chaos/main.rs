//! Chaos (run by `cargo xtask chaos`, ignored in the normal suite, which has the two fixed cases in
//! `market/sales_crash.rs`), one test at a time on a private PostgreSQL:
//!
//! - the real server binary is SIGKILLed at a random point of OpenBazaar order processing, `CHAOS_KILLS`
//!   times (50 by default), restarted each time, with a new order funded before each start. In the end
//!   every order is delivered exactly once and marked read, each has one active rental, the ledger
//!   balances, and no rental is left half-started.
//! - PostgreSQL is stopped and started again (`CHAOS_PG_STOP`, `CHAOS_PG_START`) under a server carrying
//!   live tunnels: the tunnels keep carrying bytes, renters still get in, a device leaving during the
//!   outage is recorded offline once the database is back, and the server never exits.

use p2pvps_shared::Role;
use p2pvps_tests::openbazaar::{
    FULFILLED, Schema, killed_at, ledger_after_sales, listed_devices, market_args,
    node_with_basic_auth,
};
use p2pvps_tests::openssh::{SshKit, echo_roundtrip, echo_server};
use p2pvps_tests::server::Server;
use p2pvps_tests::{TestApp, create_device, rent, status_listener, wait_status};
use serde_json::json;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    let data = p2pvps_tests::temp_dir("p2pvps-chaos-");
    let args = market_args(&node);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut orders = Vec::new();
    let mut cut_at: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, slug) in slugs.iter().enumerate() {
        orders.push(node.fund_order(slug).expect("a listed slug"));
        let point = POINTS[(uuid::Uuid::new_v4().as_u128() % POINTS.len() as u128) as usize];
        killed_at(&node, &pool, data.path(), &args, point).await;
        *cut_at.entry(point).or_default() += 1;
        eprintln!("kill {}/{kills} at {point}", i + 1);
    }

    // Left alone at last, the server finishes what every killed one left.
    let last = Server::start(&pool, data.path(), &args).await;
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
    let (unbalanced, payments) = ledger_after_sales(&pool).await;
    assert_eq!(unbalanced, 0, "every rental's ledger sums to zero");
    assert_eq!(payments, orders.len() as i64, "one payment per order");
    println!(
        "chaos: {kills} SIGKILLs survived (cut at {cut_at:?}); {} orders checked: each fulfilled once \
         and read, one active rental each, {payments} payments, ledger balanced",
        orders.len()
    );
    drop(data);
}

/// Runs a shell command line from the environment variable `var` (set by `cargo xtask chaos`).
fn run_env_command(var: &str) {
    let line = std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: this test is run by `cargo xtask chaos`"));
    let status = std::process::Command::new("sh")
        .args(["-c", &line])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("sh runs");
    assert!(status.success(), "{var} failed: {line}");
}

/// One renter connection through the device's port, echoing 64 KiB blocks for as long as it runs; every
/// block must come back unchanged. Publishes the bytes carried so far.
fn carry(
    addr: SocketAddr,
) -> (
    tokio::sync::watch::Receiver<u64>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    let task = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("device port accepts");
        let mut block = vec![0u8; 64 << 10];
        let mut back = vec![0u8; 64 << 10];
        for round in 0u64.. {
            for (i, b) in block.iter_mut().enumerate() {
                *b = (i as u64 ^ round.wrapping_mul(2_654_435_761)) as u8;
            }
            stream.write_all(&block).await.expect("the tunnel carries");
            tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut back))
                .await
                .expect("the echo comes back within 20 s")
                .expect("the tunnel carries back");
            assert!(back == block, "bytes changed on the way");
            tx.send_modify(|n| *n += 2 * block.len() as u64);
        }
    });
    (rx, task)
}

/// Waits until `carried` has grown by `more` bytes (the stream is alive), within 30 s.
async fn carries_more(
    carried: &mut tokio::sync::watch::Receiver<u64>,
    more: u64,
    why: &str,
) -> u64 {
    let from = *carried.borrow();
    let reached = tokio::time::timeout(
        Duration::from_secs(30),
        carried.wait_for(|n| *n >= from + more),
    )
    .await
    .ok()
    .and_then(|r| r.ok().map(|n| *n));
    reached.unwrap_or_else(|| panic!("the tunnel stopped carrying bytes: {why}"))
}

/// The device's status in the database, read as soon as a connection works again.
async fn status_of(pool: &PgPool, device: &str) -> String {
    sqlx::query_scalar("SELECT status FROM devices WHERE id = $1::uuid")
        .bind(device)
        .fetch_one(pool)
        .await
        .expect("the database is back")
}

/// Returns once the device has `status`: at once when the database already says so, otherwise at its
/// notification (`listener` listens since before the change could happen, so none is missed; one for
/// another device may have been consumed by an earlier wait, hence the read first).
async fn becomes(
    pool: &PgPool,
    listener: &mut sqlx::postgres::PgListener,
    device: &str,
    status: &str,
) {
    if status_of(pool, device).await != status {
        wait_status(listener, device, status).await;
    }
}

#[sqlx::test(migrations = "../sql")]
#[ignore = "long: run by `cargo xtask chaos` (it stops and starts PostgreSQL)"]
async fn postgres_restart_under_live_tunnels_loses_no_bytes_and_no_status(pool: PgPool) {
    let dir = p2pvps_tests::temp_dir("p2pvps-chaos-pg-");
    std::fs::create_dir_all(dir.path()).unwrap();
    // Two devices of one owner, both let (their ports carry renters): "stays" keeps its tunnel through
    // the outage, "leaves" disconnects during it.
    let app = TestApp::start_with_ssh(pool.clone(), dir.path(), 0).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    let stays = create_device(&owner, json!({"name": "stays"})).await;
    let leaves = create_device(&owner, json!({"name": "leaves"})).await;
    for (i, d) in [&stays, &leaves].into_iter().enumerate() {
        let email = format!("r{i}@example.com");
        app.user(&email, Role::Renter).await;
        rent(
            &app.pool,
            &app.secrets,
            &d.id,
            &email,
            &format!("rchaos000{i}"),
        )
        .await;
    }
    app.stop().await;
    let (low, high) = (stays.port.min(leaves.port), stays.port.max(leaves.port));
    let ports = format!("{low}-{high}");
    let mut server = Server::start(&pool, dir.path(), &["--tunnel-ports", &ports]).await;
    let kit = SshKit::new(dir.path(), server.ssh);
    let echo = echo_server().await;
    let mut status = status_listener(&pool).await;
    let _stays_ssh = kit.device(&stays.id, &stays.credential, stays.port, echo);
    let mut leaves_ssh = kit.device(&leaves.id, &leaves.credential, leaves.port, echo);
    becomes(&pool, &mut status, &stays.id, "online").await;
    becomes(&pool, &mut status, &leaves.id, "online").await;
    drop(status);
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let (mut carried, stream) = carry(at(stays.port));
    carries_more(&mut carried, 1 << 20, "before the outage").await;

    // The database goes away (fast shutdown: every connection cut).
    run_env_command("CHAOS_PG_STOP");
    let down = Instant::now();
    let at_stop = *carried.borrow();
    carries_more(&mut carried, 16 << 20, "during the outage").await;
    // A renter arriving now still gets through (the rental was checked before the outage).
    echo_roundtrip(at(stays.port), 256 << 10).await;
    // The other device goes away; its status cannot be written now.
    leaves_ssh.kill().await.unwrap();
    leaves_ssh.wait().await.unwrap();
    // The server answers, saying the database is unreachable, and is still running.
    let health = reqwest::get(format!("http://{}/healthz", server.http))
        .await
        .expect("the server answers during the outage");
    assert_eq!(health.status(), 503, "healthz reports the outage");
    carries_more(&mut carried, 16 << 20, "later in the outage").await;
    assert!(server.is_running(), "the server exited during the outage");
    let during = *carried.borrow() - at_stop;
    let outage = down.elapsed();

    run_env_command("CHAOS_PG_START");
    // Reconciled: the device that left is offline, the one that stayed online.
    let mut status = status_listener(&pool).await;
    becomes(&pool, &mut status, &leaves.id, "offline").await;
    assert_eq!(status_of(&pool, &stays.id).await, "online");
    let health = reqwest::get(format!("http://{}/healthz", server.http))
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "healthy again");
    // The same stream still carries; new renters and a returning device work as before.
    carries_more(&mut carried, 4 << 20, "after the outage").await;
    echo_roundtrip(at(stays.port), 256 << 10).await;
    let _back = kit.device(&leaves.id, &leaves.credential, leaves.port, echo);
    wait_status(&mut status, &leaves.id, "online").await;
    echo_roundtrip(at(leaves.port), 256 << 10).await;
    assert!(server.is_running(), "the server exited");
    stream.abort();
    let total = *carried.borrow();
    server.kill().await;
    println!(
        "chaos: PostgreSQL stopped for {:.1} s under live tunnels: {:.1} MiB carried through the outage \
         ({:.1} MiB in all, every block echoed intact), a renter connected during it, the device that left \
         recorded offline afterwards, the server never exited",
        outage.as_secs_f64(),
        during as f64 / (1 << 20) as f64,
        total as f64 / (1 << 20) as f64,
    );
    drop(dir);
}

/// Resident memory of process `pid` in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One renter: a connection to a device's port echoing blocks of 512 B–4 KiB, one every 500 ms, until
/// `until`. Returns the round trips done, or what broke.
async fn renter(addr: SocketAddr, seed: u64, until: Instant) -> Result<u64, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut trips = 0u64;
    let mut state = seed | 1;
    // Load pacing, not synchronisation: one round trip per tick, however long the last one took.
    let mut pace = tokio::time::interval(Duration::from_millis(500));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        pace.tick().await;
        // xorshift: sizes and contents differ per renter and per trip.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = 512 + (state % 3585) as usize;
        let block: Vec<u8> = (0..len).map(|i| (state >> (i % 57)) as u8).collect();
        let mut back = vec![0u8; len];
        stream
            .write_all(&block)
            .await
            .map_err(|e| format!("write after {trips} trips: {e}"))?;
        tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut back))
            .await
            .map_err(|_| format!("no echo within 30 s after {trips} trips"))?
            .map_err(|e| format!("read after {trips} trips: {e}"))?;
        if back != block {
            return Err(format!("bytes changed after {trips} trips"));
        }
        trips += 1;
    }
    Ok(trips)
}

/// Whether the server closes `stream` (EOF or reset) within `within`, reading whatever it sends first.
async fn closed_by_server(mut stream: tokio::net::TcpStream, within: Duration) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

#[sqlx::test(migrations = "../sql")]
#[ignore = "long: run by `cargo xtask chaos`"]
async fn a_thousand_renters_over_a_hundred_devices_beside_stalled_clients_slowloris_and_a_password_flood(
    pool: PgPool,
) {
    const DEVICES: usize = 100;
    const RENTERS: usize = 1000;
    let secs: u64 = std::env::var("CHAOS_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180)
        .max(40);
    let dir = p2pvps_tests::temp_dir("p2pvps-chaos-load-");
    std::fs::create_dir_all(dir.path()).unwrap();
    let ports = p2pvps_tests::openssh::free_port_range(DEVICES as u16);
    let range = format!("{}-{}", ports.start(), ports.end());
    let app = TestApp::start_with(pool.clone(), move |s| s.tunnel_ports = ports).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    app.user("r@example.com", Role::Renter).await;
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let d = create_device(&owner, json!({"name": format!("load-{i}")})).await;
        rent(
            &app.pool,
            &app.secrets,
            &d.id,
            "r@example.com",
            &format!("r{i:09}"),
        )
        .await;
        devices.push(d);
    }
    app.stop().await;
    let gateway = p2pvps_tests::openssh::free_port();
    let gateway_addr = SocketAddr::from(([127, 0, 0, 1], gateway));
    let mut server = Server::start(
        &pool,
        dir.path(),
        &[
            "--tunnel-ports",
            &range,
            "--domain",
            "load.test",
            "--gateway-http",
            &gateway_addr.to_string(),
        ],
    )
    .await;
    let pid = server.pid();
    let echo = echo_server().await;
    let echo_addr = SocketAddr::from(([127, 0, 0, 1], echo));
    let (tunnels, failed) = p2pvps_tests::swarm::connect_all(
        server.ssh,
        devices
            .iter()
            .map(|d| (d.id.clone(), d.credential.clone()))
            .collect(),
        echo_addr,
        16,
    )
    .await;
    assert!(failed.is_empty(), "devices could not connect: {failed:?}");
    assert_eq!(tunnels.len(), DEVICES);
    let rss_start = rss_kib(pid);

    // The renters: ten per device, all through the run.
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    // The server's memory, sampled every 5 s through the run.
    let sampler = tokio::spawn(async move {
        let mut samples = vec![rss_start];
        let mut every = tokio::time::interval(Duration::from_secs(5));
        every.tick().await; // the first tick is immediate: rss_start is that sample
        while Instant::now() + Duration::from_secs(5) < until {
            every.tick().await;
            samples.push(rss_kib(pid));
        }
        samples
    });
    let renters: Vec<_> = (0..RENTERS)
        .map(|i| {
            let port = devices[i % DEVICES].port;
            tokio::spawn(renter(at(port), i as u64 * 7919 + 1, until))
        })
        .collect();

    // Beside them: clients that connect to the SSH server and stall, without or after the identification
    // line; a slowloris on the gateway (a header byte every 2 s); a flood of wrong device logins.
    let ssh = server.ssh;
    let mut stalled = Vec::new();
    for i in 0..200 {
        let mut s = tokio::net::TcpStream::connect(ssh).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"SSH-2.0-stalled\r\n").await.unwrap();
        }
        stalled.push(tokio::spawn(closed_by_server(s, Duration::from_secs(40))));
    }
    let slowloris: Vec<_> = (0..200)
        .map(|_| {
            tokio::spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(gateway_addr).await else {
                    return false;
                };
                let _ = s
                    .write_all(b"GET / HTTP/1.1\r\nHost: load-0.load.test\r\nX-Slow: ")
                    .await;
                let deadline = Instant::now() + Duration::from_secs(40);
                let mut buf = [0u8; 512];
                while Instant::now() < deadline {
                    if s.write_all(b"a").await.is_err() {
                        return true;
                    }
                    match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return true,
                        Ok(Ok(_)) | Err(_) => {}
                    }
                }
                false
            })
        })
        .collect();
    // Eight guessers, each trying made-up device ids for 30 s (every failure is padded to 1 s).
    let floods: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                let mut refused = 0u64;
                while Instant::now() < started + Duration::from_secs(30) {
                    let guess = uuid::Uuid::new_v4().to_string();
                    let tried =
                        p2pvps_tests::swarm::connect(ssh, &guess, "wrong-password", echo_addr)
                            .await;
                    assert!(tried.is_err(), "a made-up device was let in");
                    refused += 1;
                }
                refused
            })
        })
        .collect();
    // Others unaffected: the gateway answers a plain request at once while the slowloris runs.
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        reqwest::Client::new()
            .get(format!("http://{gateway_addr}/"))
            .header("host", "nosuch.load.test")
            .send()
            .await
    })
    .await;
    assert!(
        matches!(answered, Ok(Ok(_))),
        "the gateway did not answer beside the slowloris"
    );

    let mut refused = 0;
    for f in floods {
        refused += f.await.unwrap();
    }
    // Limits enforced: past its quota of failures the guessing address was refused without its guesses
    // being checked (each refusal counted).
    let metrics = reqwest::get(format!("http://{}/metrics", server.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rate_limited: u64 = metrics
        .lines()
        .find(|l| l.starts_with("p2pvps_ssh_refused_requests_total{request=\"auth-rate-limit\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        rate_limited > 0,
        "no guess was refused by the rate limit ({refused} guesses)"
    );

    let samples = sampler.await.unwrap();
    assert!(server.is_running(), "the server exited under load");

    let mut trips = 0u64;
    let mut broken = Vec::new();
    for r in renters {
        match r.await.unwrap() {
            Ok(n) => {
                assert!(n > 0, "a renter did no round trip");
                trips += n;
            }
            Err(e) => broken.push(e),
        }
    }
    assert!(
        broken.is_empty(),
        "{} renter connections broke: {:?}",
        broken.len(),
        &broken[..broken.len().min(5)]
    );
    let mut cut = 0;
    for s in stalled {
        cut += usize::from(s.await.unwrap());
    }
    assert_eq!(
        cut, 200,
        "every stalled SSH client is cut by the handshake or login timeout"
    );
    let mut cut_slow = 0;
    for s in slowloris {
        cut_slow += usize::from(s.await.unwrap());
    }
    assert_eq!(
        cut_slow, 200,
        "every slowloris connection is cut by the gateway's head timeout"
    );
    assert!(server.is_running(), "the server exited");
    // Memory flat: the end is not above the level reached a quarter into the run (plus 25 % and 8 MiB).
    let quarter = samples[samples.len() / 4];
    let end = *samples.last().unwrap();
    assert!(
        end <= quarter + quarter / 4 + 8 * 1024,
        "memory grew under steady load: {samples:?} KiB"
    );
    drop(tunnels);
    server.kill().await;
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "chaos: {RENTERS} renters over {DEVICES} devices for {secs} s: {trips} round trips, none broken; \
         beside them 200 stalled SSH clients and 200 slowloris connections all cut, {refused} wrong \
         logins refused ({} of them by the rate limit unchecked); server RSS {:.1} MiB at the start, {:.1} MiB a \
         quarter in, {:.1} MiB at the end, peak {:.1} MiB (every 5 s: {})",
        rate_limited,
        mib(rss_start),
        mib(quarter),
        mib(end),
        mib(*samples.iter().max().unwrap()),
        samples
            .iter()
            .map(|k| format!("{:.0}", mib(*k)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    drop(dir);
}
