//! Payments for storefront orders (table `payments`), through a [`PaymentProvider`].
//!
//! A provider opens a payment for an order (what the renter is told, or a checkout address) and says how
//! it is confirmed: by hand (an admin or the device's owner saw the money arrive) or by its own callback
//! (a BTCPay-style webhook, signed by the provider, read by [`PaymentProvider::webhook`]). Either way the
//! confirmation goes through `storefront::confirm`, which is idempotent, so a provider retrying its
//! webhook cannot start a rental twice.

use p2pvps_shared::Money;
use sqlx::PgConnection;
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("no payment provider is called {0:?}")]
    UnknownProvider(String),
    #[error("the payment provider {0} takes no callbacks")]
    NoCallbacks(&'static str),
    #[error("the callback's signature does not match")]
    BadSignature,
    #[error("the callback is not one the provider sends: {0}")]
    BadCallback(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What an order asks to be paid.
#[derive(Debug, Clone)]
pub struct PaymentRequest<'a> {
    /// The payment's own id (stored with it).
    pub payment: Uuid,
    pub rental: Uuid,
    pub amount: &'a Money,
    /// A line naming what is bought (the device and the rental period).
    pub description: &'a str,
}

/// A payment the provider opened: its reference, and what the renter is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub external_ref: String,
    pub instructions: String,
    pub checkout_url: Option<String>,
}

/// A payment a provider's callback says has been settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub external_ref: String,
    pub paid: Money,
}

/// A way to take a renter's money.
#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    /// The provider's name as stored with its payments (`manual`, `btcpay`...).
    fn name(&self) -> &'static str;

    /// Opens a payment for an order. Called inside the order's transaction: a provider that calls out
    /// (an invoice API) must be quick and must not mind an invoice whose order was then rolled back.
    async fn open(&self, request: &PaymentRequest<'_>) -> Result<Opened, PaymentError>;

    /// Whether an admin or the device's owner may confirm its payments by hand.
    fn confirmed_by_hand(&self) -> bool {
        false
    }

    /// Reads one of the provider's callbacks: checks that the provider signed it and returns the
    /// payment it settles, or `None` for events that settle nothing (invoice created, expired...).
    fn webhook(
        &self,
        _headers: &axum::http::HeaderMap,
        _body: &[u8],
    ) -> Result<Option<Settled>, PaymentError> {
        Err(PaymentError::NoCallbacks(self.name()))
    }
}

/// The first provider: the renter pays the owner or the operator as they agree (bank transfer, cash,
/// crypto), and an admin or the device's owner confirms it in the dashboard.
#[derive(Debug, Default, Clone)]
pub struct ManualConfirmation;

#[async_trait::async_trait]
impl PaymentProvider for ManualConfirmation {
    fn name(&self) -> &'static str {
        "manual"
    }

    async fn open(&self, request: &PaymentRequest<'_>) -> Result<Opened, PaymentError> {
        Ok(Opened {
            external_ref: request.payment.to_string(),
            instructions: format!(
                "Pay {} for {} as agreed with the device's owner or the operator, quoting order {}. \
                 It takes effect as soon as they confirm the payment.",
                request.amount.to_decimal_string(),
                request.description,
                request.rental
            ),
            checkout_url: None,
        })
    }

    fn confirmed_by_hand(&self) -> bool {
        true
    }
}

/// The providers this server takes payments with, by name; the first is the one new orders use.
#[derive(Clone)]
pub struct Providers {
    default: Arc<dyn PaymentProvider>,
    by_name: BTreeMap<&'static str, Arc<dyn PaymentProvider>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Default for Providers {
    fn default() -> Self {
        Self::new(Arc::new(ManualConfirmation))
    }
}

impl Providers {
    pub fn new(default: Arc<dyn PaymentProvider>) -> Self {
        let mut by_name = BTreeMap::new();
        by_name.insert(default.name(), Arc::clone(&default));
        Self { default, by_name }
    }

    /// Adds another provider (its payments can be confirmed; new orders still use the default).
    pub fn with(mut self, provider: Arc<dyn PaymentProvider>) -> Self {
        self.by_name.insert(provider.name(), provider);
        self
    }

    pub fn default_provider(&self) -> &Arc<dyn PaymentProvider> {
        &self.default
    }

    pub fn get(&self, name: &str) -> Result<&Arc<dyn PaymentProvider>, PaymentError> {
        self.by_name
            .get(name)
            .ok_or_else(|| PaymentError::UnknownProvider(name.to_owned()))
    }
}

