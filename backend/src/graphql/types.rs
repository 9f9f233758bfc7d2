//! GraphQL object types: thin wrappers over domain rows. An object shown differently to different viewers
//! carries the viewer's access (`super::access`) and asks it, field by field, what may be shown.

use super::access::{self, DeviceAccess, RentalAccess};
use super::context::ContextExt;
use super::error::{ApiError, ApiResult};
use crate::accounts::users::User;
use crate::devices::Device;
use crate::rentals::Rental;
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use p2pvps_shared::Hardware;
use p2pvps_shared::{Money, RentalState, ValidationError};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "p2pvps_shared::Role", name = "Role")]
pub enum RoleGql {
    Owner,
    Renter,
    Admin,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "p2pvps_shared::DeviceStatus", name = "DeviceStatus")]
pub enum DeviceStatusGql {
    /// Registered, never connected yet.
    New,
    Online,
    Offline,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "p2pvps_shared::RentalState", name = "RentalState")]
pub enum RentalStateGql {
    Ordered,
    Paid,
    Provisioning,
    Active,
    Ending,
    Ended,
    Refunded,
    Cancelled,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "p2pvps_shared::HookStatus", name = "HookStatus")]
pub enum HookStatusGql {
    /// Waiting for the device's agent to run it.
    Pending,
    Done,
    Failed,
}

/// What the device's agent did for a rental (on devices whose agent runs the owner's hooks): the start
/// hook makes the renter's access, the end hook removes it.
#[derive(SimpleObject)]
#[graphql(name = "Provisioning")]
pub struct ProvisioningObject {
    pub start: Option<HookStatusGql>,
    pub end: Option<HookStatusGql>,
    /// The last hook's own words (its error output), for the device's owner and admins.
    pub message: Option<String>,
}

/// A user account. Only the user themself and admins ever receive one.
pub struct UserObject(pub User);

#[Object(name = "User")]
impl UserObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn role(&self) -> RoleGql {
        self.0.role.into()
    }
    async fn disabled(&self) -> bool {
        self.0.disabled
    }
    /// True for generated passwords: the user should choose a new one (`changePassword`).
    async fn must_change_password(&self) -> bool {
        self.0.must_change_password
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// What this user has earned as an owner, per currency: rental payments less the platform's fee,
    /// less refunds (from the ledger). The user and admins only.
    async fn earnings(&self, ctx: &Context<'_>) -> ApiResult<Vec<MoneyObject>> {
        access::may_read_earnings(ctx.viewer().user()?, &self.0)?;
        let rows = crate::billing::ledger::owner_earnings(&ctx.shared().pool, self.0.id).await?;
        Ok(rows
            .into_iter()
            .map(|(currency, minor)| MoneyObject { minor, currency })
            .collect())
    }
}

/// An amount in the currency's smallest unit (cents, satoshis).
#[derive(SimpleObject)]
#[graphql(name = "Money")]
pub struct MoneyObject {
    pub minor: i64,
    pub currency: String,
}

impl From<&Money> for MoneyObject {
    fn from(m: &Money) -> Self {
        Self {
            minor: m.minor,
            currency: m.currency.as_str().to_owned(),
        }
    }
}

/// The device agent's last report about itself.
#[derive(SimpleObject)]
#[graphql(name = "Agent")]
pub struct AgentObject {
    pub os: Option<String>,
    pub version: String,
    pub reported_at: DateTime<Utc>,
    /// Whether it runs the owner's hooks when rentals start and end (then renters wait for the start hook).
    pub runs_hooks: bool,
}

#[derive(SimpleObject)]
#[graphql(name = "Hardware")]
pub struct HardwareObject {
    pub cpu_model: Option<String>,
    pub cpu_cores: Option<i32>,
    pub memory_mb: Option<i32>,
    pub disk_gb: Option<i32>,
    pub arch: Option<String>,
    pub internet_mbps: Option<i32>,
}

