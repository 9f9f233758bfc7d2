//! User accounts (table `users`): e-mail, Argon2id password hash, role, disabled flag.

use crate::infra::audit::{self, Actor};
use crate::infra::crypto::{self, CryptoError};
use crate::infra::db::{decode_enum, violated_constraint};
use chrono::{DateTime, Utc};
use p2pvps_shared::{Email, Password, Role};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("an account with this e-mail already exists")]
    EmailTaken,
    #[error("no such user")]
    NotFound,
    #[error("you cannot change your own role or disable yourself")]
    SelfChange,
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub must_change_password: bool,
    pub created_at: DateTime<Utc>,
}

/// The columns every query of this table reads, in `FromRow` order.
macro_rules! user_columns {
    () => {
        "id, email, role, disabled, must_change_password, created_at"
    };
}

impl<'r> sqlx::FromRow<'r, PgRow> for User {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let role: String = row.try_get("role")?;
        Ok(Self {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            role: decode_enum(Role::from_db(&role), "role", &role)?,
            disabled: row.try_get("disabled")?,
            must_change_password: row.try_get("must_change_password")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Creates a user. The password is hashed here; the caller has already checked its strength.
/// `actor` is `None` for a self sign-up (the new user is then its own actor in the audit log).
pub async fn create(
    conn: &mut PgConnection,
    actor: Option<&Actor>,
    email: &Email,
    password: &Password,
    role: Role,
    must_change_password: bool,
) -> Result<User, UserError> {
    let hash = hash_off_thread(password.expose().to_owned()).await?;
    let user = sqlx::query_as::<_, User>(concat!("INSERT INTO users (id, email, password_hash, role, must_change_password) VALUES ($1, $2, $3, $4, $5) \
         RETURNING ", user_columns!()))
    .bind(Uuid::new_v4())
    .bind(email.as_str())
    .bind(hash)
    .bind(role.as_str())
    .bind(must_change_password)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match violated_constraint(&e) {
        Some("users_email_key") => UserError::EmailTaken,
        _ => UserError::Db(e),
    })?;
    let actor = actor
        .cloned()
        .unwrap_or_else(|| Actor::user(user.id, &user.email));
    audit::record(
        conn,
        &actor,
        "user.create",
        "user",
        user.id,
        serde_json::json!({"email": user.email, "role": role.as_str()}),
    )
    .await?;
    Ok(user)
}

/// Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
pub async fn hash_off_thread(password: String) -> Result<String, CryptoError> {
    tokio::task::spawn_blocking(move || crypto::hash_password(&password))
        .await
        .map_err(|e| CryptoError::Hash(e.to_string()))?
}

/// Checks a log-in. Unknown e-mail, wrong password and disabled account all answer `None` after the same work.
pub async fn authenticate(
    pool: &PgPool,
    email: &str,
    password: &str,
) -> Result<Option<User>, UserError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        ", password_hash FROM users WHERE email = $1"
    ))
    .bind(email.trim().to_lowercase())
    .fetch_optional(pool)
    .await?;
    let (user, hash) = match row {
        Some(row) => {
            let user = <User as sqlx::FromRow<PgRow>>::from_row(&row)?;
            (Some(user), row.try_get::<String, _>("password_hash")?)
        }
        None => (None, crypto::dummy_password_hash().to_owned()),
    };
    let password = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || crypto::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    Ok(user.filter(|u| ok && !u.disabled))
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as::<_, User>(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The users among `ids` (for a page of rows that each name one).
pub async fn get_many(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query_as::<_, User>(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await
}

pub async fn find_by_email(
    conn: &mut PgConnection,
    email: &Email,
) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as::<_, User>(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE email = $1"
    ))
    .bind(email.as_str())
    .fetch_optional(conn)
    .await
}

/// Keyset page ordered by (created_at, id).
pub async fn page(
    pool: &PgPool,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query_as::<_, User>(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE $1::timestamptz IS NULL OR (created_at, id) > ($1, $2) \
         ORDER BY created_at, id LIMIT $3"
    ))
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn any_admin(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND NOT disabled)")
        .fetch_one(pool)
        .await
}

/// Changes a role or the disabled flag. Disabling also ends every session of the user.
pub async fn update(
    conn: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    role: Option<Role>,
    disabled: Option<bool>,
) -> Result<User, UserError> {
    if actor.id == Some(id) {
        return Err(UserError::SelfChange);
    }
    let user = sqlx::query_as::<_, User>(concat!("UPDATE users SET role = COALESCE($2, role), disabled = COALESCE($3, disabled) WHERE id = $1 \
         RETURNING ", user_columns!()))
    .bind(id)
    .bind(role.map(Role::as_str))
    .bind(disabled)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(UserError::NotFound)?;
    if disabled == Some(true) {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    crate::infra::events::user_access_changed(&mut *conn, id).await?;
    let (action, detail) = match (role, disabled) {
        (Some(r), _) => ("user.set_role", serde_json::json!({"role": r.as_str()})),
        (None, Some(d)) => ("user.set_disabled", serde_json::json!({"disabled": d})),
        (None, None) => ("user.update", serde_json::json!({})),
    };
    audit::record(conn, actor, action, "user", id, detail).await?;
    Ok(user)
}

pub async fn set_password(
    conn: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    password: &Password,
) -> Result<User, UserError> {
    let hash = hash_off_thread(password.expose().to_owned()).await?;
    let user = sqlx::query_as::<_, User>(concat!("UPDATE users SET password_hash = $2, must_change_password = false WHERE id = $1 RETURNING ", user_columns!()))
    .bind(id)
    .bind(hash)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(UserError::NotFound)?;
    audit::record(
        conn,
        actor,
        "user.change_password",
        "user",
        id,
        serde_json::json!({}),
    )
    .await?;
    Ok(user)
}
