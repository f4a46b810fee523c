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
use std::collections::{BTreeMap, HashSet};

/// The most events one `/v1/events` request may carry.
pub const MAX_EVENTS: usize = 1000;

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
    let at = DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| ValidationError::new(name.clone(), "must be an RFC 3339 time"))?;
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
    let axum::Json(request) = axum::Json::<EventsBody>::from_bytes(body)?;
    if request.events.is_empty() || request.events.len() > MAX_EVENTS {
        let message = format!("must hold 1 to {MAX_EVENTS} events");
        return Err(ApiError::invalid(vec![ValidationError::new(
            "events", message,
        )]));
    }
    let mut errors = Vec::new();
    let mut accepted = Vec::with_capacity(request.events.len());
    let mut seen = HashSet::new();
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
                if seen.insert(id.clone()) {
                    accepted.push(UsageEvent {
                        id,
                        org_id: org_id.clone(),
                        key_id: key_id.clone(),
                        meter,
                        quantity,
                        timestamp,
                        properties: event.properties,
                    });
                }
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
    Ok(accepted)
}

/// The total quantity per meter of `events`, by meter name: what the request counts against
/// rate limits and quotas.
pub fn usage_by_meter(events: &[UsageEvent]) -> Vec<(String, u64)> {
    let mut usage: BTreeMap<String, u64> = BTreeMap::new();
    for event in events {
        *usage.entry(event.meter.clone()).or_default() += event.quantity;
    }
    usage.into_iter().collect()
}
