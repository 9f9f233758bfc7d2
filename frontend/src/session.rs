//! Who is signed in, for every page: fetched once at start, replaced on log-in and log-out.

use p2pvps_shared::Role;
use serde::Serialize;
use yew::prelude::*;

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub must_change_password: bool,
}

/// A GraphQL enum value as the server spells it (`ONLINE`); every operation has its own generated enum.
pub fn enum_str<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub fn role_of<T: Serialize>(value: &T) -> Role {
    Role::from_db(&enum_str(value).to_ascii_lowercase()).unwrap_or(Role::Renter)
}

/// Builds a [`User`] from any generated user type with the same fields.
macro_rules! user_from {
    ($u:expr) => {{
        let u = $u;
        $crate::session::User {
            id: u.id.clone(),
            email: u.email.clone(),
            role: $crate::session::role_of(&u.role),
            must_change_password: u.must_change_password,
        }
    }};
}
pub(crate) use user_from;

#[derive(Clone, PartialEq)]
pub struct Session {
    pub user: Option<User>,
    /// Replaces the signed-in user (after log-in, sign-up, log-out).
    pub set: Callback<Option<User>>,
}

impl Session {
    pub fn role(&self) -> Option<Role> {
        self.user.as_ref().map(|u| u.role)
    }
}

#[hook]
pub fn use_session() -> Session {
    use_context::<Session>().expect("inside the session provider")
}
