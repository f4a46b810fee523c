//! Time as a dependency, so tests can move it (token expiry, lockout windows) without sleeping.

use chrono::{DateTime, Duration, Utc};
use std::sync::Mutex;

/// Where the current time comes from.
pub trait Clock: Send + Sync + 'static {
    /// The current time, UTC.
    fn now(&self) -> DateTime<Utc>;

    /// The current time at millisecond precision: what every store keeps, so a value written
    /// and read back compares equal to the one the service returned.
    fn now_millis(&self) -> DateTime<Utc> {
        let now = self.now();
        DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
    }
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to: for tests of time-dependent rules.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(start))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
