//! Attempts per client address or per account, for requests that are expensive whether or not they
//! succeed: `signUp` and `changePassword` each hash a password with Argon2 (19 MiB, tens of milliseconds),
//! per address; storefront orders hold a device and open a payment, per account. Failed logins have their
//! own guard (`auth_guard`), which counts failures only.
//!
//! In memory per instance: a deliberate trade-off (several instances each allow the quota), noted in
//! ARCHITECTURE.md.

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;
use uuid::Uuid;

/// A quota per key: `whose` names the key in refusals ("this address", "this account").
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    what: &'static str,
    whose: &'static str,
    by_key: RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>,
}

/// Attempts per client address.
pub type AddressLimiter = KeyedLimiter<IpAddr>;

/// Attempts per signed-in account (its user id).
pub type AccountLimiter = KeyedLimiter<Uuid>;

/// An attempt over the quota: what was limited and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub what: &'static str,
    pub whose: &'static str,
    pub retry_after: Duration,
}

impl Limited {
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs().max(1)
    }
}

impl std::fmt::Display for Limited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "too many {} from {}; try again in {} s",
            self.what,
            self.whose,
            self.retry_after_secs()
        )
    }
}

impl AddressLimiter {
    /// `what` names the attempts in refusals ("sign-ups and password changes").
    pub fn per_minute(what: &'static str, n: u32) -> Self {
        KeyedLimiter::new(what, "this address", n)
    }
}

impl AccountLimiter {
    /// `what` names the attempts in refusals ("orders").
    pub fn per_minute(what: &'static str, n: u32) -> Self {
        KeyedLimiter::new(what, "this account", n)
    }
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    fn new(what: &'static str, whose: &'static str, per_minute: u32) -> Self {
        Self {
            what,
            whose,
            by_key: RateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN),
            )),
        }
    }

    /// Counts one attempt.
    pub fn check(&self, key: K) -> Result<(), Limited> {
        self.by_key.check_key(&key).map_err(|until| Limited {
            what: self.what,
            whose: self.whose,
            retry_after: until.wait_time_from(DefaultClock::default().now()),
        })
    }

    /// Forgets keys whose quota has fully recovered (bounds memory under a spray of addresses).
    pub fn forget_idle(&self) {
        self.by_key.retain_recent();
        self.by_key.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_address() {
        let limiter = AddressLimiter::per_minute("sign-ups", 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_ok());
        let hit = limiter.check(a).unwrap_err();
        assert!(hit.retry_after > Duration::ZERO);
        assert!(
            hit.to_string()
                .starts_with("too many sign-ups from this address")
        );
        assert!(limiter.check(b).is_ok());
    }

    #[test]
    fn limits_each_account() {
        let limiter = AccountLimiter::per_minute("orders", 1);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(limiter.check(a).is_ok());
        let hit = limiter.check(a).unwrap_err();
        assert!(
            hit.to_string()
                .starts_with("too many orders from this account"),
            "{hit}"
        );
        assert!(limiter.check(b).is_ok());
    }
}
