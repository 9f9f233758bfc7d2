//! Sessions and API tokens (table `sessions`): a random 32-byte token given to the client once, stored as its
//! SHA-256. The dashboard carries it in an HttpOnly cookie, API clients as `Authorization: Bearer`.

use crate::accounts::users::User;
use crate::infra::crypto;
use chrono::{Duration, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// How a token is carried; stored so that a cookie token is not silently usable as an API token forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cookie,
    Bearer,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Cookie => "cookie",
            Kind::Bearer => "bearer",
        }
    }

    pub fn lifetime(self) -> Duration {
        match self {
            Kind::Cookie => Duration::days(14),
            Kind::Bearer => Duration::days(90),
        }
    }
}

/// Opens a session and returns its token (the only time it exists in clear).
pub async fn open(
    conn: &mut PgConnection,
    user_id: Uuid,
    kind: Kind,
) -> Result<String, sqlx::Error> {
    let token = crypto::new_token();
    sqlx::query!(
        "INSERT INTO sessions (token_hash, user_id, kind, expires_at) VALUES ($1, $2, $3, $4)",
        crypto::token_hash(&token),
        user_id,
        kind.as_str(),
        Utc::now() + kind.lifetime()
    )
    .execute(conn)
    .await?;
    Ok(token)
}

/// The user behind a live token, if the account is still enabled.
pub async fn user_for_token(pool: &PgPool, token: &str) -> Result<Option<User>, sqlx::Error> {
    let row = crate::accounts::users::select_users!(
        "SELECT",
        "FROM users WHERE id = (SELECT s.user_id FROM sessions s \
         WHERE s.token_hash = $1 AND s.expires_at > now()) AND NOT disabled",
        crypto::token_hash(token)
    )
    .fetch_optional(pool)
    .await
    .and_then(crate::accounts::users::typed_opt)?;
    Ok(row)
}

/// Ends one session; its websocket subscriptions close (on every instance).
pub async fn close(pool: &PgPool, token: &str) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let user: Option<Uuid> = sqlx::query_scalar!(
        "DELETE FROM sessions WHERE token_hash = $1 RETURNING user_id",
        crypto::token_hash(token)
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(user) = user {
        crate::infra::events::user_access_changed(&mut tx, user).await?;
    }
    tx.commit().await?;
    Ok(user.is_some())
}

/// Ends every session and token of a user but `keep` (the one asking), e.g. after a password change.
pub async fn close_others(
    conn: &mut PgConnection,
    user_id: Uuid,
    keep: Option<&str>,
) -> Result<u64, sqlx::Error> {
    let closed = sqlx::query!(
        "DELETE FROM sessions WHERE user_id = $1 AND token_hash IS DISTINCT FROM $2",
        user_id,
        keep.map(crypto::token_hash)
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    crate::infra::events::user_access_changed(conn, user_id).await?;
    Ok(closed)
}

/// Drops expired rows; run periodically by the server.
pub async fn purge_expired(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query!("DELETE FROM sessions WHERE expires_at <= now()")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
