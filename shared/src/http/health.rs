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

/// Times one backend's ping: its JSON report and whether it is up.
async fn probe<E: std::fmt::Debug>(
    backend: &str,
    ping: impl std::future::Future<Output = Result<(), E>>,
) -> (serde_json::Value, bool) {
    let started = Instant::now();
    let result = ping.await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Err(err) = &result {
        tracing::error!(backend, error = ?err, "health check failed");
    }
    let status = if result.is_ok() { "ok" } else { "down" };
    let report = json!({ "backend": backend, "status": status, "latency_ms": latency_ms });
    (report, result.is_ok())
}

async fn backends(State(state): State<AppState>) -> impl IntoResponse {
    let sink = state.metering.sink();
    let ((store, store_up), (limiter, limiter_up), (queue, queue_up)) = tokio::join!(
        probe(state.store.backend(), state.store.ping()),
        probe(state.limiter.backend(), state.limiter.ping()),
        probe(sink.backend(), sink.ping()),
    );
    let up = store_up && limiter_up && queue_up;
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let overall = if up { "ok" } else { "degraded" };
    let checks = json!({ "store": store, "limiter": limiter, "queue": queue });
    (
        status,
        axum::Json(json!({ "status": overall, "checks": checks })),
    )
}
