//! The all-in-one local server: every function's router, merged, behind the same shared layers
//! the Lambda functions use. Embedded defaults (SQLite file) need no service at all.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use meterline::AppState;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Meterline's OpenAPI 3.1 document: every endpoint group's operations, generated from the
/// handlers (checked into the repository as `openapi.json`; a test keeps the two equal).
pub fn openapi() -> utoipa::openapi::OpenApi {
    meterline::http::openapi::document([
        meterline_auth::openapi(),
        meterline_orgs::openapi(),
        meterline_api_keys::openapi(),
        meterline_metering::openapi(),
        meterline_billing_api::openapi(),
    ])
}

/// The document as served at `/openapi.json` and written to the repository: pretty JSON with a
/// final newline, so diffs of `openapi.json` read well.
pub fn openapi_json() -> String {
    let mut json = openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}

async fn openapi_document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json())
}

/// Every endpoint group on one router, and the OpenAPI document at `/openapi.json`.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .route("/openapi.json", get(openapi_document))
        .merge(meterline_auth::router(state.clone()))
        .merge(meterline_orgs::router(state.clone()))
        .merge(meterline_api_keys::router(state.clone()))
        .merge(meterline_metering::router(state.clone()))
        .merge(meterline_billing_api::router(state.clone()));
    meterline::http::service(routes, &state)
}

/// Serves [`app`] on `listener` until `shutdown` completes, letting requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}
