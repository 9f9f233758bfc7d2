//! Mutations. Resolvers translate arguments (`inputs`) and errors; who may do what is decided in `access`.
//! The domain function a resolver calls opens the transaction and writes the audit entry in it, so each
//! change happens whole with its record or not at all.

use super::access::{self, DeviceAccess, RentalAccess};
use super::context::{ContextExt, Credential};
use super::error::{ApiError, ApiResult, Code};
use super::inputs::{
    CreateDeviceInput, LogInInput, SignUpInput, UpdateDeviceInput, parse_grant_hours, parse_id,
};
use super::session::{AuthPayload, hand_over, session_cookie};
use super::types::devices::{DeviceObject, DeviceSshKeyObject, DeviceWithCredential};
use super::types::rentals::RentalObject;
use super::types::users::{RoleGql, UserObject};
use crate::accounts::sessions::{self, Kind};
use crate::all_valid;
use crate::devices;
use crate::{accounts::users, rentals};
use async_graphql::{Context, ID, Object};
use p2pvps_shared::{Email, Password, ValidationError};

pub struct MutationRoot;

/// Counts a call that hashes a password (Argon2, 19 MiB) against the caller's address.
fn password_attempt(ctx: &Context<'_>) -> ApiResult<()> {
    ctx.shared()
        .password_limiter
        .check(ctx.viewer().address)
        .map_err(|limited| ApiError::rate_limited(limited.to_string(), limited.retry_after_secs()))
}

#[Object]
impl MutationRoot {
    /// Creates an owner or renter account and signs it in.
    async fn sign_up(&self, ctx: &Context<'_>, input: SignUpInput) -> ApiResult<AuthPayload> {
        let email = Email::parse(&input.email);
        let password = Password::parse(&input.password);
        let (email, password) = all_valid!(email, password)?;
        let role = input.role.into();
        password_attempt(ctx)?;
        let kind = Kind::asked(input.bearer);
        // A taken e-mail gets the same words as any refusal that is not about the input's form, so sign-up
        // does not tell who has an account (the password is hashed either way, so neither does its timing).
        let (user, token) = match sessions::sign_up(
            &ctx.shared().pool,
            &email,
            &password,
            role,
            kind,
        )
        .await
        {
            Err(users::UserError::EmailTaken) => {
                return Err(ApiError::new(
                    Code::BadUserInput,
                    "cannot sign up with these details: check them, or log in if you have an account",
                ));
            }
            other => other?,
        };
        Ok(hand_over(ctx, user, token, kind))
    }

    /// Signs in. Attempts are limited per address and per account.
    async fn log_in(&self, ctx: &Context<'_>, input: LogInInput) -> ApiResult<AuthPayload> {
        let shared = ctx.shared();
        let viewer = ctx.viewer();
        if let Err(blocked) = shared.login_guard.check(viewer.address, &input.email) {
            tracing::warn!(address = %viewer.address, scope = ?blocked.scope, "log-in refused: too many failures");
            return Err(ApiError::rate_limited(
                blocked.to_string(),
                blocked.retry_after_secs(),
            ));
        }
        let Some(user) = users::authenticate(&shared.pool, &input.email, &input.password).await?
        else {
            shared.login_guard.failed(viewer.address, &input.email);
            tracing::info!(address = %viewer.address, "failed log-in");
            return Err(ApiError::new(
                Code::Unauthenticated,
                "wrong e-mail or password",
            ));
        };
        let kind = Kind::asked(input.bearer);
        let token = sessions::open(&shared.pool, user.id, kind).await?;
        Ok(hand_over(ctx, user, token, kind))
    }

    /// Ends the session (or revokes the bearer token) this request was made with.
    async fn log_out(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let viewer = ctx.viewer();
        let ended = match &viewer.credential {
            Credential::Cookie(token) | Credential::Bearer(token) => {
                sessions::close(&ctx.shared().pool, token).await?
            }
            Credential::None => false,
        };
        if matches!(viewer.credential, Credential::Cookie(_)) {
            ctx.append_http_header(
                axum::http::header::SET_COOKIE,
                session_cookie("", ctx.shared().cookie_secure, chrono::Duration::zero()),
            );
        }
        Ok(ended)
    }