/// A payment as stored.
#[derive(Debug, Clone)]
pub struct Payment {
    pub id: Uuid,
    pub rental_id: Uuid,
    pub provider: String,
    pub external_ref: String,
    pub amount_minor: i64,
    pub currency: String,
    pub state: String,
    pub instructions: String,
    pub checkout_url: Option<String>,
    /// `order` (starts the rental) or `renewal` (extends it).
    pub purpose: String,
}

/// A checked query reading every column of [`Payment`] between `$head` ("SELECT", "... RETURNING") and
/// `$tail` (the rest of the statement). The overrides (`!`, `?`) state each column's nullability, which
/// PostgreSQL does not report for `RETURNING`.
macro_rules! select_payments {
    ($head:literal, $tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Payment,
            $head + " id AS \"id!\", rental_id AS \"rental_id!\", provider AS \"provider!\", \
             external_ref AS \"external_ref!\", amount_minor AS \"amount_minor!\", currency AS \"currency!\", \
             state AS \"state!\", instructions AS \"instructions!\", checkout_url AS \"checkout_url?\", \
             purpose AS \"purpose!\" " + $tail
            $(, $arg)*
        )
    };
}

/// Records an opened payment, pending, for `purpose` (`order` or `renewal`). A rental has one pending
/// payment at most: `Ok(None)` when another is already waiting.
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    rental: Uuid,
    purpose: &str,
    provider: &str,
    amount: &Money,
    opened: &Opened,
) -> Result<Option<Payment>, sqlx::Error> {
    select_payments!("INSERT INTO payments (id, rental_id, provider, external_ref, amount_minor, currency, state, \
         instructions, checkout_url, purpose) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9) \
         ON CONFLICT (rental_id) WHERE state = 'pending' DO NOTHING RETURNING ", "", id, rental, provider, &opened.external_ref, amount.minor, amount.currency.as_str(), &opened.instructions, opened.checkout_url.as_deref(), purpose)
    .fetch_optional(conn)
    .await
}

/// A rental's payment waiting to be settled, locked for the caller's transaction.
pub async fn pending_locked(
    conn: &mut PgConnection,
    rental: Uuid,
) -> Result<Option<Payment>, sqlx::Error> {
    select_payments!(
        "SELECT ",
        " FROM payments WHERE rental_id = $1 AND state = 'pending' FOR UPDATE",
        rental
    )
    .fetch_optional(conn)
    .await
}

/// A rental's latest payment (the one waiting, if any).
pub async fn for_rental(pool: &sqlx::PgPool, rental: Uuid) -> Result<Option<Payment>, sqlx::Error> {
    select_payments!("SELECT ", " FROM payments WHERE rental_id = $1 ORDER BY state = 'pending' DESC, created_at DESC, id LIMIT 1", rental)
    .fetch_optional(pool)
    .await
}

/// A provider's payment by its reference: (payment id, rental id, state).
pub async fn rental_of(
    conn: &mut PgConnection,
    provider: &str,
    external_ref: &str,
) -> Result<Option<(Uuid, Uuid, String)>, sqlx::Error> {
    sqlx::query!(
        "SELECT id, rental_id, state FROM payments WHERE provider = $1 AND external_ref = $2",
        provider,
        external_ref
    )
    .map(|r| (r.id, r.rental_id, r.state))
    .fetch_optional(conn)
    .await
}

