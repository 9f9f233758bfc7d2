//! The web gateway with real clients: OpenSSH publishing a device's web server with `ssh -R SUB:80:...`,
//! curl over HTTP/1.1 and HTTP/2 (HTTPS checked against the generated CA), WebSockets both ways, a 50 MiB
//! streamed upload, and every refusal.

use p2pvps_server::gateway::{GatewaySettings, tls};
use p2pvps_shared::Role;
use p2pvps_tests::openssh::{SshKit, refused};
use p2pvps_tests::web::{self, curl, origin, raw_status, websocket_echo};
use p2pvps_tests::{Client, TestApp, status_listener, wait_status};
use serde_json::json;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

const DOMAIN: &str = "gw.test";

struct Site {
    id: String,
    credential: String,
    subdomain: String,
}

async fn site(owner: &Client, name: &str, subdomain: &str) -> Site {
    let r = owner
        .gql(
            "mutation($n: String!, $s: String!) { createDevice(input: {name: $n, subdomain: $s}) \
             { credential device { id webUrl webPublishing } } }",
            json!({"n": name, "s": subdomain}),
        )
        .await;
    r.ok();
    assert_eq!(r.data("createDevice.device.webPublishing"), true);
    let url = r.data("createDevice.device.webUrl").as_str().unwrap();
    assert!(
        url.starts_with(&format!("https://{subdomain}.{DOMAIN}:")),
        "{url}"
    );
    Site {
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
        subdomain: subdomain.to_owned(),
    }
}

/// A server with SSH and both gateway listeners (self-signed CA in `dir`), and its CA file.
async fn start(pool: PgPool, dir: &std::path::Path, redirect: bool) -> (TestApp, PathBuf) {
    let (cert, ca) = tls::self_signed(dir, DOMAIN).unwrap();
    let app = TestApp::start_with_ssh_and(pool, dir, 0, |s| {
        s.gateway = Some(GatewaySettings {
            domain: DOMAIN.to_owned(),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            https: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            tls: Some(Arc::new(cert)),
            redirect_to_https: redirect,
            localtunnel_bind: std::net::IpAddr::from([127, 0, 0, 1]),
            localtunnel_ports: None,
            body_idle_timeout: std::time::Duration::from_secs(2),
        });
    })
    .await;
    (app, ca)
}

fn data_dir() -> tempfile::TempDir {
    p2pvps_tests::temp_dir("p2pvps-gw-")
}

/// `ssh -N -R SUB:80:127.0.0.1:LOCAL`: the device publishes its web server at its subdomain.
fn publish(kit: &SshKit, site: &Site, local: u16) -> tokio::process::Child {
    let spec = format!("{}:80:127.0.0.1:{local}", site.subdomain);
    kit.ssh(&site.id, &site.credential, &["-N", "-R", &spec])
        .spawn()
        .expect("ssh starts")
}

