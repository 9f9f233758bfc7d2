//! `cargo xtask bench tunnel`: our reverse tunnel against OpenSSH's, side by side, in one run.
//!
//! - Throughput: the same client sends the same payload into a device's public port, once through our
//!   server (`ssh -N -R` to `p2pvps`) and once through a stock `sshd` (`ssh -N -R` to it), same cipher.
//! - Idle memory: 1,000 and 10,000 idle device tunnels held open against our one process (by the
//!   `tunnel_swarm` tool, one process of russh clients), and 1,000 OpenSSH clients against sshd (one
//!   process per connection, whose cost per connection does not depend on how many there are); the growth
//!   in memory divided by the tunnels that came up.
//!
//! It reports, never asserts: figures go to `target/bench/tunnel.json` and its section of `report.md`.

pub(crate) use crate::postgres::{psql, with_database};
use crate::{postgres, sh};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CIPHER: &str = "aes256-gcm@openssh.com";
const PAYLOAD_MIB: usize = 256;
/// Rounds of the throughput pair; odd, and alternating which side goes first (loopback on 2 cores is noisy).
const ROUNDS: usize = 7;
const CREDENTIAL: &str = "bench-credential-not-secret";

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A device-side service: reads an 8-byte length, then that many bytes, then answers one byte.
fn sink() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for socket in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut socket = socket;
                let mut len = [0u8; 8];
                if socket.read_exact(&mut len).is_err() {
                    return;
                }
                let mut left = u64::from_be_bytes(len);
                let mut buf = vec![0u8; 256 * 1024];
                while left > 0 {
                    let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                    match socket.read(&mut buf[..want]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => left -= n as u64,
                    }
                }
                let _ = socket.write_all(&[1]);
            });
        }
    });
    Ok(port)
}

/// Sends `bytes` through `port` to the sink; returns the time until its answer.
fn push(port: u16, bytes: usize) -> Result<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    s.write_all(&(bytes as u64).to_be_bytes())?;
    let chunk = vec![0x5au8; 256 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n])?;
        left -= n;
    }
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack)?;
    Ok(start.elapsed())
}

/// Waits until a 1-byte push through `port` succeeds (the tunnel is up end to end).
fn wait_tunnel(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if push(port, 1).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("tunnel on port {port} did not come up within 30 s")
}

pub(crate) fn wait_listening(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listening on {port} after 30 s")
}

/// Proportional and resident memory of a process, in KiB (from /proc/PID/smaps_rollup).
pub(crate) fn memory(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Pss:"), field("Rss:"))
}

