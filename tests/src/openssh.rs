//! Driving the real OpenSSH client against our SSH server, as a device (or an attacker) would.

use p2pvps_server::ssh::host_key;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// A scratch directory with the known_hosts pinning our host key and an askpass script per password.
pub struct SshKit {
    pub dir: PathBuf,
    pub server: std::net::SocketAddr,
    /// Removes `dir` when the kit is dropped.
    _scratch: tempfile::TempDir,
}

impl SshKit {
    /// Pins the server's host key (from `data_dir`) for `server` in a fresh known_hosts file.
    pub fn new(data_dir: &Path, server: std::net::SocketAddr) -> Self {
        let scratch = crate::temp_dir("p2pvps-ssh-");
        let dir = scratch.path().to_owned();
        let key = host_key::load_or_create(data_dir).unwrap();
        let line = format!(
            "[{}]:{} {}\n",
            server.ip(),
            server.port(),
            host_key::public_openssh(&key)
        );
        std::fs::write(dir.join("known_hosts"), line).unwrap();
        Self {
            dir,
            server,
            _scratch: scratch,
        }
    }

    /// `ssh` with no config file, `options` (first: for ssh, the first value given for an option wins), our
    /// pinned host key, and password authentication fed by askpass. The caller adds the rest.
    fn base(&self, password: &str, options: &[&str]) -> Command {
        let askpass = askpass(&self.dir, password);
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null"])
            .args(options)
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.dir.join("known_hosts").display()
            ))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=1",
            ]);
        answered_by(&mut cmd, &askpass);
        cmd
    }

    /// `ssh` to our server as `user`. In `args`, what follows `--` goes after the destination (a remote
    /// command).
    pub fn ssh(&self, user: &str, password: &str, args: &[&str]) -> Command {
        let split = args.iter().position(|a| *a == "--");
        let (options, remote) = match split {
            Some(i) => (&args[..i], &args[i + 1..]),
            None => (args, &[][..]),
        };
        let mut cmd = self.base(password, options);
        cmd.arg("-p")
            .arg(self.server.port().to_string())
            .args([
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "ServerAliveInterval=5",
            ])
            .arg(format!("{user}@{}", self.server.ip()))
            .args(remote);
        cmd
    }

    /// A command line as the dashboard shows it (`ssh ...`), run with our pinned host key and `password`
    /// typed at the prompt (by askpass).
    pub fn pasted(&self, line: &str, password: &str) -> Command {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"ssh"), "not an ssh command: {line}");
        let mut cmd = self.base(password, &[]);
        cmd.args(&words[1..]);
        cmd
    }

    /// `ssh -N -R PORT:127.0.0.1:LOCAL`, a device publishing a local service on its tunnel port.
    pub fn device(&self, id: &str, credential: &str, port: u16, local: u16) -> Child {
        let spec = format!("{port}:127.0.0.1:{local}");
        self.ssh(id, credential, &["-N", "-R", &spec])
            .spawn()
            .expect("ssh starts")
    }
}

/// Makes `cmd` take its password from `askpass`, with piped output, killed when dropped.
fn answered_by(cmd: &mut Command, askpass: &Path) {
    cmd.env("SSH_ASKPASS", askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
}

/// An askpass program (`SSH_ASKPASS`) in `dir` that answers `secret`.
fn askpass(dir: &Path, secret: &str) -> PathBuf {
    askpass_script(dir, &format!("printf '%s\\n' '{secret}'\n"))
}

/// An `SSH_ASKPASS` program running `body` (the prompt is `$1`).
fn askpass_script(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("askpass-{}", uuid::Uuid::new_v4()));
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
}

/// Runs a command that must succeed within 30 s; returns its stdout.
pub async fn output(mut cmd: Command) -> String {
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("ssh finished within 30 s")
        .expect("ssh ran");
    assert!(
        out.status.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs a command that must fail promptly; returns its stderr.
pub async fn refused(mut cmd: Command) -> String {
    let out = tokio::time::timeout(Duration::from_secs(15), cmd.output())
        .await
        .expect("refused within 15 s, not hanging")
        .expect("ssh ran");
    assert!(!out.status.success(), "expected failure, got success");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A TCP echo server on 127.0.0.1 playing the device's local service; returns its port.
pub async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// Sends `len` pseudo-random bytes to `addr` and checks the same bytes come back.
pub async fn echo_roundtrip(addr: std::net::SocketAddr, len: usize) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let stream = TcpStream::connect(addr).await.expect("device port accepts");
    let (mut r, mut w) = stream.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(len);
    tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut back))
        .await
        .expect("echo within 30 s")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), len, "bytes lost");
    assert!(back == data, "bytes changed on the way");
}

