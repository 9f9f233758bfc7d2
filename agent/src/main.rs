//! `p2pvps-agent`: the device side of p2pvps. `enroll` once (it pins the server's SSH host key and stores
//! the device's credential), then `run` (as a systemd service): the tunnel to the server stays up, and the
//! machine's facts are reported.

mod api;
mod config;
mod facts;
mod hooks;
mod tunnel;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "p2pvps-agent",
    version,
    about = "Keeps a p2pvps device's tunnel up and reports its hardware"
)]
struct Cli {
    /// The agent's configuration file (written by `enroll`, read by `run`).
    #[arg(
        long,
        global = true,
        env = "P2PVPS_AGENT_CONFIG",
        default_value = "/etc/p2pvps/agent.toml"
    )]
    config: PathBuf,
    /// Log filter in `RUST_LOG` syntax.
    #[arg(long, global = true, env = "P2PVPS_AGENT_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Registers this machine as a device: checks the credential with the server, pins its SSH host key,
    /// and writes the configuration (mode 0600). The credential is read from stdin unless
    /// --credential-file is given.
    Enroll {
        /// The server's URL, e.g. https://p2pvps.example.
        #[arg(long)]
        server: String,
        /// The device id from the dashboard.
        #[arg(long)]
        device: String,
        /// A file holding the device credential.
        #[arg(long)]
        credential_file: Option<PathBuf>,
        /// Where this machine's sshd listens (renters reach it through the tunnel).
        #[arg(long, default_value = "127.0.0.1:22")]
        local_ssh: String,
        /// A local web server to publish at the device's subdomain (e.g. 127.0.0.1:8080).
        #[arg(long)]
        local_web: Option<String>,
        /// Executable run when a rental starts (creates the renter's access); needs --end-hook.
        #[arg(long, requires = "end_hook")]
        start_hook: Option<PathBuf>,
        /// Executable run when a rental ends (removes the renter's access); needs --start-hook.
        #[arg(long, requires = "start_hook")]
        end_hook: Option<PathBuf>,
        /// Accept a plain http:// server URL. The credential and the SSH host key the agent pins then
        /// travel unencrypted and unauthenticated: for a server on this machine or a test network only.
        #[arg(long)]
        insecure: bool,
    },
    /// Keeps the tunnel up (reconnecting with backoff), reports the machine's facts, and runs the hooks
    /// when rentals start and end.
    Run,
    /// Prints the facts this machine would report, as JSON.
    Facts,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).context("--log")?)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Enroll {
            server,
            device,
            credential_file,
            local_ssh,
            local_web,
            start_hook,
            end_hook,
            insecure,
        } => {
            check_server_url(&server, insecure)?;
            for hook in [&start_hook, &end_hook].into_iter().flatten() {
                use std::os::unix::fs::PermissionsExt;
                let meta =
                    std::fs::metadata(hook).with_context(|| format!("hook {}", hook.display()))?;
                if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
                    bail!("hook {} is not an executable file", hook.display());
                }
            }
            let mut credential = String::new();
            match credential_file {
                Some(f) => {
                    credential = std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?
                }
                None => {
                    std::io::stdin()
                        .take(4096)
                        .read_to_string(&mut credential)
                        .context("reading the credential from stdin")?;
                }
            }
            let credential = credential.trim().to_owned();
            if credential.is_empty() {
                bail!("no credential given (on stdin or with --credential-file)");
            }
            let api = api::Api::new(&server, &device, &credential)?;
            let tunnel = api.device().await?;
            let config = config::Config {
                server,
                device,
                credential,
                ssh_address: tunnel.ssh_address,
                host_key_fingerprint: tunnel.host_key_fingerprint,
                local_ssh,
                subdomain: tunnel.subdomain.clone(),
                local_web,
                hooks: config::Hooks {
                    start: start_hook,
                    end: end_hook,
                    ..config::Hooks::default()
                },
            };
            config.save(&cli.config)?;
            println!(
                "enrolled: port {} and subdomain {} on {} (host key {}); configuration in {}",
                tunnel.tunnel_port,
                tunnel.subdomain,
                config.ssh_address,
                config.host_key_fingerprint,
                cli.config.display()
            );
        }
        Command::Run => {
            let config = config::Config::load(&cli.config)?;
            let api = std::sync::Arc::new(api::Api::new(
                &config.server,
                &config.device,
                &config.credential,
            )?);
            let hooks = config.hooks.clone();
            let reporter = api.clone();
            tokio::spawn(async move {
                // Now and every 6 hours (memory or disks change; the server may have been down).
                loop {
                    let mut facts = facts::read();
                    facts.hooks = hooks.configured();
                    match reporter.report(&facts).await {
                        Ok(()) => tracing::info!("facts reported"),
                        Err(e) => {
                            tracing::warn!(error = %e, "reporting facts failed; trying again later")
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(6 * 3600)).await;
                }
            });
            if config.hooks.configured() {
                let hooks = config.hooks.clone();
                tokio::spawn(async move { hooks::serve(&api, &hooks).await });
            }
            tunnel::keep_up(&config).await;
        }
        Command::Facts => println!("{}", serde_json::to_string_pretty(&facts::read())?),
    }
    Ok(())
}

/// Enrolment sends the device's credential and fetches the host key the agent will trust from then on:
/// over plain HTTP anyone on the path could read the one and replace the other, so `http://` needs
/// `--insecure` (loopback included: one rule, no guessing which networks are safe).
fn check_server_url(server: &str, insecure: bool) -> Result<()> {
    let scheme = server
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("https") => Ok(()),
        Some("http") if insecure => Ok(()),
        Some("http") => bail!(
            "refusing to enroll with {server} over plain http: the device credential would be sent \
             unencrypted and the server's host key could be swapped on the way; use the https:// URL, or \
             pass --insecure for a server on this machine or a test network"
        ),
        _ => bail!("--server must be an https:// URL (or http:// with --insecure), not {server:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::check_server_url;

    #[test]
    fn plain_http_needs_insecure() {
        assert!(check_server_url("https://p2pvps.example", false).is_ok());
        assert!(check_server_url("HTTPS://p2pvps.example", false).is_ok());
        let refused = check_server_url("http://127.0.0.1:8080", false).unwrap_err();
        assert!(refused.to_string().contains("--insecure"), "{refused}");
        assert!(check_server_url("http://127.0.0.1:8080", true).is_ok());
        assert!(check_server_url("p2pvps.example", true).is_err());
        assert!(check_server_url("ftp://p2pvps.example", true).is_err());
    }
}
