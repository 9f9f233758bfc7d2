//! One instance at a time: leadership is a PostgreSQL session advisory lock held on a dedicated
//! connection. If the leader dies (or loses its connection), PostgreSQL releases the lock and another
//! instance takes it on its next try.

use sqlx::{Connection, PgConnection, PgPool};

/// Lock keys, one per kind of singleton work.
pub const MARKETPLACE_KEY: i64 = 0x7032_7076_7073_0001;

/// Held leadership; dropping it (or its connection failing) gives it up.
pub struct Leadership {
    /// Detached from the pool: dropping it closes the connection, which releases the lock (a pooled
    /// connection would go back to the pool still holding it).
    conn: Option<PgConnection>,
    key: i64,
}

impl Leadership {
    pub fn new(key: i64) -> Self {
        Self { conn: None, key }
    }

    /// True when this instance leads now: keeps a held lock after checking its connection still
    /// works, otherwise tries to take it.
    pub async fn check(&mut self, pool: &PgPool) -> bool {
        if let Some(conn) = &mut self.conn {
            if conn.ping().await.is_ok() {
                return true;
            }
            tracing::warn!(key = self.key, "lost the connection holding leadership");
            self.conn = None;
        }
        let Ok(mut conn) = pool.acquire().await else {
            return false;
        };
        let taken: Result<bool, _> =
            sqlx::query_scalar!("SELECT pg_try_advisory_lock($1) AS \"taken!\"", self.key)
                .fetch_one(&mut *conn)
                .await;
        if taken.unwrap_or(false) {
            tracing::info!(key = self.key, "this instance now leads");
            self.conn = Some(conn.detach());
            true
        } else {
            false
        }
    }
}
