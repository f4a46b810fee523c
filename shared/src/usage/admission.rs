//! Which events billing accepts: well-formed, and within the lateness window. An event that
//! is too old (its period may be invoiced already) or from the future is refused with a
//! reason, never silently counted.

use crate::domain::{UsageEvent, parse_event_id, parse_meter};
use chrono::{DateTime, Duration, Utc};

/// The time window events must fall in.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// How old an event may be.
    pub lateness: Duration,
    /// How far ahead of our clock an event may be.
    pub future_skew: Duration,
}

impl Admission {
    /// `Ok` to count `event` at `now`, or why not.
    pub fn check(&self, event: &UsageEvent, now: DateTime<Utc>) -> Result<(), String> {
        parse_event_id("id", &event.id).map_err(|e| e.to_string())?;
        parse_meter("meter", &event.meter).map_err(|e| e.to_string())?;
        if event.quantity == 0 {
            return Err("quantity: must be a positive integer".into());
        }
        if event.timestamp < now - self.lateness {
            return Err(format!(
                "timestamp {} is older than the lateness window",
                event.timestamp
            ));
        }
        if event.timestamp > now + self.future_skew {
            return Err(format!("timestamp {} is in the future", event.timestamp));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ApiKeyId, OrgId};

    #[test]
    fn the_window_and_the_shape_are_enforced() {
        let now = Utc::now();
        let admission = Admission {
            lateness: Duration::days(7),
            future_skew: Duration::minutes(5),
        };
        let event = |timestamp, quantity| UsageEvent {
            id: "e".into(),
            org_id: OrgId::generate(),
            key_id: ApiKeyId::generate(),
            meter: "requests".into(),
            quantity,
            timestamp,
            properties: None,
        };
        assert!(
            admission
                .check(&event(now - Duration::days(6), 1), now)
                .is_ok()
        );
        assert!(
            admission
                .check(&event(now - Duration::days(8), 1), now)
                .is_err()
        );
        assert!(
            admission
                .check(&event(now + Duration::minutes(4), 1), now)
                .is_ok()
        );
        assert!(
            admission
                .check(&event(now + Duration::minutes(6), 1), now)
                .is_err()
        );
        assert!(admission.check(&event(now, 0), now).is_err());
    }
}
