//! Limits on failed logins: devices and renters (SSH, the agent API, the localtunnel control request) and
//! dashboard accounts.
//!
//! Failures are counted per client address and per (address, name), never per name alone: device ids and
//! renter logins are public or guessable, so a per-name block would let anyone lock a device out of its own
//! tunnel from anywhere (and have its renters refunded at the owner's cost). Device credentials and jump
//! secrets are 256-bit random, so a per-name limit adds no protection worth that. Dashboard passwords are
//! chosen by people, so accounts also get a slow per-name backstop (an hourly quota, far above what one
//! address may try) against guessing spread over many addresses, as OpenSSH's `PerSourcePenalties` and
//! Django-axes do.
//!
//! Only failures count: a hundred Pis behind one NAT reconnecting after an outage must all get in. When a
//! failure exceeds a quota, that key is blocked until the quota has recovered, and every attempt under it is
//! refused unchecked until then; a correct credential from another address is never refused because of
//! someone else's failures (short of the accounts' backstop).

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

type Keyed<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// How many failures each key may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Failures per client address per minute, whatever names they tried.
    pub per_address_per_minute: u32,
    /// Failures per (address, name) per minute.
    pub per_name_from_address_per_minute: u32,
    /// Failures per name per hour from all addresses together (dashboard accounts only).
    pub per_name_per_hour: Option<u32>,
}

/// Which quota blocked an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Too many failures from this address.
    Address,
    /// Too many failures for this name from this address.
    NameFromAddress,
    /// Too many failures for this name from everywhere (the accounts' backstop).
    Name,
}

impl Scope {
    /// The end of "too many failed logins ...": what is blocked.
    pub fn describe(self) -> &'static str {
        match self {
            Scope::Address => "from this address",
            Scope::NameFromAddress => "for this login from this address",
            Scope::Name => "for this account (from any address)",
        }
    }
}

/// Why and for how long attempts are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub scope: Scope,
    pub retry_after: Duration,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "too many failed logins {}; try again in {} s",
            self.scope.describe(),
            self.retry_after_secs()
        )
    }
}

impl Blocked {
    /// Whole seconds to wait, at least one (for `Retry-After` and messages).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs().max(1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    NameFromAddress(IpAddr, String),
    Name(String),
}

impl Key {
    fn scope(&self) -> Scope {
        match self {
            Key::Address(_) => Scope::Address,
            Key::NameFromAddress(..) => Scope::NameFromAddress,
            Key::Name(_) => Scope::Name,
        }
    }
}

/// Keys tracked before idle ones are first swept on a failure; after a sweep the next one comes when the
/// count has doubled, so sweeping stays amortised O(1) per failure (housekeeping also sweeps).
const SWEEP_ABOVE: usize = 4096;

pub struct AuthGuard<C: Clock = DefaultClock> {
    clock: C,
    per_address: Keyed<IpAddr, C>,
    per_name_from_address: Keyed<(IpAddr, String), C>,
    per_name: Option<Keyed<String, C>>,
    blocked: Mutex<HashMap<Key, C::Instant>>,
    next_sweep: AtomicUsize,
}