/// Moves a pending payment to `state` (`confirmed` or `failed`), recording who confirmed it by hand.
pub async fn settle(
    conn: &mut PgConnection,
    id: Uuid,
    state: &str,
    by: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE payments SET state = $2, confirmed_by = $3, updated_at = now() WHERE id = $1 AND state = 'pending'", id, state, by)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives up whatever still waits for payment on a rental (it ended: a renewal can no longer apply).
pub async fn fail_pending(conn: &mut PgConnection, rental: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE payments SET state = 'failed', updated_at = now() WHERE rental_id = $1 AND state = 'pending'", rental)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{
        ManualConfirmation, Opened, PaymentError, PaymentProvider, PaymentRequest, Providers,
        fail_pending, for_rental, insert, pending_locked, rental_of, settle,
    };
    use crate::infra::testing::{self, money};
    use sqlx::PgPool;
    use std::sync::Arc;
    use uuid::Uuid;

    fn opened(external_ref: &str) -> Opened {
        Opened {
            external_ref: external_ref.to_owned(),
            instructions: String::new(),
            checkout_url: None,
        }
    }

    #[tokio::test]
    async fn a_manual_payment_names_the_amount_in_its_currencys_notation_and_the_order() {
        let (payment, rental) = (Uuid::new_v4(), Uuid::new_v4());
        for (amount, shown) in [
            (money(1_234, "USD"), "12.34 USD"),
            (money(5, "EUR"), "0.05 EUR"),
            (money(1_500, "BTC"), "0.00001500 BTC"),
        ] {
            let opened = ManualConfirmation
                .open(&PaymentRequest {
                    payment,
                    rental,
                    amount: &amount,
                    description: "24 h on pi",
                })
                .await
                .unwrap();
            assert_eq!(opened.external_ref, payment.to_string());
            assert!(
                opened
                    .instructions
                    .contains(&format!("Pay {shown} for 24 h on pi")),
                "{}",
                opened.instructions
            );
            assert!(opened.instructions.contains(&rental.to_string()));
            assert_eq!(opened.checkout_url, None);
        }
    }

    #[test]
    fn a_manual_payment_is_confirmed_by_hand_and_takes_no_callbacks() {
        assert!(ManualConfirmation.confirmed_by_hand());
        let callback = ManualConfirmation.webhook(&axum::http::HeaderMap::new(), b"{}");
        assert!(
            matches!(callback, Err(PaymentError::NoCallbacks("manual"))),
            "{callback:?}"
        );
    }

    /// A second provider, by name only.
    struct Other;

    #[async_trait::async_trait]
    impl PaymentProvider for Other {
        fn name(&self) -> &'static str {
            "other"
        }

        async fn open(&self, _: &PaymentRequest<'_>) -> Result<Opened, PaymentError> {
            Ok(opened("x"))
        }
    }

    #[test]
    fn new_orders_use_the_first_provider_and_others_are_found_by_name() {
        let providers = Providers::default().with(Arc::new(Other));
        assert_eq!(providers.default_provider().name(), "manual");
        assert_eq!(providers.get("other").unwrap().name(), "other");
        assert!(!providers.get("other").unwrap().confirmed_by_hand());
        assert_eq!(providers.get("manual").unwrap().name(), "manual");
        let unknown = providers.get("paypal");
        assert!(
            matches!(&unknown, Err(PaymentError::UnknownProvider(n)) if n == "paypal"),
            "{:?}",
            unknown.err()
        );
    }

    #[sqlx::test(migrations = "../sql")]
    async fn a_rental_has_at_most_one_payment_waiting(pool: PgPool) {
        let (rental, _, _) = testing::granted(&pool).await;
        let price = money(300, "USD");
        let mut tx = pool.begin().await.unwrap();
        let first = insert(
            &mut tx,
            Uuid::new_v4(),
            rental.id,
            "renewal",
            "manual",
            &price,
            &opened("a"),
        )
        .await
        .unwrap()
        .expect("the first payment waits");
        assert_eq!(
            (
                first.state.as_str(),
                first.amount_minor,
                first.currency.as_str()
            ),
            ("pending", 300, "USD")
        );
        let second = insert(
            &mut tx,
            Uuid::new_v4(),
            rental.id,
            "renewal",
            "manual",
            &price,
            &opened("b"),
        )
        .await
        .unwrap();
        assert!(second.is_none(), "another payment is already waiting");
        assert_eq!(
            pending_locked(&mut tx, rental.id)
                .await
                .unwrap()
                .unwrap()
                .id,
            first.id
        );

        settle(&mut tx, first.id, "confirmed", None).await.unwrap();
        assert!(pending_locked(&mut tx, rental.id).await.unwrap().is_none());
        // A settled payment stays settled.
        settle(&mut tx, first.id, "failed", None).await.unwrap();
        let third = insert(
            &mut tx,
            Uuid::new_v4(),
            rental.id,
            "renewal",
            "manual",
            &price,
            &opened("c"),
        )
        .await
        .unwrap()
        .expect("a new payment may wait once the last is settled");
        tx.commit().await.unwrap();

        let latest = for_rental(&pool, rental.id).await.unwrap().unwrap();
        assert_eq!(latest.id, third.id, "the waiting one first");
        let mut conn = pool.acquire().await.unwrap();
        let (id, of, state) = rental_of(&mut conn, "manual", "a").await.unwrap().unwrap();
        assert_eq!((id, of, state.as_str()), (first.id, rental.id, "confirmed"));
        assert!(rental_of(&mut conn, "other", "a").await.unwrap().is_none());

        fail_pending(&mut conn, rental.id).await.unwrap();
        let states: Vec<String> = sqlx::query_scalar(
            "SELECT state FROM payments WHERE rental_id = $1 ORDER BY created_at, external_ref",
        )
        .bind(rental.id)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(states, ["confirmed", "failed"]);
    }
}