#[sqlx::test(migrations = "../sql")]
async fn a_device_site_answers_on_both_listeners_through_ssh(pool: PgPool) {
    let dir = data_dir();
    let (app, ca) = start(pool, dir.path(), false).await;
    let (http, https) = (
        app.gateway().http.unwrap().port(),
        app.gateway().https.unwrap().port(),
    );
    let owner = app.user("o@example.com", Role::Owner).await;
    let pi = site(&owner, "pi", "pi-web").await;
    let kit = SshKit::new(dir.path(), app.ssh_addr());
    let local = origin("pi").await;
    let mut status = status_listener(&app.pool).await;
    let mut ssh = publish(&kit, &pi, local);
    wait_status(&mut status, &pi.id, "online").await;

    let host = format!("{}.{DOMAIN}", pi.subdomain);
    // A renter of the device finds its website with the connection details.
    let renter = app.user("r@example.com", Role::Renter).await;
    p2pvps_tests::rent(&app.pool, &app.secrets, &pi.id, "r@example.com", "rweb").await;
    let r = renter
        .gql("{ rentals(first: 5) { connection { webUrl } } }", json!({}))
        .await;
    assert_eq!(
        r.ok().data("rentals.0.connection.webUrl"),
        &json!(format!("https://{host}:{https}"))
    );
    let plain = curl(&format!("http://{host}:{http}/"), http, None, &[]).await;
    assert_eq!(
        (plain.status, plain.body.as_str()),
        (200, web::page("pi").as_str())
    );
    assert_eq!(plain.version, "1.1");
    // HTTPS, verified against the generated CA, over HTTP/2 (ALPN) and HTTP/1.1.
    let h2 = curl(
        &format!("https://{host}:{https}/"),
        https,
        Some(&ca),
        &["--http2"],
    )
    .await;
    assert_eq!((h2.status, h2.version.as_str()), (200, "2"));
    assert_eq!(h2.body, web::page("pi"));
    let h1 = curl(
        &format!("https://{host}:{https}/"),
        https,
        Some(&ca),
        &["--http1.1"],
    )
    .await;
    assert_eq!((h1.status, h1.version.as_str()), (200, "1.1"));

    // The device sees who asked, how and for what; hop-by-hop headers and spoofed forwarding are gone.
    let seen = curl(
        &format!("https://{host}:{https}/headers"),
        https,
        Some(&ca),
        &[
            "--http1.1",
            "-H",
            "X-Forwarded-For: 6.6.6.6",
            "-H",
            "Connection: x-secret",
            "-H",
            "X-Secret: 1",
        ],
    )
    .await;
    let seen: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(seen["x-forwarded-proto"], "https", "{seen}");
    assert_eq!(
        seen["x-forwarded-host"],
        format!("{host}:{https}"),
        "{seen}"
    );
    assert_eq!(seen["host"], format!("{host}:{https}"), "{seen}");
    assert!(seen.get("x-secret").is_none(), "{seen}");

    // A WebSocket echo through each listener.
    let echo = websocket_echo(&format!("ws://{host}:{http}/ws"), http, &ca, "plain").await;
    assert_eq!(echo, "echo: plain");
    let echo = websocket_echo(&format!("wss://{host}:{https}/ws"), https, &ca, "tls").await;
    assert_eq!(echo, "echo: tls");

    // 50 MiB streamed up through HTTPS (HTTP/2) and through HTTP (chunked by curl's -T), intact.
    let file = dir.path().join("upload.bin");
    let expected = web::payload_file(&file, 50 << 20);
    let file_arg = file.to_str().unwrap();
    let up = curl(
        &format!("https://{host}:{https}/upload"),
        https,
        Some(&ca),
        &["--http2", "-T", file_arg],
    )
    .await;
    assert_eq!((up.status, up.body.as_str()), (200, expected.as_str()));
    let up = curl(
        &format!("http://{host}:{http}/upload"),
        http,
        None,
        &["-T", file_arg],
    )
    .await;
    assert_eq!((up.status, up.body.as_str()), (200, expected.as_str()));

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("p2pvps_gateway_requests_total{site=\"pi-web\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("p2pvps_gateway_bytes_total{site=\"pi-web\",direction=\"request\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("p2pvps_gateway_upstream_latency_seconds_count{site=\"pi-web\"}"));

    // The device goes away: 502 with our page, not a hang and not upstream details.
    ssh.kill().await.unwrap();
    wait_status(&mut status, &pi.id, "offline").await;
    let gone = curl(&format!("https://{host}:{https}/"), https, Some(&ca), &[]).await;
    assert_eq!(gone.status, 502);
    assert!(gone.body.contains("Site offline"), "{}", gone.body);
    assert!(
        app.metrics()
            .await
            .contains("p2pvps_gateway_upstream_errors_total{site=\"pi-web\",kind=\"offline\"} 1")
    );
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn refusals_are_precise(pool: PgPool) {
    let dir = data_dir();
    let (app, ca) = start(pool, dir.path(), true).await;
    let gateway = app.gateway();
    let (http_addr, https) = (gateway.http.unwrap(), gateway.https.unwrap().port());
    let http = http_addr.port();
    let owner = app.user("o@example.com", Role::Owner).await;
    let pi = site(&owner, "pi", "pi-one").await;
    let other = site(&owner, "other", "pi-two").await;
    let kit = SshKit::new(dir.path(), app.ssh_addr());
    let local = origin("pi").await;

    // Another device's subdomain, and a wrong credential: refused by the SSH server.
    let spec = format!("{}:80:127.0.0.1:{local}", other.subdomain);
    let err = refused(kit.ssh(&pi.id, &pi.credential, &["-N", "-R", &spec])).await;
    assert!(err.contains("remote port forwarding failed"), "{err}");
    let wrong = Site {
        credential: "not-the-credential".into(),
        ..Site {
            id: pi.id.clone(),
            credential: String::new(),
            subdomain: pi.subdomain.clone(),
        }
    };
    let err = refused(kit.ssh(
        &wrong.id,
        &wrong.credential,
        &[
            "-N",
            "-R",
            &format!("{}:80:127.0.0.1:{local}", pi.subdomain),
        ],
    ))
    .await;
    assert!(err.contains("Permission denied"), "{err}");

    let mut status = status_listener(&app.pool).await;
    let _ssh = publish(&kit, &pi, local);
    wait_status(&mut status, &pi.id, "online").await;
    let host = format!("{}.{DOMAIN}", pi.subdomain);

    // Both listeners run: plain HTTP for a site redirects to HTTPS, keeping the path.
    let moved = curl(&format!("http://{host}:{http}/a?b=1"), http, None, &["-i"]).await;
    assert_eq!(moved.status, 308);
    let location = format!("location: https://{host}:{https}/a?b=1\r\n");
    assert!(moved.body.contains(&location), "{moved:?}");
    let followed = curl(
        &format!("http://{host}:{http}/"),
        http,
        Some(&ca),
        &["-L", "--resolve", &format!("{host}:{https}:127.0.0.1")],
    )
    .await;
    assert_eq!(
        (followed.status, followed.body.as_str()),
        (200, web::page("pi").as_str())
    );

    // An unknown subdomain: our 404 page.
    let unknown = curl(
        &format!("https://nobody.{DOMAIN}:{https}/"),
        https,
        Some(&ca),
        &[],
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("No such site"), "{}", unknown.body);
    // A registered device that is not connected: 502.
    let offline = curl(
        &format!("https://{}.{DOMAIN}:{https}/", other.subdomain),
        https,
        Some(&ca),
        &[],
    )
    .await;
    assert_eq!(offline.status, 502);

    // The owner switches web publishing off: 404 at once (this instance forgets its cached lookup), then on.
    let toggle = |on: bool| {
        let owner = &owner;
        let id = pi.id.clone();
        async move {
            owner
                .gql(
                    "mutation($id: ID!, $on: Boolean!) { updateDevice(id: $id, input: {webPublishing: $on}) { webPublishing } }",
                    json!({"id": id, "on": on}),
                )
                .await
                .ok();
        }
    };
    toggle(false).await;
    let url = format!("https://{host}:{https}/");
    assert_eq!(curl(&url, https, Some(&ca), &[]).await.status, 404);
    toggle(true).await;
    assert_eq!(curl(&url, https, Some(&ca), &[]).await.status, 200);

    // A device that stops sending half-way through a body: the gateway cuts the exchange after its idle
    // timeout (2 s here) instead of holding the connection and the device's slot for ever.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "30", "--cacert"])
        .arg(&ca)
        .arg("--resolve")
        .arg(format!("{host}:{https}:127.0.0.1"))
        .arg(format!("https://{host}:{https}/stall"))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "partial");
    assert!(!out.status.success());
    assert_ne!(
        out.status.code(),
        Some(28),
        "cut by the gateway, not by curl's time limit"
    );

    // Malformed hosts and an oversized head.
    assert_eq!(
        raw_status(http_addr, b"GET / HTTP/1.1\r\nHost: bad_host!\r\n\r\n").await,
        400
    );
    assert_eq!(
        raw_status(http_addr, b"GET / HTTP/1.1\r\nHost: a.b.gw.test\r\n\r\n").await,
        400
    );
    let mut big = b"GET / HTTP/1.1\r\nHost: pi-one.gw.test\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 100 << 10));
    big.extend(b"\r\n\r\n");
    assert_eq!(raw_status(http_addr, &big).await, 431);

    let metrics = app.metrics().await;
    for reason in ["bad-host", "unknown-site", "not-published"] {
        assert!(
            metrics.contains(&format!(
                "p2pvps_gateway_refused_requests_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {metrics}"
        );
    }
    app.stop().await;
    drop(dir);
}

/// The unmodified `lt` client publishing `local` as `site`, logging in with `credential` at the control
/// endpoint (the server's address, not a subdomain). Returns it once it prints its URL.
async fn lt(
    site: &Site,
    credential: &str,
    http: u16,
    local: u16,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(web::lt_bin())
        .arg("--host")
        .arg(format!("http://{}:{credential}@127.0.0.1:{http}", site.id))
        // No --local-host: with it, lt 2.0.2 rewrites `Host` by passing the first chunk of each connection
        // through a UTF-8 string, which corrupts binary body bytes in that chunk.
        .args(["--subdomain", &site.subdomain, "--port"])
        .arg(local.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("lt starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
        .await
        .expect("lt prints its url within 20 s")
        .unwrap()
        .expect("a line");
    let url = line
        .strip_prefix("your url is: ")
        .expect("lt's url line")
        .to_owned();
    (child, url)
}

#[sqlx::test(migrations = "../sql")]
async fn the_unmodified_lt_client_publishes_a_device_site(pool: PgPool) {
    let dir = data_dir();
    let (app, ca) = start(pool, dir.path(), false).await;
    let (http_addr, https) = (
        app.gateway().http.unwrap(),
        app.gateway().https.unwrap().port(),
    );
    let http = http_addr.port();
    let owner = app.user("o@example.com", Role::Owner).await;
    let pi = site(&owner, "pi", "pi-lt").await;
    let other = site(&owner, "other", "pi-other").await;
    let local = origin("pi over lt").await;

    let (_lt, url) = lt(&pi, &pi.credential, http, local).await;
    assert_eq!(url, format!("https://pi-lt.{DOMAIN}:{https}"));
    let host = format!("pi-lt.{DOMAIN}");
    let page = web::page("pi over lt");
    let plain = curl(&format!("http://{host}:{http}/"), http, None, &[]).await;
    assert_eq!((plain.status, plain.body.as_str()), (200, page.as_str()));
    let h2 = curl(
        &format!("https://{host}:{https}/"),
        https,
        Some(&ca),
        &["--http2"],
    )
    .await;
    assert_eq!(
        (h2.status, h2.version.as_str(), h2.body.as_str()),
        (200, "2", page.as_str())
    );
    let echo = websocket_echo(&format!("wss://{host}:{https}/ws"), https, &ca, "over lt").await;
    assert_eq!(echo, "echo: over lt");
    let echo = websocket_echo(&format!("ws://{host}:{http}/ws"), http, &ca, "plain lt").await;
    assert_eq!(echo, "echo: plain lt");
    let file = dir.path().join("upload.bin");
    let expected = web::payload_file(&file, 50 << 20);
    let up = curl(
        &format!("https://{host}:{https}/upload"),
        https,
        Some(&ca),
        &["-T", file.to_str().unwrap()],
    )
    .await;
    assert_eq!((up.status, up.body.as_str()), (200, expected.as_str()));

    // The control request as axios sends it, refused: no credential, a wrong one, another device's
    // subdomain. Each answer is JSON with a message.
    let control = format!("http://127.0.0.1:{http}");
    let ask = |path: String, user: Option<String>| {
        let control = control.clone();
        async move {
            let mut extra = vec![];
            if let Some(user) = &user {
                extra = vec!["-u".to_owned(), user.clone()];
            }
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            curl(&format!("{control}{path}"), http, None, &extra).await
        }
    };
    let none = ask("/pi-lt".into(), None).await;
    assert_eq!(none.status, 401);
    let wrong = ask("/pi-lt".into(), Some(format!("{}:wrong", pi.id))).await;
    assert_eq!(wrong.status, 401);
    let message: serde_json::Value = serde_json::from_str(&wrong.body).unwrap();
    assert_eq!(message["message"], "wrong device id or credential");
    let theirs = ask(
        "/pi-other".into(),
        Some(format!("{}:{}", pi.id, pi.credential)),
    )
    .await;
    assert_eq!(theirs.status, 403);
    let message: serde_json::Value = serde_json::from_str(&theirs.body).unwrap();
    assert!(
        message["message"].as_str().unwrap().contains("`pi-lt`"),
        "{message}"
    );
    // `?new` gives the device its own subdomain, and the answer has what the client reads.
    let fresh = ask(
        "/?new".into(),
        Some(format!("{}:{}", other.id, other.credential)),
    )
    .await;
    assert_eq!(fresh.status, 200);
    let info: serde_json::Value = serde_json::from_str(&fresh.body).unwrap();
    assert_eq!(info["id"], "pi-other");
    assert_eq!(info["max_conn_count"], 10);
    let data_port = info["port"].as_u64().unwrap() as u16;

    // A data socket from another address than the control request's is closed unused.
    let foreign = tokio::net::TcpSocket::new_v4().unwrap();
    foreign.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut foreign = foreign
        .connect(SocketAddr::from(([127, 0, 0, 1], data_port)))
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut foreign, &mut buf),
    )
    .await
    .expect("closed promptly");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "p2pvps_gateway_refused_requests_total{reason=\"localtunnel-foreign-socket\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("p2pvps_gateway_refused_requests_total{reason=\"localtunnel-control\"} 3"),
        "{metrics}"
    );
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn guessing_a_device_id_at_lt_blocks_the_guesser_not_the_device(pool: PgPool) {
    let dir = data_dir();
    let (app, _ca) = start(pool, dir.path(), false).await;
    let http = app.gateway().http.unwrap().port();
    let owner = app.user("o@example.com", Role::Owner).await;
    let pi = site(&owner, "pi", "pi-guessed").await;
    let local = origin("pi after the guesses").await;
    // Twenty wrong credentials for the device's id from one address: refused, then blocked ...
    let mut statuses = Vec::new();
    for i in 0..20 {
        let r = curl(
            &format!("http://127.0.0.1:{http}/pi-guessed"),
            http,
            None,
            &[
                "--interface",
                "127.0.0.2",
                "-u",
                &format!("{}:guess{i}", pi.id),
            ],
        )
        .await;
        statuses.push(r.status);
    }
    assert_eq!(statuses.first(), Some(&401));
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let right = curl(
        &format!("http://127.0.0.1:{http}/pi-guessed"),
        http,
        None,
        &[
            "--interface",
            "127.0.0.2",
            "-u",
            &format!("{}:{}", pi.id, pi.credential),
        ],
    )
    .await;
    assert_eq!(right.status, 429, "the guesser's address stays blocked");
    // ... while the device's own `lt`, from its address, publishes its site at once.
    let (_lt, _url) = lt(&pi, &pi.credential, http, local).await;
    let page = curl(
        &format!("http://pi-guessed.{DOMAIN}:{http}/"),
        http,
        None,
        &[],
    )
    .await;
    assert_eq!(
        (page.status, page.body.as_str()),
        (200, web::page("pi after the guesses").as_str())
    );
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn a_device_site_cannot_set_cookies_for_the_parent_domain(pool: PgPool) {
    let dir = data_dir();
    let (app, _ca) = start(pool, dir.path(), false).await;
    let http = app.gateway().http.unwrap().port();
    let owner = app.user("o@example.com", Role::Owner).await;
    let pi = site(&owner, "pi", "pi-cookies").await;
    let local = origin("cookies").await;
    let (_lt, _url) = lt(&pi, &pi.credential, http, local).await;
    let r = curl(
        &format!("http://pi-cookies.{DOMAIN}:{http}/cookies"),
        http,
        None,
        &["-D", "-"],
    )
    .await;
    assert_eq!(r.status, 200);
    let set: Vec<&str> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .collect();
    assert_eq!(
        set,
        [
            "own=1; Path=/",
            &format!("mine=1; Domain=pi-cookies.{DOMAIN}; Path=/")
        ],
        "{}",
        r.body
    );
    app.stop().await;
    drop(dir);
}
