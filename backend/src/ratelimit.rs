//! Log-in rate limits, per client address and per account, so neither one address trying many accounts nor
//! many addresses trying one account get far. In memory per instance: a deliberate trade-off (several
//! instances each allow the quota), noted in ARCHITECTURE.md.

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

pub struct LoginLimiter {
    by_address: Keyed<IpAddr>,
    by_account: Keyed<String>,
}

/// Which limit was hit, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub per_account: bool,
    pub retry_after: Duration,
}

impl LoginLimiter {
    pub fn new(per_address_per_minute: u32, per_account_per_minute: u32) -> Self {
        let quota =
            |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            by_address: RateLimiter::keyed(quota(per_address_per_minute)),
            by_account: RateLimiter::keyed(quota(per_account_per_minute)),
        }
    }

    /// Counts one attempt against both limits.
    pub fn check(&self, address: IpAddr, account: &str) -> Result<(), Limited> {
        let now = DefaultClock::default().now();
        if let Err(until) = self.by_address.check_key(&address) {
            return Err(Limited {
                per_account: false,
                retry_after: until.wait_time_from(now),
            });
        }
        if let Err(until) = self.by_account.check_key(&account.trim().to_lowercase()) {
            return Err(Limited {
                per_account: true,
                retry_after: until.wait_time_from(now),
            });
        }
        Ok(())
    }

    /// Forgets keys whose quota has fully recovered (bounds memory under a spray of addresses).
    pub fn forget_idle(&self) {
        self.by_address.retain_recent();
        self.by_account.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_account_and_each_address() {
        let limiter = LoginLimiter::new(5, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.check(a, "x@example.com").is_ok());
        assert!(limiter.check(b, "X@example.com").is_ok());
        let hit = limiter.check(a, "x@example.com").unwrap_err();
        assert!(hit.per_account);
        assert!(hit.retry_after > Duration::ZERO);
        for i in 0..3 {
            assert!(limiter.check(a, &format!("other{i}@example.com")).is_ok());
        }
        assert!(
            !limiter
                .check(a, "fresh@example.com")
                .unwrap_err()
                .per_account
        );
    }
}
