//! Command line, environment and config file, in that order of precedence.
//!
//! Every option is a clap flag with a `P2PVPS_*` environment variable; `--config FILE` (or `P2PVPS_CONFIG`)
//! names a TOML file whose keys are the long flag names (`http = "0.0.0.0:8080"`, `data-dir = "/var/lib/p2pvps"`).
//! The file's values become the flags' defaults, so a flag or an environment variable still wins over it.

use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Toml { path: String, message: String },
    #[error("config file {path}: unknown key `{key}` (keys are the long option names, see --help)")]
    UnknownKey { path: String, key: String },
    #[error("config file {path}: key `{key}` must be a string, number or boolean")]
    BadValue { path: String, key: String },
}

/// p2pvps: rent out small computers as tiny VPSs, reached through this server.
#[derive(Debug, Parser)]
#[command(name = "p2pvps", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML file with default values for any option (keys are the long option names); flags and environment
    /// variables override it.
    #[arg(long, global = true, env = "P2PVPS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// PostgreSQL connection URL, e.g. postgres://p2pvps:secret@db/p2pvps.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Log output format.
    #[arg(long, global = true, env = "P2PVPS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter in `RUST_LOG` syntax, e.g. `info` or `p2pvps_server=debug,info`.
    #[arg(
        long,
        global = true,
        env = "P2PVPS_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log: String,
    /// Directory for state the server generates once and keeps: the secret key, later host keys and certificates.
    #[arg(
        long,
        global = true,
        env = "P2PVPS_DATA_DIR",
        default_value = "data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// Base64 of 32 random bytes encrypting secrets at rest; when unset, generated into DATA_DIR/secret.key.
    #[arg(
        long,
        global = true,
        env = "P2PVPS_SECRET_KEY",
        value_name = "BASE64",
        hide_env_values = true
    )]
    pub secret_key: Option<String>,
    /// Range of TCP ports handed out to devices for their tunnels, START-END.
    #[arg(long, global = true, env = "P2PVPS_TUNNEL_PORTS", default_value = "6000-6999", value_parser = parse_port_range, value_name = "START-END")]
    pub tunnel_ports: RangeInclusive<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: migrates the database, then serves the API, the dashboard and the tunnels.
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL); `schema.graphql` in the repository is this output.
    ExportSchema,
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Grant and end rentals by hand (until a marketplace sells them).
    #[command(subcommand)]
    Rental(RentalCommand),
}

