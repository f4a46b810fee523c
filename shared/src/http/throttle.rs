//! Middleware applying the per-IP throttle (`AUTH_IP_LIMIT_PER_MIN`) with rate-limit headers.

use super::{ApiError, ClientIp};
use crate::ratelimit::IpRateLimiter;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Refuses a client IP over its allowance with 429 `rate_limited` and `Retry-After`.
/// Requests whose address is unknown pass (there is nothing to key them on).
pub async fn throttle_by_ip(
    State(limiter): State<Option<IpRateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = limiter else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let ClientIp(ip) = ClientIp::of(&parts);
    let request = Request::from_parts(parts, body);
    let Some(ip) = ip else {
        return next.run(request).await;
    };
    match limiter.check(ip) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            tracing::warn!(client_ip = %ip, "auth requests throttled for this address");
            let mut response = ApiError::TooManyRequests {
                code: "rate_limited",
                detail: "too many requests from this address; slow down".into(),
                retry_after_secs: wait.as_secs_f64().ceil() as u64,
            }
            .into_response();
            response.headers_mut().insert(
                "ratelimit-policy",
                HeaderValue::from_str(&format!("{};w=60", limiter.limit()))
                    .unwrap_or_else(|_| HeaderValue::from_static("")),
            );
            response
        }
    }
}
