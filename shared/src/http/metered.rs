//! The metering pipeline over HTTP: the `X-API-Key` header, the rate-limit response headers,
//! refusals as problems, and [`MeteringLayer`], the same checks as a tower `Layer` for any
//! route of an operator's own.

use super::ApiError;
use crate::domain::{DEFAULT_METER, UsageEvent};
use crate::metering::{MeterError, Metered, Metering};
use crate::ratelimit::RateState;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The header carrying the API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The presented API key, or [`MeterError::InvalidKey`] when there is none.
pub fn api_key(headers: &HeaderMap) -> Result<&str, MeterError> {
    headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or(MeterError::InvalidKey)
}

fn seconds(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// Writes `X-RateLimit-*` and the IETF `RateLimit-Policy` / `RateLimit` pair.
pub fn rate_headers(headers: &mut HeaderMap, rate: &RateState) {
    let reset = seconds(rate.reset_ms);
    let pairs = [
        ("x-ratelimit-limit", rate.limit.to_string()),
        ("x-ratelimit-remaining", rate.remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
        ("ratelimit-policy", format!("{};w=60", rate.limit)),
        (
            "ratelimit",
            format!(
                "limit={}, remaining={}, reset={reset}",
                rate.limit, rate.remaining
            ),
        ),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// Adds the headers of a served request.
pub fn metered_headers(headers: &mut HeaderMap, metered: &Metered) {
    if let Some(rate) = &metered.rate {
        rate_headers(headers, rate);
    }
}

/// A refused metered request: the problem, with the rate-limit headers where they apply.
#[derive(Debug)]
pub struct MeterRejection(pub MeterError);

impl From<MeterError> for MeterRejection {
    fn from(err: MeterError) -> Self {
        Self(err)
    }
}

impl IntoResponse for MeterRejection {
    fn into_response(self) -> Response {
        let err = self.0;
        let detail = err.to_string();
        let rate = match &err {
            MeterError::RateLimited { rate, .. } | MeterError::QuotaExceeded { rate, .. } => {
                Some(*rate)
            }
            _ => None,
        };
        let problem = match err {
            MeterError::InvalidKey => ApiError::unauthorized("invalid_api_key", detail),
            MeterError::Revoked => ApiError::unauthorized("api_key_revoked", detail),
            MeterError::Expired => ApiError::unauthorized("api_key_expired", detail),
            MeterError::RateLimited { retry_after, .. } => ApiError::TooManyRequests {
                code: "rate_limited",
                detail,
                retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
            },
            MeterError::QuotaExceeded { period_end, .. } => ApiError::TooManyRequests {
                code: "quota_exceeded",
                detail,
                retry_after_secs: (period_end - chrono::Utc::now()).num_seconds().max(1) as u64,
            },
            MeterError::TooManyMeters { .. } => ApiError::Unprocessable {
                code: "too_many_meters",
                detail,
            },
            MeterError::LimiterUnavailable => ApiError::Unavailable(anyhow::anyhow!(detail)),
            MeterError::SinkUnavailable(cause) => ApiError::Unavailable(cause.into()),
            MeterError::Store(err) => err.into(),
        };
        let mut response = problem.into_response();
        if let Some(rate) = rate {
            rate_headers(response.headers_mut(), &rate);
        }
        response
    }
}

/// Meters every request through it as one unit of `requests` (or of the meter it was made
/// with) before the inner service runs: a tower `Layer` for an operator's own axum routes.
///
/// ```no_run
/// # fn demo(metering: meterline::metering::Metering) {
/// use axum::{Router, routing::get};
/// let app: Router = Router::new()
///     .route("/v1/things", get(|| async { "metered" }))
///     .layer(meterline::http::MeteringLayer::new(metering));
/// # }
/// ```
#[derive(Clone)]
pub struct MeteringLayer {
    metering: Metering,
    meter: String,
}

impl MeteringLayer {
    /// Meters one unit of `requests` per request.
    pub fn new(metering: Metering) -> Self {
        Self {
            metering,
            meter: DEFAULT_METER.to_owned(),
        }
    }

    /// Meters one unit of `meter` per request instead.
    pub fn meter(mut self, meter: &str) -> Self {
        self.meter = meter.to_owned();
        self
    }
}

impl<S> tower::Layer<S> for MeteringLayer {
    type Service = MeteringService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MeteringService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`MeteringLayer`] wraps around a route.
#[derive(Clone)]
pub struct MeteringService<S> {
    inner: S,
    layer: MeteringLayer,
}

impl<S> tower::Service<Request> for MeteringService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone that was polled ready serves this request; a fresh clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let presented = api_key(request.headers()).map(str::to_owned);
        Box::pin(async move {
            let metered = async {
                let key = layer.metering.authenticate(&presented?).await?;
                let event = UsageEvent {
                    id: format!("evt_{}", ulid::Ulid::new().to_string().to_lowercase()),
                    org_id: key.key.org_id.clone(),
                    key_id: key.key.id.clone(),
                    meter: layer.meter.clone(),
                    quantity: 1,
                    timestamp: layer.metering.now(),
                    properties: None,
                };
                let metered = layer.metering.meter(&key, &[event]).await?;
                Ok::<_, MeterError>((key, metered))
            }
            .await;
            match metered {
                Err(err) => Ok(MeterRejection(err).into_response()),
                Ok((key, metered)) => {
                    request.extensions_mut().insert(key);
                    let mut response = inner.call(request).await?;
                    metered_headers(response.headers_mut(), &metered);
                    Ok(response)
                }
            }
        })
    }
}
