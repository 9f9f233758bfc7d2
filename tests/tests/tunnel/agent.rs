//! The real device agent: enrolled with the credential on stdin (the host key pinned), it keeps the
//! tunnel to the device's real sshd up, reports the machine's real facts, and comes back on the same port
//! after the server restarts.

use p2pvps_shared::Role;
use p2pvps_tests::openssh::{DeviceSshd, SshKit, Via, output, refused};
use p2pvps_tests::server::workspace_binary;
use p2pvps_tests::{TestApp, status_listener, wait_status};
use serde_json::json;
use sqlx::PgPool;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

fn agent(config: &std::path::Path) -> Command {
    let mut cmd = Command::new(workspace_binary("p2pvps-agent", "p2pvps-agent"));
    cmd.arg("--config").arg(config).kill_on_drop(true);
    cmd
}

/// Enrolls with `credential` on stdin, the device's sshd on `local` and `extra` options; returns (success,
/// stdout + stderr).
async fn enroll(
    config: &std::path::Path,
    server: &str,
    device: &str,
    credential: &str,
    local: u16,
    extra: &[&std::ffi::OsStr],
) -> (bool, String) {
    let mut child = agent(config)
        .args([
            "enroll",
            "--server",
            server,
            "--device",
            device,
            "--local-ssh",
        ])
        .arg(format!("127.0.0.1:{local}"))
        // The test server speaks plain HTTP on loopback.
        .arg("--insecure")
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(credential.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Waits for a line of the agent's log containing `wanted`.
async fn logged(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    wanted: &str,
) {
    let found = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(wanted) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "the agent never logged {wanted:?}");
}

/// Starts `p2pvps-agent run` and returns once its log says `ready`; from then on the log is only drained
/// (a full pipe would stall the agent) and shown with the test's output.
async fn run_agent(config: &std::path::Path, ready: &str) -> Child {
    let mut run = agent(config)
        .arg("run")
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent runs");
    let mut log = BufReader::new(run.stderr.take().unwrap()).lines();
    logged(&mut log, ready).await;
    tokio::spawn(async move {
        while let Ok(Some(line)) = log.next_line().await {
            eprintln!("agent: {line}");
        }
    });
    run
}

fn proc_count(file: &str, prefix: &str) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[sqlx::test(migrations = "../sql")]
async fn the_agent_enrolls_keeps_the_tunnel_up_reports_facts_and_survives_a_server_restart(
    pool: PgPool,
) {
    let dir = p2pvps_tests::temp_dir("p2pvps-agent-");
    let app = TestApp::start_with_ssh(pool.clone(), &dir.path().join("server"), 0).await;
    let ssh_port = app.ssh_addr().port();
    let owner = app.user("owner@example.com", Role::Owner).await;
    app.user("renter@example.com", Role::Renter).await;
    let device =
        p2pvps_tests::create_device(&owner, json!({"name": "agent-pi", "subdomain": "agent-pi"}))
            .await;
    let (id, credential, port) = (device.id, device.credential, device.port);
    let sshd = DeviceSshd::start().await;
    let config = dir.path().join("agent.toml");

    // A wrong credential is refused and writes nothing.
    let (ok, said) = enroll(
        &config,
        &app.base,
        &id,
        "not-the-credential",
        sshd.port,
        &[],
    )
    .await;
    assert!(
        !ok && said.contains("wrong device id or credential"),
        "{said}"
    );
    assert!(!config.exists());

    // Enrolled: the configuration holds the server's host key fingerprint, readable by its owner only.
    let (ok, said) = enroll(
        &config,
        &app.base,
        &id,
        &format!("{credential}\n"),
        sshd.port,
        &[],
    )
    .await;
    assert!(ok, "{said}");
    assert!(said.contains(&format!("port {port}")), "{said}");
    let pinned = owner
        .gql("{ tunnelServer { hostKeyFingerprint } }", json!({}))
        .await;
    let fingerprint = pinned
        .ok()
        .data("tunnelServer.hostKeyFingerprint")
        .as_str()
        .unwrap()
        .to_owned();
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&fingerprint), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Running: online, with the machine's real facts.
    let mut status = status_listener(&app.pool).await;
    let mut run = run_agent(&config, "facts reported").await;
    wait_status(&mut status, &id, "online").await;
    let device = owner
        .gql(
            "query($id: ID!) { device(id: $id) { hardware { cpuCores memoryMb arch } } }",
            json!({"id": id}),
        )
        .await;
    let hw = device.ok().data("device.hardware").clone();
    assert_eq!(
        hw["cpuCores"],
        proc_count("/proc/cpuinfo", "processor").len()
    );
    let mem_kb: i64 = proc_count("/proc/meminfo", "MemTotal:")[0]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (hw["memoryMb"].as_i64().unwrap() - mem_kb / 1024).abs() <= 1,
        "{hw}"
    );
    assert_eq!(hw["arch"], std::env::consts::ARCH);

    // A renter reaches the device's sshd through the agent's tunnel.
    p2pvps_tests::rent(
        &app.pool,
        &app.secrets,
        &id,
        "renter@example.com",
        "ragent1",
    )
    .await;
    let kit = SshKit::new(&dir.path().join("server"), app.ssh_addr());
    let reply = output(kit.renter(&sshd, Via::Port(port), &["echo", "through-the-agent"])).await;
    assert_eq!(reply.trim(), "through-the-agent");

    // The server restarts (same data, same SSH port): the agent reconnects on the device's port.
    app.stop().await;
    let app = TestApp::start_with_ssh(pool, &dir.path().join("server"), ssh_port).await;
    let mut status = status_listener(&app.pool).await;
    wait_status(&mut status, &id, "online").await;
    let reply = output(kit.renter(&sshd, Via::Port(port), &["echo", "after-the-restart"])).await;
    assert_eq!(reply.trim(), "after-the-restart");
    run.kill().await.unwrap();
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn the_agent_api_refuses_bad_logins_and_bad_facts(pool: PgPool) {
    let dir = p2pvps_tests::temp_dir("p2pvps-agent-");
    let app = TestApp::start_with_ssh(pool, dir.path(), 0).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    let (id, credential) = p2pvps_tests::add_device(&owner, "api-pi").await;
    let http = reqwest::Client::new();
    let facts = |body: serde_json::Value, user: &str, password: &str| {
        http.post(app.url("/agent/v1/facts"))
            .basic_auth(user, Some(password))
            .json(&body)
            .send()
    };
    let good = json!({"cpu_model": "Cortex-A72", "cpu_cores": 4, "memory_mb": 4096, "disk_gb": 32,
                      "arch": "aarch64", "os": "Debian GNU/Linux 12", "agent_version": "0.1.0"});

    let anonymous = http.get(app.url("/agent/v1/device")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let r = facts(
        json!({"cpu_cores": 0, "agent_version": "0.1.0"}),
        &id,
        &credential,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("cpuCores"),
        "{body}"
    );
    let r = facts(json!("not facts"), &id, &credential).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        facts(good.clone(), &id, &credential)
            .await
            .unwrap()
            .status(),
        204
    );
    let device = owner
        .gql("query($id: ID!) { device(id: $id) { hardware { cpuModel cpuCores memoryMb diskGb arch } } }", json!({"id": id}))
        .await;
    assert_eq!(
        device.ok().data("device.hardware"),
        &json!({"cpuModel": "Cortex-A72", "cpuCores": 4, "memoryMb": 4096, "diskGb": 32, "arch": "aarch64"})
    );

    // Guessing is stopped: after a few wrong credentials the guesser's logins as the device are refused
    // for a while, even with the right one ...
    let mut last = 0;
    for _ in 0..10 {
        last = facts(good.clone(), &id, "wrong")
            .await
            .unwrap()
            .status()
            .as_u16();
        if last == 429 {
            break;
        }
        assert_eq!(last, 401);
    }
    assert_eq!(last, 429);
    assert_eq!(
        facts(good.clone(), &id, &credential)
            .await
            .unwrap()
            .status(),
        429
    );
    // ... while the device itself, from its own address, is let in at once.
    let from_device = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = from_device
        .post(app.url("/agent/v1/facts"))
        .basic_auth(&id, Some(&credential))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    app.stop().await;
    drop(dir);
}

