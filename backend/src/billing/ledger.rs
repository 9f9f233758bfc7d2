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

#[cfg(test)]
mod tests {
    use super::{LedgerError, Payer, balance, record_payment, record_refund, refund_share};
    use crate::infra::testing::{self, money};
    use sqlx::PgPool;
    use uuid::Uuid;

    /// Every entry of the rental, as (account, amount, currency), in the order written.
    async fn entries(pool: &PgPool, rental: Uuid) -> Vec<(String, i64, String)> {
        sqlx::query_as(
            "SELECT account, amount_minor, currency FROM ledger_entries WHERE rental_id = $1 ORDER BY id",
        )
        .bind(rental)
        .fetch_all(pool)
        .await
        .unwrap()
    }

    /// Transactions that do not sum to zero in some currency.
    async fn unbalanced(pool: &PgPool) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM ledger_entries GROUP BY txn_id, currency \
             HAVING sum(amount_minor) <> 0) t",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    }

    #[sqlx::test(migrations = "../sql")]
    async fn a_payment_is_split_into_the_fee_rounded_down_and_the_owners_earning(pool: PgPool) {
        let (rental, owner, renter) = testing::granted(&pool).await;
        let payer = Payer::Renter(renter.id);
        let mut tx = pool.begin().await.unwrap();
        // 10 % of 19 cents is 1.9: the platform gets 1, the owner the other 18.
        record_payment(
            &mut tx,
            rental.id,
            owner.id,
            &payer,
            &money(19, "USD"),
            1_000,
        )
        .await
        .unwrap();
        tx.commit().await.expect("the transaction balances");
        let renter_account = format!("renter:{}", renter.id);
        let owner_account = format!("owner:{}", owner.id);
        assert_eq!(
            entries(&pool, rental.id).await,
            [
                (renter_account.clone(), -19, "USD".to_owned()),
                ("platform".to_owned(), 1, "USD".to_owned()),
                (owner_account.clone(), 18, "USD".to_owned()),
            ]
        );
        assert_eq!(unbalanced(&pool).await, 0);
        assert_eq!(
            balance(&pool, &owner_account).await.unwrap(),
            [("USD".to_owned(), 18)]
        );
    }

    #[sqlx::test(migrations = "../sql")]
    async fn a_fee_of_nothing_or_everything_writes_no_empty_entry(pool: PgPool) {
        let (rental, owner, _) = testing::granted(&pool).await;
        let payer = Payer::Marketplace("openbazaar");
        let mut tx = pool.begin().await.unwrap();
        record_payment(&mut tx, rental.id, owner.id, &payer, &money(500, "USD"), 0)
            .await
            .unwrap();
        // Basis points above 100 % are capped: the platform takes the whole payment, never more.
        record_payment(
            &mut tx,
            rental.id,
            owner.id,
            &payer,
            &money(300, "USD"),
            20_000,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let written = entries(&pool, rental.id).await;
        assert!(written.iter().all(|(_, amount, _)| *amount != 0));
        let accounts: Vec<&str> = written.iter().map(|(a, _, _)| a.as_str()).collect();
        let owner_account = format!("owner:{}", owner.id);
        assert_eq!(
            accounts,
            [
                "marketplace:openbazaar",
                owner_account.as_str(),
                "marketplace:openbazaar",
                "platform"
            ]
        );
        assert_eq!(
            balance(&pool, "platform").await.unwrap(),
            [("USD".to_owned(), 300)]
        );
        assert_eq!(unbalanced(&pool).await, 0);
    }

    #[sqlx::test(migrations = "../sql")]
    async fn nothing_paid_is_nothing_to_record(pool: PgPool) {
        let (rental, owner, renter) = testing::granted(&pool).await;
        let payer = Payer::Renter(renter.id);
        let zero = p2pvps_shared::Money {
            minor: 0,
            currency: p2pvps_shared::Currency::parse("USD").unwrap(),
        };
        let mut tx = pool.begin().await.unwrap();
        let paid = record_payment(&mut tx, rental.id, owner.id, &payer, &zero, 1_000).await;
        assert!(matches!(paid, Err(LedgerError::Zero)), "{paid:?}");
        let back = record_refund(&mut tx, rental.id, owner.id, &payer, &zero, 1_000, "x").await;
        assert!(matches!(back, Err(LedgerError::Zero)), "{back:?}");
        tx.commit().await.unwrap();
        assert!(entries(&pool, rental.id).await.is_empty());
    }

    #[sqlx::test(migrations = "../sql")]
    async fn a_refund_takes_back_from_platform_and_owner_in_the_payments_proportion(pool: PgPool) {
        let (rental, owner, renter) = testing::granted(&pool).await;
        let payer = Payer::Renter(renter.id);
        let price = money(1_000, "USD");
        let mut tx = pool.begin().await.unwrap();
        record_payment(&mut tx, rental.id, owner.id, &payer, &price, 1_500)
            .await
            .unwrap();
        record_refund(
            &mut tx, rental.id, owner.id, &payer, &price, 1_500, "oversold",
        )
        .await
        .unwrap();
        tx.commit().await.expect("both transactions balance");
        for account in [
            format!("renter:{}", renter.id),
            "platform".to_owned(),
            format!("owner:{}", owner.id),
        ] {
            assert_eq!(
                balance(&pool, &account).await.unwrap(),
                [("USD".to_owned(), 0)],
                "{account} is back where it started"
            );
        }
        let txns: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT txn_id) FROM ledger_entries WHERE rental_id = $1",
        )
        .bind(rental.id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(txns, 2, "a refund is a transaction of its own");
    }

    #[sqlx::test(migrations = "../sql")]
    async fn a_share_refund_is_of_what_is_left_after_earlier_refunds(pool: PgPool) {
        let (rental, owner, renter) = testing::granted(&pool).await;
        let payer = Payer::Renter(renter.id);
        let renter_account = format!("renter:{}", renter.id);
        let mut tx = pool.begin().await.unwrap();
        record_payment(
            &mut tx,
            rental.id,
            owner.id,
            &payer,
            &money(1_000, "USD"),
            1_000,
        )
        .await
        .unwrap();
        let half = refund_share(&mut tx, rental.id, 1, 2, "half")
            .await
            .unwrap();
        assert_eq!(half, [("USD".to_owned(), 500)]);
        let half_again = refund_share(&mut tx, rental.id, 1, 2, "half again")
            .await
            .unwrap();
        assert_eq!(
            half_again,
            [("USD".to_owned(), 250)],
            "half of the 500 left"
        );
        let rest = refund_share(&mut tx, rental.id, 1, 1, "the rest")
            .await
            .unwrap();
        assert_eq!(rest, [("USD".to_owned(), 250)]);
        let nothing = refund_share(&mut tx, rental.id, 1, 1, "again")
            .await
            .unwrap();
        assert!(nothing.is_empty(), "nothing left to refund: {nothing:?}");
        tx.commit().await.expect("every refund balances");
        for account in [
            renter_account,
            "platform".to_owned(),
            format!("owner:{}", owner.id),
        ] {
            assert_eq!(
                balance(&pool, &account).await.unwrap(),
                [("USD".to_owned(), 0)],
                "{account}"
            );
        }
    }

    #[sqlx::test(migrations = "../sql")]
    async fn each_currency_is_booked_and_refunded_in_itself(pool: PgPool) {
        let (rental, owner, renter) = testing::granted(&pool).await;
        let payer = Payer::Renter(renter.id);
        let mut tx = pool.begin().await.unwrap();
        record_payment(
            &mut tx,
            rental.id,
            owner.id,
            &payer,
            &money(2_000, "USD"),
            1_000,
        )
        .await
        .unwrap();
        record_payment(
            &mut tx,
            rental.id,
            owner.id,
            &payer,
            &money(40_000, "BTC"),
            1_000,
        )
        .await
        .unwrap();
        let back = refund_share(&mut tx, rental.id, 1, 4, "a quarter")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(back, [("BTC".to_owned(), 10_000), ("USD".to_owned(), 500)]);
        assert_eq!(
            balance(&pool, "platform").await.unwrap(),
            [("BTC".to_owned(), 3_000), ("USD".to_owned(), 150)]
        );
        assert_eq!(
            balance(&pool, &format!("owner:{}", owner.id))
                .await
                .unwrap(),
            [("BTC".to_owned(), 27_000), ("USD".to_owned(), 1_350)]
        );
        assert_eq!(unbalanced(&pool).await, 0);
    }

    #[sqlx::test(migrations = "../sql")]
    async fn the_database_refuses_a_transaction_that_does_not_balance(pool: PgPool) {
        let (rental, _, _) = testing::granted(&pool).await;
        let mut tx = pool.begin().await.unwrap();
        let txn = Uuid::new_v4();
        super::insert(
            &mut tx,
            txn,
            &[("platform".to_owned(), 10), ("platform".to_owned(), -9)],
            "USD",
            rental.id,
            "off by one",
        )
        .await
        .unwrap();
        assert!(tx.commit().await.is_err());
        assert!(entries(&pool, rental.id).await.is_empty());
    }
}
