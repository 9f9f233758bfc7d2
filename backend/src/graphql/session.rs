//! Handing a signed-in user their session: as the session cookie (its name and attributes, also read by the
//! HTTP layer) or as a bearer token in the payload, for API clients.

use super::context::ContextExt;
use super::types::users::UserObject;
use crate::accounts::sessions::Kind;
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

/// Hands a session's token over as the session cookie or, for API clients, a bearer token in the payload.
pub fn hand_over(ctx: &Context<'_>, user: User, token: String, kind: Kind) -> AuthPayload {
    let expires_at = Utc::now() + kind.lifetime();
    let token = match kind {
        Kind::Bearer => Some(token),
        Kind::Cookie => {
            ctx.append_http_header(
                axum::http::header::SET_COOKIE,
                session_cookie(&token, ctx.shared().cookie_secure, kind.lifetime()),
            );
            None
        }
    };
    AuthPayload {
        user: UserObject(user),
        token,
        expires_at,
    }
}
