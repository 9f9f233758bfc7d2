//! Limits on failed device and renter authentications (SSH and the localtunnel control request), per
//! client address and per user name.
//!
//! Only failures count: a hundred Pis behind one NAT reconnecting after an outage must all get in, while
//! a password guesser is stopped. When a failure exceeds a quota, the address (or user name) is blocked
//! until the quota has recovered; every attempt from it is refused until then, right or wrong.

use crate::ratelimit::LoginLimiter;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

pub struct AuthGuard {
    failures: LoginLimiter,
    blocked: Mutex<HashMap<String, Instant>>,
}

impl AuthGuard {
    pub fn new(failures_per_address_per_minute: u32, failures_per_user_per_minute: u32) -> Self {
        Self {
            failures: LoginLimiter::new(
                failures_per_address_per_minute,
                failures_per_user_per_minute,
            ),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    fn keys(address: IpAddr, user: &str) -> [String; 2] {
        [
            format!("addr:{address}"),
            format!("user:{}", user.to_lowercase()),
        ]
    }

    /// Whether attempts from this address or for this user are blocked now.
    pub fn is_blocked(&self, address: IpAddr, user: &str) -> bool {
        let now = Instant::now();
        let blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        Self::keys(address, user)
            .iter()
            .any(|k| blocked.get(k).is_some_and(|until| *until > now))
    }

    /// Records a failed attempt; blocks the address or the user when it was one too many.
    pub fn failed(&self, address: IpAddr, user: &str) {
        if let Err(limited) = self.failures.check(address, user) {
            let [by_address, by_user] = Self::keys(address, user);
            let key = if limited.per_account {
                by_user
            } else {
                by_address
            };
            let now = Instant::now();
            let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
            blocked.retain(|_, until| *until > now);
            blocked.insert(key, now + limited.retry_after);
            tracing::warn!(%address, user, per_user = limited.per_account, "too many failed device or renter logins; blocked");
        }
    }
}

/// `user:password` of a Basic `Authorization` header (devices log in so to the agent API and as `lt`).
pub fn basic_credentials(headers: &axum::http::HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_count() {
        let guard = AuthGuard::new(100, 3);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            guard.failed(ip, "dev");
            assert!(!guard.is_blocked(ip, "dev"));
        }
        guard.failed(ip, "dev");
        assert!(guard.is_blocked(ip, "dev"));
        assert!(guard.is_blocked(ip, "DEV"));
        assert!(
            !guard.is_blocked(ip, "other"),
            "other users from the same address are not blocked"
        );
    }
}
