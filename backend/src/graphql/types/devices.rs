//! Devices as their owners, renters and admins see them (fields by `DeviceAccess`), with what describes
//! them: hardware, the agent's report, uptime, SSH keys, the tunnel server they connect to, status events.

use super::money::MoneyObject;
use super::users::UserObject;
use crate::devices::Device;
use crate::graphql::access::DeviceAccess;
use crate::graphql::context::ContextExt;
use crate::graphql::error::{ApiError, ApiResult};
use crate::graphql::loaders;
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use p2pvps_shared::{Hardware, ValidationError};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "p2pvps_shared::DeviceStatus", name = "DeviceStatus")]
pub enum DeviceStatusGql {
    /// Registered, never connected yet.
    New,
    Online,
    Offline,
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
            .data_unchecked::<DataLoader<loaders::Rented>>()
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
            .data_unchecked::<DataLoader<loaders::Users>>()
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
pub async fn uptime_of(pool: &sqlx::PgPool, device: uuid::Uuid, hours: i32) -> ApiResult<Uptime> {
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

/// A device's status changed.
#[derive(SimpleObject, Clone)]
pub struct DeviceStatusEventObject {
    pub device_id: ID,
    pub status: DeviceStatusGql,
    pub at: DateTime<Utc>,
}