impl AuthGuard {
    pub fn new(quotas: Quotas) -> Self {
        Self::with_clock(quotas, DefaultClock::default())
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl<C: Clock + Clone> AuthGuard<C> {
    pub fn with_clock(quotas: Quotas, clock: C) -> Self {
        Self {
            per_address: RateLimiter::dashmap_with_clock(
                per_minute(quotas.per_address_per_minute),
                clock.clone(),
            ),
            per_name_from_address: RateLimiter::dashmap_with_clock(
                per_minute(quotas.per_name_from_address_per_minute),
                clock.clone(),
            ),
            per_name: quotas.per_name_per_hour.map(|n| {
                RateLimiter::dashmap_with_clock(
                    Quota::per_hour(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)),
                    clock.clone(),
                )
            }),
            blocked: Mutex::new(HashMap::new()),
            next_sweep: AtomicUsize::new(SWEEP_ABOVE),
            clock,
        }
    }

    fn name(name: &str) -> String {
        name.trim().to_lowercase()
    }

    fn keys(&self, address: IpAddr, name: &str) -> Vec<Key> {
        let name = Self::name(name);
        let mut keys = vec![
            Key::Address(address),
            Key::NameFromAddress(address, name.clone()),
        ];
        if self.per_name.is_some() {
            keys.push(Key::Name(name));
        }
        keys
    }

    fn blocked(&self) -> std::sync::MutexGuard<'_, HashMap<Key, C::Instant>> {
        self.blocked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an attempt for `name` from `address` is to be refused unchecked now, and why.
    pub fn check(&self, address: IpAddr, name: &str) -> Result<(), Blocked> {
        let now = self.clock.now();
        let blocked = self.blocked();
        for key in self.keys(address, name) {
            if let Some(until) = blocked.get(&key)
                && *until > now
            {
                return Err(Blocked {
                    scope: key.scope(),
                    retry_after: until.duration_since(now).into(),
                });
            }
        }
        Ok(())
    }

    /// Records a failed attempt; blocks each key whose quota it exceeded.
    pub fn failed(&self, address: IpAddr, name: &str) {
        let name = Self::name(name);
        let mut exceeded = Vec::new();
        if let Err(until) = self.per_address.check_key(&address) {
            exceeded.push((Key::Address(address), until.earliest_possible()));
        }
        if let Err(until) = self
            .per_name_from_address
            .check_key(&(address, name.clone()))
        {
            exceeded.push((
                Key::NameFromAddress(address, name.clone()),
                until.earliest_possible(),
            ));
        }
        if let Some(per_name) = &self.per_name
            && let Err(until) = per_name.check_key(&name)
        {
            exceeded.push((Key::Name(name.clone()), until.earliest_possible()));
        }
        if !exceeded.is_empty() {
            let mut blocked = self.blocked();
            for (key, until) in exceeded {
                tracing::warn!(%address, name, scope = ?key.scope(), "too many failed logins; blocked");
                blocked.insert(key, until);
            }
        }
        if self.tracked() > self.next_sweep.load(Ordering::Relaxed) {
            self.forget_idle();
        }
    }

    /// Keys held in memory (quota states and blocks).
    pub fn tracked(&self) -> usize {
        self.per_address.len()
            + self.per_name_from_address.len()
            + self.per_name.as_ref().map_or(0, |l| l.len())
            + self.blocked().len()
    }

    /// Forgets keys whose quota has fully recovered and blocks that have run out, so memory stays bounded
    /// under a spray of addresses or names.
    pub fn forget_idle(&self) {
        self.per_address.retain_recent();
        self.per_address.shrink_to_fit();
        self.per_name_from_address.retain_recent();
        self.per_name_from_address.shrink_to_fit();
        if let Some(l) = &self.per_name {
            l.retain_recent();
            l.shrink_to_fit();
        }
        let now = self.clock.now();
        let mut blocked = self.blocked();
        blocked.retain(|_, until| *until > now);
        blocked.shrink_to_fit();
        drop(blocked);
        self.next_sweep
            .store((self.tracked() * 2).max(SWEEP_ABOVE), Ordering::Relaxed);
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
    use governor::clock::FakeRelativeClock;

    const DEVICE: Quotas = Quotas {
        per_address_per_minute: 100,
        per_name_from_address_per_minute: 3,
        per_name_per_hour: None,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn failures_block_the_name_from_that_address_only() {
        let guard = AuthGuard::new(DEVICE);
        let (a, b) = (ip("192.0.2.7"), ip("198.51.100.9"));
        for _ in 0..3 {
            guard.failed(a, "dev");
            assert!(guard.check(a, "dev").is_ok());
        }
        guard.failed(a, "dev");
        assert_eq!(
            guard.check(a, "DEV").unwrap_err().scope,
            Scope::NameFromAddress
        );
        assert!(
            guard.check(a, "other").is_ok(),
            "other names from the same address"
        );
        assert!(
            guard.check(b, "dev").is_ok(),
            "the same name from another address is never blocked by a's failures"
        );
    }

    #[test]
    fn an_address_trying_many_names_is_blocked() {
        let guard = AuthGuard::new(Quotas {
            per_address_per_minute: 5,
            ..DEVICE
        });
        let a = ip("192.0.2.7");
        for i in 0..6 {
            guard.failed(a, &format!("name{i}"));
        }
        let blocked = guard.check(a, "fresh").unwrap_err();
        assert_eq!(blocked.scope, Scope::Address);
        assert!(blocked.retry_after > Duration::ZERO);
        assert!(guard.check(ip("192.0.2.8"), "fresh").is_ok());
    }

    #[test]
    fn accounts_have_a_slow_backstop_across_addresses() {
        let guard = AuthGuard::new(Quotas {
            per_name_per_hour: Some(20),
            ..DEVICE
        });
        // Eleven failures from one address block that address's attempts at the account, not the owner's.
        for _ in 0..11 {
            guard.failed(ip("192.0.2.1"), "eve@example.com");
        }
        assert!(guard.check(ip("192.0.2.1"), "eve@example.com").is_err());
        assert!(guard.check(ip("192.0.2.2"), "eve@example.com").is_ok());
        // Guessing spread over many addresses runs into the hourly backstop.
        for i in 0..10 {
            guard.failed(IpAddr::from([10, 0, 0, i]), "eve@example.com");
        }
        let blocked = guard.check(ip("192.0.2.2"), "Eve@example.com").unwrap_err();
        assert_eq!(blocked.scope, Scope::Name);
    }

    #[test]
    fn memory_stays_bounded_under_rotating_addresses() {
        let clock = FakeRelativeClock::default();
        let guard = AuthGuard::with_clock(DEVICE, clock.clone());
        let mut most = 0;
        for i in 0..100_000u32 {
            guard.failed(IpAddr::from(i.to_be_bytes()), "dev");
            most = most.max(guard.tracked());
            // A hundred failures a second, each from a new address: one failure is forgotten within 20 s.
            clock.advance(Duration::from_millis(10));
        }
        // Without sweeping this would be 200,000 keys; with it, about twice what the last minute left.
        assert!(most < 4 * SWEEP_ABOVE, "tracked {most} keys");
        clock.advance(Duration::from_secs(60));
        guard.forget_idle();
        assert_eq!(guard.tracked(), 0);
    }

    #[test]
    fn blocks_run_out() {
        let clock = FakeRelativeClock::default();
        let guard = AuthGuard::with_clock(DEVICE, clock.clone());
        let a = ip("192.0.2.7");
        for _ in 0..4 {
            guard.failed(a, "dev");
        }
        let blocked = guard.check(a, "dev").unwrap_err();
        clock.advance(blocked.retry_after);
        assert!(guard.check(a, "dev").is_ok());
    }
}
