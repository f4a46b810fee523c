//! Health endpoints: `/health` says the function runs; `/v1/health` checks each backend and
//! answers 503 when one is down, so a load balancer or an operator sees which.
//!
//! `/v1/health` needs no credentials, so its backend checks are shared: one round of pings
//! serves every request for [`HEALTH_TTL`], and requests arriving during a round wait for it
//! instead of starting their own. A flood of health requests costs the backends at most one
//! round a second per instance.

use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use utoipa::ToSchema;

/// How long one round of backend checks answers `/v1/health`.
pub const HEALTH_TTL: Duration = Duration::from_secs(1);

/// The last round of checks and when it was made.
type LastRound = Mutex<Option<(Instant, Arc<(StatusCode, HealthReport)>)>>;

/// The state of the health routes: the app, and the last round of checks.
#[derive(Clone)]
pub struct Health {
    state: AppState,
    last: Arc<LastRound>,
}

/// The two health routes.
pub(super) fn routes(state: AppState) -> Router {
    Router::new()
        .route("/health", get(alive))
        .route("/v1/health", get(backends))
        .with_state(Health {
            state,
            last: Arc::default(),
        })
}

/// `/health`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Alive {
    /// Always `ok`: the function runs.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Says the function runs, without touching any backend (for liveness probes).
#[utoipa::path(get, path = "/health", tag = "health", operation_id = "health",
    responses((status = 200, description = "The function runs", body = Alive)))]
pub async fn alive() -> axum::Json<Alive> {
    axum::Json(Alive { status: "ok" })
}

/// One backend's check in `/v1/health`.
#[derive(Clone, Serialize, ToSchema)]
pub struct BackendCheck {
    /// Which implementation answered, e.g. `postgres`, `redis`, `sqs`.
    pub backend: String,
    /// `ok` or `down`.
    pub status: &'static str,
    /// How long the ping took.
    pub latency_ms: f64,
}

/// The three backends `/v1/health` pings.
#[derive(Clone, Serialize, ToSchema)]
pub struct BackendChecks {
    /// The state store.
    pub store: BackendCheck,
    /// The rate limiter (Redis or in-process).
    pub limiter: BackendCheck,
    /// Where usage events go (SQS or the store).
    pub queue: BackendCheck,
}

/// `/v1/health`'s answer.
#[derive(Clone, Serialize, ToSchema)]
pub struct HealthReport {
    /// `ok` when every backend is up, else `degraded`.
    pub status: &'static str,
    /// Each backend's check.
    pub checks: BackendChecks,
}

/// Times one backend's ping: its report and whether it is up.
async fn probe<E: std::fmt::Debug>(
    backend: &str,
    ping: impl std::future::Future<Output = Result<(), E>>,
) -> (BackendCheck, bool) {
    let started = Instant::now();
    let result = ping.await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Err(err) = &result {
        tracing::error!(backend, error = ?err, "health check failed");
    }
    let status = if result.is_ok() { "ok" } else { "down" };
    let report = BackendCheck {
        backend: backend.to_owned(),
        status,
        latency_ms,
    };
    (report, result.is_ok())
}

/// Pings each backend, so an operator or load balancer sees which one is down.
///
/// One round of checks answers every request for a second (requests during a round wait for
/// it), so an unauthenticated flood costs the backends at most one round a second.
#[utoipa::path(get, path = "/v1/health", tag = "health", operation_id = "health_backends",
    responses(
        (status = 200, description = "Every backend answers", body = HealthReport),
        (status = 503, description = "At least one backend is down", body = HealthReport),
    ))]
pub async fn backends(State(health): State<Health>) -> (StatusCode, axum::Json<HealthReport>) {
    // Held across the round, so concurrent requests wait for it rather than ping again.
    let mut last = health.last.lock().await;
    let round = match last.as_ref() {
        Some((at, round)) if at.elapsed() < HEALTH_TTL => Arc::clone(round),
        _ => {
            let round = Arc::new(check_backends(&health.state).await);
            *last = Some((Instant::now(), Arc::clone(&round)));
            round
        }
    };
    drop(last);
    let (status, report) = &*round;
    (*status, axum::Json(report.clone()))
}

/// One round of checks: every backend pinged at once.
async fn check_backends(state: &AppState) -> (StatusCode, HealthReport) {
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
    let report = HealthReport {
        status: if up { "ok" } else { "degraded" },
        checks: BackendChecks {
            store,
            limiter,
            queue,
        },
    };
    (status, report)
}
