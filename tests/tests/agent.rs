//! The real device agent: enrolled with the credential on stdin (the host key pinned), it keeps the
//! tunnel to the device's real sshd up, reports the machine's real facts, and comes back on the same port
//! after the server restarts.

use p2pvps_shared::Role;
use p2pvps_tests::openssh::{DeviceSshd, SshKit, Via, output};
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

/// Enrolls with `credential` on stdin; returns (success, stdout + stderr).
async fn enroll(
    config: &std::path::Path,
    server: &str,
    device: &str,
    credential: &str,
    local: u16,
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
    let dir = std::env::temp_dir().join(format!("p2pvps-agent-{}", uuid::Uuid::new_v4()));
    let app = TestApp::start_with_ssh(pool.clone(), &dir.join("server"), 0).await;
    let ssh_port = app.ssh_addr().port();
    let owner = app.user("owner@example.com", Role::Owner).await;
    app.user("renter@example.com", Role::Renter).await;
    let device =
        p2pvps_tests::create_device(&owner, json!({"name": "agent-pi", "subdomain": "agent-pi"}))
            .await;
    let (id, credential, port) = (device.id, device.credential, device.port);
    let sshd = DeviceSshd::start().await;
    let config = dir.join("agent.toml");

    // A wrong credential is refused and writes nothing.
    let (ok, said) = enroll(&config, &app.base, &id, "not-the-credential", sshd.port).await;
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
    let mut run: Child = agent(&config)
        .arg("run")
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent runs");
    let mut log = BufReader::new(run.stderr.take().unwrap()).lines();
    wait_status(&mut status, &id, "online").await;
    logged(&mut log, "facts reported").await;
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
    let kit = SshKit::new(&dir.join("kit"), app.ssh_addr());
    let reply = output(kit.renter(&sshd, Via::Port(port), &["echo", "through-the-agent"])).await;
    assert_eq!(reply.trim(), "through-the-agent");

    // The server restarts (same data, same SSH port): the agent reconnects on the device's port.
    app.stop().await;
    let app = TestApp::start_with_ssh(pool, &dir.join("server"), ssh_port).await;
    let mut status = status_listener(&app.pool).await;
    wait_status(&mut status, &id, "online").await;
    let reply = output(kit.renter(&sshd, Via::Port(port), &["echo", "after-the-restart"])).await;
    assert_eq!(reply.trim(), "after-the-restart");
    run.kill().await.unwrap();
    app.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn the_agent_api_refuses_bad_logins_and_bad_facts(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("p2pvps-agent-{}", uuid::Uuid::new_v4()));
    let app = TestApp::start_with_ssh(pool, &dir, 0).await;
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

    // Guessing is stopped: after a few wrong credentials the device's logins are refused for a while,
    // even with the right one.
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
    assert_eq!(facts(good, &id, &credential).await.unwrap().status(), 429);
    app.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