#[derive(Debug, Subcommand)]
pub enum RentalCommand {
    /// Rent a device to a user for some hours. Prints JSON with the login, its secret and the ready-to-paste
    /// connection commands.
    Grant {
        /// The device's id.
        #[arg(long, value_name = "ID")]
        device: uuid::Uuid,
        /// E-mail of the renting user.
        #[arg(long, value_name = "EMAIL")]
        renter: String,
        /// Length of the rental in hours (1-8760).
        #[arg(long, value_name = "N")]
        hours: i32,
        /// The SSH server's address (its port appears in the commands).
        #[arg(
            long,
            env = "P2PVPS_SSH",
            default_value = "0.0.0.0:2222",
            value_name = "ADDR"
        )]
        ssh: SocketAddr,
        /// Public base URL; its host name appears in the commands (default: localhost).
        #[arg(long, env = "P2PVPS_PUBLIC_URL", value_name = "URL")]
        public_url: Option<String>,
    },
    /// End a rental now: its jump login stops working and live connections are cut.
    End {
        /// The rental's id.
        id: uuid::Uuid,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address for HTTP: the dashboard, /graphql, /healthz (and /metrics with --metrics-token).
    #[arg(
        long,
        env = "P2PVPS_HTTP",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub http: SocketAddr,
    /// Address of the SSH server devices keep their tunnels to.
    #[arg(
        long,
        env = "P2PVPS_SSH",
        default_value = "0.0.0.0:2222",
        value_name = "ADDR"
    )]
    pub ssh: SocketAddr,
    /// Address the devices' public tunnel ports listen on.
    #[arg(
        long,
        env = "P2PVPS_TUNNEL_BIND",
        default_value = "0.0.0.0",
        value_name = "ADDR"
    )]
    pub tunnel_bind: std::net::IpAddr,
    /// Directory holding the built dashboard (Trunk's output, with index.html).
    #[arg(
        long,
        env = "P2PVPS_WEB_DIR",
        default_value = "target/dist",
        value_name = "DIR"
    )]
    pub web_dir: PathBuf,
    /// Public base URL of the dashboard; an https URL marks the session cookie Secure, and its host name is
    /// the one shown in the SSH commands given to renters and devices.
    #[arg(long, env = "P2PVPS_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Failed log-ins allowed per client address per minute; then that address's log-ins are refused until
    /// the quota recovers.
    #[arg(
        long,
        env = "P2PVPS_LOGIN_RATE_PER_ADDRESS",
        default_value_t = 20,
        value_name = "N"
    )]
    pub login_rate_per_address: u32,
    /// Failed log-ins allowed per account from one address per minute; the owner logging in from another
    /// address is not affected.
    #[arg(
        long,
        env = "P2PVPS_LOGIN_RATE_PER_ACCOUNT",
        default_value_t = 5,
        value_name = "N"
    )]
    pub login_rate_per_account: u32,
    /// Failed log-ins allowed per account per hour from all addresses together: the backstop against
    /// guessing spread over many addresses.
    #[arg(
        long,
        env = "P2PVPS_LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR",
        default_value_t = 100,
        value_name = "N"
    )]
    pub login_failures_per_account_per_hour: u32,
    /// Sign-ups and password changes (each hashes a password with Argon2) allowed per address per minute.
    #[arg(
        long,
        env = "P2PVPS_PASSWORD_RATE_PER_ADDRESS",
        default_value_t = 10,
        value_name = "N"
    )]
    pub password_rate_per_address: u32,
    /// Reverse proxies in front of the HTTP port (addresses or CIDRs, comma-separated): only requests from
    /// these peers have their `Forwarded` / `X-Forwarded-For` read for the client's address (rate limits,
    /// audit log). Without it the peer's address is used and those headers are ignored.
    #[arg(
        long,
        env = "P2PVPS_TRUSTED_PROXY",
        value_name = "CIDR[,CIDR]",
        value_delimiter = ',',
        value_parser = crate::http::client_address::parse_trusted
    )]
    pub trusted_proxy: Vec<ipnet::IpNet>,
    /// Minutes an unpaid storefront order reserves its device; then it is cancelled.
    #[arg(long, env = "P2PVPS_ORDER_HOLD_MINUTES", default_value_t = 30, value_name = "MINUTES", value_parser = clap::value_parser!(u64).range(1..=10080))]
    pub order_hold_minutes: u64,
    /// Unpaid storefront orders one renter may hold at once; a further order is refused until one is paid
    /// or cancelled.
    #[arg(long, env = "P2PVPS_MAX_UNPAID_ORDERS", default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_unpaid_orders: u32,
    /// Storefront orders (`orderRental`) allowed per account per minute.
    #[arg(
        long,
        env = "P2PVPS_ORDER_RATE_PER_ACCOUNT",
        default_value_t = 10,
        value_name = "N"
    )]
    pub order_rate_per_account: u32,
    /// Address of a listener that serves /metrics (Prometheus) and nothing else; `off` runs none. Keep it
    /// on loopback or a private network: the figures name devices' sites and show the server's load.
    #[arg(
        long,
        env = "P2PVPS_METRICS_LISTEN",
        default_value = "127.0.0.1:9100",
        value_name = "ADDR|off",
        value_parser = parse_listen
    )]
    pub metrics_listen: Listen,
    /// A bearer token that also opens /metrics on the main HTTP address (`Authorization: Bearer TOKEN`).
    /// Without it, /metrics there answers 404.
    #[arg(
        long,
        env = "P2PVPS_METRICS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
    /// On first start (no admin exists), create this admin and print a one-time password.
    #[arg(long, env = "P2PVPS_BOOTSTRAP_ADMIN", value_name = "EMAIL")]
    pub bootstrap_admin: Option<String>,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    #[command(flatten)]
    pub market: MarketArgs,
}

