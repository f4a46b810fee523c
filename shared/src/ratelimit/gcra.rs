//! The GCRA arithmetic, shared by the in-process limiter and mirrored line for line by the
//! Redis Lua script (`check.lua`).

use super::RateState;

/// One minute in microseconds: the period every `rpm` limit is expressed in. Microseconds keep
/// the per-request cost exact up to the highest limit (1,000,000/min = 60 µs each).
pub const PERIOD_US: i64 = 60_000_000;

/// The outcome of testing one limit at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tested {
    /// Whether the request fits.
    pub allowed: bool,
    /// The TAT to store if every limit allows (microseconds).
    pub new_tat: i64,
    /// The state to report.
    pub state: RateState,
    /// When refused: milliseconds until it would fit.
    pub retry_after_ms: u64,
}

/// Tests a limit of `rpm` requests per minute whose TAT is `tat` (µs, 0 when new) at `now_ms`.
pub fn test(tat: i64, rpm: u32, now_ms: i64) -> Tested {
    let now = now_ms.saturating_mul(1000);
    let rpm = i64::from(rpm.max(1));
    let interval = PERIOD_US / rpm; // integer µs; the Lua script does the same
    let start = tat.max(now);
    let new_tat = start + interval;
    let allowed = new_tat - now <= interval * rpm;
    let horizon = if allowed { new_tat } else { start };
    let remaining = ((interval * rpm - (horizon - now)) / interval).max(0);
    Tested {
        allowed,
        new_tat,
        state: RateState {
            limit: rpm as u32,
            remaining: remaining as u32,
            reset_ms: ((horizon - now).max(0) as u64).div_ceil(1000),
        },
        retry_after_ms: if allowed {
            0
        } else {
            ((new_tat - now - interval * rpm).max(1) as u64).div_ceil(1000)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_exactly_the_limit_then_the_rate() {
        let mut tat = 0;
        let now = 1_000_000;
        for i in 0..100 {
            let t = test(tat, 100, now);
            assert!(t.allowed, "request {i}");
            assert_eq!(t.state.remaining, 99 - i);
            tat = t.new_tat;
        }
        let refused = test(tat, 100, now);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_ms, 600);
        assert!(test(tat, 100, now + 599).allowed.eq(&false));
        assert!(test(tat, 100, now + 600).allowed);
    }

    #[test]
    fn the_highest_limit_keeps_its_precision() {
        let mut tat = 0;
        let mut allowed = 0;
        for _ in 0..1_000_100 {
            let t = test(tat, 1_000_000, 5_000);
            if !t.allowed {
                break;
            }
            tat = t.new_tat;
            allowed += 1;
        }
        assert_eq!(allowed, 1_000_000);
    }
}
