//! The all-in-one local server: every function's router, merged, behind the same shared layers
//! the Lambda functions use. Embedded defaults (SQLite file) need no service at all.

use axum::Router;
use meterline::AppState;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Every endpoint group on one router.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
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
