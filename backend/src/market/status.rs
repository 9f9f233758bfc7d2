//! How each marketplace's selling passes went (table `marketplace_status`): recorded by the leading
//! instance after every pass, read by admins, so a node that refuses our credentials or keeps failing is
//! visible without reading logs.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MarketStatus {
    pub marketplace: String,
    pub last_pass_at: DateTime<Utc>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
}

/// Records one pass: `Ok` resets the failure count, `Err` keeps its message (the last error stays
/// readable after a later success, with its time).
pub async fn record(
    pool: &PgPool,
    marketplace: &str,
    outcome: Result<(), &str>,
) -> Result<(), sqlx::Error> {
    let error: Option<String> = outcome.err().map(|e| e.chars().take(1000).collect());
    sqlx::query!("INSERT INTO marketplace_status AS s (marketplace, last_pass_at, last_success_at, last_error, \
         last_error_at, consecutive_failures) \
         VALUES ($1, now(), CASE WHEN $2::text IS NULL THEN now() END, $2, CASE WHEN $2::text IS NOT NULL THEN now() END, \
                 CASE WHEN $2::text IS NULL THEN 0 ELSE 1 END) \
         ON CONFLICT (marketplace) DO UPDATE SET last_pass_at = now(), \
           last_success_at = CASE WHEN $2::text IS NULL THEN now() ELSE s.last_success_at END, \
           last_error = COALESCE($2, s.last_error), \
           last_error_at = CASE WHEN $2::text IS NOT NULL THEN now() ELSE s.last_error_at END, \
           consecutive_failures = CASE WHEN $2::text IS NULL THEN 0 ELSE s.consecutive_failures + 1 END", marketplace, error)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn list(pool: &PgPool) -> Result<Vec<MarketStatus>, sqlx::Error> {
    sqlx::query_as!(
        MarketStatus,
        "SELECT marketplace, last_pass_at, last_success_at, last_error, last_error_at, consecutive_failures \
         FROM marketplace_status ORDER BY marketplace"
    )
    .fetch_all(pool)
    .await
}
