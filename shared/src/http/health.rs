//! Health endpoints: `/health` says the function runs; `/v1/health` checks each backend and
//! answers 503 when one is down, so a load balancer or an operator sees which.

use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use std::time::Instant;

/// The two health routes.
pub(super) fn routes(state: AppState) -> Router {
    Router::new()
        .route("/health", get(alive))
        .route("/v1/health", get(backends))
        .with_state(state)
}

async fn alive() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn backends(State(state): State<AppState>) -> impl IntoResponse {
    let started = Instant::now();
    let result = state.store.ping().await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, store) = match result {
        Ok(()) => (
            StatusCode::OK,
            json!({ "backend": state.store.backend(), "status": "ok", "latency_ms": latency_ms }),
        ),
        Err(err) => {
            tracing::error!(error = ?err, "store health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "backend": state.store.backend(), "status": "down", "latency_ms": latency_ms }),
            )
        }
    };
    let overall = if status.is_success() {
        "ok"
    } else {
        "degraded"
    };
    (
        status,
        axum::Json(json!({ "status": overall, "checks": { "store": store } })),
    )
}
