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