/// The process and all its descendants.
fn tree(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The parent pid is the second field after the ")" closing the command name.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

fn tree_memory(root: u32) -> (u64, u64) {
    tree(root)
        .into_iter()
        .map(memory)
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

pub(crate) struct Killer(pub(crate) Vec<Child>);

impl Drop for Killer {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ssh_client(config: &Path, askpass: Option<&Path>) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-F").arg(config).args(["-N", "-c", CIPHER]);
    if let Some(a) = askpass {
        c.env("SSH_ASKPASS", a)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0");
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// The bench's server binary with `args`, on database `url` and data directory `data`, ignoring any
/// configuration file of the machine.
pub(crate) fn server_command(bin: &Path, url: &str, data: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        .env("DATABASE_URL", url)
        .env("P2PVPS_DATA_DIR", data)
        // Several bench servers run at once; none is scraped.
        .env("P2PVPS_METRICS_LISTEN", "off")
        .env_remove("P2PVPS_CONFIG");
    c
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Migrates the bench database and creates the user who owns the bench devices (via `serve`, which runs
/// the server binary with the bench's environment).
pub(crate) fn migrate_with_owner(serve: &dyn Fn(&[&str]) -> Command) -> Result<()> {
    sh(serve(&["migrate"]).stderr(Stdio::null()))?;
    let mut child = serve(&["user", "create", "--email", "bench@p2pvps.bench"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(b"bench password long enough\n")?;
    if !child.wait()?.success() {
        bail!("creating the bench user failed");
    }
    Ok(())
}

/// Runs the tunnel benchmark; returns its section of the report.
pub fn tunnel(root: &Path) -> Result<String> {
    // Idle tunnel counts for our server (`BENCH_TUNNELS=1000,10000`); sshd gets the first.
    let counts: Vec<usize> = std::env::var("BENCH_TUNNELS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty() && v.iter().all(|n| (1..=12_000).contains(n)))
        .unwrap_or_else(|| vec![1000, 10_000]);
    let idle = counts.iter().copied().max().unwrap_or(1000);
    let out_dir = root.join("target/bench");
    let work = out_dir.join(format!("tunnel-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    crate::tools::ensure_openssh()?;
    eprintln!("==> bench tunnel: release builds");
    let bin = crate::build_server(root, true)?;
    sh(&mut tests_tool("build", "tunnel_swarm"))?;
    let swarm = root.join("target/release/tunnel_swarm");

    eprintln!("==> bench tunnel: database and {idle} bench devices");
    let admin_url = postgres::database_url(root)?;
    let db = format!("p2pvps_bench_{}", std::process::id());
    psql(&admin_url, &format!("CREATE DATABASE {db}"))?;
    let url = with_database(&admin_url, &db);
    let result = run_tunnel(root, &bin, &swarm, &url, &work, &counts);
    let _ = psql(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// `cmd` run through `sh` with the open-file limit raised first (as root; otherwise as far as the hard
/// limit allows): 10,000 tunnels take about 30,000 descriptors in the server, more than the usual 20,000.
fn with_files_limit(cmd: &Command) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -n 65536 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; exec \"$0\" \"$@\"")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

fn online_devices(url: &str) -> usize {
    psql(url, "SELECT count(*) FROM devices WHERE status = 'online'")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Tunnels one server process holds in the bench: each takes three descriptors (the device's socket, a
/// second handle to cut it, its port's listener) and machines without CAP_SYS_RESOURCE cannot raise the
/// usual hard limit of 20,000; more tunnels are spread over more instances of the server (as a
/// deployment with more than one would).
const TUNNELS_PER_PROCESS: usize = 6_000;

/// Holds `n` idle tunnels of the bench devices (after the first, the throughput one) with the swarm tool,
/// spread over `servers` (SSH port, pid) as needed; returns how many came up and the servers' memory
/// growth (PSS, RSS KiB), then lets them go and waits until the servers have seen them leave.
fn swarm_memory(
    swarm: &Path,
    work: &Path,
    url: &str,
    devices: &[(String, u16)],
    n: usize,
    servers: &[(u16, u32)],
    target: u16,
) -> Result<(usize, u64, u64)> {
    let used = n.div_ceil(TUNNELS_PER_PROCESS).clamp(1, servers.len());
    let servers = &servers[..used];
    let total = |f: fn(u32) -> (u64, u64)| {
        servers
            .iter()
            .map(|(_, pid)| f(*pid))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let (before, rss_before) = total(memory);
    let mine: Vec<&(String, u16)> = devices.iter().skip(1).take(n).collect();
    let mut swarms = Vec::new();
    for (i, (ssh_port, _)) in servers.iter().enumerate() {
        let list = work.join(format!("swarm-{n}-{i}.txt"));
        let lines: Vec<String> = mine
            .iter()
            .skip(i)
            .step_by(used)
            .map(|(id, _)| format!("{id} {CREDENTIAL}"))
            .collect();
        std::fs::write(&list, lines.join("\n"))?;
        let mut cmd = Command::new(swarm);
        cmd.arg(format!("127.0.0.1:{ssh_port}"))
            .arg(&list)
            .arg(format!("127.0.0.1:{target}"));
        swarms.push(
            with_files_limit(&cmd)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("starting tunnel_swarm")?,
        );
    }
    let mut up = 0;
    for child in &mut swarms {
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        up += line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<usize>().ok())
            .context("tunnel_swarm did not report")?;
    }
    // Every tunnel the swarms hold is registered; let the servers settle their status writes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while online_devices(url) < up + 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    let (after, rss_after) = total(memory);
    for mut child in swarms {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while online_devices(url) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok((
        up,
        after.saturating_sub(before),
        rss_after.saturating_sub(rss_before),
    ))
}

fn run_tunnel(
    root: &Path,
    bin: &Path,
    swarm: &Path,
    url: &str,
    work: &Path,
    counts: &[usize],
) -> Result<String> {
    let idle = counts.iter().copied().max().unwrap_or(1000);
    let peer_idle = counts.first().copied().unwrap_or(1000).min(2000);
    let web = work.join("web");
    std::fs::create_dir_all(&web)?;
    std::fs::write(
        web.join("index.html"),
        "<!doctype html><title>bench</title>",
    )?;
    let data = work.join("data");
    let (http, ssh_port) = (free_port()?, free_port()?);
    // Tunnel ports: below Linux's ephemeral range (32768+), so the bench's own client connections cannot
    // take one before its device binds it.
    let spare = (32_768 - 20_000 - idle - 2).max(1) as u32;
    let base: u16 = 20_000 + (std::process::id() % spare) as u16;
    let ports = format!("{base}-{}", base as usize + idle + 2);
    let mut procs = Killer(Vec::new());
    let serve = |args: &[&str]| -> Command {
        let mut c = server_command(bin, url, &data, args);
        c.env("P2PVPS_TUNNEL_PORTS", &ports);
        c
    };
    migrate_with_owner(&serve)?;
    let rows = psql(
        url,
        &format!(
            "INSERT INTO devices (id, owner_id, name, tunnel_port, subdomain, credential_hash) \
             SELECT gen_random_uuid(), (SELECT id FROM users LIMIT 1), 'bench ' || i, {base} + i, 'bench' || i, \
             sha256(convert_to('{CREDENTIAL}', 'UTF8')) FROM generate_series(0, {idle}) i \
             RETURNING id || ' ' || tunnel_port"
        ),
    )?;
    let devices: Vec<(String, u16)> = rows
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(id, port)| Some((id.to_owned(), port.trim().parse().ok()?)))
        .collect();
    // The throughput device is let (a device's public port carries connections only while it is rented).
    let (first_id, first_port) = devices.first().cloned().context("no bench device")?;
    psql(
        url,
        &format!(
            "INSERT INTO rentals (id, device_id, buyer_ref, marketplace, order_ref, state, price_minor, currency, \
             starts_at, ends_at) VALUES (gen_random_uuid(), '{first_id}', 'bench', 'admin', 'bench', 'active', 0, \
             'USD', now(), now() + interval '1 day')"
        ),
    )?;
    // The first instance carries the throughput run and the smaller idle counts; more join for more.
    let mut servers = Vec::new();
    for i in 0..idle.div_ceil(TUNNELS_PER_PROCESS).max(1) {
        let (http, ssh) = if i == 0 {
            (http, ssh_port)
        } else {
            (free_port()?, free_port()?)
        };
        let server = serve(&[
            "serve",
            "--http",
            &format!("127.0.0.1:{http}"),
            "--ssh",
            &format!("127.0.0.1:{ssh}"),
            "--tunnel-bind",
            "127.0.0.1",
            "--web-dir",
            web.to_str().context("path")?,
            "--log",
            "warn",
        ]);
        let server = with_files_limit(&server)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        servers.push((ssh, server.id()));
        procs.0.push(server);
        wait_listening(ssh)?;
    }

    // OpenSSH's sshd as the peer, with a key for the current user.
    let sshd_port = free_port()?;
    for key in ["host_key", "client_key"] {
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(work.join(key)))?;
    }
    std::fs::copy(work.join("client_key.pub"), work.join("authorized_keys"))?;
    let _ = std::fs::create_dir_all("/run/sshd");
    std::fs::write(
        work.join("sshd_config"),
        format!(
            "Port {sshd_port}\nListenAddress 127.0.0.1\nHostKey {w}/host_key\nPidFile {w}/sshd.pid\n\
             AuthorizedKeysFile {w}/authorized_keys\nStrictModes no\nPasswordAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nAllowTcpForwarding remote\nCiphers {CIPHER}\nMaxStartups 2000\n\
             MaxSessions 10\nLogLevel ERROR\n",
            w = work.display()
        ),
    )?;
    let sshd = Command::new("/usr/sbin/sshd")
        .arg("-D")
        .arg("-f")
        .arg(work.join("sshd_config"))
        .stderr(Stdio::null())
        .spawn()
        .context("starting /usr/sbin/sshd (Debian package openssh-server)")?;
    let sshd_pid = sshd.id();
    procs.0.push(sshd);
    wait_listening(sshd_port)?;

    // Client configuration: both servers' host keys accepted on first use into a scratch file.
    let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?
        .trim()
        .to_owned();
    let config = work.join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host *\n  StrictHostKeyChecking accept-new\n  UserKnownHostsFile {w}/known_hosts\n  \
             ServerAliveInterval 30\n  ExitOnForwardFailure yes\n  LogLevel ERROR\n\
             Host ours\n  HostName 127.0.0.1\n  Port {ssh_port}\n  PreferredAuthentications password\n  \
             PubkeyAuthentication no\nHost peer\n  HostName 127.0.0.1\n  Port {sshd_port}\n  User {user}\n  \
             IdentityFile {w}/client_key\n  IdentitiesOnly yes\n  PreferredAuthentications publickey\n",
            w = work.display()
        ),
    )?;
    let askpass = work.join("askpass");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{CREDENTIAL}'\n"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))?;
    }

    eprintln!(
        "==> bench tunnel: throughput, {PAYLOAD_MIB} MiB x {ROUNDS} rounds each, cipher {CIPHER}"
    );
    let sink_port = sink()?;
    let peer_port = free_port()?;
    let ours = ssh_client(&config, Some(&askpass))
        .args([
            "-R",
            &format!("{first_port}:127.0.0.1:{sink_port}"),
            &format!("{first_id}@ours"),
        ])
        .spawn()?;
    procs.0.push(ours);
    let peer = ssh_client(&config, None)
        .args(["-R", &format!("{peer_port}:127.0.0.1:{sink_port}"), "peer"])
        .spawn()?;
    procs.0.push(peer);
    wait_tunnel(first_port)?;
    wait_tunnel(peer_port)?;
    let bytes = PAYLOAD_MIB * 1024 * 1024;
    let (mut ours_mbs, mut peer_mbs) = (Vec::new(), Vec::new());
    let mut ratios = Vec::new();
    for round in 1..=ROUNDS {
        let run = |port: u16| -> Result<f64> {
            Ok(PAYLOAD_MIB as f64 / push(port, bytes)?.as_secs_f64())
        };
        let (ours, peer) = if round % 2 == 1 {
            let o = run(first_port)?;
            (o, run(peer_port)?)
        } else {
            let p = run(peer_port)?;
            (run(first_port)?, p)
        };
        ours_mbs.push(ours);
        peer_mbs.push(peer);
        ratios.push(ours / peer);
        eprintln!("    round {round}/{ROUNDS}: p2pvps {ours:.0} MiB/s, sshd {peer:.0} MiB/s");
    }
    let (ours_tp, peer_tp) = (median(ours_mbs), median(peer_mbs));
    // The ratio of each round's pair, then the median: steadier than a ratio of two medians.
    let ratio = median(ratios);

    let mut ours_rows = Vec::new();
    for &n in counts {
        eprintln!("==> bench tunnel: memory of {n} idle p2pvps tunnels");
        let (up, pss, rss) = swarm_memory(swarm, work, url, &devices, n, &servers, sink_port)?;
        if up < n {
            eprintln!("    warning: only {up} of {n} p2pvps tunnels came up; measuring those");
        }
        ours_rows.push((
            n,
            up,
            pss as f64 / up.max(1) as f64,
            rss as f64 / up.max(1) as f64,
        ));
    }

    eprintln!("==> bench tunnel: memory of {peer_idle} idle sshd tunnels");
    let (peer_before, _) = tree_memory(sshd_pid);
    let mut peer_clients = Killer(Vec::new());
    let mut ready = Vec::new();
    for i in 0..peer_idle {
        let mut c = ssh_client(&config, None)
            .args(["-o", "LogLevel=INFO", "-R", "0:127.0.0.1:22", "peer"])
            .stderr(Stdio::piped())
            .spawn()?;
        // With port 0 the client prints "Allocated port N" once the forward is up.
        let stderr = c.stderr.take().context("stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Allocated port") {
                    let _ = tx.send(());
                }
            }
        });
        ready.push(rx);
        peer_clients.0.push(c);
        if (i + 1) % 100 == 0 {
            eprintln!("    sshd: {} tunnels started", i + 1);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let peer_up = ready
        .iter()
        .filter(|rx| {
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_ok()
        })
        .count();
    if peer_up < peer_idle {
        eprintln!(
            "    warning: only {peer_up} of {peer_idle} sshd tunnels came up; measuring those"
        );
    }
    let (peer_after, _) = tree_memory(sshd_pid);
    drop(peer_clients);

    let peer_per = peer_after.saturating_sub(peer_before) as f64 / peer_up.max(1) as f64;
    let mut fields = vec![
        ("payload_mib", PAYLOAD_MIB.to_string()),
        ("cipher", format!("\"{CIPHER}\"")),
        ("throughput_mib_s_p2pvps", format!("{ours_tp:.1}")),
        ("throughput_mib_s_sshd", format!("{peer_tp:.1}")),
        ("throughput_ratio", format!("{ratio:.2}")),
        ("idle_tunnels_sshd", peer_up.to_string()),
        ("idle_kib_per_tunnel_sshd_pss", format!("{peer_per:.1}")),
        (
            "cores",
            std::thread::available_parallelism()
                .map_or(0, |n| n.get())
                .to_string(),
        ),
    ];
    let mut memory_rows = String::new();
    let names: Vec<(String, String, String)> = ours_rows
        .iter()
        .map(|(n, ..)| {
            (
                format!("idle_tunnels_p2pvps_{n}"),
                format!("idle_kib_per_tunnel_p2pvps_pss_{n}"),
                format!("idle_kib_per_tunnel_p2pvps_rss_{n}"),
            )
        })
        .collect();
    for ((_, up, pss, rss), (k_up, k_pss, k_rss)) in ours_rows.iter().zip(&names) {
        fields.push((k_up, up.to_string()));
        fields.push((k_pss, format!("{pss:.1}")));
        fields.push((k_rss, format!("{rss:.1}")));
        memory_rows.push_str(&format!(
            "| memory per idle tunnel, {up} p2pvps tunnels ({} server process{}) / {peer_up} sshd (PSS; goal ≤ 36 KiB) | {pss:.1} KiB (RSS {rss:.1}) | \
             {peer_per:.1} KiB | {:.3}x |\n",
            up.div_ceil(TUNNELS_PER_PROCESS).max(1),
            if *up > TUNNELS_PER_PROCESS { "es" } else { "" },
            pss / peer_per.max(0.001)
        ));
    }
    let report = serde_like_json(&fields);
    let out_dir = root.join("target/bench");
    std::fs::write(out_dir.join("tunnel.json"), &report)?;
    let md = format!(
        "## Tunnel ({} cores)\n\n| measure | p2pvps | OpenSSH sshd | ratio |\n|---|---|---|---|\n\
         | reverse-forward throughput, {PAYLOAD_MIB} MiB, {CIPHER}, median of {ROUNDS} | {ours_tp:.0} MiB/s | \
         {peer_tp:.0} MiB/s | {ratio:.2}x (median of per-round ratios) |\n{memory_rows}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    Ok(md)
}

/// `cargo VERB` (build or run) of `tool`, a binary of `tests/src/bin`, in its release build.
fn tests_tool(verb: &str, tool: &str) -> Command {
    let mut c = crate::cargo();
    c.args([
        verb,
        "-q",
        "--release",
        "-j",
        "2",
        "-p",
        "p2pvps-tests",
        "--bin",
        tool,
    ]);
    c
}

/// Runs `tool` (a binary of `tests/src/bin`, release build) with `args` and `envs` on a database of its own
/// (`DATABASE_URL`, created in `admin_url`'s server and dropped afterwards); returns its stdout.
pub(crate) fn run_tool(
    admin_url: &str,
    tool: &str,
    args: &[&std::ffi::OsStr],
    envs: &[(&str, &std::ffi::OsStr)],
) -> Result<String> {
    let db = format!("p2pvps_{tool}_{}", std::process::id());
    psql(admin_url, &format!("CREATE DATABASE {db}"))?;
    let out = tests_tool("run", tool)
        .arg("--")
        .args(args)
        .envs(envs.iter().copied())
        .env("DATABASE_URL", with_database(admin_url, &db))
        .stderr(Stdio::inherit())
        .output();
    let _ = psql(
        admin_url,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    let out = out.with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!("{tool} failed");
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A number field of a flat JSON object a tool printed (NaN when missing).
pub(crate) fn json_number(json: &str, name: &str) -> f64 {
    json.split(&format!("\"{name}\":"))
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// A flat JSON object from already-encoded values (keeps xtask free of a JSON dependency).
pub(crate) fn serde_like_json(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("  \"{k}\": {v}"))
        .collect();
    format!("{{\n{}\n}}\n", body.join(",\n"))
}
