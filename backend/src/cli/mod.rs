//! The operator commands other than `serve`: each prints JSON on stdout so scripts can read it.

pub mod config;

use crate::accounts::users;
use crate::cli::config::{GatewayArgs, GlobalArgs};
use crate::devices::{self, NewDevice};
use crate::gateway::GatewaySettings;
use crate::gateway::tls::{self, CertSource};
use crate::infra::audit::Actor;
use crate::infra::crypto::{self, SecretBox};
use anyhow::{Context, bail};
use p2pvps_shared::{DeviceName, Email, Password, Role, SubdomainLabel};
use sqlx::PgPool;
use std::io::Read;
use std::sync::Arc;

/// The key for secrets at rest: `--secret-key`, or the data directory's generated one.
pub fn secrets(global: &GlobalArgs) -> anyhow::Result<SecretBox> {
    Ok(match &global.secret_key {
        Some(key) => SecretBox::from_base64(key)?,
        None => SecretBox::load_or_create(&global.data_dir)?,
    })
}

/// The web gateway's settings from its flags: `None` when no gateway listener is asked for.
pub fn gateway_settings(
    global: &GlobalArgs,
    args: &GatewayArgs,
    tunnel_bind: std::net::IpAddr,
) -> anyhow::Result<Option<GatewaySettings>> {
    let Some(domain) = &args.domain else {
        return Ok(None);
    };
    if args.gateway_http.is_none() && args.gateway_https.is_none() {
        bail!("--domain needs a gateway listener: --gateway-http ADDR and/or --gateway-https ADDR");
    }
    let tls: Option<Arc<dyn CertSource>> = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(tls::from_files(cert, key)?)),
        _ if args.tls_self_signed => {
            let (source, ca) = tls::self_signed(&global.data_dir, domain)?;
            let pem = std::fs::read_to_string(&ca)
                .with_context(|| format!("reading {}", ca.display()))?;
            // On stdout, like the first admin's password: for the operator who started a test server.
            println!(
                "Gateway certificate: self-signed for *.{domain}. Trust this CA to check it ({}):\n{pem}",
                ca.display()
            );
            Some(Arc::new(source))
        }
        _ => None,
    };
    if args.gateway_https.is_some() && tls.is_none() {
        bail!(
            "--gateway-https needs a certificate: --tls-cert FILE --tls-key FILE, or --tls-self-signed"
        );
    }
    Ok(Some(GatewaySettings {
        domain: domain.clone(),
        http: args.gateway_http,
        https: args.gateway_https,
        tls,
        redirect_to_https: args.https_redirect,
        localtunnel_bind: tunnel_bind,
        localtunnel_ports: args.localtunnel_ports.clone(),
        body_idle_timeout: std::time::Duration::from_secs(args.gateway_idle_timeout),
    }))
}

/// The marketplace to sell on, from its flags: `None` without `--openbazaar-url`.
pub fn market_settings(
    args: &crate::cli::config::MarketArgs,
    dashboard: &str,
) -> anyhow::Result<Option<crate::app::MarketSettings>> {
    use crate::market::openbazaar::{Credentials, OpenBazaar};
    let Some(url) = &args.openbazaar_url else {
        return Ok(None);
    };
    let credentials = match (
        &args.openbazaar_user,
        &args.openbazaar_password,
        &args.openbazaar_cookie,
    ) {
        (Some(user), Some(password), _) => Credentials::Basic {
            user: user.clone(),
            password: password.clone(),
        },
        (_, _, Some(cookie)) => Credentials::Cookie(cookie.clone()),
        _ => bail!(
            "--openbazaar-url needs credentials: --openbazaar-user and --openbazaar-password, or --openbazaar-cookie"
        ),
    };
    let market = OpenBazaar::with_timeout(
        url,
        credentials,
        std::time::Duration::from_secs(args.openbazaar_timeout),
    )?;
    Ok(Some(crate::app::MarketSettings {
        market: Arc::new(market),
        sale: crate::market::sales::SaleSettings {
            fee_bps: args.platform_fee,
            dashboard: dashboard.to_owned(),
        },
        poll: std::time::Duration::from_secs(args.market_poll),
    }))
}

