//! User accounts (table `users`): e-mail, Argon2id password hash, role, disabled flag.

use crate::infra::audit::{self, Actor};
use crate::infra::crypto::{self, CryptoError};
use crate::infra::db::{decode_enum, violated_constraint};
use chrono::{DateTime, Utc};
use p2pvps_shared::{Email, Password, Role};
use sqlx::{PgConnection, PgPool};
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

/// A `users` row as the query macros read it (`select_users!`); [`User`] is its typed form.
pub struct UserRow {
    pub(crate) id: Uuid,
    pub(crate) email: String,
    pub(crate) role: String,
    pub(crate) disabled: bool,
    pub(crate) must_change_password: bool,
    pub(crate) created_at: DateTime<Utc>,
}

/// A checked query reading every column of [`UserRow`] between `$head` ("SELECT", "... RETURNING") and
/// `$tail` (the rest of the statement). The `!` overrides state nullability, which PostgreSQL does not
/// report for `RETURNING`.
macro_rules! select_users {
    ($head:literal, $tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::accounts::users::UserRow,
            $head + " id AS \"id!\", email AS \"email!\", role AS \"role!\", disabled AS \"disabled!\", \
             must_change_password AS \"must_change_password!\", created_at AS \"created_at!\" " + $tail
            $(, $arg)*
        )
    };
}
pub(crate) use select_users;

impl TryFrom<UserRow> for User {
    type Error = sqlx::Error;

    fn try_from(row: UserRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.id,
            email: row.email,
            role: decode_enum(Role::from_db(&row.role), "role", &row.role)?,
            disabled: row.disabled,
            must_change_password: row.must_change_password,
            created_at: row.created_at,
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
    let user = select_users!("INSERT INTO users (id, email, password_hash, role, must_change_password) VALUES ($1, $2, $3, $4, $5) \
         RETURNING ", "", Uuid::new_v4(), email.as_str(), hash, role.as_str(), must_change_password)
    .fetch_one(&mut *conn)
    .await.and_then(User::try_from)
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
    let row = sqlx::query!(
        "SELECT id, email, role, disabled, must_change_password, created_at, password_hash \
         FROM users WHERE email = $1",
        email.trim().to_lowercase()
    )
    .fetch_optional(pool)
    .await?;
    let (user, hash) = match row {
        Some(row) => {
            let user = User::try_from(UserRow {
                id: row.id,
                email: row.email,
                role: row.role,
                disabled: row.disabled,
                must_change_password: row.must_change_password,
                created_at: row.created_at,
            })?;
            (Some(user), row.password_hash)
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
    select_users!("SELECT ", " FROM users WHERE id = $1", id)
        .fetch_optional(pool)
        .await
        .and_then(crate::infra::db::typed_opt)
}

/// The users among `ids` (for a page of rows that each name one).
pub async fn get_many(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<User>, sqlx::Error> {
    select_users!("SELECT ", " FROM users WHERE id = ANY($1)", ids)
        .fetch_all(pool)
        .await
        .and_then(crate::infra::db::typed)
}

pub async fn find_by_email(
    conn: &mut PgConnection,
    email: &Email,
) -> Result<Option<User>, sqlx::Error> {
    select_users!("SELECT ", " FROM users WHERE email = $1", email.as_str())
        .fetch_optional(conn)
        .await
        .and_then(crate::infra::db::typed_opt)
}

/// Keyset page ordered by (created_at, id).
pub async fn page(
    pool: &PgPool,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<User>, sqlx::Error> {
    select_users!(
        "SELECT ",
        " FROM users WHERE $1::timestamptz IS NULL OR (created_at, id) > ($1, $2) \
         ORDER BY created_at, id LIMIT $3",
        after.map(|a| a.0),
        after.map(|a| a.1),
        limit
    )
    .fetch_all(pool)
    .await
    .and_then(crate::infra::db::typed)
}

pub async fn any_admin(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND NOT disabled) AS \"exists!\""
    )
    .fetch_one(pool)
    .await
}

/// Changes a role or the disabled flag. Disabling also ends every session of the user.
pub async fn update(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    actor: &Actor,
    id: Uuid,
    role: Option<Role>,
    disabled: Option<bool>,
) -> Result<User, UserError> {
    let mut tx = db.begin().await?;
    let conn = &mut *tx;
    if actor.id == Some(id) {
        return Err(UserError::SelfChange);
    }
    let user = select_users!("UPDATE users SET role = COALESCE($2, role), disabled = COALESCE($3, disabled) WHERE id = $1 \
         RETURNING ", "", id, role.map(Role::as_str), disabled)
    .fetch_optional(&mut *conn)
    .await.and_then(crate::infra::db::typed_opt)?
    .ok_or(UserError::NotFound)?;
    if disabled == Some(true) {
        sqlx::query!("DELETE FROM sessions WHERE user_id = $1", id)
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
    tx.commit().await?;
    Ok(user)
}

pub async fn set_password(
    conn: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    password: &Password,
) -> Result<User, UserError> {
    let hash = hash_off_thread(password.expose().to_owned()).await?;
    let user = select_users!("UPDATE users SET password_hash = $2, must_change_password = false WHERE id = $1 RETURNING ", "", id, hash)
    .fetch_optional(&mut *conn)
    .await.and_then(crate::infra::db::typed_opt)?
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
