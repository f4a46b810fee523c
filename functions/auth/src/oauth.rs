//! Social login routes (`/v1/auth/oauth/{provider}/*`): the HTTP side of
//! [`meterline::oauth::OAuth`].

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

/// The social-login routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
