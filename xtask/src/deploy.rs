//! `cargo xtask deploy-check`: the deployment files checked without a Docker engine (or systemd running).
//! `compose.yaml` is validated by Compose itself (`config`) with the example environment, and must refuse
//! to start without its required secrets; the Dockerfile is linted against the rules we hold it to (hadolint is in none of
//! the registries this project may use), including that it builds what CI builds; the agent's systemd
//! unit and its hooks drop-in are checked by `systemd-analyze verify`, the example hooks by `sh -n`.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

/// What CI builds and the image must build the same way.
const FRONTEND_BUILD: &str = "cargo xtask frontend";
const SERVER_BUILD: &str = "cargo build --release --locked -p p2pvps-server --bin p2pvps";

pub fn check(root: &Path) -> Result<()> {
    compose(root)?;
    systemd_unit(root)?;
    example_hooks(root)?;
    let problems = lint_dockerfile(&std::fs::read_to_string(root.join("Dockerfile"))?);
    if !problems.is_empty() {
        bail!("Dockerfile:\n  {}", problems.join("\n  "));
    }
    eprintln!("compose.yaml valid; Dockerfile follows the rules");
    Ok(())
}

/// `config -q` in a scratch copy with `.env.example` as `.env`; and again without the password, which
/// must fail.
fn compose(root: &Path) -> Result<()> {
    let compose = crate::tools::compose_command()?;
    let dir = root.join("target/deploy-check");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(root.join("compose.yaml"), dir.join("compose.yaml"))?;
    let example = std::fs::read_to_string(root.join(".env.example"))?;
    let config = |env: &str| -> Result<std::process::Output> {
        std::fs::write(dir.join(".env"), env)?;
        Command::new(&compose[0])
            .args(&compose[1..])
            .args(["-f", "compose.yaml", "config", "-q"])
            .current_dir(&dir)
            .env_remove("POSTGRES_PASSWORD")
            .env_remove("P2PVPS_PUBLIC_URL")
            .output()
            .context("running Compose")
    };
    let ok = config(&example)?;
    if !ok.status.success() {
        bail!(
            "compose.yaml is not valid:\n{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }
    let without: String = example
        .lines()
        .filter(|l| !l.starts_with("POSTGRES_PASSWORD="))
        .map(|l| format!("{l}\n"))
        .collect();
    let refused = config(&without)?;
    let said = String::from_utf8_lossy(&refused.stderr);
    if refused.status.success() || !said.contains("POSTGRES_PASSWORD") {
        bail!("compose.yaml must refuse to start without POSTGRES_PASSWORD (it said: {said})");
    }
    Ok(())
}

/// `systemd-analyze verify` on the agent's unit (its binary stood in for by /bin/true), when systemd's
/// tools are on the machine; any complaint fails.
fn systemd_unit(root: &Path) -> Result<()> {
    let unit = std::fs::read_to_string(root.join("agent/p2pvps-agent.service"))?;
    let dir = root.join("target/deploy-check");
    std::fs::create_dir_all(&dir)?;
    let copy = dir.join("p2pvps-agent.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/p2pvps-agent", "/bin/true"),
    )?;
    // With the hooks' drop-in, found through the unit path as systemd would find it.
    let drop_in = dir.join("p2pvps-agent.service.d");
    std::fs::create_dir_all(&drop_in)?;
    std::fs::copy(
        root.join("agent/p2pvps-agent-hooks.conf"),
        drop_in.join("hooks.conf"),
    )?;
    let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
    else {
        eprintln!("systemd-analyze not found: the agent's unit file was not verified");
        return Ok(());
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !said.trim().is_empty() {
        bail!("agent/p2pvps-agent.service (with p2pvps-agent-hooks.conf):\n{said}");
    }
    Ok(())
}

/// The example hooks parse as POSIX shell (`sh -n`).
fn example_hooks(root: &Path) -> Result<()> {
    for entry in std::fs::read_dir(root.join("agent/hooks"))? {
        let path = entry?.path();
        crate::sh(Command::new("sh").arg("-n").arg(&path))
            .with_context(|| format!("{} is not valid shell", path.display()))?;
    }
    Ok(())
}

/// The Dockerfile's problems, one line each.
fn lint_dockerfile(text: &str) -> Vec<String> {
    // Instructions with their continuation lines joined, comments dropped.
    let mut instructions: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        current.push_str(line.trim_end_matches('\\').trim());
        current.push(' ');
        if !line.ends_with('\\') {
            instructions.push(current.trim().to_owned());
            current.clear();
        }
    }
    let mut problems = Vec::new();
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, i)| i.starts_with("FROM "))
        .map(|(n, _)| n)
        .collect();
    let Some(&last) = stages.last() else {
        return vec!["no FROM".into()];
    };
    for n in &stages {
        let image = instructions[*n].split_whitespace().nth(1).unwrap_or("");
        if !image.contains(':') || image.ends_with(":latest") {
            problems.push(format!("base image `{image}` is not pinned to a version"));
        }
    }
    let build: String = instructions[..last].join("\n");
    let runtime = &instructions[last..];
    for wanted in [FRONTEND_BUILD, SERVER_BUILD] {
        if !build.contains(wanted) {
            problems.push(format!(
                "the build stage does not run `{wanted}` (what CI builds)"
            ));
        }
    }
    for artefact in ["target/release/p2pvps", "target/dist"] {
        if !runtime
            .iter()
            .any(|i| i.starts_with("COPY --from=") && i.contains(artefact))
        {
            problems.push(format!(
                "the runtime stage does not take `{artefact}` from the build"
            ));
        }
    }
    match runtime.iter().rev().find(|i| i.starts_with("USER ")) {
        Some(user) if !user.ends_with(" root") && !user.ends_with(" 0") => {}
        _ => problems.push("the runtime stage runs as root (no USER)".into()),
    }
    if !runtime
        .iter()
        .any(|i| i.starts_with("HEALTHCHECK") && i.contains("/healthz"))
    {
        problems.push("no HEALTHCHECK on /healthz".into());
    }
    for i in instructions
        .iter()
        .filter(|i| i.contains("apt-get install"))
    {
        if !i.contains("--no-install-recommends") || !i.contains("rm -rf /var/lib/apt/lists") {
            problems.push(format!(
                "`{}`: apt-get install without --no-install-recommends or without cleaning the lists",
                i.chars().take(60).collect::<String>()
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::lint_dockerfile;

    #[test]
    fn the_repository_dockerfile_passes() {
        let text = include_str!("../../Dockerfile");
        assert_eq!(lint_dockerfile(text), Vec::<String>::new());
    }

    #[test]
    fn each_rule_catches_its_mistake() {
        let good = include_str!("../../Dockerfile");
        let cases = [
            (
                "FROM debian:bookworm-slim AS runtime",
                "FROM debian AS runtime",
                "not pinned",
            ),
            ("USER p2pvps", "USER root", "runs as root"),
            (
                "CMD curl -fsS http://127.0.0.1:8080/healthz",
                "CMD true",
                "HEALTHCHECK",
            ),
            (
                " && cargo build --release --locked -p p2pvps-server --bin p2pvps",
                "",
                "what CI builds",
            ),
            (
                "COPY --from=build /src/target/dist /usr/share/p2pvps/web",
                "",
                "target/dist",
            ),
            (
                "--no-install-recommends ca-certificates",
                "ca-certificates",
                "no-install-recommends",
            ),
        ];
        for (from, to, said) in cases {
            assert!(good.contains(from), "the Dockerfile has `{from}`");
            let problems = lint_dockerfile(&good.replacen(from, to, 1));
            assert!(
                problems.iter().any(|p| p.contains(said)),
                "replacing `{from}` gives {problems:?}"
            );
        }
    }
}
