//! The real `p2pvps` binary as a child process, for tests that kill it (SIGKILL) and start it again on the
//! same database and data directory.

use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The server binary of this workspace, built first if a test runs on its own (`cargo test -p ...`);
/// `P2PVPS_SERVER_BIN` names another build (the benches use the release one).
pub fn binary() -> PathBuf {
    match std::env::var_os("P2PVPS_SERVER_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => workspace_binary("p2pvps-server", "p2pvps"),
    }
}

/// A binary of this workspace's `package`, built first when missing.
pub fn workspace_binary(package: &str, name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug").join(name);
    if !bin.is_file() {
        let ok = std::process::Command::new(env!("CARGO"))
            .args(["build", "-j", "2", "-p", package, "--bin", name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "building {name} failed");
    }
    bin
}

/// The URL of the test's own database (the one `#[sqlx::test]` made for `pool`).
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let mut url = url::Url::parse(&base).expect("DATABASE_URL is a URL");
    let db = pool
        .connect_options()
        .get_database()
        .expect("the test pool names its database")
        .to_owned();
    url.set_path(&format!("/{db}"));
    url.to_string()
}

/// A running `p2pvps serve`. Killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    /// Where its dashboard/API, its SSH server and its metrics listener listen (as it printed them).
    pub http: std::net::SocketAddr,
    pub ssh: std::net::SocketAddr,
    pub metrics: std::net::SocketAddr,
}

impl Server {
    /// Starts `p2pvps serve` on free ports with `args` added, and waits until it says it is serving.
    pub async fn start(pool: &PgPool, data_dir: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(binary())
            .args([
                "serve",
                "--http",
                "127.0.0.1:0",
                "--ssh",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--web-dir",
            ])
            .arg(crate::web_dir())
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("DATABASE_URL", database_url(pool))
            .env(
                "P2PVPS_LOG",
                std::env::var("P2PVPS_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("p2pvps starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        // "p2pvps is serving", then the addresses: the dashboard's, the metrics', later the SSH server's.
        let addresses = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            let (mut http, mut metrics) = (None, None);
            while let Ok(Some(line)) = lines.next_line().await {
                let line = line.trim();
                if let Some(url) = line.strip_prefix("dashboard: http://") {
                    http = url.trim_end_matches('/').parse().ok();
                }
                if let Some(url) = line.strip_prefix("metrics:") {
                    metrics = url
                        .trim()
                        .trim_start_matches("http://")
                        .trim_end_matches("/metrics")
                        .parse()
                        .ok();
                }
                if let Some(addr) = line.strip_prefix("SSH tunnels: ") {
                    return Some((http?, addr.parse().ok()?, metrics?));
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let (http, ssh, metrics) = addresses.expect("p2pvps did not say it was serving, and where");
        // Keep reading, so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            http,
            ssh,
            metrics,
        }
    }

    /// Its process id (for sampling its memory).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Whether the process is still running (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no shutdown, no flushing, as a crash or an OOM kill.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }
}
