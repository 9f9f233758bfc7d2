//! Queries. Each one asks `access` what the viewer may see before it reads anything.

use super::access;
use super::context::ContextExt;
use super::error::{ApiError, ApiResult};
use super::inputs::{RentalView, parse_id};
use super::types::audit::AuditEntryObject;
use super::types::devices::{DeviceObject, DeviceStatusGql, TunnelServer};
use super::types::market::{ListingObject, MarketplaceStatusObject, OfferObject};
use super::types::money::MoneyObject;
use super::types::rentals::RentalObject;
use super::types::users::UserObject;
use crate::devices;
use crate::{accounts::users, infra::audit, rentals};
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Object};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use p2pvps_shared::ValidationError;
use uuid::Uuid;

pub struct QueryRoot;

const DEFAULT_PAGE: i32 = 20;
const MAX_PAGE: i32 = 100;

fn page_size(first: Option<i32>) -> ApiResult<i64> {
    match first.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(i64::from(n)),
        _ => Err(ValidationError::new("first", "must be between 1 and 100").into()),
    }
}

/// Opaque keyset cursor: base64 of `<created_at micros>:<uuid>`.
fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", at.timestamp_micros()))
}

fn decode_cursor(cursor: Option<String>) -> ApiResult<Option<(DateTime<Utc>, Uuid)>> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let bad = || {
        ApiError::from(ValidationError::new(
            "after",
            "is not a cursor from a previous page",
        ))
    };
    let text = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let (micros, id) = text.split_once(':').ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok(Some((at, Uuid::parse_str(id).map_err(|_| bad())?)))
}

/// Builds a forward-only relay page from `limit + 1` fetched rows.
fn connection<R, T>(
    mut rows: Vec<R>,
    limit: i64,
    had_cursor: bool,
    key: impl Fn(&R) -> (DateTime<Utc>, Uuid),
    wrap: impl Fn(R) -> T,
) -> Connection<String, T>
where
    T: async_graphql::OutputType,
{
    let has_next = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let mut page = Connection::new(had_cursor, has_next);
    page.edges.extend(rows.into_iter().map(|r| {
        let (at, id) = key(&r);
        Edge::new(encode_cursor(at, id), wrap(r))
    }));
    page
}

#[Object]
impl QueryRoot {
    /// The signed-in user, or null.
    async fn me(&self, ctx: &Context<'_>) -> Option<UserObject> {
        ctx.viewer().user.clone().map(UserObject)
    }

    /// The platform's fees earned, per currency, net of refunds (from the ledger). Admins only.
    async fn platform_earnings(&self, ctx: &Context<'_>) -> ApiResult<Vec<MoneyObject>> {
        ctx.viewer().admin()?;
        let rows = crate::billing::ledger::balance(&ctx.shared().pool, "platform").await?;
        Ok(rows
            .into_iter()
            .map(|(currency, minor)| MoneyObject { minor, currency })
            .collect())
    }

