//! One way to write times in JSON: RFC 3339, UTC, millisecond precision (`2026-11-24T17:15:41.123Z`);
//! and one way to read them from a request ([`parse`]).

use crate::domain::ValidationError;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;
use std::borrow::Cow;

/// Reads a time a client sent in `field`: RFC 3339 with any offset, as UTC; anything else is
/// the field's 422.
pub fn parse(
    field: impl Into<Cow<'static, str>>,
    raw: &str,
) -> Result<DateTime<Utc>, ValidationError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| ValidationError::new(field, "must be an RFC 3339 time"))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_any_offset_as_utc_and_names_the_field_otherwise() {
        let at = parse("from", "2026-11-24T18:15:41.123+01:00").expect("valid");
        assert_eq!(
            at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "2026-11-24T17:15:41.123Z"
        );
        for raw in ["2026-11-24", "yesterday", "", "2026-11-24T17:15:41"] {
            let err = parse("from", raw).expect_err(raw);
            assert_eq!(err.field, "from");
        }
    }
}
