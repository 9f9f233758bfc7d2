//! Attempts per client address, for requests that are expensive whether or not they succeed: `signUp` and
//! `changePassword` each hash a password with Argon2 (19 MiB, tens of milliseconds), and storefront orders
//! hold a device. Failed logins have their own guard (`auth_guard`), which counts failures only.
//!
//! In memory per instance: a deliberate trade-off (several instances each allow the quota), noted in
//! ARCHITECTURE.md.

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

pub struct AddressLimiter {
    what: &'static str,
    by_address: RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>,
}

/// An attempt over the quota: what was limited and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub what: &'static str,
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
            "too many {} from this address; try again in {} s",
            self.what,
            self.retry_after_secs()
        )
    }
}

impl AddressLimiter {
    /// `what` names the attempts in refusals ("sign-ups and password changes").
    pub fn per_minute(what: &'static str, n: u32) -> Self {
        Self {
            what,
            by_address: RateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN),
            )),
        }
    }

    /// Counts one attempt.
    pub fn check(&self, address: IpAddr) -> Result<(), Limited> {
        self.by_address
            .check_key(&address)
            .map_err(|until| Limited {
                what: self.what,
                retry_after: until.wait_time_from(DefaultClock::default().now()),
            })
    }

    /// Forgets addresses whose quota has fully recovered (bounds memory under a spray of addresses).
    pub fn forget_idle(&self) {
        self.by_address.retain_recent();
        self.by_address.shrink_to_fit();
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
}
