//! The `POST /v1/events` body: JSON in, checked [`UsageEvent`]s out. Pure (no I/O, the time is
//! passed in), so the HTTP handler stays thin and the decoder can be fuzzed on its own.
//!
//! What is accepted here is what billing counts: ids, meters and quantities follow the domain
//! rules, and every time falls within billing's lateness window.

use crate::Config;
use crate::domain::{
    ApiKeyId, OrgId, UsageEvent, ValidationError, parse_event_id, parse_meter, parse_quantity,
};
use crate::http::ApiError;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The most events one `/v1/events` request may carry.
pub const MAX_EVENTS: usize = 1000;

/// The most bytes one event may take serialized (as it travels to billing): well within an SQS
/// message (256 KiB) and a DynamoDB item (400 KiB), whatever its `properties`.
pub const MAX_EVENT_BYTES: usize = 8 * 1024;

/// The body of `POST /v1/events` (public for the OpenAPI document).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsBody {
    /// 1 to 1000 events.
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<EventIn>,
}

/// One usage event as a client sends it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// The client's id for the event: the same id is counted once, however often it is sent.
    #[schema(pattern = "^[!-~]{1,128}$")]
    id: String,
    /// What was used.
    #[schema(pattern = "^[a-z][a-z0-9_.-]{0,63}$")]
    meter: String,
    /// How much of it.
    #[schema(minimum = 1)]
    quantity: i64,
    /// When it happened (RFC 3339); now when omitted. Must be within the lateness window.
    #[schema(format = DateTime)]
    timestamp: Option<String>,
    /// Free-form attributes kept with the event.
    properties: Option<Map<String, Value>>,
}

/// The most one request may count of one meter: the largest single quantity (`i64::MAX`), so
/// a request's usage is representable wherever one event's quantity is (store columns are
/// `BIGINT`), and summing it never overflows.
pub const MAX_METER_TOTAL: u64 = i64::MAX.unsigned_abs();

/// Names a field of the `index`th event, as the client sent it.
fn field(index: usize, name: &str) -> String {
    format!("events[{index}].{name}")
}

/// Events this much inside the lateness window are still accepted at the edge, so one that is
/// accepted here is not refused by billing a moment later for its age.
const LATENESS_MARGIN: Duration = Duration::hours(1);

/// The times an event may carry: within billing's window, so what is accepted here is counted
/// (an event billing would refuse is a 422 now, not a dead letter later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventWindow {
    /// The oldest time accepted.
    pub earliest: DateTime<Utc>,
    /// The latest time accepted (a little ahead of `now`, for clock skew).
    pub latest: DateTime<Utc>,
}

impl EventWindow {
    /// The window at `now` under the configured lateness and future skew.
    pub fn of(config: &Config, now: DateTime<Utc>) -> Self {
        let lateness = Duration::from_std(config.usage_lateness).unwrap_or(Duration::days(7));
        let skew = Duration::from_std(config.usage_future_skew).unwrap_or(Duration::minutes(5));
        let lateness = (lateness - LATENESS_MARGIN).max(lateness / 2);
        Self {
            earliest: now - lateness,
            latest: now + skew,
        }
    }
}

fn timestamp(
    index: usize,
    raw: Option<&str>,
    now: DateTime<Utc>,
    window: EventWindow,
) -> Result<DateTime<Utc>, ValidationError> {
    let Some(raw) = raw else { return Ok(now) };
    let name = field(index, "timestamp");
    let at = crate::time_format::parse(name.clone(), raw)?;
    if at < window.earliest {
        return Err(ValidationError::new(
            name,
            "is older than the lateness window (USAGE_LATENESS_SECS); it can no longer be billed",
        ));
    }
    if at > window.latest {
        return Err(ValidationError::new(name, "is in the future"));
    }
    Ok(at)
}

