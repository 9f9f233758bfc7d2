//! Rentals as their renters, the devices' owners and admins see them (fields by `RentalAccess`): state,
//! payment, provisioning, and the renter's connection details and login.

use super::devices::DeviceObject;
use super::money::MoneyObject;
use crate::graphql::access::RentalAccess;
use crate::graphql::context::ContextExt;
use crate::graphql::error::ApiResult;
use crate::rentals::Rental;
use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use p2pvps_shared::RentalState;

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
    /// How to reach the device. The renter and admins, while the rental holds the device.
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