/// Asserts the port takes a connection and closes it without carrying a byte (a device port not let now).
pub async fn closed_without_data(addr: std::net::SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.expect("device port accepts");
    // The write may fail once the server has closed; only what comes back matters.
    let _ = stream.write_all(b"SSH-2.0-probe\r\n").await;
    let mut back = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut back))
        .await
        .expect("closed within 15 s");
    assert!(
        read.is_err() || back.is_empty(),
        "the port carried {} bytes",
        back.len()
    );
}

/// Fixed ports are drawn from here: below Linux's ephemeral range (32768-60999), so no port-0 listener
/// and no outgoing connection is given one by the kernel meanwhile, and never twice in one process,
/// where the tests of a binary run in parallel. The first draw starts at a random place, so that test
/// processes running side by side (other checkouts) rarely start on the same ports.
const FIXED_PORTS: std::ops::Range<u16> = 20_000..32_768;

/// The next `n` consecutive ports from [`FIXED_PORTS`] this process has not handed out, wrapping around.
fn next_ports(n: u16) -> u16 {
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let span = FIXED_PORTS.end - FIXED_PORTS.start;
    assert!(n > 0 && n <= span, "{n} ports");
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let mut base = next.unwrap_or_else(|| {
        FIXED_PORTS.start + (uuid::Uuid::new_v4().as_u128() % span as u128) as u16
    });
    if base + n > FIXED_PORTS.end {
        base = FIXED_PORTS.start;
    }
    *next = Some(base + n);
    base
}

/// A port for a program that must be told its port (sshd, chromedriver, a fixed listener): free when
/// checked, and not handed to another test of this process. It is released before the program binds it,
/// so a program that still finds it taken (another process took it) is started again on another port:
/// [`DeviceSshd`] and the browser do.
pub fn free_port() -> u16 {
    *free_port_range(1).start()
}

/// `n` consecutive ports, all free when checked, that no other test of this process gets (a tunnel port
/// range for one server, which binds them itself when a device connects, so the test cannot hold them).
pub fn free_port_range(n: u16) -> std::ops::RangeInclusive<u16> {
    loop {
        let base = next_ports(n);
        let all_free =
            (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return base..=base + n - 1;
        }
    }
}

/// A port on 127.0.0.1 where nothing listens and nothing will while the returned socket lives: bound,
/// never listening, so connections to it are refused.
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bound to port 0");
    let port = socket.local_addr().expect("its address").port();
    (socket, port)
}

/// A real OpenSSH `sshd` playing the device's own SSH server (on 127.0.0.1, key authentication only),
/// with a client key authorised for the current user.
pub struct DeviceSshd {
    pub port: u16,
    pub dir: PathBuf,
    /// `ssh-ed25519 AAAA...` of the sshd's host key.
    pub host_key: String,
    pub user: String,
    _child: Child,
    /// Removes `dir` when dropped, after the sshd is killed (fields drop in order).
    _scratch: tempfile::TempDir,
}

impl DeviceSshd {
    /// Logins by the test's key only, for the user running the tests.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// Password logins instead of the key (for accounts a provisioning hook creates; needs root, as sshd
    /// reads /etc/shadow).
    pub async fn start_with_passwords() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(passwords: bool) -> Self {
        let scratch = crate::temp_dir("p2pvps-sshd-");
        let dir = scratch.path().to_owned();
        // sshd's privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        for key in ["host_key", "client_key"] {
            let ok = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(key))
                .status()
                .unwrap()
                .success();
            assert!(ok, "ssh-keygen");
        }
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        // A port taken between the check and sshd's bind (by another process) means another port.
        let mut attempts = 0;
        let (port, child, mut lines) = loop {
            attempts += 1;
            let port = free_port();
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 StrictModes no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n{auth}",
                d = dir.display(),
                auth = if passwords {
                    // Passwords only: the test's key must not open the renters' accounts.
                    "PasswordAuthentication yes\nPubkeyAuthentication no\nAuthorizedKeysFile none\n"
                        .to_owned()
                } else {
                    format!(
                        "PasswordAuthentication no\nPubkeyAuthentication yes\nAuthorizedKeysFile {}/authorized_keys\n",
                        dir.display()
                    )
                }
            );
            std::fs::write(dir.join("sshd_config"), config).unwrap();
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(dir.join("sshd_config"))
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("sshd starts (Debian package openssh-server)");
            // Ready when it says it listens.
            let stderr = child.stderr.take().unwrap();
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            let said = tokio::time::timeout(Duration::from_secs(10), async {
                let mut said = Vec::new();
                while let Some(line) = lines.next_line().await.unwrap() {
                    if line.contains("Server listening") {
                        return Ok(());
                    }
                    said.push(line);
                }
                Err(said)
            })
            .await
            .expect("sshd listening within 10 s");
            match said {
                Ok(()) => break (port, child, lines),
                Err(said) if attempts < 5 && said.iter().any(|l| l.contains("already in use")) => {
                    continue;
                }
                Err(said) => panic!("sshd exited before listening: {said:?}"),
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let host_key = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        let host_key = host_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let user = String::from_utf8(
            std::process::Command::new("id")
                .arg("-un")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_owned();
        Self {
            port,
            dir,
            host_key,
            user,
            _child: child,
            _scratch: scratch,
        }
    }
}

