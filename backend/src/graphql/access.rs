//! Who may see and change what through the API: the viewer's relation to a device or a rental, the scope
//! of each list, the role rules of mutations, and the field-level visibility of devices, rentals and users.
//!
//! **Invariant:** every authorisation decision of the API is made here or in a domain function (such as
//! who may order or renew, which the billing domain checks); resolvers ask these functions and do not
//! compare roles themselves. A device or rental the viewer has no relation to is `NOT_FOUND`, never
//! `FORBIDDEN`, so that its existence is not revealed; `FORBIDDEN` is for what the viewer may see but not
//! do.

use super::context::Viewer;
use super::error::{ApiError, ApiResult};
use super::inputs::RentalView;
use crate::accounts::users::User;
use crate::devices::{self, Device};
use crate::rentals::{self, Rental};
use p2pvps_shared::Role;
use sqlx::PgPool;
use uuid::Uuid;

impl Viewer {
    /// The signed-in user if they are an admin; FORBIDDEN for anyone else.
    pub fn admin(&self) -> ApiResult<&User> {
        let user = self.user()?;
        if user.role == Role::Admin {
            Ok(user)
        } else {
            Err(ApiError::forbidden("do this (admins only)"))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.role == Role::Admin)
    }
}

/// How the viewer relates to a device; decides the fields they may read and whether they may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAccess {
    Owner,
    Admin,
    /// Holds a live rental of it: sees what is needed to use it, not the owner's business.
    Renter,
}

impl DeviceAccess {
    /// The owner's business fields of a device (its agent, keys, publishing and renting switches, owner,
    /// dates): its owner and admins; FORBIDDEN for a renter, naming the GraphQL `field`.
    pub fn may_read_business(self, field: &str) -> ApiResult<()> {
        match self {
            DeviceAccess::Owner | DeviceAccess::Admin => Ok(()),
            DeviceAccess::Renter => Err(ApiError::forbidden(&format!(
                "read `{field}` of a device you rent"
            ))),
        }
    }

    /// Changing the device: its owner and admins; FORBIDDEN for a renter.
    fn may_change(self) -> ApiResult<Self> {
        match self {
            DeviceAccess::Renter => Err(ApiError::forbidden(
                "change a device you rent (only its owner may)",
            )),
            access => Ok(access),
        }
    }
}

/// The viewer's access to a device, or NOT_FOUND when they have none (existence is not revealed).
pub async fn device_access(
    pool: &PgPool,
    viewer: &Viewer,
    device: &Device,
) -> ApiResult<DeviceAccess> {
    let user = viewer.user()?;
    if user.role == Role::Admin {
        Ok(DeviceAccess::Admin)
    } else if device.owner_id == user.id {
        Ok(DeviceAccess::Owner)
    } else if devices::renting::is_rented_by(pool, device.id, user.id).await? {
        Ok(DeviceAccess::Renter)
    } else {
        Err(ApiError::not_found("device"))
    }
}

/// The device `id` with the viewer's access to it, or NOT_FOUND when it does not exist or the viewer has
/// no access to it.
pub async fn visible_device(
    pool: &PgPool,
    viewer: &Viewer,
    id: Uuid,
) -> ApiResult<(Device, DeviceAccess)> {
    let device = devices::get(pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let access = device_access(pool, viewer, &device).await?;
    Ok((device, access))
}

/// The viewer may change the device (owner or admin): its access, or NOT_FOUND / FORBIDDEN.
pub async fn manageable_device(
    pool: &PgPool,
    viewer: &Viewer,
    id: Uuid,
) -> ApiResult<DeviceAccess> {
    let (_, access) = visible_device(pool, viewer, id).await?;
    access.may_change()
}

/// Which devices a user's `devices` list holds, and how each is seen: every device for an admin (even
/// those they own, seen as admin), an owner's own, a renter's rented ones.
pub fn device_scope(user: &User) -> (devices::Scope, DeviceAccess) {
    match user.role {
        Role::Admin => (devices::Scope::All, DeviceAccess::Admin),
        Role::Owner => (devices::Scope::OwnedBy(user.id), DeviceAccess::Owner),
        Role::Renter => (devices::Scope::RentedBy(user.id), DeviceAccess::Renter),
    }
}

/// Registering devices: owners and admins; FORBIDDEN for a renter.
pub fn may_register_devices(user: &User) -> ApiResult<()> {
    if user.role == Role::Renter {
        return Err(ApiError::forbidden(
            "register devices as a renter (sign up as an owner)",
        ));
    }
    Ok(())
}

/// Whether a device's status change reaches a subscriber: admins see every device, owners their own,
/// renters the devices they rent now (re-checked per event, so a rental's end stops the stream).
pub async fn sees_device_event(pool: &PgPool, user: &User, device: Uuid, owner: Uuid) -> bool {
    match user.role {
        Role::Admin => true,
        Role::Owner => owner == user.id,
        Role::Renter => devices::renting::is_rented_by(pool, device, user.id)
            .await
            .unwrap_or(false),
    }
}

/// Whose marketplace listings a user may read: all for an admin (`None`), an owner's own; FORBIDDEN for a
/// renter.
pub fn listing_scope(user: &User) -> ApiResult<Option<Uuid>> {
    match user.role {
        Role::Admin => Ok(None),
        Role::Owner => Ok(Some(user.id)),
        Role::Renter => Err(ApiError::forbidden("read listings (owners and admins may)")),
    }
}

/// Reading a user's earnings: the user themself and admins.
pub fn may_read_earnings(viewer: &User, of: &User) -> ApiResult<()> {
    if viewer.id != of.id && viewer.role != Role::Admin {
        return Err(ApiError::forbidden("read another user's earnings"));
    }
    Ok(())
}

/// How the viewer relates to a rental; decides the fields they may read and what they may do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RentalAccess {
    Renter,
    /// Owner of the rented device.
    Owner,
    Admin,
}

