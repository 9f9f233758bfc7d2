//! A renter's connection lives no longer than the rental, even when the `rental_ended` event is lost (a
//! lagged broadcast, a NOTIFY sent while the listener reconnected): each carried connection and jump session
//! has its own deadline, the rental's `ends_at`. At the deadline the rental is read again, so a renewal
//! (which moves `ends_at`) keeps the connection; an ended rental, or a database that cannot be asked, cuts it.

use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;

/// How long the check at a deadline may take before the rental counts as over.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Waits until the rental is over: sleeps to `ends_at`, asks `check` for the rental's current end (`None`:
/// ended), and sleeps again while it was renewed.
pub async fn rental_over<C, F>(mut ends_at: DateTime<Utc>, mut check: C)
where
    C: FnMut() -> F,
    F: Future<Output = Result<Option<DateTime<Utc>>, sqlx::Error>>,
{
    loop {
        let wait = (ends_at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
            Ok(Ok(Some(end))) if end > Utc::now() => ends_at = end,
            Ok(Ok(_)) => return,
            Ok(Err(e)) => {
                if Utc::now() >= ends_at {
                    tracing::warn!(error = %e, "cannot check a rental at its end; cutting its connection");
                    return;
                }
            }
            Err(_) => {
                if Utc::now() >= ends_at {
                    return;
                }
            }
        }
    }
}
