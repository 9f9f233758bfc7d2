//! The SSH tunnel server with the real OpenSSH client in the device's role: forwarding, status, the
//! newest connection winning, restarts, and the refusal of everything else.

use p2pvps_shared::Role;
use p2pvps_tests::openssh::{SshKit, closed_without_data, echo_roundtrip, echo_server, refused};
use p2pvps_tests::ws::{connect, next_json, subscribe};
use p2pvps_tests::{Client, TestApp, status_listener, wait_status};
use serde_json::json;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::time::Duration;

struct Device {
    id: String,
    credential: String,
    port: u16,
}

async fn device(owner: &Client, name: &str) -> Device {
    let r = owner
        .gql(
            "mutation($n: String!) { createDevice(input: {name: $n}) { credential device { id tunnelPort sshHostKeyFingerprint } } }",
            json!({"n": name}),
        )
        .await;
    r.ok();
    assert!(
        r.data("createDevice.device.sshHostKeyFingerprint")
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    Device {
        id: r
            .data("createDevice.device.id")
            .as_str()
            .unwrap()
            .to_owned(),
        credential: r
            .data("createDevice.credential")
            .as_str()
            .unwrap()
            .to_owned(),
        port: r.data("createDevice.device.tunnelPort").as_u64().unwrap() as u16,
    }
}

/// Lets the device to a new renter, so its public port carries connections.
async fn let_out(app: &TestApp, device: &Device) -> uuid::Uuid {
    let email = format!("r-{}@example.com", &device.id[..8]);
    app.user(&email, Role::Renter).await;
    p2pvps_tests::rent(
        &app.pool,
        &app.secrets,
        &device.id,
        &email,
        &format!("r{}", &device.id[..8]),
    )
    .await
}

/// The usual scene: a server with SSH, an owner, one device "pi" let to a renter, and an ssh kit pinned to
/// the server.
struct Rig {
    dir: tempfile::TempDir,
    app: TestApp,
    owner: Client,
    pi: Device,
    /// The rental letting `pi`.
    rental: uuid::Uuid,
    kit: SshKit,
}

impl Rig {
    async fn start(pool: PgPool) -> Self {
        let dir = data_dir();
        let app = TestApp::start_with_ssh(pool, dir.path(), 0).await;
        let owner = app.user("o@example.com", Role::Owner).await;
        let pi = device(&owner, "pi").await;
        let rental = let_out(&app, &pi).await;
        let kit = SshKit::new(dir.path(), app.ssh_addr());
        Self {
            dir,
            app,
            owner,
            pi,
            rental,
            kit,
        }
    }
}

fn data_dir() -> tempfile::TempDir {
    p2pvps_tests::temp_dir("p2pvps-data-")
}

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[sqlx::test(migrations = "../sql")]
async fn a_device_tunnel_carries_data_and_its_status_is_live(pool: PgPool) {
    let Rig {
        dir,
        app,
        owner,
        pi,
        kit,
        ..
    } = Rig::start(pool).await;
    let echo = echo_server().await;

    let mut ws = connect(&app, owner.token.as_deref().unwrap()).await;
    subscribe(
        &mut ws,
        "s",
        "subscription { deviceStatusChanged { deviceId status } }",
    )
    .await;
    let mut status = status_listener(&app.pool).await;

    let mut ssh = kit.device(&pi.id, &pi.credential, pi.port, echo);
    wait_status(&mut status, &pi.id, "online").await;
    let msg = next_json(&mut ws).await;
    assert_eq!(
        msg["payload"]["data"]["deviceStatusChanged"]["status"], "ONLINE",
        "{msg}"
    );
    echo_roundtrip(at(pi.port), 4 << 20).await;

    // The device's ssh dies: offline, and the subscriber sees it.
    ssh.kill().await.unwrap();
    wait_status(&mut status, &pi.id, "offline").await;
    let msg = next_json(&mut ws).await;
    assert_eq!(
        msg["payload"]["data"]["deviceStatusChanged"]["status"], "OFFLINE",
        "{msg}"
    );
    assert!(
        tokio::net::TcpStream::connect(at(pi.port)).await.is_err(),
        "port closed while offline"
    );

    // It comes back: online again, same port.
    let _ssh = kit.device(&pi.id, &pi.credential, pi.port, echo);
    wait_status(&mut status, &pi.id, "online").await;
    echo_roundtrip(at(pi.port), 64 << 10).await;

    let history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM device_status_history WHERE device_id = $1::uuid")
            .bind(&pi.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(history, 4, "new, online, offline, online");
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn the_device_port_carries_connections_only_while_the_device_is_let(pool: PgPool) {
    let dir = data_dir();
    let app = TestApp::start_with_ssh(pool, dir.path(), 0).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    let pi = device(&owner, "pi").await;
    let kit = SshKit::new(dir.path(), app.ssh_addr());
    let echo = echo_server().await;
    let mut status = status_listener(&app.pool).await;
    let _ssh = kit.device(&pi.id, &pi.credential, pi.port, echo);
    wait_status(&mut status, &pi.id, "online").await;

    // Online but not rented: the owner's sshd is not exposed to the internet through us, and the refusal
    // is counted (before the socket closes).
    closed_without_data(at(pi.port)).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("p2pvps_ssh_refused_requests_total{request=\"device-port-not-rented\"} 1"),
        "{metrics}"
    );
    let rental = let_out(&app, &pi).await;
    echo_roundtrip(at(pi.port), 64 << 10).await;
    let mut tx = app.pool.begin().await.unwrap();
    p2pvps_server::rentals::lifecycle::end(
        &mut tx,
        &p2pvps_server::infra::audit::Actor::system(),
        rental,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // Refused again (by the rental check, or cut by the rental's end if that arrives later).
    closed_without_data(at(pi.port)).await;
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn port_zero_means_my_port_and_the_newest_connection_wins(pool: PgPool) {
    let Rig {
        dir,
        app,
        owner: _,
        pi,
        kit,
        ..
    } = Rig::start(pool).await;
    let echo = echo_server().await;
    let mut status = status_listener(&app.pool).await;

    let mut first = kit.device(&pi.id, &pi.credential, pi.port, echo);
    wait_status(&mut status, &pi.id, "online").await;

    // A second connection (the Pi rebooted; the old TCP connection is half-open): it takes over at once,
    // with "port 0" asking for the device's own port, and the old connection is closed.
    let spec = format!("0:127.0.0.1:{echo}");
    let mut second = kit
        .ssh(&pi.id, &pi.credential, &["-N", "-R", &spec])
        .spawn()
        .unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(15), first.wait()).await;
    assert!(exited.is_ok(), "the replaced connection was not closed");
    // Clients arriving during the takeover wait for the new connection's forward.
    echo_roundtrip(at(pi.port), 256 << 10).await;
    second.kill().await.unwrap();
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn everything_but_forwarding_is_refused_promptly(pool: PgPool) {
    let dir = data_dir();
    let app = TestApp::start_with_ssh(pool, dir.path(), 0).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    let pi = device(&owner, "pi").await;
    let other = device(&owner, "other").await;
    let kit = SshKit::new(dir.path(), app.ssh_addr());

    let err = refused(kit.ssh(&pi.id, &pi.credential, &["--", "true"])).await;
    assert!(
        err.contains("only forwards ports") || err.contains("open failed"),
        "exec: {err}"
    );
    refused(kit.ssh(&pi.id, &pi.credential, &["-tt"])).await;
    refused(kit.ssh(&pi.id, &pi.credential, &["-s", "--", "sftp"])).await;
    let err = refused(kit.ssh(
        &pi.id,
        &pi.credential,
        &["-N", "-R", &format!("{}:127.0.0.1:22", other.port)],
    ))
    .await;
    assert!(
        err.contains("forwarding failed") || err.contains("remote port forwarding failed"),
        "other port: {err}"
    );
    refused(kit.ssh(
        &pi.id,
        &pi.credential,
        &["-N", "-R", "0.0.0.0:2200:127.0.0.1:22"],
    ))
    .await;
    refused(kit.ssh(
        &pi.id,
        &pi.credential,
        &[
            "-N",
            "-R",
            &format!("evil.example:{}:127.0.0.1:22", pi.port),
        ],
    ))
    .await;
    // A device may not open connections through us (`direct-tcpip`, here as `ssh -W`).
    refused(kit.ssh(&pi.id, &pi.credential, &["-W", "127.0.0.1:5432"])).await;
    let err = refused(kit.ssh(&pi.id, "wrong credential", &["-N"])).await;
    assert!(err.contains("Permission denied"), "wrong credential: {err}");
    let err = refused(kit.ssh(&other.id, &pi.credential, &["-N"])).await;
    assert!(
        err.contains("Permission denied"),
        "foreign device id: {err}"
    );
    refused(kit.ssh("root", &pi.credential, &["-N"])).await;

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("p2pvps_ssh_refused_requests_total{request=\"session\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("p2pvps_ssh_refused_requests_total{request=\"tcpip-forward\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("p2pvps_ssh_refused_requests_total{request=\"direct-tcpip\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("p2pvps_ssh_auth_failures_total 3"),
        "{metrics}"
    );
    let online: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE status = 'online'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(online, 0);
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn after_a_server_restart_the_device_gets_the_same_port(pool: PgPool) {
    let dir = data_dir();
    let app = TestApp::start_with_ssh(pool.clone(), dir.path(), 0).await;
    // The restarted server listens where this one did.
    let ssh_port = app.ssh_addr().port();
    let owner = app.user("o@example.com", Role::Owner).await;
    let pi = device(&owner, "pi").await;
    let_out(&app, &pi).await;
    let kit = SshKit::new(dir.path(), app.ssh_addr());
    let echo = echo_server().await;
    let mut status = status_listener(&app.pool).await;
    let mut ssh = kit.device(&pi.id, &pi.credential, pi.port, echo);
    wait_status(&mut status, &pi.id, "online").await;

    app.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(15), ssh.wait()).await;
    assert!(
        ended.is_ok(),
        "the device's ssh notices the server went away"
    );

    // Same data directory (same host key, so the pinned known_hosts still matches), same database.
    let app = TestApp::start_with_ssh(pool, dir.path(), ssh_port).await;
    let mut status = status_listener(&app.pool).await;
    let _ssh = kit.device(&pi.id, &pi.credential, pi.port, echo);
    wait_status(&mut status, &pi.id, "online").await;
    echo_roundtrip(at(pi.port), 64 << 10).await;
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn a_device_may_log_in_with_a_registered_key(pool: PgPool) {
    let Rig {
        dir,
        app,
        owner,
        pi,
        kit,
        ..
    } = Rig::start(pool).await;
    let (key, public) = p2pvps_tests::openssh::keypair(&kit.dir);
    let key = key.display().to_string();
    let with_key = |extra: &[&str]| {
        let mut args = vec![
            "-i",
            key.as_str(),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PubkeyAuthentication=yes",
        ];
        args.extend(["-o", "PreferredAuthentications=publickey"]);
        args.extend(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let echo = echo_server().await;
    let forward = format!("{}:127.0.0.1:{echo}", pi.port);

    // Not registered yet.
    let args = with_key(&["-N", "-R", &forward]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = refused(kit.ssh(&pi.id, "unused", &args)).await;
    assert!(err.contains("Permission denied"), "{err}");

    let add = "mutation($id: ID!, $k: String!) { addDeviceSshKey(id: $id, publicKey: $k) { fingerprint publicKey } }";
    let bad = owner
        .gql(add, json!({"id": pi.id, "k": "ssh-ed25519 not-base64"}))
        .await;
    bad.assert_code("BAD_USER_INPUT");
    assert_eq!(bad.field(), Some("publicKey"));
    let r = owner.gql(add, json!({"id": pi.id, "k": public})).await;
    r.ok();
    let fingerprint = r
        .data("addDeviceSshKey.fingerprint")
        .as_str()
        .unwrap()
        .to_owned();
    assert!(fingerprint.starts_with("SHA256:"));
    assert!(
        !r.data("addDeviceSshKey.publicKey")
            .as_str()
            .unwrap()
            .contains("device@example"),
        "comment dropped"
    );
    owner
        .gql(add, json!({"id": pi.id, "k": public}))
        .await
        .assert_code("CONFLICT");

    let mut status = status_listener(&app.pool).await;
    let mut ssh = kit.ssh(&pi.id, "unused", &args).spawn().unwrap();
    wait_status(&mut status, &pi.id, "online").await;
    echo_roundtrip(at(pi.port), 64 << 10).await;
    ssh.kill().await.unwrap();
    wait_status(&mut status, &pi.id, "offline").await;

    let remove = "mutation($id: ID!, $f: String!) { removeDeviceSshKey(id: $id, fingerprint: $f) }";
    owner
        .gql(remove, json!({"id": pi.id, "f": fingerprint}))
        .await
        .ok();
    owner
        .gql(remove, json!({"id": pi.id, "f": fingerprint}))
        .await
        .assert_code("NOT_FOUND");
    refused(kit.ssh(&pi.id, "unused", &args)).await;
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn guessing_a_device_id_blocks_the_guesser_not_the_device(pool: PgPool) {
    let Rig {
        dir,
        app,
        owner: _,
        pi,
        kit,
        ..
    } = Rig::start(pool).await;
    // Twenty wrong guesses for the device's (public) id from one address, side by side (each failure is
    // padded to a second) ...
    let guesses = (0..20).map(|i| refused(kit.ssh(&pi.id, &format!("guess {i}"), &["-N"])));
    futures::future::join_all(guesses).await;
    // ... block that address's attempts at the device, even with the right credential ...
    let err = refused(kit.ssh(&pi.id, &pi.credential, &["-N"])).await;
    assert!(err.contains("Permission denied"), "{err}");
    // (Guesses that arrived after the block are refused unchecked too, so the count depends on timing.)
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("p2pvps_ssh_refused_requests_total{request=\"auth-rate-limit\"}"),
        "{metrics}"
    );
    // ... but the device itself, from its own address, connects at once and carries data.
    let mut status = status_listener(&app.pool).await;
    let echo = echo_server().await;
    let spec = format!("{}:127.0.0.1:{echo}", pi.port);
    let _device = kit
        .ssh(
            &pi.id,
            &pi.credential,
            &["-b", "127.0.0.2", "-N", "-R", &spec],
        )
        .spawn()
        .expect("ssh starts");
    wait_status(&mut status, &pi.id, "online").await;
    echo_roundtrip(at(pi.port), 64 << 10).await;
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn a_client_that_never_authenticates_is_disconnected(pool: PgPool) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let dir = data_dir();
    let app = TestApp::start_with_ssh(pool, dir.path(), 0).await;
    let stream = tokio::net::TcpStream::connect(app.ssh_addr())
        .await
        .unwrap();
    let mut stream = tokio::io::BufReader::new(stream);
    let mut banner = String::new();
    stream.read_line(&mut banner).await.unwrap();
    assert!(banner.starts_with("SSH-2.0-"), "{banner}");
    stream
        .get_mut()
        .write_all(b"SSH-2.0-stalling\r\n")
        .await
        .unwrap();
    // Then nothing: the server must hang up (the test server's limit is 2 s).
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "a stalled client was not disconnected");
    app.stop().await;
    drop(dir);
}

/// Connects the device's tunnel to an echo server; returns once it is online.
async fn online_to_echo(app: &TestApp, kit: &SshKit, pi: &Device) -> tokio::process::Child {
    let echo = echo_server().await;
    let mut status = status_listener(&app.pool).await;
    let ssh = kit.device(&pi.id, &pi.credential, pi.port, echo);
    wait_status(&mut status, &pi.id, "online").await;
    ssh
}

/// A connection to the device's port, carried through to the device (an echo answered).
async fn carried(addr: SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    socket.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping", "carried before the end");
    socket
}

/// Returns once the server closes `socket`; panics when it stays open for `within`.
async fn cut_within(mut socket: tokio::net::TcpStream, within: Duration) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4];
    let read = tokio::time::timeout(within, socket.read(&mut buf))
        .await
        .expect("the connection was cut");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[sqlx::test(migrations = "../sql")]
async fn a_port_connection_is_cut_at_the_rentals_end_without_its_event(pool: PgPool) {
    let Rig {
        dir,
        app,
        pi,
        rental,
        kit,
        ..
    } = Rig::start(pool).await;
    let _ssh = online_to_echo(&app, &kit, &pi).await;
    // The rental ends in 3 s and nothing will announce it (the expiry sweep runs every 30 s).
    sqlx::query("UPDATE rentals SET ends_at = now() + interval '3 seconds' WHERE id = $1")
        .bind(rental)
        .execute(&app.pool)
        .await
        .unwrap();
    let socket = carried(at(pi.port)).await;
    cut_within(socket, Duration::from_secs(12)).await;
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn rental_ends_missed_while_the_listener_reconnects_still_cut(pool: PgPool) {
    let Rig {
        dir,
        app,
        pi,
        rental,
        kit,
        ..
    } = Rig::start(pool).await;
    let _ssh = online_to_echo(&app, &kit, &pi).await;
    let socket = carried(at(pi.port)).await;
    // The rental (a day long) ends with no notification, and the server's event listener loses its
    // connection: only re-reading the rental ends after the reconnect can cut the renter.
    sqlx::query(
        "UPDATE rentals SET state = 'ended', ends_at = now(), updated_at = now() WHERE id = $1",
    )
    .bind(rental)
    .execute(&app.pool)
    .await
    .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%LISTEN%rental_ended%'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(killed, [true], "the server's event listener");
    cut_within(socket, Duration::from_secs(15)).await;
    app.stop().await;
    drop(dir);
}
