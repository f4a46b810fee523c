//! The metering endpoint group: `POST /v1/verify` and `POST /v1/events`, authenticated by
//! `X-API-Key`. The pipeline lives in [`meterline::metering::Metering`]; this crate maps HTTP
//! onto it. The key is checked before the body is read, so a bad key is 401 whatever the body.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use meterline::domain::{
    DEFAULT_METER, UsageEvent, ValidationError, parse_event_id, parse_meter, parse_quantity,
};
use meterline::http::{ApiError, MeterRejection, api_key, metered_headers};
use meterline::metering::{MeteredKey, Metering};
use meterline::{AppState, Config};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The most events one `/v1/events` request may carry.
pub const MAX_EVENTS: usize = 1000;

/// The metering routes, at the same paths as in `template.yaml`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/verify", post(verify))
        .route("/v1/events", post(events))
        .with_state(state)
}

/// Parses an optional JSON body (empty = `None`) with the usual problem answers.
fn body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &Bytes) -> Result<Option<T>, ApiError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: application/json".into(),
        ));
    }
    let axum::Json(value) = axum::Json::<T>::from_bytes(bytes)?;
    Ok(Some(value))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    meter: Option<String>,
    quantity: Option<i64>,
}

async fn verify(
    State(metering): State<Metering>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Response> {
    let key = caller_key(&metering, &headers).await?;
    let request: VerifyBody = body(&headers, &bytes).map_err(problem)?.unwrap_or_default();
    let meter = parse_meter("meter", request.meter.as_deref().unwrap_or(DEFAULT_METER));
    let quantity = parse_quantity("quantity", request.quantity.unwrap_or(1));
    let (Ok(meter), Ok(quantity)) = (meter.clone(), quantity.clone()) else {
        let errors = [meter.err(), quantity.err()]
            .into_iter()
            .flatten()
            .collect();
        return Err(problem(ApiError::invalid(errors)));
    };
    let event = UsageEvent {
        id: format!("evt_{}", ulid::Ulid::new().to_string().to_lowercase()),
        org_id: key.key.org_id.clone(),
        key_id: key.key.id.clone(),
        meter: meter.clone(),
        quantity,
        timestamp: metering.now(),
        properties: None,
    };
    let metered = metering
        .meter(&key, &[(meter, quantity)], &[event])
        .await
        .map_err(reject)?;
    let quota = metered.quota.map(|q| {
        json!({
            "limit": q.limit, "used": q.used, "remaining": q.limit.saturating_sub(q.used),
            "period_end": metered.period_end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    });
    let ratelimit = metered.rate.map(
        |r| json!({"limit": r.limit, "remaining": r.remaining, "reset": r.reset_ms.div_ceil(1000)}),
    );
    let mut response = axum::Json(json!({
        "valid": true,
        "org_id": key.key.org_id,
        "key_id": key.key.id,
        "ratelimit": ratelimit,
        "quota": quota,
    }))
    .into_response();
    metered_headers(response.headers_mut(), &metered);
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsBody {
    events: Vec<EventIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    id: String,
    meter: String,
    quantity: i64,
    timestamp: Option<String>,
    properties: Option<Map<String, Value>>,
}

/// Names a field of the `index`th event, as the client sent it.
fn field(index: usize, name: &str) -> String {
    format!("events[{index}].{name}")
}

/// Events this much inside the lateness window are still accepted at the edge, so one that is
/// accepted here is not refused by billing a moment later for its age.
const LATENESS_MARGIN: chrono::Duration = chrono::Duration::hours(1);

/// The times an event may carry: within billing's window, so what is accepted here is counted
/// (an event billing would refuse is a 422 now, not a dead letter later).
#[derive(Clone, Copy)]
struct Window {
    earliest: DateTime<Utc>,
    latest: DateTime<Utc>,
}

impl Window {
    fn of(config: &Config, now: DateTime<Utc>) -> Self {
        let lateness =
            chrono::Duration::from_std(config.usage_lateness).unwrap_or(chrono::Duration::days(7));
        let skew = chrono::Duration::from_std(config.usage_future_skew)
            .unwrap_or(chrono::Duration::minutes(5));
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
    window: Window,
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

async fn events(
    State(metering): State<Metering>,
    State(config): State<Arc<Config>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Response> {
    let key = caller_key(&metering, &headers).await?;
    let Some(request) = body::<EventsBody>(&headers, &bytes).map_err(problem)? else {
        return Err(problem(ApiError::invalid(vec![ValidationError::new(
            "events",
            "is required",
        )])));
    };
    if request.events.is_empty() || request.events.len() > MAX_EVENTS {
        let message = format!("must hold 1 to {MAX_EVENTS} events");
        return Err(problem(ApiError::invalid(vec![ValidationError::new(
            "events", message,
        )])));
    }
    let now = metering.now();
    let window = Window::of(&config, now);
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
                        org_id: key.key.org_id.clone(),
                        key_id: key.key.id.clone(),
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
        return Err(problem(ApiError::invalid(errors)));
    }
    let mut usage: BTreeMap<String, u64> = BTreeMap::new();
    for event in &accepted {
        *usage.entry(event.meter.clone()).or_default() += event.quantity;
    }
    let usage: Vec<(String, u64)> = usage.into_iter().collect();
    let metered = metering
        .meter(&key, &usage, &accepted)
        .await
        .map_err(reject)?;
    let mut response = (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "accepted": accepted.len() })),
    )
        .into_response();
    metered_headers(response.headers_mut(), &metered);
    Ok(response)
}

/// The key in `X-API-Key`, authenticated: the first thing either endpoint does.
async fn caller_key(metering: &Metering, headers: &HeaderMap) -> Result<Arc<MeteredKey>, Response> {
    let presented = api_key(headers).map_err(reject)?;
    metering.authenticate(presented).await.map_err(reject)
}

fn reject(err: meterline::metering::MeterError) -> Response {
    MeterRejection(err).into_response()
}

fn problem(err: ApiError) -> Response {
    err.into_response()
}