/// Selling devices on an OpenBazaar node.
#[derive(Debug, Clone, Args)]
pub struct MarketArgs {
    /// URL of an OpenBazaar node's API (e.g. http://127.0.0.1:4002); devices offered for rent are listed
    /// there and its paid orders become rentals.
    #[arg(long, env = "P2PVPS_OPENBAZAAR_URL", value_name = "URL")]
    pub openbazaar_url: Option<String>,
    /// The node's API user name (with --openbazaar-password).
    #[arg(
        long,
        env = "P2PVPS_OPENBAZAAR_USER",
        value_name = "NAME",
        requires = "openbazaar_password"
    )]
    pub openbazaar_user: Option<String>,
    /// The node's API password (the node's config holds its SHA-256).
    #[arg(
        long,
        env = "P2PVPS_OPENBAZAAR_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        requires = "openbazaar_user"
    )]
    pub openbazaar_password: Option<String>,
    /// The node's auth cookie value (from its `.cookie` file), when it has no user name and password.
    #[arg(
        long,
        env = "P2PVPS_OPENBAZAAR_COOKIE",
        value_name = "VALUE",
        hide_env_values = true,
        conflicts_with = "openbazaar_user"
    )]
    pub openbazaar_cookie: Option<String>,
    /// Seconds one call to the OpenBazaar node may take before it counts as failed (and is retried later).
    #[arg(long, env = "P2PVPS_OPENBAZAAR_TIMEOUT", value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub openbazaar_timeout: u64,
    /// The platform's share of each payment, in percent (the owner earns the rest).
    #[arg(long, env = "P2PVPS_PLATFORM_FEE", value_name = "PERCENT", default_value = "10", value_parser = parse_percent)]
    pub platform_fee: u32,
    /// Seconds between checks of listings and orders (an OpenBazaar websocket hint comes sooner).
    #[arg(long, env = "P2PVPS_MARKET_POLL", value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub market_poll: u64,
}

/// `7.5` → 750 basis points.
fn parse_percent(text: &str) -> Result<u32, String> {
    let p: f64 = text
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage"))?;
    if !(0.0..=100.0).contains(&p) {
        return Err("must be between 0 and 100".to_owned());
    }
    Ok((p * 100.0).round() as u32)
}

/// The web gateway: devices' sites at SUBDOMAIN.DOMAIN.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Domain whose subdomains are devices' sites (`pi.DOMAIN`), e.g. p2pvps.example; its DNS needs a
    /// wildcard record pointing here. Required by the gateway listeners.
    #[arg(long, env = "P2PVPS_DOMAIN", value_name = "DOMAIN", value_parser = crate::gateway::host::parse_domain)]
    pub domain: Option<String>,
    /// Address of the gateway's plain-HTTP listener, e.g. 0.0.0.0:80.
    #[arg(
        long,
        env = "P2PVPS_GATEWAY_HTTP",
        value_name = "ADDR",
        requires = "domain"
    )]
    pub gateway_http: Option<SocketAddr>,
    /// Address of the gateway's HTTPS listener (HTTP/2 and HTTP/1.1), e.g. 0.0.0.0:443. Needs a
    /// certificate: --tls-cert and --tls-key, or --tls-self-signed.
    #[arg(
        long,
        env = "P2PVPS_GATEWAY_HTTPS",
        value_name = "ADDR",
        requires = "domain"
    )]
    pub gateway_https: Option<SocketAddr>,
    /// PEM certificate chain for `*.DOMAIN` and `DOMAIN` (a wildcard certificate).
    #[arg(
        long,
        env = "P2PVPS_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(
        long,
        env = "P2PVPS_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Generate a local CA (kept in DATA_DIR/gateway-ca.pem, printed at start) and a wildcard certificate
    /// signed by it, for testing: trust the CA in the client to check HTTPS.
    #[arg(long, env = "P2PVPS_TLS_SELF_SIGNED", action = ArgAction::SetTrue)]
    pub tls_self_signed: bool,
    /// When both gateway listeners run, redirect plain-HTTP site requests to HTTPS (308).
    #[arg(long, env = "P2PVPS_HTTPS_REDIRECT", value_name = "BOOL", action = ArgAction::Set, default_value_t = true)]
    pub https_redirect: bool,
    /// Ports for the data sockets of `lt` (localtunnel) clients, START-END, one per connected device; they
    /// listen on --tunnel-bind. Default: any free port (publish a range when running in a container).
    #[arg(long, env = "P2PVPS_LOCALTUNNEL_PORTS", value_parser = parse_port_range, value_name = "START-END")]
    pub localtunnel_ports: Option<RangeInclusive<u16>>,
    /// Seconds a request or response body may go without data through the gateway before the exchange is
    /// cut (like a proxy read timeout; streams that idle longer, e.g. server-sent events, need keepalives).
    #[arg(long, env = "P2PVPS_GATEWAY_IDLE_TIMEOUT", default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub gateway_idle_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from stdin. Prints the user as JSON.
    Create {
        /// The user's e-mail address (their login).
        #[arg(long)]
        email: String,
        /// Make the user an admin (default: owner).
        #[arg(long, action = ArgAction::SetTrue, conflicts_with = "renter")]
        admin: bool,
        /// Make the user a renter (default: owner).
        #[arg(long, action = ArgAction::SetTrue)]
        renter: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a device for an owner. Prints JSON with the device id, its credential (shown this once), its
    /// tunnel port and its subdomain.
    Create {
        /// E-mail of the owning user.
        #[arg(long, value_name = "EMAIL")]
        owner: String,
        /// Device name, unique among the owner's devices.
        #[arg(long)]
        name: String,
        /// Subdomain label (default: generated).
        #[arg(long, value_name = "LABEL")]
        subdomain: Option<String>,
    },
}

