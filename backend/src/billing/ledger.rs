//! The ledger: append-only, double-entry, integer minor units per currency. Every movement is one
//! transaction id whose entries sum to zero per currency (a deferred constraint trigger in the database
//! refuses anything else), written in the caller's transaction with the change it records.
//!
//! Accounts: `marketplace:<name>` or `renter:<id>` (where a payment came from), `platform` (our fee),
//! `owner:<id>` (what the device's owner earned).

use p2pvps_shared::{Money, split_fee};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The platform's default share of each payment, in basis points (10 %).
pub const DEFAULT_FEE_BPS: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("nothing to record: the amount is zero")]
    Zero,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Where a payment came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payer {
    Marketplace(&'static str),
    Renter(Uuid),
}

impl Payer {
    fn account(&self) -> String {
        match self {
            Payer::Marketplace(name) => format!("marketplace:{name}"),
            Payer::Renter(id) => format!("renter:{id}"),
        }
    }
}

async fn insert(
    conn: &mut PgConnection,
    txn: Uuid,
    entries: &[(String, i64)],
    currency: &str,
    rental: Uuid,
    memo: &str,
) -> Result<(), sqlx::Error> {
    for (account, amount) in entries.iter().filter(|(_, a)| *a != 0) {
        sqlx::query!(
            "INSERT INTO ledger_entries (txn_id, account, amount_minor, currency, rental_id, memo) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            txn,
            account,
            amount,
            currency,
            rental,
            memo
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Records a rental's payment: the payer pays, the platform takes its fee, the owner earns the rest.
/// Returns the transaction id.
pub async fn record_payment(
    conn: &mut PgConnection,
    rental: Uuid,
    owner: Uuid,
    payer: &Payer,
    paid: &Money,
    fee_bps: u32,
) -> Result<Uuid, LedgerError> {
    if paid.minor == 0 {
        return Err(LedgerError::Zero);
    }
    let (fee, earning) = split_fee(paid.minor, fee_bps);
    let txn = Uuid::new_v4();
    let entries = [
        (payer.account(), -paid.minor),
        ("platform".to_owned(), fee),
        (format!("owner:{owner}"), earning),
    ];
    insert(
        conn,
        txn,
        &entries,
        paid.currency.as_str(),
        rental,
        "rental payment",
    )
    .await?;
    Ok(txn)
}

/// Records a refund of `amount` to the payer, taken from the owner and the platform in the proportion
/// the payment was split.
pub async fn record_refund(
    conn: &mut PgConnection,
    rental: Uuid,
    owner: Uuid,
    payer: &Payer,
    amount: &Money,
    fee_bps: u32,
    memo: &str,
) -> Result<Uuid, LedgerError> {
    if amount.minor == 0 {
        return Err(LedgerError::Zero);
    }
    let (fee, earning) = split_fee(amount.minor, fee_bps);
    let txn = Uuid::new_v4();
    let entries = [
        (payer.account(), amount.minor),
        ("platform".to_owned(), -fee),
        (format!("owner:{owner}"), -earning),
    ];
    insert(conn, txn, &entries, amount.currency.as_str(), rental, memo).await?;
    Ok(txn)
}

/// Refunds the share `part / whole` of what was paid for a rental (net of earlier refunds), per
/// currency: the payer gets it back, taken from the platform and the owner in the proportion they
/// received it. Nothing is written when the share comes to zero. Returns how much was refunded.
pub async fn refund_share(
    conn: &mut PgConnection,
    rental: Uuid,
    part: i64,
    whole: i64,
    memo: &str,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows: Vec<(String, String, i64)> = sqlx::query!(
        "SELECT account, currency, sum(amount_minor)::bigint AS \"sum!\" FROM ledger_entries \
         WHERE rental_id = $1 GROUP BY account, currency ORDER BY currency, account",
        rental
    )
    .map(|r| (r.account, r.currency, r.sum))
    .fetch_all(&mut *conn)
    .await?;
    let share = |amount: i64| -> i64 {
        i64::try_from(i128::from(amount) * i128::from(part) / i128::from(whole.max(1))).unwrap_or(0)
    };
    let mut refunded = Vec::new();
    let currencies: std::collections::BTreeSet<&String> = rows.iter().map(|r| &r.1).collect();
    for currency in currencies {
        let of = |pred: &dyn Fn(&str) -> bool| -> Vec<(String, i64)> {
            rows.iter()
                .filter(|r| &r.1 == currency && pred(&r.0))
                .map(|r| (r.0.clone(), r.2))
                .collect()
        };
        // The payer is the account that paid in (negative); platform and owner received.
        let payers = of(&|a| a.starts_with("renter:") || a.starts_with("marketplace:"));
        let Some((payer, paid)) = payers.into_iter().find(|(_, n)| *n < 0) else {
            continue;
        };
        let refund = share(-paid);
        if refund <= 0 {
            continue;
        }
        let platform: i64 = of(&|a| a == "platform").iter().map(|r| r.1).sum();
        let from_platform = share(platform).clamp(0, refund);
        let owner = of(&|a| a.starts_with("owner:"));
        let Some((owner, _)) = owner.into_iter().next() else {
            continue;
        };
        let entries = [
            (payer, refund),
            ("platform".to_owned(), -from_platform),
            (owner, -(refund - from_platform)),
        ];
        insert(conn, Uuid::new_v4(), &entries, currency, rental, memo).await?;
        refunded.push((currency.clone(), refund));
    }
    Ok(refunded)
}

/// An account's balance per currency (e.g. an owner's earnings), in minor units.
pub async fn balance(pool: &PgPool, account: &str) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query!(
        "SELECT currency, sum(amount_minor)::bigint AS \"sum!\" FROM ledger_entries WHERE account = $1 \
         GROUP BY currency ORDER BY currency",
        account
    )
    .map(|r| (r.currency, r.sum))
    .fetch_all(pool)
    .await
}

/// An owner's earnings per currency.
pub async fn owner_earnings(pool: &PgPool, owner: Uuid) -> Result<Vec<(String, i64)>, sqlx::Error> {
    balance(pool, &format!("owner:{owner}")).await
}
