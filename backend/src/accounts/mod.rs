//! Who may do what: users and their roles, sessions and API tokens, and the limits on guessing
//! (log-in failures, sign-ups, device credentials).

pub mod auth_guard;
pub mod ratelimit;
pub mod sessions;
pub mod users;