    /// Devices the viewer may see: an owner's own, a renter's rented ones, every device for an admin.
    async fn devices(
        &self,
        ctx: &Context<'_>,
        status: Option<DeviceStatusGql>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, DeviceObject>> {
        let user = ctx.viewer().user()?;
        let (scope, access) = access::device_scope(user);
        let limit = page_size(first)?;
        let cursor = decode_cursor(after)?;
        let rows = devices::page(
            &ctx.shared().pool,
            scope,
            status.map(Into::into),
            cursor,
            limit + 1,
        )
        .await?;
        Ok(connection(
            rows,
            limit,
            cursor.is_some(),
            |d| (d.created_at, d.id),
            |device| DeviceObject { device, access },
        ))
    }

    async fn device(&self, ctx: &Context<'_>, id: ID) -> ApiResult<DeviceObject> {
        let id = parse_id(&id, "id")?;
        ctx.viewer().user()?;
        let (device, access) = access::visible_device(&ctx.shared().pool, ctx.viewer(), id).await?;
        Ok(DeviceObject { device, access })
    }

    /// The SSH server devices connect to, or null when this server runs none. Signed-in users.
    async fn tunnel_server(&self, ctx: &Context<'_>) -> ApiResult<Option<TunnelServer>> {
        ctx.viewer().user()?;
        let shared = ctx.shared();
        let (Some(port), Some(fingerprint), Some(key)) = (
            shared.ssh_port,
            shared.ssh_fingerprint.clone(),
            shared.ssh_public_key.as_deref(),
        ) else {
            return Ok(None);
        };
        let host = shared.public_host.clone();
        let pattern = if port == 22 {
            host.clone()
        } else {
            format!("[{host}]:{port}")
        };
        Ok(Some(TunnelServer {
            known_hosts_line: format!("{pattern} {key}"),
            host,
            port: i32::from(port),
            host_key_fingerprint: fingerprint,
        }))
    }

    /// Rentals the viewer takes part in, newest first: by default, a renter's own, an owner's devices',
    /// every rental for an admin; `view: RENTER` asks for the viewer's own rentals whatever their role.
    async fn rentals(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        view: Option<RentalView>,
    ) -> ApiResult<Vec<RentalObject>> {
        let user = ctx.viewer().user()?;
        let limit = page_size(first)?;
        let (scope, access) = access::rental_scope(user, view);
        let rows = rentals::list(&ctx.shared().pool, scope, limit).await?;
        Ok(rows
            .into_iter()
            .map(|rental| RentalObject { rental, access })
            .collect())
    }

    /// What waits for payment among the rentals the viewer takes part in (as in `rentals`): storefront
    /// orders and renewals. Oldest first.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        view: Option<RentalView>,
    ) -> ApiResult<Vec<RentalObject>> {
        let user = ctx.viewer().user()?;
        let (scope, access) = access::rental_scope(user, view);
        let rows = rentals::open_orders(&ctx.shared().pool, scope).await?;
        Ok(rows
            .into_iter()
            .map(|rental| RentalObject { rental, access })
            .collect())
    }

    /// How selling on each configured marketplace is going. Admins only.
    async fn marketplaces(&self, ctx: &Context<'_>) -> ApiResult<Vec<MarketplaceStatusObject>> {
        ctx.viewer().admin()?;
        let rows = crate::market::status::list(&ctx.shared().pool).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Marketplace listings: of the viewer's devices, or all of them for an admin. Owners and admins.
    async fn listings(&self, ctx: &Context<'_>) -> ApiResult<Vec<ListingObject>> {
        let user = ctx.viewer().user()?;
        let owner = access::listing_scope(user)?;
        let rows = crate::market::listings::list(&ctx.shared().pool, owner).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The devices anyone may rent now (online, priced, not let), cheapest first. No sign-in needed.
    async fn offers(&self, ctx: &Context<'_>, first: Option<i32>) -> ApiResult<Vec<OfferObject>> {
        let limit = page_size(first)?;
        let rows = devices::renting::offered(&ctx.shared().pool, limit).await?;
        Ok(rows.into_iter().map(OfferObject).collect())
    }

    /// Every account. Admins only.
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, UserObject>> {
        ctx.viewer().admin()?;
        let limit = page_size(first)?;
        let cursor = decode_cursor(after)?;
        let rows = users::page(&ctx.shared().pool, cursor, limit + 1).await?;
        Ok(connection(
            rows,
            limit,
            cursor.is_some(),
            |u| (u.created_at, u.id),
            UserObject,
        ))
    }

    /// Who changed what, newest first. `before` is the id of the last entry already seen. Admins only.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        before: Option<ID>,
    ) -> ApiResult<Vec<AuditEntryObject>> {
        ctx.viewer().admin()?;
        let limit = page_size(first)?;
        let before = before
            .map(|b| {
                b.parse::<i64>().map_err(|_| {
                    ApiError::from(ValidationError::new("before", "is not an audit entry id"))
                })
            })
            .transpose()?;
        let rows = audit::list(&ctx.shared().pool, before, limit).await?;
        Ok(rows.into_iter().map(AuditEntryObject).collect())
    }
}