    /// Replaces the signed-in user's password and ends the user's other sessions and tokens (this one
    /// stays open).
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> ApiResult<UserObject> {
        let user = ctx.viewer().user()?;
        let new_password =
            Password::parse(&new_password).map_err(|e| e.for_field("newPassword"))?;
        password_attempt(ctx)?;
        let shared = ctx.shared();
        if users::authenticate(&shared.pool, &user.email, &current_password)
            .await?
            .is_none()
        {
            return Err(ApiError::invalid(vec![ValidationError::new(
                "currentPassword",
                "is wrong",
            )]));
        }
        let keep = match &ctx.viewer().credential {
            Credential::Cookie(token) | Credential::Bearer(token) => Some(token.as_str()),
            Credential::None => None,
        };
        let user = sessions::change_password(
            &shared.pool,
            &ctx.viewer().actor()?,
            user.id,
            &new_password,
            keep,
        )
        .await?;
        Ok(UserObject(user))
    }

    /// Registers a device. The payload holds its credential: the only time it is shown.
    async fn create_device(
        &self,
        ctx: &Context<'_>,
        input: CreateDeviceInput,
    ) -> ApiResult<DeviceWithCredential> {
        let viewer = ctx.viewer();
        let user = viewer.user()?;
        access::may_register_devices(user)?;
        let new = input.parse()?;
        let shared = ctx.shared();
        let (device, credential) = devices::create(
            &shared.pool,
            &viewer.actor()?,
            user.id,
            &new,
            &shared.tunnel_ports,
        )
        .await?;
        Ok(DeviceWithCredential {
            device: DeviceObject {
                device,
                access: DeviceAccess::Owner,
            },
            credential,
        })
    }

    /// Changes a device's details. Its owner or an admin.
    async fn update_device(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateDeviceInput,
    ) -> ApiResult<DeviceObject> {
        let id = parse_id(&id, "id")?;
        let access = access::manageable_device(&ctx.shared().pool, ctx.viewer(), id).await?;
        let changes = input.parse()?;
        let device =
            devices::update(&ctx.shared().pool, &ctx.viewer().actor()?, id, &changes).await?;
        if let Some(sites) = &ctx.shared().sites {
            sites.forget(&device.subdomain);
        }
        Ok(DeviceObject { device, access })
    }

    /// Issues a new device credential; the old one stops working. The new one is shown only here.
    async fn rotate_device_credential(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> ApiResult<DeviceWithCredential> {
        let id = parse_id(&id, "id")?;
        let access = access::manageable_device(&ctx.shared().pool, ctx.viewer(), id).await?;
        let (device, credential) =
            devices::rotate_credential(&ctx.shared().pool, &ctx.viewer().actor()?, id).await?;
        Ok(DeviceWithCredential {
            device: DeviceObject { device, access },
            credential,
        })
    }

    /// Lets the device log in with this OpenSSH public key (an `authorized_keys` line) as well as its
    /// credential. Its owner or an admin.
    async fn add_device_ssh_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
        public_key: String,
    ) -> ApiResult<DeviceSshKeyObject> {
        let id = parse_id(&id, "id")?;
        access::manageable_device(&ctx.shared().pool, ctx.viewer(), id).await?;
        let key =
            devices::keys::add_key(&ctx.shared().pool, &ctx.viewer().actor()?, id, &public_key)
                .await?;
        Ok(key.into())
    }

