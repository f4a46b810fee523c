//! Per-client-IP throttling of the auth endpoints (`AUTH_IP_LIMIT_PER_MIN`), so one address
//! cannot spray passwords across many accounts. GCRA (via `governor`): smooth, no burst at a
//! window boundary. It is per process: under Lambda each warm instance counts on its own, which
//! bounds a sprayer per instance; the account lockout in the store is the global guard.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Forget idle addresses every this many checks, so memory stays bounded.
const SWEEP_EVERY: u64 = 4096;

/// A keyed GCRA limiter, one bucket per client IP. Cheap to clone.
#[derive(Clone)]
pub struct IpRateLimiter {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    checks: Arc<AtomicU64>,
    per_minute: u32,
}

impl IpRateLimiter {
    /// `per_minute` requests per address per minute; `None` when 0 (throttling off).
    pub fn per_minute(per_minute: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_minute)?;
        Some(Self {
            limiter: Arc::new(RateLimiter::keyed(Quota::per_minute(rate))),
            checks: Arc::new(AtomicU64::new(0)),
            per_minute,
        })
    }

    /// The configured rate.
    pub fn limit(&self) -> u32 {
        self.per_minute
    }

    /// `Ok` to serve; `Err(wait)` when `ip` must wait before its next request.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_allowance() {
        let limiter = IpRateLimiter::per_minute(3).expect("enabled");
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).expect_err("fourth in a minute");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20));
        assert!(limiter.check(b).is_ok());
    }

    #[test]
    fn zero_turns_it_off() {
        assert!(IpRateLimiter::per_minute(0).is_none());
    }
}