impl RentalAccess {
    /// How the viewer sees the rented device through the rental, or `None` when they may not: a past
    /// renter no longer sees the device.
    pub fn device_access(self, rental: &Rental) -> Option<DeviceAccess> {
        match self {
            RentalAccess::Admin => Some(DeviceAccess::Admin),
            RentalAccess::Owner => Some(DeviceAccess::Owner),
            RentalAccess::Renter if rental.state.holds_device() => Some(DeviceAccess::Renter),
            RentalAccess::Renter => None,
        }
    }

    /// The device hook's own words (its error output): the device's owner and admins.
    pub fn may_read_hook_message(self) -> bool {
        self != RentalAccess::Renter
    }

    /// Whether the rental's connection details are shown now: FORBIDDEN for the device's owner; for the
    /// renter and admins, only while the rental holds the device and its access is ready on the device.
    pub fn may_read_connection(self, rental: &Rental) -> ApiResult<bool> {
        if self == RentalAccess::Owner {
            return Err(ApiError::forbidden(
                "read a rental's connection (only its renter may)",
            ));
        }
        Ok(rental.state.holds_device() && rental.access_ready())
    }

    /// Whether the renter's login is shown now: FORBIDDEN for anyone but the renter; for the renter, only
    /// while the rental holds the device and its access is ready on the device.
    pub fn may_read_login(self, rental: &Rental) -> ApiResult<bool> {
        if self != RentalAccess::Renter {
            return Err(ApiError::forbidden(
                "read a rental's login (only its renter may)",
            ));
        }
        Ok(rental.state.holds_device() && rental.access_ready())
    }

    /// Confirming a rental's payment by hand: the device's owner and admins; FORBIDDEN for the renter.
    pub fn may_confirm_payment(self) -> ApiResult<Self> {
        if self == RentalAccess::Renter {
            return Err(ApiError::forbidden(
                "confirm your own payment (the device's owner or an admin does)",
            ));
        }
        Ok(self)
    }

    /// Running a failed device hook again: the device's owner and admins; FORBIDDEN for the renter.
    pub fn may_retry_provisioning(self) -> ApiResult<Self> {
        if self == RentalAccess::Renter {
            return Err(ApiError::forbidden(
                "retry a rental's provisioning (the device's owner or an admin does)",
            ));
        }
        Ok(self)
    }

    /// The reason a cancellation by this viewer is recorded with.
    pub fn cancel_reason(self) -> &'static str {
        match self {
            RentalAccess::Renter => "cancelled by the renter",
            RentalAccess::Owner => "cancelled by the owner",
            RentalAccess::Admin => "cancelled by an admin",
        }
    }
}

/// How the viewer relates to a rental: its renter, the device's owner, or an admin; NOT_FOUND (as an
/// `order`) otherwise.
pub async fn order_access(pool: &PgPool, viewer: &Viewer, rental: Uuid) -> ApiResult<RentalAccess> {
    let user = viewer.user()?;
    let rental = rentals::get(pool, rental)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    if rental.renter_id == Some(user.id) {
        return Ok(RentalAccess::Renter);
    }
    if user.role == Role::Admin {
        return Ok(RentalAccess::Admin);
    }
    match devices::get(pool, rental.device_id).await? {
        Some(d) if d.owner_id == user.id => Ok(RentalAccess::Owner),
        _ => Err(ApiError::not_found("order")),
    }
}

/// Which rentals a user's `rentals` and `orders` lists hold, and how each is seen: by default a renter's
/// own, an owner's devices', every rental for an admin; `view: RENTER` the user's own whatever their role.
pub fn rental_scope(user: &User, view: Option<RentalView>) -> (rentals::Scope, RentalAccess) {
    match (view, user.role) {
        (Some(RentalView::Renter), _) | (None, Role::Renter) => {
            (rentals::Scope::RentedBy(user.id), RentalAccess::Renter)
        }
        (_, Role::Admin) => (rentals::Scope::All, RentalAccess::Admin),
        (_, _) => (
            rentals::Scope::OfDevicesOwnedBy(user.id),
            RentalAccess::Owner,
        ),
    }
}

/// Whether a rental's state change reaches a subscriber: its renter, the device's owner, and admins.
pub fn sees_rental_event(user: &User, renter: Option<Uuid>, owner: Uuid) -> bool {
    user.role == Role::Admin || renter == Some(user.id) || owner == user.id
}