    /// Removes a key (by its `SHA256:` fingerprint) from the device. Its owner or an admin.
    async fn remove_device_ssh_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
        fingerprint: String,
    ) -> ApiResult<bool> {
        let id = parse_id(&id, "id")?;
        access::manageable_device(&ctx.shared().pool, ctx.viewer(), id).await?;
        devices::keys::remove_key(&ctx.shared().pool, &ctx.viewer().actor()?, id, &fingerprint)
            .await?;
        Ok(true)
    }

    /// Deletes a device. Refused while it is rented. Returns the deleted device's id.
    async fn delete_device(&self, ctx: &Context<'_>, id: ID) -> ApiResult<ID> {
        let uuid = parse_id(&id, "id")?;
        access::manageable_device(&ctx.shared().pool, ctx.viewer(), uuid).await?;
        devices::delete(&ctx.shared().pool, &ctx.viewer().actor()?, uuid).await?;
        Ok(id)
    }

    /// Rents a device to a user by hand, for `hours` (until the marketplace sells rentals). Admins only.
    /// The renter sees the login and connection details in their `rentals`.
    async fn grant_rental(
        &self,
        ctx: &Context<'_>,
        device: ID,
        renter_email: String,
        hours: i32,
    ) -> ApiResult<RentalObject> {
        ctx.viewer().admin()?;
        let device = uuid::Uuid::parse_str(device.as_str())
            .map_err(|_| ValidationError::new("device", "is not a valid id"));
        let email = Email::parse(&renter_email).map_err(|e| e.for_field("renterEmail"));
        let hours = parse_grant_hours(hours);
        let (device, email, hours) = all_valid!(device, email, hours)?;
        let shared = ctx.shared();
        let (rental, _secret) = rentals::lifecycle::grant(
            &shared.pool,
            &ctx.viewer().actor()?,
            &shared.secrets,
            device,
            &email,
            hours,
        )
        .await?;
        Ok(RentalObject {
            rental,
            access: RentalAccess::Admin,
        })
    }

    /// Ends a rental now: the renter's jump login stops working and live connections are cut. Admins only.
    async fn end_rental(&self, ctx: &Context<'_>, id: ID) -> ApiResult<RentalObject> {
        ctx.viewer().admin()?;
        let id = parse_id(&id, "id")?;
        let rental =
            rentals::lifecycle::end(&ctx.shared().pool, &ctx.viewer().actor()?, id).await?;
        Ok(RentalObject {
            rental,
            access: RentalAccess::Admin,
        })
    }

    /// Runs a rental's failed device hook again (start while the rental runs, or end), once its cause is
    /// mended. The device's owner or an admin.
    async fn retry_provisioning(&self, ctx: &Context<'_>, rental: ID) -> ApiResult<RentalObject> {
        let id = parse_id(&rental, "rental")?;
        let access = access::order_access(&ctx.shared().pool, ctx.viewer(), id)
            .await
            .map_err(|_| ApiError::not_found("rental"))?
            .may_retry_provisioning()?;
        let retried =
            crate::rentals::provisioning::retry(&ctx.shared().pool, &ctx.viewer().actor()?, id)
                .await?;
        if retried.is_none() {
            return Err(ValidationError::new("rental", "has no failed hook to run again").into());
        }
        let rental = rentals::get(&ctx.shared().pool, id)
            .await?
            .ok_or_else(|| ApiError::not_found("rental"))?;
        Ok(RentalObject { rental, access })
    }

    /// Claims a rental bought on a marketplace, with the token from its delivery link: it becomes the
    /// signed-in user's, who then sees its login and connection details. The token works once.
    async fn claim_rental(&self, ctx: &Context<'_>, token: String) -> ApiResult<RentalObject> {
        let user = ctx.viewer().user()?.id;
        if token.is_empty() || token.len() > 200 {
            return Err(ValidationError::new("token", "is not a claim token").into());
        }
        let rental =
            rentals::lifecycle::claim(&ctx.shared().pool, &ctx.viewer().actor()?, &token, user)
                .await
                .map_err(|e| match e {
                    rentals::RentalError::NotFound => ApiError::not_found("claimable rental"),
                    other => other.into(),
                })?;
        Ok(RentalObject {
            rental,
            access: RentalAccess::Renter,
        })
    }

    /// Orders a device from the storefront (`offer`: an `Offer`'s id) for one rental period at its price,
    /// and opens its payment. The order reserves the device until it is paid, cancelled or left unpaid past
    /// its `payBy` (the server's order hold, 30 minutes by default); the rental starts when the payment is
    /// confirmed. Any signed-in user, for a device they do not own. A renter holds at most a few unpaid
    /// orders at once (CONFLICT beyond: pay or cancel one), and orders are rate-limited per account
    /// (RATE_LIMITED with `retryAfterSeconds`).
    async fn order_rental(&self, ctx: &Context<'_>, offer: ID) -> ApiResult<RentalObject> {
        let user = ctx.viewer().user()?.id;
        let offer = parse_id(&offer, "offer")?;
        let shared = ctx.shared();
        shared.order_limiter.check(user).map_err(|limited| {
            ApiError::rate_limited(limited.to_string(), limited.retry_after_secs())
        })?;
        let device = devices::renting::by_offer(&shared.pool, offer)
            .await?
            .ok_or_else(|| ApiError::not_found("offer"))?;
        let placed = crate::billing::storefront::place(
            &shared.pool,
            &ctx.viewer().actor()?,
            &shared.payments,
            &shared.orders,
            device,
            user,
        )
        .await?;
        Ok(RentalObject {
            rental: placed.rental,
            access: RentalAccess::Renter,
        })
    }

    /// Renews a running rental for one more period at the device's current price: opens its payment; the
    /// rental is extended when the payment is confirmed (as an order's). The renter.
    async fn renew_rental(&self, ctx: &Context<'_>, rental: ID) -> ApiResult<RentalObject> {
        let user = ctx.viewer().user()?.id;
        let id = parse_id(&rental, "rental")?;
        let shared = ctx.shared();
        let placed = crate::billing::storefront::renew(
            &shared.pool,
            &ctx.viewer().actor()?,
            &shared.payments,
            id,
            user,
        )
        .await?;
        Ok(RentalObject {
            rental: placed.rental,
            access: RentalAccess::Renter,
        })
    }

    /// Confirms by hand that what waits for payment on a rental was paid (for providers confirmed by hand,
    /// such as `manual`): an order's rental starts and its renter sees the login; a renewal extends it. The device's owner or an admin. Confirming twice is
    /// harmless.
    async fn confirm_payment(&self, ctx: &Context<'_>, rental: ID) -> ApiResult<RentalObject> {
        let user = ctx.viewer().user()?.clone();
        let id = parse_id(&rental, "rental")?;
        let access = access::order_access(&ctx.shared().pool, ctx.viewer(), id)
            .await?
            .may_confirm_payment()?;
        let shared = ctx.shared();
        let activated = crate::billing::storefront::confirm(
            &shared.pool,
            &ctx.viewer().actor()?,
            &shared.secrets,
            &shared.payments,
            id,
            None,
            crate::billing::storefront::Confirmer::ByHand(user.id),
            shared.fee_bps,
        )
        .await?;
        Ok(RentalObject {
            rental: activated.rental,
            access,
        })
    }

    /// Cancels what waits for payment on a rental: an order (the device is free again) or a renewal. Its
    /// renter, the device's owner or an admin.
    async fn cancel_order(&self, ctx: &Context<'_>, rental: ID) -> ApiResult<RentalObject> {
        let id = parse_id(&rental, "rental")?;
        let access = access::order_access(&ctx.shared().pool, ctx.viewer(), id).await?;
        let shared = ctx.shared();
        let reason = access.cancel_reason();
        let rental =
            crate::billing::storefront::cancel(&shared.pool, &ctx.viewer().actor()?, id, reason)
                .await?;
        Ok(RentalObject { rental, access })
    }

    /// Changes a user's role. Admins only; not their own.
    async fn set_user_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: RoleGql,
    ) -> ApiResult<UserObject> {
        ctx.viewer().admin()?;
        let id = parse_id(&user_id, "userId")?;
        let user = users::update(
            &ctx.shared().pool,
            &ctx.viewer().actor()?,
            id,
            Some(role.into()),
            None,
        )
        .await?;
        Ok(UserObject(user))
    }

    /// Disables (or re-enables) an account; disabling ends its sessions. Admins only; not their own.
    async fn disable_user(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        #[graphql(default = true)] disabled: bool,
    ) -> ApiResult<UserObject> {
        ctx.viewer().admin()?;
        let id = parse_id(&user_id, "userId")?;
        let user = users::update(
            &ctx.shared().pool,
            &ctx.viewer().actor()?,
            id,
            None,
            Some(disabled),
        )
        .await?;
        Ok(UserObject(user))
    }
}
