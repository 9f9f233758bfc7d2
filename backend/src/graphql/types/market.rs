//! Selling: the storefront's offers (public, so never the owner nor how to reach the device), marketplace
//! listings and how selling on each marketplace is going.

use super::devices::{HardwareObject, Uptime, uptime_of};
use super::money::MoneyObject;
use crate::devices::Device;
use crate::graphql::context::ContextExt;
use crate::graphql::error::ApiResult;
use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

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
