//! The query macros' offline data, `.sqlx/` (one JSON file per checked statement): builds read it, so they
//! need no database. `cargo xtask sqlx-prepare` writes it afresh; `cargo xtask test` regenerates it aside
//! and fails when the committed copy differs (a statement or a migration changed without a refresh).
//!
//! Both describe every statement against a scratch database migrated from `sql/`, by building the server
//! crate with `P2PVPS_SQLX_URL` (the variable `backend/sqlx.toml` gives the macros) and `SQLX_OFFLINE_DIR`,
//! where the macros write what they saw.

use crate::{cargo, postgres, sh};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const REFRESH: &str = "cargo xtask sqlx-prepare";

/// Rewrites `.sqlx/` from the current statements and schema.
pub fn prepare(root: &Path) -> Result<()> {
    let fresh = generate(root)?;
    let dir = root.join(".sqlx");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::rename(&fresh, &dir)
        .or_else(|_| copy_dir(&fresh, &dir))
        .with_context(|| format!("cannot write {}", dir.display()))?;
    println!("sqlx: {} statements in .sqlx/", read_dir(&dir)?.len());
    Ok(())
}

/// Fails, naming the refresh command, when `.sqlx/` is not what the current code and schema give.
pub fn check(root: &Path) -> Result<()> {
    let fresh = read_dir(&generate(root)?)?;
    let committed = read_dir(&root.join(".sqlx"))?;
    let mut problems = Vec::new();
    for (name, data) in &fresh {
        match committed.get(name) {
            None => problems.push(format!("missing {name}")),
            Some(old) if old != data => problems.push(format!("out of date {name}")),
            Some(_) => {}
        }
    }
    for name in committed.keys().filter(|n| !fresh.contains_key(*n)) {
        problems.push(format!("unused {name}"));
    }
    if !problems.is_empty() {
        bail!(
            ".sqlx/ is stale ({}); refresh it with `{REFRESH}` and commit it",
            problems.join(", ")
        );
    }
    println!("sqlx: .sqlx/ is current ({} statements)", fresh.len());
    Ok(())
}

/// Describes every statement against a freshly migrated scratch database; returns the directory the
/// macros wrote to.
fn generate(root: &Path) -> Result<PathBuf> {
    let admin_url = postgres::database_url(root)?;
    let db = format!("p2pvps_sqlx_{}", std::process::id());
    postgres::psql(&admin_url, &format!("CREATE DATABASE {db}"))?;
    let url = postgres::with_database(&admin_url, &db);
    let result = migrate(root, &url).and_then(|()| describe(root, &url));
    let dropped = postgres::psql(&admin_url, &format!("DROP DATABASE IF EXISTS {db}"));
    let dir = result?;
    dropped?;
    Ok(dir)
}

/// Applies `sql/` in order, each file in one transaction, as the server's migrator would.
fn migrate(root: &Path, url: &str) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("sql"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    for file in files {
        sh(std::process::Command::new("psql")
            .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f"])
            .arg(&file))?;
    }
    Ok(())
}

/// Builds the server crate (every target) with the macros online, writing their data to a fresh directory.
fn describe(root: &Path, url: &str) -> Result<PathBuf> {
    let out = root.join("target/sqlx-data");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(&out)?;
    // The macros run only when the crate is compiled: a newer source file makes cargo compile it again.
    let lib = root.join("backend/src/lib.rs");
    std::fs::File::options()
        .append(true)
        .open(&lib)?
        .set_modified(std::time::SystemTime::now())?;
    sh(cargo()
        .args([
            "check",
            "-j",
            "2",
            "--quiet",
            "--package",
            "p2pvps-server",
            "--all-targets",
        ])
        .env("P2PVPS_SQLX_URL", url)
        .env("SQLX_OFFLINE", "false")
        .env("SQLX_OFFLINE_DIR", &out))?;
    Ok(out)
}

/// File name → content (parsed, so formatting does not count) of a data directory.
fn read_dir(dir: &Path) -> Result<BTreeMap<String, serde_json::Value>> {
    let mut files = BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}; run `{REFRESH}`", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("non-UTF-8 file name")?
            .to_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        files.insert(name, value);
    }
    Ok(files)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}