/// Asks `query` (variables `vars`) for `rentals` as `client` until `done` holds, waking on each rental
/// change notified by the server (no polling on a clock).
async fn when_rentals_change(
    listener: &mut sqlx::postgres::PgListener,
    client: &p2pvps_tests::Client,
    query: &str,
    vars: serde_json::Value,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = client.gql(query, vars.clone()).await;
        let data = json!({"rentals": r.ok().data("rentals")});
        if done(&data) {
            return data;
        }
        tokio::time::timeout_at(deadline, listener.recv())
            .await
            .unwrap_or_else(|_| panic!("no rental change brought the awaited state; last: {data}"))
            .expect("listening");
    }
}

fn account_exists(login: &str) -> bool {
    std::process::Command::new("id")
        .arg(login)
        .output()
        .unwrap()
        .status
        .success()
}

/// The whole story, from a device plugging in to a renter logging in and out again, with the real agent,
/// the example hooks (real Unix accounts: the suite runs as root, as sshd itself needs), a real sshd in
/// the device's role and the real OpenSSH client.
#[sqlx::test(migrations = "../sql")]
async fn the_whole_story_owner_agent_renter_hooks_restart_and_relisting(pool: PgPool) {
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test creates Unix accounts with the example hooks: run the suite as root"
    );
    let dir = p2pvps_tests::temp_dir("p2pvps-story-");
    let app = TestApp::start_with_ssh(pool.clone(), &dir.path().join("server"), 0).await;
    let ssh_port = app.ssh_addr().port();

    // An owner signs up and creates a device over GraphQL.
    let (owner, signed) = app.sign_up_cookie("owner@example.com", "OWNER").await;
    signed.ok();
    let device = p2pvps_tests::create_device(
        &owner,
        json!({"name": "story-pi", "subdomain": "story-pi", "forRent": true, "rentalHours": 24,
               "price": {"minor": 500, "currency": "USD"}}),
    )
    .await;
    let (id, port) = (device.id.clone(), device.port);

    // The real agent enrolls with the example hooks and connects: online, with the machine's facts.
    let hooks = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/hooks");
    let sshd = DeviceSshd::start_with_passwords().await;
    let config = dir.path().join("agent.toml");
    let (start, end) = (
        hooks.join("start-unix-account"),
        hooks.join("end-unix-account"),
    );
    let extra = [
        "--start-hook".as_ref(),
        start.as_os_str(),
        "--end-hook".as_ref(),
        end.as_os_str(),
    ];
    let (ok, said) = enroll(
        &config,
        &app.base,
        &id,
        &device.credential,
        sshd.port,
        &extra,
    )
    .await;
    assert!(ok, "{said}");
    let mut status = status_listener(&app.pool).await;
    let mut run = run_agent(&config, "facts reported").await;
    wait_status(&mut status, &id, "online").await;
    let seen = owner
        .gql(
            "query($id: ID!) { device(id: $id) { status hardware { cpuCores arch } agent { version os runsHooks } } }",
            json!({"id": id}),
        )
        .await;
    let d = seen.ok().data("device").clone();
    assert_eq!(d["status"], "ONLINE");
    assert_eq!(
        d["hardware"]["cpuCores"],
        proc_count("/proc/cpuinfo", "processor").len()
    );
    assert_eq!(d["hardware"]["arch"], std::env::consts::ARCH);
    assert_eq!(d["agent"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(d["agent"]["runsHooks"], true);
    assert!(
        d["agent"]["os"].as_str().is_some_and(|o| !o.is_empty()),
        "{d}"
    );

    // A renter buys it in the storefront; the owner confirms the payment by hand.
    let (renter, signed) = app.sign_up_cookie("renter@example.com", "RENTER").await;
    signed.ok();
    let offers = renter.gql("{ offers { id } }", json!({})).await;
    assert_eq!(
        offers.ok().data("offers"),
        &json!([{"id": p2pvps_tests::offer_of(&app.pool, &id).await}])
    );
    let order = renter
        .gql(
            "mutation($o: ID!) { orderRental(offer: $o) { id state } }",
            json!({"o": p2pvps_tests::offer_of(&app.pool, &id).await}),
        )
        .await;
    let rental = order
        .ok()
        .data("orderRental.id")
        .as_str()
        .unwrap()
        .to_owned();
    let mut changes = sqlx::postgres::PgListener::connect_with(&app.pool)
        .await
        .unwrap();
    changes.listen("rental_changed").await.unwrap();
    owner
        .gql(
            "mutation($r: ID!) { confirmPayment(rental: $r) { state } }",
            json!({"r": rental}),
        )
        .await
        .ok();

    // The start hook makes the renter's account; only then does the renter get the login.
    const MINE: &str = "{ rentals { id state provisioning { start end } login { name secret devicePassword } \
                        connection { jumpCommand } } }";
    let mine = when_rentals_change(&mut changes, &renter, MINE, json!({}), |d| {
        let start = &d["rentals"][0]["provisioning"]["start"];
        start == "DONE" || start == "FAILED"
    })
    .await;
    let mine = json!({"rental": mine["rentals"][0]});
    assert_eq!(mine["rental"]["id"], rental.as_str());
    assert_eq!(mine["rental"]["state"], "ACTIVE", "{mine}");
    assert_eq!(mine["rental"]["provisioning"]["start"], "DONE", "{mine}");
    let login = mine["rental"]["login"]["name"].as_str().unwrap().to_owned();
    let secret = mine["rental"]["login"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // The device's account has its own password: the owner's hook never learns the jump host's.
    let password = mine["rental"]["login"]["devicePassword"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(password, secret);
    assert!(
        account_exists(&login),
        "the start hook made no account {login}"
    );
    let offers = renter.gql("{ offers { id } }", json!({})).await;
    assert_eq!(offers.ok().data("offers"), &json!([]));

    // The renter logs in with real OpenSSH, through the device's port and through our jump host, and
    // runs a command on the device's sshd as their own account.
    let kit = SshKit::new(&dir.path().join("server"), app.ssh_addr());
    let by_port = Via::Port(port);
    let by_jump = Via::Jump {
        login: &login,
        secret: &secret,
        subdomain: "story-pi",
    };
    for via in [by_port, by_jump] {
        let said = output(kit.log_in_as(&sshd, via, &login, Some(&password), &["id", "-un"])).await;
        assert_eq!(said.trim(), login);
    }
    refused(kit.log_in_as(&sshd, by_port, &login, Some(&secret), &["true"])).await;

    // The server is killed and restarted mid-rental: the agent comes back on the same port. (The test's
    // listeners hold connections of the test database's small pool: give them back first.)
    drop((status, changes));
    let http: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    app.stop().await;
    let app = TestApp::start_with_ssh_and(pool, &dir.path().join("server"), ssh_port, |s| {
        s.http = http
    })
    .await;
    let mut status = status_listener(&app.pool).await;
    wait_status(&mut status, &id, "online").await;
    let said =
        output(kit.log_in_as(&sshd, by_port, &login, Some(&password), &["echo", "again"])).await;
    assert_eq!(said.trim(), "again");

    // The rental ends (an admin ends it early): access is cut, the end hook removes the account, and
    // the device is offered again once it has.
    let admin = app.user("admin@example.com", Role::Admin).await;
    let mut changes = sqlx::postgres::PgListener::connect_with(&app.pool)
        .await
        .unwrap();
    changes.listen("rental_changed").await.unwrap();
    admin
        .gql(
            "mutation($r: ID!) { endRental(id: $r) { state } }",
            json!({"r": rental}),
        )
        .await
        .ok();
    let renter = app.log_in_bearer("renter@example.com").await;
    const ALL: &str = "{ rentals { state provisioning { start end message } } }";
    let after = when_rentals_change(&mut changes, &admin, ALL, json!({}), |d| {
        let end = &d["rentals"][0]["provisioning"]["end"];
        end == "DONE" || end == "FAILED"
    })
    .await;
    let after = json!({"rental": after["rentals"][0]});
    assert_eq!(after["rental"]["state"], "ENDED", "{after}");
    assert_eq!(after["rental"]["provisioning"]["end"], "DONE", "{after}");
    assert!(
        !account_exists(&login),
        "the end hook left the account {login}"
    );
    for via in [by_port, by_jump] {
        let refused = kit
            .log_in_as(&sshd, via, &login, Some(&secret), &["true"])
            .output()
            .await
            .unwrap();
        assert!(!refused.status.success(), "logged in after the end");
    }
    let offers = renter.gql("{ offers { id } }", json!({})).await;
    assert_eq!(
        offers.ok().data("offers"),
        &json!([{"id": p2pvps_tests::offer_of(&app.pool, &id).await}])
    );
    run.kill().await.unwrap();
    app.stop().await;
    drop(dir);
}

/// With `--local-web`, the agent publishes the device's web server at its subdomain: the gateway serves
/// its page (the same as `ssh -R SUB:80:...` does), and the SSH port forward keeps working beside it.
#[sqlx::test(migrations = "../sql")]
async fn the_agent_publishes_the_devices_web_server_at_its_subdomain(pool: PgPool) {
    let dir = p2pvps_tests::temp_dir("p2pvps-agent-web-");
    let app = TestApp::start_with_ssh_and(pool, &dir.path().join("server"), 0, |s| {
        s.gateway = Some(p2pvps_server::gateway::GatewaySettings {
            domain: "p2pvps.test".to_owned(),
            http: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            https: None,
            tls: None,
            redirect_to_https: false,
            localtunnel_bind: std::net::IpAddr::from([127, 0, 0, 1]),
            localtunnel_ports: None,
            body_idle_timeout: std::time::Duration::from_secs(5),
        });
    })
    .await;
    let gateway = app.gateway().http.unwrap();
    let owner = app.user("owner@example.com", Role::Owner).await;
    let device =
        p2pvps_tests::create_device(&owner, json!({"name": "web-pi", "subdomain": "web-pi"})).await;
    let sshd = DeviceSshd::start().await;
    let site = p2pvps_tests::web::origin("web-pi").await;
    let config = dir.path().join("agent.toml");
    let web = format!("127.0.0.1:{site}");
    let extra = ["--local-web".as_ref(), web.as_ref()];
    let (ok, said) = enroll(
        &config,
        &app.base,
        &device.id,
        &device.credential,
        sshd.port,
        &extra,
    )
    .await;
    assert!(ok, "{said}");

    let mut run = run_agent(&config, "web forward up").await;
    let page = reqwest::Client::new()
        .get(format!("http://{gateway}/"))
        .header("host", "web-pi.p2pvps.test")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.text().await.unwrap(),
        p2pvps_tests::web::page("web-pi")
    );

    // The device's SSH port is still carried beside it.
    app.user("renter@example.com", Role::Renter).await;
    p2pvps_tests::rent(
        &app.pool,
        &app.secrets,
        &device.id,
        "renter@example.com",
        "rweb1",
    )
    .await;
    let kit = SshKit::new(&dir.path().join("server"), app.ssh_addr());
    let reply =
        output(kit.renter(&sshd, Via::Port(device.port), &["echo", "beside-the-web"])).await;
    assert_eq!(reply.trim(), "beside-the-web");
    run.kill().await.unwrap();
    app.stop().await;
    drop(dir);
}

/// The server's side of provisioning, driven over the agent API as a device would: jobs handed out (the
/// long poll woken by a change), outcomes recorded once, the renter's login withheld until the start hook
/// succeeded, a failed hook retried by the owner only, and the device kept from new renters until its end
/// hook has run.
#[sqlx::test(migrations = "../sql")]
async fn provisioning_jobs_gate_the_renters_access_and_the_next_rental(pool: PgPool) {
    let dir = p2pvps_tests::temp_dir("p2pvps-prov-");
    let app = TestApp::start_with_ssh(pool, dir.path(), 0).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    let renter = app.user("renter@example.com", Role::Renter).await;
    let admin = app.user("admin@example.com", Role::Admin).await;
    let (id, credential) = p2pvps_tests::add_device(&owner, "hooked-pi").await;
    let (other, other_credential) = p2pvps_tests::add_device(&owner, "other-pi").await;
    let http = reqwest::Client::new();
    let as_device = |req: reqwest::RequestBuilder| req.basic_auth(&id, Some(&credential));
    let jobs =
        |wait: u64| as_device(http.get(app.url("/agent/v1/jobs")).query(&[("wait", wait)])).send();
    let report = |rental: &str, action: &str, body: serde_json::Value| {
        as_device(http.post(app.url(&format!("/agent/v1/jobs/{rental}/{action}"))))
            .json(&body)
            .send()
    };
    let facts = json!({"agent_version": "0.1.0", "hooks": true});
    let r = as_device(http.post(app.url("/agent/v1/facts")).json(&facts))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let empty: Vec<serde_json::Value> = jobs(0).await.unwrap().json().await.unwrap();
    assert!(empty.is_empty());

    // An admin lets the device: the agent is asked to run the start hook, with the renter's login.
    let grant = "mutation($d: ID!, $e: String!) { grantRental(device: $d, renterEmail: $e, hours: 2) { id } }";
    let g = admin
        .gql(grant, json!({"d": id, "e": "renter@example.com"}))
        .await;
    let rental = g.ok().data("grantRental.id").as_str().unwrap().to_owned();
    let todo: serde_json::Value = jobs(0).await.unwrap().json().await.unwrap();
    assert_eq!(todo.as_array().unwrap().len(), 1, "{todo}");
    assert_eq!(todo[0]["rental"], rental.as_str());
    assert_eq!(todo[0]["action"], "start");
    let login = todo[0]["login"].as_str().unwrap().to_owned();
    let password = todo[0]["password"].as_str().unwrap().to_owned();
    assert!(todo[0]["ends_at"].is_string(), "{todo}");

    // Until it succeeds the renter gets no login; after a failure neither, and only owners see why.
    const RENTER: &str = "{ rentals { provisioning { start end message } login { name secret devicePassword } connection { host } } }";
    let seen = renter.gql(RENTER, json!({})).await;
    assert_eq!(seen.ok().data("rentals.0.login"), &json!(null));
    assert_eq!(seen.data("rentals.0.connection"), &json!(null));
    assert_eq!(seen.data("rentals.0.provisioning.start"), "PENDING");
    let failed = json!({"ok": false, "message": "useradd: cannot lock /etc/passwd"});
    assert_eq!(
        report(&rental, "start", failed.clone())
            .await
            .unwrap()
            .status(),
        204
    );
    // The same outcome again is fine (a lost answer), another one is not: it was recorded.
    assert_eq!(
        report(&rental, "start", failed).await.unwrap().status(),
        204
    );
    let r = report(&rental, "start", json!({"ok": true})).await.unwrap();
    assert_eq!(r.status(), 409);
    let seen = renter.gql(RENTER, json!({})).await;
    assert_eq!(
        seen.ok().data("rentals.0.provisioning"),
        &json!({"start": "FAILED", "end": null, "message": null})
    );
    assert_eq!(seen.data("rentals.0.login"), &json!(null));
    let owners = owner
        .gql(
            "{ rentals(view: OWNER) { provisioning { start message } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        owners.ok().data("rentals.0.provisioning"),
        &json!({"start": "FAILED", "message": "useradd: cannot lock /etc/passwd"})
    );

    // Only the owner (or an admin) runs it again; an agent waiting for work gets it (woken by the change
    // if its request arrived first).
    const RETRY: &str =
        "mutation($r: ID!) { retryProvisioning(rental: $r) { provisioning { start } } }";
    renter
        .gql(RETRY, json!({"r": rental}))
        .await
        .assert_code("FORBIDDEN");
    let waiting = tokio::spawn(jobs(30));
    let r = owner.gql(RETRY, json!({"r": rental})).await;
    assert_eq!(
        r.ok().data("retryProvisioning.provisioning.start"),
        "PENDING"
    );
    owner
        .gql(RETRY, json!({"r": rental}))
        .await
        .assert_code("BAD_USER_INPUT");
    let woken: serde_json::Value = waiting.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(woken[0]["action"], "start", "{woken}");
    assert_eq!(
        report(
            &rental,
            "start",
            json!({"ok": true, "message": "account ready"})
        )
        .await
        .unwrap()
        .status(),
        204
    );
    let seen = renter.gql(RENTER, json!({})).await;
    // The hook was given the device's password, which is not the jump host's secret.
    let seen_login = seen.ok().data("rentals.0.login");
    assert_eq!(seen_login["name"], login.as_str());
    assert_eq!(seen_login["devicePassword"], password.as_str());
    assert!(seen_login["secret"].is_string());
    assert_ne!(seen_login["secret"], password.as_str());
    assert!(seen.data("rentals.0.connection.host").is_string());

    // The rental ends: the end hook is asked for, and until it succeeds the device is not let again.
    admin
        .gql(
            "mutation($r: ID!) { endRental(id: $r) { state } }",
            json!({"r": rental}),
        )
        .await
        .ok();
    let todo: serde_json::Value = jobs(0).await.unwrap().json().await.unwrap();
    assert_eq!(todo[0]["action"], "end", "{todo}");
    assert_eq!(todo[0]["login"], login.as_str());
    assert_eq!(todo[0]["password"], json!(null));
    let again = admin
        .gql(grant, json!({"d": id, "e": "renter@example.com"}))
        .await;
    again.assert_code("CONFLICT");
    assert!(again.message().contains("end hook"), "{}", again.message());

    // Refused: another device's rental, an unknown action, a long wait, a message with escapes.
    let r = http
        .post(app.url(&format!("/agent/v1/jobs/{rental}/end")))
        .basic_auth(&other, Some(&other_credential))
        .json(&json!({"ok": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        report(&rental, "middle", json!({"ok": true}))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(jobs(31).await.unwrap().status(), 400);
    let r = report(&rental, "end", json!({"ok": true, "message": "\u{1b}[2J"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    assert_eq!(
        report(&rental, "end", json!({"ok": true}))
            .await
            .unwrap()
            .status(),
        204
    );
    let g = admin
        .gql(grant, json!({"d": id, "e": "renter@example.com"}))
        .await;
    g.ok();

    // An agent that stops running hooks (re-enrolled without them) fails what waits for it.
    let facts = json!({"agent_version": "0.1.0", "hooks": false});
    let r = as_device(http.post(app.url("/agent/v1/facts")).json(&facts))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let owners = owner
        .gql(
            "{ rentals(view: OWNER) { state provisioning { start message } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        owners.ok().data("rentals.0"),
        &json!({"state": "ACTIVE", "provisioning": {"start": "FAILED", "message": "the device's agent no longer runs hooks"}})
    );
    app.stop().await;
    drop(dir);
}
