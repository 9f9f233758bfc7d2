//! `cargo xtask demo`: the whole product on one machine for a newcomer. A server on a private PostgreSQL
//! (a fresh `p2pvps_demo` database each time), three users, and a simulated device: the real agent and a
//! real sshd on a local port, both unprivileged (as the `p2pvps-demo` system user when run as root), with
//! demo hooks that log what a real provisioner would do. Prints the dashboard URL and the logins; Ctrl-C
//! stops everything.

use crate::{build_frontend, build_server, cargo, postgres, sh, step};
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HTTP: &str = "127.0.0.1:8080";
const SSH: &str = "127.0.0.1:2222";
const TUNNEL_PORTS: &str = "42000-42009";
const DEVICE_SSHD_PORT: u16 = 42022;
const PASSWORD: &str = "demo-password-1";
const DEMO_USER: &str = "p2pvps-demo";

/// Kills the demo's processes when it ends, however it ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn demo(root: &Path) -> Result<()> {
    let total = 5;
    step(1, total, "tools and dashboard");
    build_frontend(root)?;
    step(2, total, "private PostgreSQL, fresh database p2pvps_demo");
    let url = postgres::fresh_database(root, "p2pvps_demo")?;
    step(3, total, "server and agent builds");
    let server_bin = build_server(root, false)?;
    sh(cargo().args(["build", "-j", "2", "--package", "p2pvps-agent"]))?;
    let demo = root.join("target/demo");
    let _ = std::fs::remove_dir_all(&demo);
    std::fs::create_dir_all(&demo)?;
    let p2pvps = |args: &[&str]| {
        let mut cmd = Command::new(&server_bin);
        cmd.args(args)
            .env("DATABASE_URL", &url)
            .env_remove("P2PVPS_CONFIG")
            .env("P2PVPS_DATA_DIR", demo.join("server"))
            .env("P2PVPS_TUNNEL_PORTS", TUNNEL_PORTS)
            // Metrics on any free loopback port (printed in server.log), beside a `cargo xtask run`.
            .env("P2PVPS_METRICS_LISTEN", "127.0.0.1:0");
        cmd
    };

    step(4, total, "server, users and a device for rent");
    let mut children = Children(Vec::new());
    let log = std::fs::File::create(demo.join("server.log"))?;
    children.0.push(
        p2pvps(&[
            "serve",
            "--http",
            HTTP,
            "--ssh",
            SSH,
            "--public-url",
            &format!("http://{HTTP}"),
        ])
        .env("P2PVPS_WEB_DIR", root.join("target/dist"))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the server")?,
    );
    wait_healthy(&demo.join("server.log"), &mut children.0[0])?;
    for (email, flag) in [
        ("admin@demo.test", Some("--admin")),
        ("owner@demo.test", None),
        ("renter@demo.test", Some("--renter")),
    ] {
        let mut args = vec!["user", "create", "--email", email];
        args.extend(flag);
        let out = with_stdin(&mut p2pvps(&args), PASSWORD)?;
        if !out.status.success() {
            bail!("creating {email}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let created = p2pvps(&[
        "device",
        "create",
        "--owner",
        "owner@demo.test",
        "--name",
        "demo-pi",
        "--subdomain",
        "demo-pi",
    ])
    .output()?;
    if !created.status.success() {
        bail!(
            "creating the device: {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    let created = String::from_utf8(created.stdout)?;
    let field =
        |name: &str| json_field(&created, name).with_context(|| format!("`{name}` in {created}"));
    let (device, credential, port) = (field("id")?, field("credential")?, field("port")?);
    offer_for_rent(&device)?;

    step(
        5,
        total,
        "simulated device: a real sshd and the real agent, unprivileged",
    );
    let device_dir = device_dir(root)?;
    let user = prepare_device(root, &device_dir)?;
    let as_user = |program: &Path| {
        let mut cmd = if user.is_some() {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={DEMO_USER}"),
                &format!("--regid={DEMO_USER}"),
                "--init-groups",
                "--reset-env",
            ])
            .arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.env("HOME", &device_dir);
        cmd
    };
    let sshd_log = std::fs::File::create(device_dir.join("sshd.log"))?;
    children.0.push(
        as_user(Path::new("/usr/sbin/sshd"))
            .args(["-D", "-e", "-f"])
            .arg(device_dir.join("sshd_config"))
            .stderr(sshd_log)
            .spawn()
            .context("starting sshd (Debian package openssh-server)")?,
    );
    let agent = device_dir.join("p2pvps-agent");
    let config = device_dir.join("agent.toml");
    let mut enroll = as_user(&agent);
    enroll
        .arg("--config")
        .arg(&config)
        .args([
            "enroll",
            "--server",
            &format!("http://{HTTP}"),
            "--device",
            &device,
            // The demo server speaks plain HTTP on loopback.
            "--insecure",
        ])
        .args(["--local-ssh", &format!("127.0.0.1:{DEVICE_SSHD_PORT}")])
        .arg("--start-hook")
        .arg(device_dir.join("hooks/start"))
        .arg("--end-hook")
        .arg(device_dir.join("hooks/end"));
    let out = with_stdin(&mut enroll, &credential)?;
    if !out.status.success() {
        bail!(
            "enrolling the agent: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let agent_log = std::fs::File::create(device_dir.join("agent.log"))?;
    children.0.push(
        as_user(&agent)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stderr(agent_log)
            .spawn()?,
    );
    let login = user.unwrap_or_else(whoami);
    let key = device_dir.join("id_ed25519");
    let subdomain = "demo-pi";
    println!(
        "\n\
         p2pvps demo running (Ctrl-C stops it). Dashboard: http://{HTTP}/\n\n\
         Logins (password {PASSWORD}):\n  \
           owner@demo.test   owns the device demo-pi (online through the agent; see its page)\n  \
           renter@demo.test  rents it: Store -> Rent -> pay by hand; the owner confirms on the Rentals page\n  \
           admin@demo.test   sees everything, GraphiQL at http://{HTTP}/graphiql\n\n\
         The simulated device's sshd has one account, {login}, opened by the key {key}:\n  \
           ssh -i {key} -p {port} {login}@127.0.0.1                       # through the device's public port\n  \
           ssh -i {key} -J LOGIN@{SSH} {login}@{subdomain}   # through our jump host (LOGIN and secret: the renter's Rentals page)\n\n\
         The demo hooks log each rental's start and end to {hooks}.\n\
         Logs: {server_log}, {agent_log}.",
        key = key.display(),
        hooks = device_dir.join("hooks.log").display(),
        server_log = demo.join("server.log").display(),
        agent_log = device_dir.join("agent.log").display(),
    );
    let status = children.0[0].wait()?;
    bail!(
        "the server stopped ({status}); see {}",
        demo.join("server.log").display()
    )
}

/// Waits for `/healthz` to answer (curl), or fails with the server's log if it exits first.
fn wait_healthy(log: &Path, server: &mut Child) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Some(status) = server.try_wait()? {
            bail!(
                "the server exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let ok = Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", &format!("http://{HTTP}/healthz")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the server did not answer on {HTTP} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `cmd` with `input` on its stdin; returns its output.
fn with_stdin(cmd: &mut Command, input: &str) -> Result<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    Ok(child.wait_with_output()?)
}

/// A string or number field of the CLI's JSON output.
fn json_field(json: &str, name: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    match value.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Prices the device and offers it for rent, as its owner would on its page (GraphQL over curl).
fn offer_for_rent(device: &str) -> Result<()> {
    let graphql = |token: Option<&str>, body: serde_json::Value| -> Result<serde_json::Value> {
        let mut cmd = Command::new("curl");
        cmd.args(["-fsS", "-H", "content-type: application/json"]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("authorization: Bearer {t}")]);
        }
        let out = cmd
            .args([
                "--data-binary",
                &body.to_string(),
                &format!("http://{HTTP}/graphql"),
            ])
            .output()?;
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("GraphQL answer: {}", String::from_utf8_lossy(&out.stdout)))?;
        if answer.get("errors").is_some() {
            bail!("GraphQL refused: {answer}");
        }
        Ok(answer)
    };
    let logged = graphql(
        None,
        serde_json::json!({
            "query": "mutation($i: LogInInput!) { logIn(input: $i) { token } }",
            "variables": {"i": {"email": "owner@demo.test", "password": PASSWORD, "bearer": true}}
        }),
    )?;
    let token = logged["data"]["logIn"]["token"]
        .as_str()
        .context("no token")?;
    graphql(
        Some(token),
        serde_json::json!({
            "query": "mutation($id: ID!, $i: UpdateDeviceInput!) { updateDevice(id: $id, input: $i) { id } }",
            "variables": {"id": device, "i": {
                "forRent": true, "rentalHours": 24, "price": {"minor": 500, "currency": "USD"},
                "description": "The demo's simulated device: a real sshd on this machine, kept online by the real agent."
            }}
        }),
    )?;
    Ok(())
}

/// Where the simulated device lives: under target/ for an ordinary user; as root, in /var/tmp, where the
/// unprivileged demo user can reach it (a checkout under /root cannot be).
fn device_dir(root: &Path) -> Result<PathBuf> {
    let dir = if is_root() {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        root.hash(&mut hasher);
        PathBuf::from(format!("/var/tmp/p2pvps-demo-{:016x}", hasher.finish()))
    } else {
        root.join("target/demo/device")
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("hooks"))?;
    Ok(dir)
}

fn is_root() -> bool {
    whoami() == "root"
}

fn whoami() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Keys, sshd's configuration, the agent binary and the demo hooks in `dir`; as root, also the demo's
/// system user, which then owns `dir` (returned as `Some(name)`).
fn prepare_device(root: &Path, dir: &Path) -> Result<Option<String>> {
    for key in ["host_key", "id_ed25519"] {
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "p2pvps-demo", "-f"])
            .arg(dir.join(key)))?;
    }
    std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys"))?;
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {DEVICE_SSHD_PORT}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\nPermitRootLogin no\n",
            d = dir.display()
        ),
    )?;
    std::fs::copy(
        root.join("target/debug/p2pvps-agent"),
        dir.join("p2pvps-agent"),
    )?;
    for (hook, verb) in [("start", "would create"), ("end", "would remove")] {
        let path = dir.join("hooks").join(hook);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n# Demo {hook} hook: a real device runs agent/hooks/{hook}-unix-account here.\n\
                 echo \"$(date -u +%FT%TZ) rental $P2PVPS_RENTAL {hook}: {verb} the account $P2PVPS_LOGIN\" >> {log}\n",
                log = dir.join("hooks.log").display()
            ),
        )?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    if !is_root() {
        return Ok(None);
    }
    let exists = Command::new("id")
        .arg(DEMO_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        eprintln!("creating the system user {DEMO_USER} (the simulated device runs as it)");
        sh(Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--shell",
                "/bin/sh",
                "--home-dir",
            ])
            .arg(dir)
            .arg(DEMO_USER))?;
    }
    sh(Command::new("chown")
        .args(["-R", &format!("{DEMO_USER}:{DEMO_USER}")])
        .arg(dir))?;
    Ok(Some(DEMO_USER.to_owned()))
}