impl SshKit {
    /// A renter's `ssh` to the device's sshd, either on the device's public port or through our server as
    /// a jump host (`-J LOGIN@server`, its password from askpass). Runs `remote` there.
    pub fn renter(&self, sshd: &DeviceSshd, via: Via<'_>, remote: &[&str]) -> Command {
        self.log_in_as(sshd, via, &sshd.user, None, remote)
    }

    /// As [`Self::renter`], logging in on the device's sshd as `user`, with `password` when given (the
    /// askpass answers every prompt with it, the jump host's included: a rental's password is one).
    pub fn log_in_as(
        &self,
        sshd: &DeviceSshd,
        via: Via<'_>,
        user: &str,
        password: Option<&str>,
        remote: &[&str],
    ) -> Command {
        let id = uuid::Uuid::new_v4();
        let known = self.dir.join(format!("known-{id}"));
        let mut lines = std::fs::read_to_string(self.dir.join("known_hosts")).unwrap();
        let (askpass_secret, target) = match via {
            Via::Port(port) => {
                lines.push_str(&format!("[127.0.0.1]:{port} {}\n", sshd.host_key));
                (String::new(), format!("{user}@127.0.0.1"))
            }
            Via::Jump {
                subdomain, secret, ..
            } => {
                lines.push_str(&format!("{subdomain} {}\n", sshd.host_key));
                (secret.to_owned(), format!("{user}@{subdomain}"))
            }
        };
        std::fs::write(&known, lines).unwrap();
        let config = self.dir.join(format!("config-{id}"));
        std::fs::write(
            &config,
            format!(
                "Host *\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  NumberOfPasswordPrompts 1\n  \
                 IdentityFile {}\n  IdentitiesOnly yes\n  BatchMode no\n",
                known.display(),
                sshd.dir.join("client_key").display()
            ),
        )
        .unwrap();
        // Through the jump host two passwords are asked for: the jump host's, then the device's own
        // (OpenSSH names the host in the prompt: `LOGIN@SUBDOMAIN's password:` is the device's).
        let askpass = match (via, password) {
            (Via::Jump { subdomain, .. }, Some(device)) => askpass_script(
                &self.dir,
                &format!(
                    "case \"$1\" in\n  *'@{subdomain}'\"'\"*) printf '%s\\n' '{device}' ;;\n  *) printf '%s\\n' '{askpass_secret}' ;;\nesac\n"
                ),
            ),
            _ => askpass(&self.dir, password.unwrap_or(&askpass_secret)),
        };
        let mut cmd = Command::new("ssh");
        cmd.arg("-F").arg(&config);
        match via {
            Via::Port(port) => {
                cmd.args(["-p", &port.to_string()]);
            }
            Via::Jump { login, .. } => {
                cmd.args([
                    "-J",
                    &format!("{login}@{}:{}", self.server.ip(), self.server.port()),
                ]);
            }
        }
        cmd.arg(target).args(remote);
        answered_by(&mut cmd, &askpass);
        cmd
    }
}

/// The two ways a renter reaches a device.
#[derive(Clone, Copy)]
pub enum Via<'a> {
    /// The device's public tunnel port.
    Port(u16),
    /// Our SSH server as jump host, with the rental's login and secret.
    Jump {
        login: &'a str,
        secret: &'a str,
        subdomain: &'a str,
    },
}

/// A fresh Ed25519 key pair in `dir`; returns (private key path, public key line).
pub fn keypair(dir: &Path) -> (PathBuf, String) {
    let path = dir.join(format!("key-{}", uuid::Uuid::new_v4()));
    let ok = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "device@example",
            "-f",
        ])
        .arg(&path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen");
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_owned())
}
