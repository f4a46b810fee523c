//! The layers around every function's routes: request id, a deadline, panic guard, body limit,
//! and problem+json answers for unknown routes (404) and wrong methods (405).

use super::{ApiError, health, request_id};
use crate::state::AppState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::any::Any;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;

/// Wraps a function's `routes` (plus the health routes) in the shared layers. The local
/// server merges every group's routes first and calls this once, so Lambda and local serve
/// identical stacks.
pub fn service(routes: Router, state: &AppState) -> Router {
    let limit = state.config.max_body_bytes;
    routes
        .merge(health::routes(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            limit,
            refuse_declared_oversize,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(deadline))
        .layer(middleware::from_fn(request_id::layer))
}

/// The longest a request may run before it is answered 503: under a Lambda's 10 s timeout,
/// and a bound where a backend has none (a SQL connection that goes silent mid-call waits on
/// its socket for as long as TCP does).
const REQUEST_DEADLINE: Duration = Duration::from_secs(9);

/// Answers 503 `service_unavailable` for a request still running at [`REQUEST_DEADLINE`]
/// (its work is dropped midway, as in a crash: writes are transactions, usage is idempotent).
async fn deadline(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(anyhow::anyhow!(
            "the request did not finish within {REQUEST_DEADLINE:?}"
        ))
        .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A body whose declared length is over the limit is refused before it is read.
async fn refuse_declared_oversize(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    next.run(request).await
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into());
    ApiError::Internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}