pub async fn user_create(
    pool: &PgPool,
    email: &str,
    role: Role,
) -> anyhow::Result<serde_json::Value> {
    let email = Email::parse(email)?;
    let mut password = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut password)
        .context("reading the password from stdin")?;
    let password = Password::parse(password.trim_end_matches(['\r', '\n']))?;
    let mut tx = pool.begin().await?;
    let user = users::create(&mut tx, Some(&Actor::cli()), &email, &password, role, false).await?;
    tx.commit().await?;
    Ok(serde_json::json!({
        "id": user.id,
        "email": user.email,
        "role": user.role.as_str(),
    }))
}

pub async fn device_create(
    pool: &PgPool,
    global: &GlobalArgs,
    owner: &str,
    name: &str,
    subdomain: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let owner = Email::parse(owner)?;
    let mut new = NewDevice::named(DeviceName::parse(name)?);
    new.subdomain = subdomain.map(SubdomainLabel::parse).transpose()?;
    let mut tx = pool.begin().await?;
    let Some(user) = users::find_by_email(&mut tx, &owner).await? else {
        bail!("no user with e-mail {owner}; create one with `p2pvps user create --email {owner}`");
    };
    if user.role == Role::Renter {
        bail!("{owner} is a renter; only owners and admins can own devices");
    }
    let (device, credential) =
        devices::create(&mut tx, &Actor::cli(), user.id, &new, &global.tunnel_ports).await?;
    tx.commit().await?;
    let host_key = crate::ssh::host_key::load_or_create(&global.data_dir)?;
    Ok(serde_json::json!({
        "id": device.id,
        "name": device.name,
        "ssh_host_key_fingerprint": crate::ssh::host_key::fingerprint(&host_key),
        "owner": user.email,
        "credential": credential,
        "port": device.tunnel_port,
        "subdomain": device.subdomain,
    }))
}

/// On a database with no admin, creates one with a generated password and returns (email, password).
pub async fn bootstrap_admin(
    pool: &PgPool,
    email: Option<&str>,
) -> anyhow::Result<Option<(String, String)>> {
    if users::any_admin(pool).await? {
        return Ok(None);
    }
    let email = Email::parse(email.unwrap_or("admin@p2pvps.local"))?;
    let password = crypto::new_password();
    let mut tx = pool.begin().await?;
    // Two instances starting at once: the advisory lock makes the second see the first's admin.
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('p2pvps.bootstrap_admin'))")
        .execute(&mut *tx)
        .await?;
    let exists: bool = sqlx::query_scalar!(
        "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin') AS \"exists!\""
    )
    .fetch_one(&mut *tx)
    .await?;
    if exists {
        return Ok(None);
    }
    users::create(
        &mut tx,
        Some(&Actor::system()),
        &email,
        &Password::parse(&password)?,
        Role::Admin,
        true,
    )
    .await?;
    tx.commit().await?;
    Ok(Some((email.to_string(), password)))
}

pub async fn rental_grant(
    pool: &PgPool,
    global: &GlobalArgs,
    device: uuid::Uuid,
    renter: &str,
    hours: i32,
    ssh_port: u16,
    public_host: &str,
) -> anyhow::Result<serde_json::Value> {
    let renter = Email::parse(renter)?;
    let secrets = secrets(global)?;
    let mut tx = pool.begin().await?;
    let (rental, secret) =
        crate::rentals::lifecycle::grant(&mut tx, &Actor::cli(), &secrets, device, &renter, hours)
            .await?;
    let Some(dev) = devices::get(pool, device).await? else {
        bail!("no such device");
    };
    tx.commit().await?;
    let login = rental.login_name.clone().unwrap_or_default();
    let connection = crate::rentals::jump::ConnectionDetails::new(
        public_host,
        ssh_port,
        dev.tunnel_port,
        &dev.subdomain,
        &login,
    );
    Ok(serde_json::json!({
        "id": rental.id,
        "device": device,
        "renter": renter.as_str(),
        "state": rental.state.as_str(),
        "ends_at": rental.ends_at,
        "login": login,
        "secret": secret,
        "connection": connection,
    }))
}

pub async fn rental_end(pool: &PgPool, id: uuid::Uuid) -> anyhow::Result<serde_json::Value> {
    let mut tx = pool.begin().await?;
    let rental = crate::rentals::lifecycle::end(&mut tx, &Actor::cli(), id).await?;
    tx.commit().await?;
    Ok(
        serde_json::json!({"id": rental.id, "state": rental.state.as_str(), "ends_at": rental.ends_at}),
    )
}
