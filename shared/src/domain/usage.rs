//! Usage events: the unit of metering, and what billing turns into invoices.

use super::{ApiKeyId, OrgId, ValidationError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The meter a request counts against when it names none.
pub const DEFAULT_METER: &str = "requests";

/// One metered use: `quantity` units of `meter` by `key_id` of `org_id`. Its `id` makes it
/// idempotent: the same `(org_id, id)` is counted once, however often it is delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// Client-chosen (or generated) id, unique per org.
    pub id: String,
    /// The org billed.
    pub org_id: OrgId,
    /// The key that authenticated it.
    pub key_id: ApiKeyId,
    /// What is measured (`requests`, `tokens`, `gb_stored` ...).
    pub meter: String,
    /// How many units (a positive integer: bill in small units).
    pub quantity: u64,
    /// When the use happened.
    pub timestamp: DateTime<Utc>,
    /// Free-form attributes for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
}

/// Checks an event id: 1 to 128 printable ASCII characters.
pub fn parse_event_id(field: &'static str, raw: &str) -> Result<String, ValidationError> {
    let ok = !raw.is_empty() && raw.len() <= 128 && raw.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| raw.to_owned())
        .ok_or_else(|| ValidationError::new(field, "must be 1 to 128 printable ASCII characters"))
}

/// Checks a meter name: 1 to 64 of `a-z 0-9 _ . -`, starting with a letter.
pub fn parse_meter(field: &'static str, raw: &str) -> Result<String, ValidationError> {
    let ok = (1..=64).contains(&raw.len())
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    ok.then(|| raw.to_owned()).ok_or_else(|| {
        ValidationError::new(
            field,
            "must be 1 to 64 of a-z, 0-9, _ . - starting with a letter",
        )
    })
}

/// Checks a quantity: a positive integer.
pub fn parse_quantity(field: &'static str, raw: i64) -> Result<u64, ValidationError> {
    u64::try_from(raw)
        .ok()
        .filter(|q| *q > 0)
        .ok_or_else(|| ValidationError::new(field, "must be a positive integer"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_quantities_saturate_instead_of_wrapping() {
        let event = super::UsageEvent {
            id: "e".into(),
            org_id: crate::domain::OrgId::generate(),
            key_id: crate::domain::ApiKeyId::generate(),
            meter: "tokens".into(),
            quantity: i64::MAX as u64,
            timestamp: chrono::Utc::now(),
            properties: None,
        };
        let counters = super::sum_counters([&event, &event, &event]);
        assert_eq!(counters.len(), 3);
        assert!(counters.values().all(|&total| total == u64::MAX));
    }

    use super::*;

    #[test]
    fn ids_meters_and_quantities_are_checked() {
        assert!(parse_event_id("id", "evt-1").is_ok());
        assert!(parse_event_id("id", "").is_err());
        assert!(parse_event_id("id", "has space").is_err());
        assert!(parse_event_id("id", &"x".repeat(129)).is_err());
        assert!(parse_meter("meter", "api.calls_v2").is_ok());
        assert!(parse_meter("meter", "Requests").is_err());
        assert!(parse_meter("meter", "1st").is_err());
        assert_eq!(parse_quantity("quantity", 5), Ok(5));
        assert!(parse_quantity("quantity", 0).is_err());
        assert!(parse_quantity("quantity", -1).is_err());
    }
}

/// The periods usage is counted in (UTC).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// Clock hours.
    Hour,
    /// Calendar days.
    Day,
    /// Calendar months.
    Month,
}

impl Granularity {
    /// Every granularity, each event counts once in each.
    pub const ALL: [Self; 3] = [Self::Hour, Self::Day, Self::Month];

    /// The name used in storage keys and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// The start of the period containing `at`.
    pub fn period_start(self, at: DateTime<Utc>) -> DateTime<Utc> {
        use chrono::{Datelike, TimeZone, Timelike};
        let (y, m, d, h) = match self {
            Self::Hour => (at.year(), at.month(), at.day(), at.hour()),
            Self::Day => (at.year(), at.month(), at.day(), 0),
            Self::Month => (at.year(), at.month(), 1, 0),
        };
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .unwrap_or(at)
    }
}

impl std::str::FromStr for Granularity {
    type Err = ValidationError;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            "month" => Ok(Self::Month),
            _ => Err(ValidationError::new(
                "granularity",
                "must be hour, day or month",
            )),
        }
    }
}

/// One counter: `quantity` of `meter` in the period starting `period_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsagePoint {
    /// When the period starts.
    #[serde(with = "crate::time_format")]
    pub period_start: DateTime<Utc>,
    /// The meter.
    pub meter: String,
    /// Units counted.
    pub quantity: u64,
}

/// Identifies one usage counter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CounterKey {
    /// The org.
    pub org_id: OrgId,
    /// The meter.
    pub meter: String,
    /// The granularity.
    pub granularity: Granularity,
    /// The period's start.
    pub period_start: DateTime<Utc>,
}

/// Sums events into their hour, day and month counters: the in-memory step before one write
/// per counter, shared by every backend and every consumer.
pub fn sum_counters<'a>(
    events: impl IntoIterator<Item = &'a UsageEvent>,
) -> std::collections::BTreeMap<CounterKey, u64> {
    let mut counters = std::collections::BTreeMap::new();
    for event in events {
        for granularity in Granularity::ALL {
            let key = CounterKey {
                org_id: event.org_id.clone(),
                meter: event.meter.clone(),
                granularity,
                period_start: granularity.period_start(event.timestamp),
            };
            // Saturating: a counter is stored as at most i64::MAX anyway, and a batch of huge
            // quantities must not wrap (or panic) on its way there.
            let counter = counters.entry(key).or_insert(0u64);
            *counter = counter.saturating_add(event.quantity);
        }
    }
    counters
}

#[cfg(test)]
mod counter_tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn periods_and_sums() {
        let at = Utc
            .with_ymd_and_hms(2026, 11, 24, 17, 45, 12)
            .single()
            .expect("t");
        assert_eq!(
            Granularity::Hour.period_start(at).to_rfc3339(),
            "2026-11-24T17:00:00+00:00"
        );
        assert_eq!(
            Granularity::Day.period_start(at).to_rfc3339(),
            "2026-11-24T00:00:00+00:00"
        );
        assert_eq!(
            Granularity::Month.period_start(at).to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        let org = OrgId::generate();
        let event = |minute, quantity| UsageEvent {
            id: format!("e{minute}"),
            org_id: org.clone(),
            key_id: ApiKeyId::generate(),
            meter: "requests".into(),
            quantity,
            timestamp: at + chrono::Duration::minutes(minute),
            properties: None,
        };
        let events = [event(0, 2), event(10, 3), event(20, 5)];
        let counters = sum_counters(&events);
        // 17:45 and 17:55 share an hour; 18:05 starts the next; day and month hold all three.
        let hours: Vec<u64> = counters
            .iter()
            .filter(|(k, _)| k.granularity == Granularity::Hour)
            .map(|(_, q)| *q)
            .collect();
        assert_eq!(hours, [5, 5]);
        let days: u64 = counters
            .iter()
            .filter(|(k, _)| k.granularity == Granularity::Day)
            .map(|(_, q)| *q)
            .sum();
        assert_eq!(days, 10);
    }
}
