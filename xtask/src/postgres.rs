//! The database for `run` and `test`: `DATABASE_URL` when set, otherwise a private PostgreSQL started from
//! the system's binaries under `target/pg` (socket only, no TCP port), kept running between invocations.
//! As root it runs as the `postgres` user, since `initdb` refuses root; when that user cannot reach the
//! checkout (a clone under a mode-0700 directory such as /root or `mktemp -d`), the cluster lives in
//! `/var/tmp/p2pvps-pg-<hash of the checkout path>` instead.

use crate::sh;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const PORT: &str = "55432";

pub fn database_url(root: &Path) -> Result<String> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.trim().is_empty()
    {
        eprintln!("using DATABASE_URL from the environment");
        return Ok(url);
    }
    start(root)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The directory holding `initdb` and `pg_ctl`: `pg_config --bindir`, else the newest under /usr/lib/postgresql.
pub fn bindir() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(dir) = candidates
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").is_file())
    {
        return Ok(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    bail!(
        "PostgreSQL server binaries not found: install Debian's `postgresql` package or set DATABASE_URL"
    )
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root.
fn pg(bin: &Path, tool: &str, args: &[&str]) -> Command {
    let exe = bin.join(tool);
    if is_root() {
        let mut c = Command::new("runuser");
        // From `/`: the postgres user may not be able to enter the current directory.
        c.args(["-u", "postgres", "--"])
            .arg(exe)
            .args(args)
            .current_dir("/");
        c
    } else {
        let mut c = Command::new(exe);
        c.args(args);
        c
    }
}

/// Where this checkout's private cluster lives (see the module comment).
fn cluster_dir(root: &Path) -> PathBuf {
    let local = root.join("target/pg");
    if !is_root() {
        return local;
    }
    let reachable = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(root)
        .status()
        .is_ok_and(|s| s.success());
    if reachable {
        return local;
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    root.hash(&mut hasher);
    PathBuf::from(format!("/var/tmp/p2pvps-pg-{:016x}", hasher.finish()))
}

/// The private cluster's URL, started (and created) when needed, whatever `DATABASE_URL` says.
pub fn start(root: &Path) -> Result<String> {
    let bin = bindir()?;
    let dir = cluster_dir(root);
    let data = dir.join("data");
    let sock = dir.join("run");
    std::fs::create_dir_all(&sock)?;
    let data_s = data.to_str().context("non-UTF-8 path")?;
    let sock_s = sock.to_str().context("non-UTF-8 path")?;
    if is_root() {
        sh(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir))?;
    }
    if !data.join("PG_VERSION").is_file() {
        eprintln!(
            "creating a private PostgreSQL cluster in {}",
            data.display()
        );
        sh(pg(
            &bin,
            "initdb",
            &["-A", "trust", "-U", "postgres", "-E", "UTF8", "-D", data_s],
        )
        .stdout(std::process::Stdio::null()))?;
    }
    let running = pg(&bin, "pg_ctl", &["-D", data_s, "status"])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !running {
        eprintln!("starting the private PostgreSQL (stop it with `cargo xtask pg-stop`)");
        sh(&mut pg(
            &bin,
            "pg_ctl",
            &start_args(&dir)?
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ))?;
    }
    Ok(format!(
        "postgres://postgres@localhost/postgres?host={sock_s}&port={PORT}"
    ))
}

/// `pg_ctl`'s arguments that start the private cluster in `dir` (socket only, waiting until it is up).
fn start_args(dir: &Path) -> Result<Vec<String>> {
    let path = |p: PathBuf| p.to_str().map(str::to_owned).context("non-UTF-8 path");
    let sock = path(dir.join("run"))?;
    let options =
        format!("-k {sock} -p {PORT} -c listen_addresses='' -c max_connections=200 -c fsync=off");
    Ok(vec![
        "-D".into(),
        path(dir.join("data"))?,
        "-l".into(),
        path(dir.join("postgres.log"))?,
        "-w".into(),
        "-o".into(),
        options,
        "start".into(),
    ])
}

/// Shell command lines that stop (fast: connections are cut, as in a crash or failover) and start the
/// private cluster again, for the chaos test that restarts the database under a running server.
pub fn restart_commands(root: &Path) -> Result<(String, String)> {
    let bin = bindir()?;
    let dir = cluster_dir(root);
    let data = dir.join("data");
    let data_s = data.to_str().context("non-UTF-8 path")?;
    let line = |cmd: Command| {
        let quote =
            |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
        std::iter::once(quote(cmd.get_program()))
            .chain(cmd.get_args().map(quote))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let stop = line(pg(
        &bin,
        "pg_ctl",
        &["-D", data_s, "-m", "fast", "-w", "stop"],
    ));
    let start_args = start_args(&dir)?;
    let start = line(pg(
        &bin,
        "pg_ctl",
        &start_args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    Ok((stop, start))
}

/// A new, empty database `name` in the private cluster (dropped first if it exists); its URL.
pub fn fresh_database(root: &Path, name: &str) -> Result<String> {
    let url = start(root)?;
    let sock = cluster_dir(root).join("run");
    let psql = |sql: &str| {
        let mut cmd = Command::new("psql");
        cmd.args([
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-p",
            PORT,
            "-h",
        ])
        .arg(&sock)
        .args(["-d", "postgres", "-c", sql]);
        sh(&mut cmd)
    };
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    psql(&format!("CREATE DATABASE {name}"))?;
    Ok(url.replace("localhost/postgres?", &format!("localhost/{name}?")))
}

pub fn stop(root: &Path) -> Result<()> {
    let data = cluster_dir(root).join("data");
    if !data.join("PG_VERSION").is_file() {
        eprintln!("no private PostgreSQL in {}", data.display());
        return Ok(());
    }
    let bin = bindir()?;
    sh(&mut pg(
        &bin,
        "pg_ctl",
        &[
            "-D",
            data.to_str().context("non-UTF-8 path")?,
            "-m",
            "fast",
            "stop",
        ],
    ))
}

/// Runs `sql` with psql on `url`, stopping at the first error; its output, unaligned.
pub(crate) fn psql(url: &str, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql])
        .output()?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `postgres://u@h/DB?q` with DB replaced.
pub(crate) fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}