impl From<&Hardware> for HardwareObject {
    fn from(h: &Hardware) -> Self {
        Self {
            cpu_model: h.cpu_model.clone(),
            cpu_cores: h.cpu_cores,
            memory_mb: h.memory_mb,
            disk_gb: h.disk_gb,
            arch: h.arch.clone(),
            internet_mbps: h.internet_mbps,
        }
    }
}

pub struct DeviceObject {
    pub device: Device,
    pub access: DeviceAccess,
}

#[Object(name = "Device")]
impl DeviceObject {
    async fn id(&self) -> ID {
        ID(self.device.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.device.name
    }
    async fn description(&self) -> &str {
        &self.device.description
    }
    async fn hardware(&self) -> HardwareObject {
        (&self.device.hardware).into()
    }
    /// What the device's agent last reported about itself (`null` if no agent ever reported). Its owner
    /// and admins.
    async fn agent(&self) -> ApiResult<Option<AgentObject>> {
        self.access.may_read_business("agent")?;
        let a = &self.device.agent;
        Ok(a.reported_at.map(|reported_at| AgentObject {
            os: a.os.clone(),
            version: a.version.clone().unwrap_or_default(),
            reported_at,
            runs_hooks: a.runs_hooks,
        }))
    }
    /// Price of one rental period.
    async fn price(&self) -> Option<MoneyObject> {
        self.device.price.as_ref().map(Into::into)
    }
    /// Length of one rental period, in hours.
    async fn rental_hours(&self) -> i32 {
        self.device.rental_hours
    }
    async fn status(&self) -> DeviceStatusGql {
        self.device.status.into()
    }
    async fn last_seen(&self) -> Option<DateTime<Utc>> {
        self.device.last_seen
    }
    /// The device's public tunnel port on this server; stable for the device's life.
    async fn tunnel_port(&self) -> i32 {
        i32::from(self.device.tunnel_port)
    }
    /// The device's subdomain label (its web name and its `ssh -J` target).
    async fn subdomain(&self) -> &str {
        &self.device.subdomain
    }
    /// Fingerprint of the tunnel server's SSH host key (`SHA256:...`), to pin in the device's known_hosts.
    async fn ssh_host_key_fingerprint(&self, ctx: &Context<'_>) -> Option<String> {
        ctx.shared().ssh_fingerprint.clone()
    }
    /// Whether a rental holds the device now (its commercial state; `status` is its connection).
    async fn rented(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let rented = ctx
            .data_unchecked::<DataLoader<super::loaders::Rented>>()
            .load_one(self.device.id)
            .await
            .map_err(ApiError::from)?;
        Ok(rented.unwrap_or(false))
    }
    /// Public keys the device may log in with instead of its credential. Owner and admin only.
    async fn ssh_keys(&self, ctx: &Context<'_>) -> ApiResult<Vec<DeviceSshKeyObject>> {
        self.access.may_read_business("sshKeys")?;
        let keys = crate::devices::keys::keys(&ctx.shared().pool, self.device.id).await?;
        Ok(keys.into_iter().map(Into::into).collect())
    }
    /// Whether the gateway publishes the device's web server at its subdomain. Owner and admin only.
    async fn web_publishing(&self) -> ApiResult<bool> {
        self.access.may_read_business("webPublishing")?;
        Ok(self.device.web_publishing)
    }
    /// The device's public web address (`https://SUBDOMAIN.DOMAIN`), when the server runs a web gateway.
    async fn web_url(&self, ctx: &Context<'_>) -> Option<String> {
        ctx.shared()
            .web
            .as_ref()
            .map(|w| w.url(&self.device.subdomain))
    }
    /// Whether the owner offers it for rent. Owner and admin only.
    async fn for_rent(&self) -> ApiResult<bool> {
        self.access.may_read_business("forRent")?;
        Ok(self.device.for_rent)
    }
    /// Owner and admin only.
    async fn owner(&self, ctx: &Context<'_>) -> ApiResult<UserObject> {
        self.access.may_read_business("owner")?;
        let user = ctx
            .data_unchecked::<DataLoader<super::loaders::Users>>()
            .load_one(self.device.owner_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::not_found("user"))?;
        Ok(UserObject(user))
    }
    /// Owner and admin only.
    async fn created_at(&self) -> ApiResult<DateTime<Utc>> {
        self.access.may_read_business("createdAt")?;
        Ok(self.device.created_at)
    }
    /// Owner and admin only.
    async fn updated_at(&self) -> ApiResult<DateTime<Utc>> {
        self.access.may_read_business("updatedAt")?;
        Ok(self.device.updated_at)
    }
    /// The connection status over the last `hours` (1 to 720), from the status history (from the device's
    /// creation on, if that is later).
    async fn uptime(&self, ctx: &Context<'_>, hours: i32) -> ApiResult<Uptime> {
        uptime_of(&ctx.shared().pool, self.device.id, hours).await
    }
}

/// A device's connection status over the last `hours` (1 to 720), from its status history.
async fn uptime_of(pool: &sqlx::PgPool, device: uuid::Uuid, hours: i32) -> ApiResult<Uptime> {
    if !(1..=720).contains(&hours) {
        return Err(ValidationError::new("hours", "must be between 1 and 720").into());
    }
    let since = Utc::now() - chrono::Duration::hours(i64::from(hours));
    let spans = crate::devices::uptime::status_spans(pool, device, since).await?;
    let total: i64 = spans
        .iter()
        .map(|s| (s.to - s.from).num_milliseconds())
        .sum();
    let online: i64 = spans
        .iter()
        .filter(|s| s.status == p2pvps_shared::DeviceStatus::Online)
        .map(|s| (s.to - s.from).num_milliseconds())
        .sum();
    Ok(Uptime {
        since,
        online_fraction: if total > 0 {
            online as f64 / total as f64
        } else {
            0.0
        },
        spans: spans
            .into_iter()
            .map(|s| StatusSpanObject {
                status: s.status.into(),
                from: s.from,
                to: s.to,
            })
            .collect(),
    })
}

/// A device anyone may rent now, as the storefront shows it: what it is, its price and its record, never
/// who owns it or how to reach it.
pub struct OfferObject(pub Device);

#[Object(name = "Offer")]
impl OfferObject {
    /// The offer's id (what `orderRental` takes); not the device's id, which stays private.
    async fn id(&self) -> ID {
        ID(self.0.offer_id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn hardware(&self) -> HardwareObject {
        (&self.0.hardware).into()
    }
    /// The price of one rental period.
    async fn price(&self) -> Option<MoneyObject> {
        self.0.price.as_ref().map(Into::into)
    }
    /// How long one rental lasts.
    async fn rental_hours(&self) -> i32 {
        self.0.rental_hours
    }
    /// Its connection record over the last `hours` (1 to 720).
    async fn uptime(&self, ctx: &Context<'_>, hours: i32) -> ApiResult<Uptime> {
        uptime_of(&ctx.shared().pool, self.0.id, hours).await
    }
}

/// How the selling work on one marketplace is going (recorded by the instance that runs it).
#[derive(SimpleObject)]
#[graphql(name = "MarketplaceStatus")]
pub struct MarketplaceStatusObject {
    pub name: String,
    pub last_pass_at: DateTime<Utc>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last failure's message (kept after a later success; see `lastErrorAt`).
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Passes failed in a row (0 when the last one succeeded).
    pub consecutive_failures: i32,
}

impl From<crate::market::status::MarketStatus> for MarketplaceStatusObject {
    fn from(s: crate::market::status::MarketStatus) -> Self {
        Self {
            name: s.marketplace,
            last_pass_at: s.last_pass_at,
            last_success_at: s.last_success_at,
            last_error: s.last_error,
            last_error_at: s.last_error_at,
            consecutive_failures: s.consecutive_failures,
        }
    }
}

/// A device's listing on a marketplace.
#[derive(SimpleObject)]
#[graphql(name = "Listing")]
pub struct ListingObject {
    pub device_id: ID,
    pub device_name: String,
    pub marketplace: String,
    /// The listing's name there (an OpenBazaar slug).
    pub external_ref: String,
    /// `listed` or `withdrawn`.
    pub state: String,
    pub price: MoneyObject,
    pub updated_at: DateTime<Utc>,
}

impl From<crate::market::listings::Listing> for ListingObject {
    fn from(l: crate::market::listings::Listing) -> Self {
        Self {
            device_id: ID(l.device_id.to_string()),
            device_name: l.device_name,
            marketplace: l.marketplace,
            external_ref: l.external_ref,
            state: l.state,
            price: MoneyObject {
                minor: l.price_minor,
                currency: l.currency,
            },
            updated_at: l.updated_at,
        }
    }
}

/// A rental changed state.
#[derive(SimpleObject)]
#[graphql(name = "RentalChange")]
pub struct RentalChangeObject {
    pub rental_id: ID,
    pub device_id: ID,
    pub state: RentalStateGql,
}

/// How a storefront order is paid.
pub struct PaymentObject(pub crate::billing::payments::Payment);

#[Object(name = "Payment")]
impl PaymentObject {
    /// The payment provider (`manual`: confirmed by an admin or the device's owner).
    async fn provider(&self) -> &str {
        &self.0.provider
    }
    /// `pending`, `confirmed`, `failed` or `refunded`.
    async fn state(&self) -> &str {
        &self.0.state
    }
    async fn amount(&self) -> MoneyObject {
        MoneyObject {
            minor: self.0.amount_minor,
            currency: self.0.currency.clone(),
        }
    }
    /// What the renter is asked to do to pay.
    async fn instructions(&self) -> &str {
        &self.0.instructions
    }
    /// The provider's checkout page, when it has one.
    async fn checkout_url(&self) -> Option<&str> {
        self.0.checkout_url.as_deref()
    }
    /// Whether an admin or the device's owner confirms this payment by hand (`confirmPayment`).
    async fn confirmed_by_hand(&self, ctx: &Context<'_>) -> bool {
        ctx.shared()
            .payments
            .get(&self.0.provider)
            .is_ok_and(|p| p.confirmed_by_hand())
    }
}

/// A device's connection status over a window of time.
#[derive(SimpleObject)]
pub struct Uptime {
    /// Start of the window.
    pub since: DateTime<Utc>,
    /// Share of the window (since the device exists) it was online, 0 to 1.
    pub online_fraction: f64,
    /// Consecutive stretches of one status, oldest first, ending now.
    pub spans: Vec<StatusSpanObject>,
}

#[derive(SimpleObject)]
#[graphql(name = "StatusSpan")]
pub struct StatusSpanObject {
    pub status: DeviceStatusGql,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The SSH server devices keep their tunnels to: what a device's connect commands need.
#[derive(SimpleObject)]
pub struct TunnelServer {
    /// Host name to connect to.
    pub host: String,
    /// The SSH server's port.
    pub port: i32,
    /// `SHA256:...` of the host key, to compare on first connection.
    pub host_key_fingerprint: String,
    /// A `known_hosts` line pinning the host key.
    pub known_hosts_line: String,
}

/// A public key registered on a device.
#[derive(SimpleObject)]
#[graphql(name = "DeviceSshKey")]
pub struct DeviceSshKeyObject {
    /// `SHA256:...`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    pub public_key: String,
    pub created_at: DateTime<Utc>,
}

impl From<crate::devices::keys::SshKey> for DeviceSshKeyObject {
    fn from(k: crate::devices::keys::SshKey) -> Self {
        Self {
            fingerprint: k.fingerprint,
            public_key: k.public_key,
            created_at: k.created_at,
        }
    }
}

/// A device returned with its credential, the one time the credential is shown.
#[derive(SimpleObject)]
pub struct DeviceWithCredential {
    pub device: DeviceObject,
    /// The device's secret for the tunnel server. Shown only here: store it now.
    pub credential: String,
}

pub struct RentalObject {
    pub rental: Rental,
    pub access: RentalAccess,
}

/// The renter's login: the name and the jump host's secret, and the device's own password when the
/// device's agent makes the account.
#[derive(SimpleObject)]
pub struct RentalLogin {
    pub name: String,
    /// The password of our jump host (and of nothing else: the device's owner never sees it).
    pub secret: String,
    /// The password of the renter's account on the device, made by the device's agent; null when the
    /// device's owner provides the login another way.
    pub device_password: Option<String>,
}

#[Object(name = "Rental")]
impl RentalObject {
    async fn id(&self) -> ID {
        ID(self.rental.id.to_string())
    }
    async fn state(&self) -> RentalStateGql {
        self.rental.state.into()
    }
    async fn marketplace(&self) -> &str {
        &self.rental.marketplace
    }
    async fn order_ref(&self) -> &str {
        &self.rental.order_ref
    }
    async fn price(&self) -> MoneyObject {
        (&self.rental.price).into()
    }
    async fn starts_at(&self) -> Option<DateTime<Utc>> {
        self.rental.starts_at
    }
    async fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.rental.ends_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.rental.created_at
    }
    /// When a storefront order waiting for payment is cancelled if still unpaid (the server's order hold
    /// after it was placed); null for anything else.
    async fn pay_by(&self, ctx: &Context<'_>) -> Option<DateTime<Utc>> {
        if self.rental.state != RentalState::Ordered || self.rental.marketplace != "direct" {
            return None;
        }
        let hold = chrono::Duration::from_std(ctx.shared().orders.hold).ok()?;
        self.rental.created_at.checked_add_signed(hold)
    }
    /// The rented device's name (also while an order waits for payment, when `device` is not shown yet).
    async fn device_name(&self, ctx: &Context<'_>) -> ApiResult<String> {
        let device = crate::devices::get(&ctx.shared().pool, self.rental.device_id).await?;
        Ok(device.map(|d| d.name).unwrap_or_default())
    }
    /// The payment of a storefront order (null for other rentals).
    async fn payment(&self, ctx: &Context<'_>) -> ApiResult<Option<PaymentObject>> {
        if self.rental.marketplace != "direct" {
            return Ok(None);
        }
        Ok(
            crate::billing::payments::for_rental(&ctx.shared().pool, self.rental.id)
                .await?
                .map(PaymentObject),
        )
    }
    async fn device(&self, ctx: &Context<'_>) -> ApiResult<Option<DeviceObject>> {
        let Some(access) = self.access.device_access(&self.rental) else {
            return Ok(None);
        };
        let device = crate::devices::get(&ctx.shared().pool, self.rental.device_id).await?;
        Ok(device.map(|device| DeviceObject { device, access }))
    }
    /// How to reach the device. The renter and admins, while the rental holds the device.
    /// The device agent's hooks for this rental, if the device runs them (`null` otherwise). While the
    /// start hook is pending or failed, the renter's `login` and `connection` are withheld.
    async fn provisioning(&self) -> Option<ProvisioningObject> {
        let r = &self.rental;
        r.start_hook.map(|start| ProvisioningObject {
            start: Some(start.into()),
            end: r.end_hook.map(Into::into),
            message: self
                .access
                .may_read_hook_message()
                .then(|| r.hook_message.clone())
                .flatten(),
        })
    }
    async fn connection(&self, ctx: &Context<'_>) -> ApiResult<Option<RentalConnectionObject>> {
        if !self.access.may_read_connection(&self.rental)? {
            return Ok(None);
        }
        let shared = ctx.shared();
        let (Some(login), Some(ssh_port)) = (&self.rental.login_name, shared.ssh_port) else {
            return Ok(None);
        };
        let Some(device) = crate::devices::get(&shared.pool, self.rental.device_id).await? else {
            return Ok(None);
        };
        let details = crate::rentals::jump::ConnectionDetails::new(
            &shared.public_host,
            ssh_port,
            device.tunnel_port,
            &device.subdomain,
            login,
        );
        let mut connection = RentalConnectionObject::from(details);
        connection.web_url = shared
            .web
            .as_ref()
            .filter(|_| device.web_publishing)
            .map(|w| w.url(&device.subdomain));
        Ok(Some(connection))
    }
    /// The renter's login. Only the renter sees it, and only while the rental holds the device and its
    /// access is ready on the device (see `provisioning`).
    async fn login(&self, ctx: &Context<'_>) -> ApiResult<Option<RentalLogin>> {
        if !self.access.may_read_login(&self.rental)? {
            return Ok(None);
        }
        let secrets = &ctx.shared().secrets;
        let secret = self.rental.login_secret(secrets)?;
        let device_password = self.rental.device_password(secrets)?;
        Ok(self
            .rental
            .login_name
            .clone()
            .zip(secret)
            .map(|(name, secret)| RentalLogin {
                name,
                secret,
                device_password,
            }))
    }
}

/// Ready-to-paste ways to reach the rented device.
#[derive(SimpleObject)]
#[graphql(name = "RentalConnection")]
pub struct RentalConnectionObject {
    pub host: String,
    /// Our SSH server's port (the jump host).
    pub ssh_port: i32,
    /// The device's public tunnel port.
    pub device_port: i32,
    /// The device's name behind the jump host.
    pub subdomain: String,
    /// The login for both the jump host and the device.
    pub login: String,
    /// `ssh -p DEVICE_PORT LOGIN@HOST`
    pub port_command: String,
    /// `ssh -J LOGIN@HOST:SSH_PORT LOGIN@SUBDOMAIN` (the jump host asks for the login's secret, then the
    /// device for its own password).
    pub jump_command: String,
    /// The device's website (`https://SUBDOMAIN.DOMAIN`), when the server runs the web gateway and the
    /// device's owner publishes it.
    pub web_url: Option<String>,
}

impl From<crate::rentals::jump::ConnectionDetails> for RentalConnectionObject {
    fn from(c: crate::rentals::jump::ConnectionDetails) -> Self {
        Self {
            host: c.host,
            ssh_port: i32::from(c.ssh_port),
            device_port: i32::from(c.device_port),
            subdomain: c.subdomain,
            login: c.login,
            port_command: c.port_command,
            jump_command: c.jump_command,
            web_url: None,
        }
    }
}

pub struct AuditEntryObject(pub crate::infra::audit::Entry);

#[Object(name = "AuditEntry")]
impl AuditEntryObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// The acting user's id, if the actor was a user who still exists.
    async fn actor_id(&self) -> Option<ID> {
        self.0.actor_id.map(|id| ID(id.to_string()))
    }
    /// Who acted: an e-mail, `cli:<user>` or `system`.
    async fn actor(&self) -> &str {
        &self.0.actor_label
    }
    /// `noun.verb`, e.g. `device.create`.
    async fn action(&self) -> &str {
        &self.0.action
    }
    async fn target_type(&self) -> &str {
        &self.0.target_type
    }
    async fn target_id(&self) -> &str {
        &self.0.target_id
    }
    async fn detail(&self) -> async_graphql::Json<serde_json::Value> {
        async_graphql::Json(self.0.detail.clone())
    }
}

/// A device's status changed.
#[derive(SimpleObject, Clone)]
pub struct DeviceStatusEventObject {
    pub device_id: ID,
    pub status: DeviceStatusGql,
    pub at: DateTime<Utc>,
}
