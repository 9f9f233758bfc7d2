//! One instance at a time: leadership is a PostgreSQL session advisory lock held on a dedicated
//! connection. If the leader dies (or loses its connection), PostgreSQL releases the lock and another
//! instance takes it on its next try.

use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;

/// Lock keys, one per kind of singleton work.
pub const MARKETPLACE_KEY: i64 = 0x7032_7076_7073_0001;

/// Held leadership; dropping it (or its connection failing) gives it up.
pub struct Leadership {
    conn: Option<PoolConnection<Postgres>>,
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
            if sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok() {
                return true;
            }
            tracing::warn!(key = self.key, "lost the connection holding leadership");
            self.conn = None;
        }
        let Ok(mut conn) = pool.acquire().await else {
            return false;
        };
        let taken: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(self.key)
            .fetch_one(&mut *conn)
            .await;
        if taken.unwrap_or(false) {
            tracing::info!(key = self.key, "this instance now leads");
            // Detached: the lock lives with this connection, which must not go back to the pool.
            self.conn = Some(conn);
            true
        } else {
            false
        }
    }
}
