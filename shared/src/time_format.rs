//! One way to write times in JSON: RFC 3339, UTC, millisecond precision (`2026-11-24T17:15:41.123Z`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Serialises a time in Meterline's one JSON time format.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The same format for optional times (`null` when absent).
pub mod option {
    use super::*;

    /// Serialises `Some(time)` like [`super::serialize`], `None` as `null`.
    pub fn serialize<S: Serializer>(
        at: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::serialize(at, serializer),
            None => serializer.serialize_none(),
        }
    }
}