/// A listener's address, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

fn parse_listen(text: &str) -> Result<Listen, String> {
    match text.trim() {
        "off" | "none" | "" => Ok(Listen(None)),
        addr => addr
            .parse()
            .map(|a| Listen(Some(a)))
            .map_err(|_| format!("`{addr}` is not an address like 127.0.0.1:9100 (or `off`)")),
    }
}

fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| "expected START-END, e.g. 6000-6999".to_owned())?;
    let start: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("`{a}` is not a port number"))?;
    let end: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("`{b}` is not a port number"))?;
    if start < 1024 || start > end {
        return Err("START must be at least 1024 and not above END".to_owned());
    }
    Ok(start..=end)
}

impl Cli {
    /// Parses the process's arguments, with a config file's values as defaults.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::args_os().collect())
    }

    pub fn load_from(args: Vec<OsString>) -> Result<Self, ConfigError> {
        let mut command = Cli::command();
        if let Some(path) = config_path(&args) {
            command = apply_file(command, &path)?;
        }
        let matches = command.get_matches_from(args);
        Ok(Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
    }
}

/// `--config` is needed before clap parses (it changes the defaults), so it is found by hand here.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(v) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
        if arg == "--" {
            break;
        }
    }
    std::env::var_os("P2PVPS_CONFIG").map(PathBuf::from)
}

fn apply_file(
    command: clap::Command,
    path: &std::path::Path,
) -> Result<clap::Command, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Toml {
            path: shown.clone(),
            message: e.message().to_owned(),
        })?;
    let mut command = command;
    for (key, value) in table {
        let id = key.replace('-', "_");
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(ConfigError::BadValue { path: shown, key });
            }
        };
        if id == "config" || !set_default(&mut command, &id, &value) {
            return Err(ConfigError::UnknownKey { path: shown, key });
        }
    }
    Ok(command)
}

/// Sets the default of every argument named `id`, in this command and its subcommands.
fn set_default(command: &mut clap::Command, id: &str, value: &str) -> bool {
    let mut found = false;
    if command.get_arguments().any(|a| a.get_id() == id) {
        let value = value.to_owned();
        *command = std::mem::take(command).mut_arg(id, |a| a.default_value(value));
        found = true;
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        let mut sub_found = false;
        *command = std::mem::take(command).mut_subcommand(name, |mut sub| {
            sub_found = set_default(&mut sub, id, value);
            sub
        });
        found |= sub_found;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn file_values_are_defaults_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("p2pvps-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("p2pvps.toml");
        std::fs::write(
            &file,
            "http = \"127.0.0.1:9999\"\ndata-dir = \"/srv/p2pvps\"\nlogin_rate_per_account = 3\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let cli = Cli::load_from(args(&["p2pvps", "--config", f, "serve"])).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("serve expected")
        };
        assert_eq!(serve.http.port(), 9999);
        assert_eq!(serve.login_rate_per_account, 3);
        assert_eq!(cli.global.data_dir, PathBuf::from("/srv/p2pvps"));

        let cli = Cli::load_from(args(&[
            "p2pvps",
            "--config",
            f,
            "serve",
            "--http",
            "127.0.0.1:7000",
        ]))
        .unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("serve expected")
        };
        assert_eq!(serve.http.port(), 7000);
        assert_eq!(serve.order_hold_minutes, 30);
        assert_eq!(serve.max_unpaid_orders, 2);
        assert_eq!(
            serve.metrics_listen,
            Listen(Some(SocketAddr::from(([127, 0, 0, 1], 9100))))
        );
        assert_eq!(serve.metrics_token, None);

        std::fs::write(&file, "htp = \"x\"\n").unwrap();
        let err = Cli::load_from(args(&["p2pvps", "--config", f, "serve"])).unwrap_err();
        assert!(err.to_string().contains("unknown key `htp`"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("off").unwrap(), Listen(None));
        assert_eq!(
            parse_listen("0.0.0.0:9100").unwrap(),
            Listen(Some(SocketAddr::from(([0, 0, 0, 0], 9100))))
        );
        assert!(parse_listen("9100").is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("6000-6999").unwrap(), 6000..=6999);
        assert!(parse_port_range("7000-6000").is_err());
        assert!(parse_port_range("80-90").is_err());
        assert!(parse_port_range("6000").is_err());
    }
}
