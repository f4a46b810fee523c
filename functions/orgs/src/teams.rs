//! Team routes (`/v1/orgs/{org}/teams/*`): the HTTP side of [`meterline::teams::Teams`].

use axum::Router;
use meterline::AppState;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(paths())]
struct Api;

/// This part's OpenAPI operations.
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    Api::openapi()
}

/// The team routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
