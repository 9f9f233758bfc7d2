//! Handing a signed-in user their session: as the session cookie (its name and attributes, also read by the
//! HTTP layer) or as a bearer token in the payload, for API clients.

use super::context::ContextExt;
use super::error::ApiResult;
use super::types::users::UserObject;
use crate::accounts::sessions::{self, Kind};
use crate::accounts::users::User;
use async_graphql::{Context, SimpleObject};
use chrono::{DateTime, Utc};

pub const SESSION_COOKIE: &str = "p2pvps_session";

/// The session cookie's name: over HTTPS with the `__Host-` prefix, which browsers accept only from the
/// dashboard's own host (Secure, `Path=/`, no `Domain`), so a device site under the same parent domain
/// cannot plant one ("cookie tossing"). Over plain HTTP (local use) browsers refuse the prefix.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-p2pvps_session"
    } else {
        SESSION_COOKIE
    }
}

/// The `Set-Cookie` value carrying `token` for `max_age` (zero: the browser drops the cookie).
pub fn session_cookie(token: &str, secure: bool, max_age: chrono::Duration) -> String {
    cookie::Cookie::build((session_cookie_name(secure), token.to_owned()))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(max_age.num_seconds()))
        .build()
        .to_string()
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    pub user: UserObject,
    /// The bearer token, when one was asked for. Shown only here.
    pub token: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// Opens a session for `user` and hands it over as a cookie or a bearer token.
pub async fn open_session(
    ctx: &Context<'_>,
    conn: &mut sqlx::PgConnection,
    user: User,
    bearer: bool,
) -> ApiResult<AuthPayload> {
    let kind = if bearer { Kind::Bearer } else { Kind::Cookie };
    let token = sessions::open(conn, user.id, kind).await?;
    let expires_at = Utc::now() + kind.lifetime();
    let token = if bearer {
        Some(token)
    } else {
        ctx.append_http_header(
            axum::http::header::SET_COOKIE,
            session_cookie(&token, ctx.shared().cookie_secure, kind.lifetime()),
        );
        None
    };
    Ok(AuthPayload {
        user: UserObject(user),
        token,
        expires_at,
    })
}
