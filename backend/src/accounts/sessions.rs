//! Sessions and API tokens (table `sessions`): a random 32-byte token given to the client once, stored as its
//! SHA-256. The dashboard carries it in an HttpOnly cookie, API clients as `Authorization: Bearer`.

use crate::accounts::users::{self, User, UserError};
use crate::infra::audit::Actor;
use crate::infra::crypto;
use chrono::{Duration, Utc};
use p2pvps_shared::{Email, Password, Role};
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

    /// A bearer token for API clients that ask for one, the dashboard's cookie otherwise.
    pub fn asked(bearer: bool) -> Self {
        if bearer { Kind::Bearer } else { Kind::Cookie }
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
    db: impl sqlx::PgExecutor<'_>,
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
    .execute(db)
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
    .and_then(crate::infra::db::typed_opt)?;
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

/// Creates an owner's or renter's account and opens its first session, together: neither exists without
/// the other. Returns the user and the session's token.
pub async fn sign_up(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    email: &Email,
    password: &Password,
    role: Role,
    kind: Kind,
) -> Result<(User, String), UserError> {
    let mut tx = db.begin().await?;
    let user = users::create(&mut tx, None, email, password, role, false).await?;
    let token = open(&mut *tx, user.id, kind).await?;
    tx.commit().await?;
    Ok((user, token))
}

/// Replaces a user's password and ends their other sessions and tokens but `keep` (the one asking),
/// together.
pub async fn change_password(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &Actor,
    user_id: Uuid,
    password: &Password,
    keep: Option<&str>,
) -> Result<User, UserError> {
    let mut tx = db.begin().await?;
    let user = users::set_password(&mut tx, actor, user_id, password).await?;
    close_others(&mut tx, user_id, keep).await?;
    tx.commit().await?;
    Ok(user)
}
