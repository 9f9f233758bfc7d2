//! `p2pvps`: the server and its operator commands. See `p2pvps --help`.

use anyhow::Context;
use p2pvps_server::cli::config::{
    Cli, Command, DeviceCommand, LogFormat, RentalCommand, UserCommand,
};
use p2pvps_server::{app, cli, graphql, http, infra::db};
use p2pvps_shared::Role;
use std::io::Write;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: under load the server spent about a quarter of its time in malloc
/// and a fifth waiting on its arena locks (`cargo xtask bench graphql`, perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::load()?;
    init_logging(cli.global.log_format, &cli.global.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(cli))
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(filter).with_context(|| format!("invalid --log filter `{filter}`"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match &cli.command {
        Command::ExportSchema => {
            print!("{}", graphql::sdl());
            return Ok(());
        }
        Command::Migrate => {
            let pool = db::connect(global.database_url.as_deref()).await?;
            db::migrate(&pool).await?;
            tracing::info!("database is up to date");
        }
        Command::User(UserCommand::Create {
            email,
            admin,
            renter,
        }) => {
            let pool = db::connect(global.database_url.as_deref()).await?;
            let role = match (admin, renter) {
                (true, _) => Role::Admin,
                (_, true) => Role::Renter,
                _ => Role::Owner,
            };
            print_json(&cli::user_create(&pool, email, role).await?)?;
        }
        Command::Device(DeviceCommand::Create {
            owner,
            name,
            subdomain,
        }) => {
            let pool = db::connect(global.database_url.as_deref()).await?;
            print_json(
                &cli::device_create(&pool, global, owner, name, subdomain.as_deref()).await?,
            )?;
        }
        Command::Rental(RentalCommand::Grant {
            device,
            renter,
            hours,
            ssh,
            public_url,
        }) => {
            let pool = db::connect(global.database_url.as_deref()).await?;
            let host = public_host(public_url.as_deref());
            let out = cli::rental_grant(&pool, global, *device, renter, *hours, ssh.port(), &host)
                .await?;
            print_json(&out)?;
        }
        Command::Rental(RentalCommand::End { id }) => {
            let pool = db::connect(global.database_url.as_deref()).await?;
            print_json(&cli::rental_end(&pool, *id).await?)?;
        }
        Command::Serve(args) => {
            let web_dir = if http::has_index(&args.web_dir) {
                Some(args.web_dir.clone())
            } else {
                anyhow::bail!(
                    "no built dashboard in {} (index.html missing): build it with `cargo xtask run` or point \
                     --web-dir at Trunk's output",
                    args.web_dir.display()
                );
            };
            let secrets = cli::secrets(global)?;
            let pool = db::connect(global.database_url.as_deref()).await?;
            db::migrate(&pool).await?;
            if let Some((email, password)) =
                cli::bootstrap_admin(&pool, args.bootstrap_admin.as_deref()).await?
            {
                // On stdout, not in the logs: shown once to the operator who started the server.
                println!("First start: created admin {email} with one-time password {password}");
                println!(
                    "Sign in to the dashboard and change it on the Account page (or with the changePassword mutation)."
                );
            }
            let settings = app::Settings {
                http: args.http,
                metrics_listen: args.metrics_listen.0,
                metrics_token: args.metrics_token.clone(),
                web_dir,
                secrets,
                tunnel_ports: global.tunnel_ports.clone(),
                login_failures: p2pvps_server::accounts::auth_guard::Quotas {
                    per_address_per_minute: args.login_rate_per_address,
                    per_name_from_address_per_minute: args.login_rate_per_account,
                    per_name_per_hour: Some(args.login_failures_per_account_per_hour),
                },
                password_rate_per_address: args.password_rate_per_address,
                trusted_proxies: p2pvps_server::http::client_address::TrustedProxies(
                    args.trusted_proxy.clone(),
                ),
                cookie_secure: args
                    .public_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("https://")),
                public_host: public_host(args.public_url.as_deref()),
                ssh: Some(p2pvps_server::ssh::SshSettings {
                    addr: args.ssh,
                    tunnel_bind: args.tunnel_bind,
                    host_key: p2pvps_server::ssh::host_key::load_or_create(&global.data_dir)?,
                    auth_timeout: p2pvps_server::ssh::AUTH_TIMEOUT,
                }),
                gateway: cli::gateway_settings(global, &args.gateway, args.tunnel_bind)?,
                market: cli::market_settings(
                    &args.market,
                    args.public_url
                        .as_deref()
                        .unwrap_or(&format!("http://{}", args.http)),
                )?,
                fee_bps: args.market.platform_fee,
                payments: p2pvps_server::billing::payments::Providers::default(),
                orders: p2pvps_server::billing::storefront::OrderLimits {
                    hold: std::time::Duration::from_secs(args.order_hold_minutes * 60),
                    max_unpaid: args.max_unpaid_orders,
                },
                order_rate_per_account: args.order_rate_per_account,
            };
            let running = app::start(settings, pool).await?;
            let base = format!("http://{}", running.addr);
            println!("p2pvps is serving");
            println!("  dashboard: {base}/");
            println!("  GraphiQL:  {base}/graphql");
            println!("  health:    {base}/healthz");
            if let Some(metrics) = running.metrics_addr {
                println!("  metrics:   http://{metrics}/metrics");
            }
            if let Some(ssh) = running.ssh_addr {
                println!("  SSH tunnels: {ssh}");
            }
            if let Some(gateway) = &running.gateway {
                let listeners = [gateway.http, gateway.https].into_iter().flatten();
                let listeners: Vec<String> = listeners.map(|a| a.to_string()).collect();
                println!(
                    "  web gateway: {} (sites at {})",
                    listeners.join(", "),
                    gateway.address.url("SUBDOMAIN")
                );
            }
            tracing::info!(addr = %running.addr, "listening");
            wait_for_signal().await?;
            tracing::info!("shutting down");
            running.stop().await?;
        }
    }
    Ok(())
}

/// The host part of `--public-url`, or `localhost` for a local instance.
fn public_host(url: Option<&str>) -> String {
    url.and_then(|u| u.split_once("://"))
        .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or_default().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