/// Decodes a `/v1/events` body (its content type already checked) into the events of `org_id`
/// sent with `key_id`, at `now`: 1 to [`MAX_EVENTS`] events, each valid, the same `id` twice
/// counted once (the first wins). An empty body is a 422 (`events` is required), bad JSON is
/// the usual 400/422, and invalid events are one 422 naming every `events[i].field`.
pub fn decode_events(
    body: &[u8],
    org_id: &OrgId,
    key_id: &ApiKeyId,
    now: DateTime<Utc>,
    window: EventWindow,
) -> Result<Vec<UsageEvent>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid(vec![ValidationError::new(
            "events",
            "is required",
        )]));
    }
    let request: EventsBody = crate::http::json_object(body)?;
    if request.events.is_empty() || request.events.len() > MAX_EVENTS {
        let message = format!("must hold 1 to {MAX_EVENTS} events");
        return Err(ApiError::invalid(vec![ValidationError::new(
            "events", message,
        )]));
    }
    let mut errors = Vec::new();
    let mut accepted = Vec::with_capacity(request.events.len());
    let mut seen = HashSet::new();
    let mut totals: HashMap<String, u64> = HashMap::new();
    let mut too_large = Vec::new();
    for (index, event) in request.events.into_iter().enumerate() {
        let fields = (
            parse_event_id("id", &event.id),
            parse_meter("meter", &event.meter),
            parse_quantity("quantity", event.quantity),
            timestamp(index, event.timestamp.as_deref(), now, window),
        );
        match fields {
            (Ok(id), Ok(meter), Ok(quantity), Ok(timestamp)) => {
                // The same id twice in one request is one event.
                if !seen.insert(id.clone()) {
                    continue;
                }
                let total = totals.entry(meter.clone()).or_default();
                match total
                    .checked_add(quantity)
                    .filter(|t| *t <= MAX_METER_TOTAL)
                {
                    Some(sum) => *total = sum,
                    None => {
                        errors.push(ValidationError::new(
                            field(index, "quantity"),
                            format!(
                                "brings this request's total of `{meter}` past \
                                 {MAX_METER_TOTAL}; send the rest in another request"
                            ),
                        ));
                        continue;
                    }
                }
                let event = UsageEvent {
                    id,
                    org_id: org_id.clone(),
                    key_id: key_id.clone(),
                    meter,
                    quantity,
                    timestamp,
                    properties: event.properties,
                };
                let size = serde_json::to_vec(&event).map_or(usize::MAX, |json| json.len());
                if size > MAX_EVENT_BYTES {
                    too_large.push(format!("events[{index}] ({size} bytes)"));
                }
                accepted.push(event);
            }
            (id, meter, quantity, timestamp) => {
                let problems = [id.err(), meter.err(), quantity.err()]
                    .into_iter()
                    .flatten();
                errors.extend(
                    problems.map(|e| ValidationError::new(field(index, &e.field), e.message)),
                );
                errors.extend(timestamp.err());
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    if !too_large.is_empty() {
        return Err(ApiError::Unprocessable {
            code: "event_too_large",
            detail: format!(
                "an event may take at most {MAX_EVENT_BYTES} bytes serialized; too large: {}",
                too_large.join(", ")
            ),
        });
    }
    Ok(accepted)
}

/// The total quantity per meter of `events`, by meter name: what the request counts against
/// rate limits and quotas. Exact for what [`decode_events`] accepts (each total is at most
/// [`MAX_METER_TOTAL`]); saturates rather than overflowing for any other events.
pub fn usage_by_meter(events: &[UsageEvent]) -> Vec<(String, u64)> {
    let mut usage: BTreeMap<String, u64> = BTreeMap::new();
    for event in events {
        let total = usage.entry(event.meter.clone()).or_default();
        *total = total.saturating_add(event.quantity);
    }
    usage.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_717_200_000, 0).single().expect("time")
    }

    fn decode(body: &serde_json::Value) -> Result<Vec<UsageEvent>, ApiError> {
        let window = EventWindow {
            earliest: now() - Duration::days(6),
            latest: now() + Duration::minutes(5),
        };
        let body = serde_json::to_vec(body).expect("json");
        decode_events(
            &body,
            &OrgId::generate(),
            &ApiKeyId::generate(),
            now(),
            window,
        )
    }

    fn fields(err: ApiError) -> Vec<String> {
        match err {
            ApiError::Validation { errors, .. } => {
                errors.into_iter().map(|e| e.field.into_owned()).collect()
            }
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn valid_events_are_decoded_once_per_id() {
        let events = decode(&serde_json::json!({"events": [
            {"id": "a", "meter": "tokens", "quantity": 3, "properties": {"k": 1}},
            {"id": "b", "meter": "tokens", "quantity": 4, "timestamp": "2024-05-31T00:00:00Z"},
            {"id": "a", "meter": "images", "quantity": 9},
        ]}))
        .expect("valid");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].timestamp, now());
        assert_eq!(usage_by_meter(&events), [("tokens".to_owned(), 7)]);
    }

    #[test]
    fn each_bad_field_is_named() {
        let err = decode(&serde_json::json!({"events": [
            {"id": "ok", "meter": "tokens", "quantity": 1},
            {"id": "", "meter": "Tokens", "quantity": 0, "timestamp": "2024-01-01T00:00:00Z"},
        ]}))
        .expect_err("invalid");
        assert_eq!(
            fields(err),
            [
                "events[1].id",
                "events[1].meter",
                "events[1].quantity",
                "events[1].timestamp"
            ]
        );
    }

    /// Found writing the `events_batch` fuzz target's usage property (the target crashes on it;
    /// the fuzzer itself had not reached it in 10 minutes): three events of `i64::MAX` of one
    /// meter overflowed the per-meter sum, a panic (500) in debug builds and a wrapped, far too
    /// small quota charge in release ones.
    #[test]
    fn a_meter_total_past_i64_max_is_refused_not_overflowed() {
        let max = i64::MAX;
        let err = decode(&serde_json::json!({"events": [
            {"id": "a", "meter": "tokens", "quantity": max},
            {"id": "b", "meter": "tokens", "quantity": max},
            {"id": "c", "meter": "tokens", "quantity": max},
            {"id": "d", "meter": "images", "quantity": max},
        ]}))
        .expect_err("over the total");
        assert_eq!(fields(err), ["events[1].quantity", "events[2].quantity"]);
        // One meter at the limit, and a repeated id (counted once), are fine.
        let events = decode(&serde_json::json!({"events": [
            {"id": "a", "meter": "tokens", "quantity": max - 1},
            {"id": "a", "meter": "tokens", "quantity": max},
            {"id": "b", "meter": "tokens", "quantity": 1},
            {"id": "c", "meter": "images", "quantity": max},
        ]}))
        .expect("at the limit");
        assert_eq!(
            usage_by_meter(&events),
            [
                ("images".to_owned(), MAX_METER_TOTAL),
                ("tokens".to_owned(), MAX_METER_TOTAL)
            ]
        );
        // Summing events that did not come through the decoder saturates.
        let huge = UsageEvent {
            quantity: u64::MAX,
            ..events[0].clone()
        };
        assert_eq!(
            usage_by_meter(&[huge.clone(), huge]),
            [("tokens".to_owned(), u64::MAX)]
        );
    }
}
