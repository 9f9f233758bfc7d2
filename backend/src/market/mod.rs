//! Where devices are sold: a [`Marketplace`] lists devices for rent, reports orders, says what each one's
//! buyer has paid, delivers the renter's access and is told when an order has been handled.
//!
//! - `openbazaar`: an OpenBazaar node's API (schema v4 and v5), over reqwest.
//! - `listings`: which device is listed under which slug; `reconcile`: listings made to match the
//!   devices for rent; `sales`: orders turned into rentals; `status`: each marketplace's last contact.
//!
//! Implementations are idempotent where the rental lifecycle needs it: listing an existing slug updates
//! it, delisting a missing one succeeds, delivering to an already fulfilled order does nothing.

pub mod listings;
pub mod openbazaar;
pub mod reconcile;
pub mod sales;
pub mod status;

use chrono::{DateTime, Utc};
use p2pvps_shared::Money;

/// What to list: one device for rent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingSpec {
    /// Our own stable name for the listing (`rent-<device id>`); never derived from the title.
    pub slug: String,
    pub title: String,
    pub description: String,
    /// Price of one rental period.
    pub price: Money,
    /// Until when the listing stays up (refreshed on every relisting).
    pub expiry: DateTime<Utc>,
}

/// An order waiting for its access, as the marketplace reports it. Whether it is paid in full is asked
/// separately ([`Marketplace::payment`]): a report is only a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The marketplace's order id (our idempotency key, with the marketplace's name).
    pub id: String,
    /// The listing it bought.
    pub slug: String,
    /// The notification that announced it, to mark as read once handled (absent when found by the
    /// sales safety net).
    pub notification: Option<String>,
    /// What the buyer paid, when the marketplace says.
    pub paid: Option<Money>,
}

/// What the marketplace holds of an order's payment now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The buyer has paid the whole amount of their order (OpenBazaar's `funded`).
    pub funded: bool,
    /// The amount of the buyer's order, in the currency it is paid in, when the marketplace says.
    pub paid: Option<Money>,
    /// The listing's price as the order's contract copies it, when the marketplace says: what the
    /// marketplace converted into `paid` when the buyer pays in another currency than the price's.
    pub listed: Option<Money>,
}

#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    #[error("the marketplace refused our credentials")]
    Auth,
    #[error("the marketplace answered {status}: {reason}")]
    Refused { status: u16, reason: String },
    #[error("the marketplace's answer could not be read: {0}")]
    Decode(String),
    #[error("the marketplace cannot be reached: {0}")]
    Network(String),
    #[error("the marketplace did not answer within {0} s")]
    Timeout(u64),
}

impl MarketError {
    /// Worth trying again later (the node is down, slow or failing), as opposed to a request it refuses.
    pub fn is_transient(&self) -> bool {
        match self {
            MarketError::Network(_) | MarketError::Decode(_) | MarketError::Timeout(_) => true,
            MarketError::Refused { status, .. } => *status >= 500,
            MarketError::Auth => false,
        }
    }

    /// A one-word class, for metrics: `auth`, `server` (5xx), `refused` (4xx), `decode`, `network`,
    /// `timeout`.
    pub fn kind(&self) -> &'static str {
        match self {
            MarketError::Auth => "auth",
            MarketError::Refused { status, .. } if *status >= 500 => "server",
            MarketError::Refused { .. } => "refused",
            MarketError::Decode(_) => "decode",
            MarketError::Network(_) => "network",
            MarketError::Timeout(_) => "timeout",
        }
    }
}

/// A place that sells rentals.
#[async_trait::async_trait]
pub trait Marketplace: Send + Sync {
    /// A short name, part of every order's idempotency key (`openbazaar`).
    fn name(&self) -> &'static str;
    /// Creates or updates the listing.
    async fn list(&self, listing: &ListingSpec) -> Result<(), MarketError>;
    /// Removes the listing; a listing that is already gone is fine.
    async fn delist(&self, slug: &str) -> Result<(), MarketError>;
    /// Orders not yet handled (each once per call; the same order may come again until handled). Paid
    /// ones as a rule, but not necessarily: check with [`Marketplace::payment`].
    async fn new_orders(&self) -> Result<Vec<Order>, MarketError>;
    /// Whether the order is funded now, and for how much.
    async fn payment(&self, order: &Order) -> Result<Payment, MarketError>;
    /// Delivers the access note to the buyer of a funded order, first accepting the order if the
    /// marketplace still holds it for the seller's confirmation; an order already delivered is left as
    /// it is.
    async fn deliver(&self, order: &Order, note: &str) -> Result<(), MarketError>;
    /// Records that the order has been handled (it stops appearing in `new_orders`' notifications).
    async fn mark_handled(&self, order: &Order) -> Result<(), MarketError>;
    /// Watches the marketplace's push channel, if it has one, waking `wake` when an order may have
    /// arrived (a hint only: orders are always read with `new_orders`). Runs until dropped.
    async fn watch(&self, wake: std::sync::Arc<tokio::sync::Notify>) {
        let _ = wake;
        std::future::pending::<()>().await
    }
}
