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
use meterline::domain::{ApiKeyId, OrgId, TeamId};
use meterline::domain::{DEFAULT_METER, UsageEvent, parse_meter, parse_quantity};
use meterline::http::Problem;
use meterline::http::{ApiError, MeterRejection, api_key, metered_headers};
use meterline::metering::{MeteredKey, Metering};
use meterline::usage::batch::EventsBody;
use meterline::usage::batch::{EventWindow, decode_events};
use meterline::{AppState, Config};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};

/// The most events one `/v1/events` request may carry (the decoder lives in the shared crate).
pub use meterline::usage::MAX_EVENTS;

#[derive(OpenApi)]
#[openapi(paths(verify, events))]
struct Api;

/// This group's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Api::openapi()
}

/// The metering routes, at the same paths as in `template.yaml`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/verify", post(verify))
        .route("/v1/events", post(events))
        .with_state(state)
}

/// A body must say it is JSON (`application/json`, any parameters).
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: application/json".into(),
        ))
    }
}

/// Parses an optional JSON body (empty = `None`) with the usual problem answers.
fn body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &Bytes) -> Result<Option<T>, ApiError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    require_json(headers)?;
    Ok(Some(meterline::http::json_object(bytes)?))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    /// What the request uses; `requests` when omitted.
    #[schema(pattern = "^[a-z][a-z0-9_.-]{0,63}$")]
    meter: Option<String>,
    /// How much of it; 1 when omitted.
    #[schema(minimum = 1)]
    quantity: Option<i64>,
}

/// The key's per-minute limit after this request.
#[derive(Serialize, ToSchema)]
struct RateView {
    limit: u32,
    remaining: u32,
    /// Seconds until the window is full again.
    reset: u64,
}

/// The meter's monthly quota after this request.
#[derive(Serialize, ToSchema)]
struct QuotaView {
    limit: u64,
    used: u64,
    remaining: u64,
    #[serde(with = "meterline::time_format")]
    period_end: DateTime<Utc>,
}

/// A verified key: whose it is and what it has left.
#[derive(Serialize, ToSchema)]
struct Verified {
    /// Always `true` (a refused key is a problem answer).
    valid: bool,
    org_id: OrgId,
    key_id: ApiKeyId,
    /// The team the key is scoped to; `null` for an org-wide key.
    team_id: Option<TeamId>,
    /// `null` when the limiter is failing open.
    ratelimit: Option<RateView>,
    /// `null` when the meter has no quota.
    quota: Option<QuotaView>,
}

/// How many events of the batch were counted now, and how many had been counted before.
#[derive(Serialize, ToSchema)]
struct Accepted {
    /// Events counted now (repeated ids within the batch count once).
    accepted: usize,
    /// Events whose id was counted before, within the dedup window (24 h by default): answered,
    /// but spending no quota again.
    duplicates: usize,
}

/// Checks a key and counts one use (of `quantity` units of `meter`) against its limits and
/// quotas, atomically; the usage event goes to billing.
#[utoipa::path(post, path = "/v1/verify", tag = "metering", security(("api_key" = [])),
    request_body(content = Option<VerifyBody>, description = "Optional; `{}` or no body counts \
        one `requests`"),
    responses(
        (status = 200, description = "Allowed and counted", body = Verified),
        (status = 401, description = "`invalid_api_key` (missing or unknown), `api_key_revoked` or \
            `api_key_expired`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (per key or per org) or `quota_exceeded` \
            (the meter's monthly quota); see `Retry-After` and the rate-limit headers",
            body = Problem, content_type = "application/problem+json", headers(
                ("retry-after" = u64, description = "Seconds until a retry can succeed"),
                ("ratelimit-limit" = u64, description = "Requests allowed per minute"),
                ("ratelimit-remaining" = u64, description = "Requests left in the window"),
                ("ratelimit-reset" = u64, description = "Seconds until the window is full again"),
            )),
        (status = 422, description = "`validation_failed` or `too_many_meters` (the org's \
            `MAX_METERS_PER_ORG`); nothing counted", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "The limiter (fail mode `closed`), the usage queue or the \
            store cannot be reached; nothing was counted",
            body = Problem, content_type = "application/problem+json"),
    ))]
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
    let metered = metering.meter(&key, &[event]).await.map_err(reject)?;
    let quota = metered.quota.map(|q| QuotaView {
        limit: q.limit,
        used: q.used,
        remaining: q.limit.saturating_sub(q.used),
        period_end: metered.period_end,
    });
    let ratelimit = metered.rate.map(|r| RateView {
        limit: r.limit,
        remaining: r.remaining,
        reset: r.reset_ms.div_ceil(1000),
    });
    let mut response = axum::Json(Verified {
        valid: true,
        org_id: key.key.org_id.clone(),
        key_id: key.key.id.clone(),
        team_id: key.key.team_id.clone(),
        ratelimit,
        quota,
    })
    .into_response();
    metered_headers(response.headers_mut(), &metered);
    Ok(response)
}

/// Records a batch of usage events (1 to 1000) against the key's org; ids make it idempotent.
#[utoipa::path(post, path = "/v1/events", tag = "metering", security(("api_key" = [])),
    request_body = EventsBody,
    responses(
        (status = 202, description = "Counted: `accepted` new events; `duplicates` seen before \
            within the dedup window, which spend no quota again", body = Accepted),
        (status = 422, description = "`validation_failed` (each bad field named), \
            `event_too_large` (an event over 8 KiB serialized) or `too_many_meters` (the org's \
            `MAX_METERS_PER_ORG`); nothing counted", body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "`invalid_api_key` (missing or unknown), `api_key_revoked` or \
            `api_key_expired`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (per key or per org) or `quota_exceeded` \
            (the meter's monthly quota); see `Retry-After` and the rate-limit headers",
            body = Problem, content_type = "application/problem+json", headers(
                ("retry-after" = u64, description = "Seconds until a retry can succeed"),
                ("ratelimit-limit" = u64, description = "Requests allowed per minute"),
                ("ratelimit-remaining" = u64, description = "Requests left in the window"),
                ("ratelimit-reset" = u64, description = "Seconds until the window is full again"),
            )),
        (status = 503, description = "The limiter (fail mode `closed`), the usage queue or the \
            store cannot be reached; nothing was counted",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn events(
    State(metering): State<Metering>,
    State(config): State<Arc<Config>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Response> {
    let key = caller_key(&metering, &headers).await?;
    // The same content-type rule as `body`; the JSON itself is the decoder's.
    if !bytes.is_empty() {
        require_json(&headers).map_err(problem)?;
    }
    let now = metering.now();
    let window = EventWindow::of(&config, now);
    let events =
        decode_events(&bytes, &key.key.org_id, &key.key.id, now, window).map_err(problem)?;
    let metered = metering.meter_events(&key, &events).await.map_err(reject)?;
    let mut response = (
        StatusCode::ACCEPTED,
        axum::Json(Accepted {
            accepted: metered.accepted,
            duplicates: metered.duplicates,
        }),
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
