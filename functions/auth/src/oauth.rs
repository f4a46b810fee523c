//! Social login routes (`/v1/auth/oauth/{provider}/*`): the HTTP side of
//! [`meterline::oauth::OAuth`]. The flow lives there; this maps it onto HTTP.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use meterline::AppState;
use meterline::auth::TokenPair;
use meterline::domain::ValidationError;
use meterline::http::{ApiError, Json, JsonOrForm, Path, Problem, Query};
use meterline::oauth::{CallbackParams, OAuth, OAuthError};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    paths(authorize, callback, callback_post),
    components(responses(ToProvider))
)]
struct Api;

/// The authorize answer in the OpenAPI document: a redirect, so headers and no body (a shared
/// response component, as the document's answers without content are).
struct ToProvider;

impl<'r> utoipa::ToResponse<'r> for ToProvider {
    fn response() -> (
        &'r str,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    ) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::{ObjectBuilder, ResponseBuilder, Type};
        let header = |description: &str| {
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .description(Some(description))
                .build()
        };
        let response = ResponseBuilder::new()
            .description("To the provider's authorization page")
            .header(
                "location",
                header(
                    "The provider URL with `response_type=code`, `client_id`, `redirect_uri`, \
                     `scope`, `state`, `code_challenge`, `code_challenge_method=S256` and (OpenID \
                     Connect) `nonce`",
                ),
            )
            .header("cache-control", header("`no-store`"))
            .build();
        ("OAuthRedirect", response.into())
    }
}

/// This part's OpenAPI operations.
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    Api::openapi()
}

/// The social-login routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/oauth/{provider}/authorize", get(authorize))
        .route(
            "/v1/auth/oauth/{provider}/callback",
            get(callback).post(callback_post),
        )
}

/// A refused social sign-in as a problem.
fn problem(err: OAuthError) -> ApiError {
    let detail = err.to_string();
    match err {
        OAuthError::UnknownProvider => ApiError::NotFound {
            code: "unknown_provider",
            detail,
        },
        OAuthError::Missing(fields) => ApiError::invalid(
            fields
                .into_iter()
                .map(|field| ValidationError::new(field, "is required"))
                .collect(),
        ),
        OAuthError::InvalidState => ApiError::BadRequest {
            code: "invalid_state",
            detail,
        },
        OAuthError::Denied(_) => ApiError::BadRequest {
            code: "oauth_denied",
            detail,
        },
        OAuthError::Failed(_) => ApiError::unauthorized("oauth_failed", detail),
        OAuthError::EmailNotVerified => ApiError::Refused {
            code: "email_not_verified",
            detail,
        },
        OAuthError::Unavailable(cause) => ApiError::Unavailable(cause),
        OAuthError::Auth(err) => err.into(),
        OAuthError::Store(err) => err.into(),
        OAuthError::Internal(cause) => ApiError::Internal(cause),
    }
}

/// Starts a sign-in with a provider: redirects to its authorization page (authorization code
/// flow with PKCE S256, `state` and, for OpenID Connect, `nonce`). The state is good for one
/// callback within ten minutes.
#[utoipa::path(get, path = "/v1/auth/oauth/{provider}/authorize", tag = "auth",
    operation_id = "oauth_authorize",
    params(("provider" = String, Path, description = "A configured provider, e.g. `google`")),
    responses(
        (status = 302, response = ToProvider),
        (status = 404, description = "`unknown_provider`", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "The provider's discovery document cannot be fetched",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn authorize(
    State(oauth): State<OAuth>,
    Path(provider): Path<String>,
) -> Result<Response, ApiError> {
    let redirect = oauth.authorize(&provider).await.map_err(problem)?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, redirect.location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// Completes a sign-in where the provider redirects back (`?code=&state=`, or `?error=`): the
/// verified email's account is signed in, created or linked.
#[utoipa::path(get, path = "/v1/auth/oauth/{provider}/callback", tag = "auth",
    operation_id = "oauth_callback",
    params(("provider" = String, Path, description = "The provider"), CallbackParams),
    responses(
        (status = 200, description = "A new session's tokens", body = TokenPair),
        (status = 400, description = "`invalid_state` (unknown, expired, used, or another \
            provider's) or `oauth_denied` (the provider answered `error=`)", body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "`oauth_failed`: the provider refused the code (wrong \
            PKCE verifier, replayed or unknown code)", body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = "`email_not_verified`: the provider has no verified \
            email for the user", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown_provider`", body = Problem,
            content_type = "application/problem+json"),
        (status = 422, description = "`code` or `state` is missing", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "The provider cannot be reached or timed out",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn callback(
    State(oauth): State<OAuth>,
    Path(provider): Path<String>,
    Query(params): Query<CallbackParams>,
) -> Result<Json<TokenPair>, ApiError> {
    let sign_in = oauth.callback(&provider, params).await.map_err(problem)?;
    Ok(Json(sign_in.tokens))
}

/// The same as the GET callback, for a client (e.g. a single-page app) that received the
/// redirect itself and posts `{code, state}` as JSON or a form.
#[utoipa::path(post, path = "/v1/auth/oauth/{provider}/callback", tag = "auth",
    operation_id = "oauth_callback_post",
    params(("provider" = String, Path, description = "The provider")),
    request_body(content(
        (CallbackParams = "application/json"),
        (CallbackParams = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "A new session's tokens", body = TokenPair),
        (status = 400, description = "`invalid_state` or `oauth_denied`", body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "`oauth_failed`", body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = "`email_not_verified`", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "`unknown_provider`", body = Problem,
            content_type = "application/problem+json"),
        (status = 422, description = "`code` or `state` is missing", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "The provider cannot be reached or timed out",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn callback_post(
    State(oauth): State<OAuth>,
    Path(provider): Path<String>,
    JsonOrForm(params): JsonOrForm<CallbackParams>,
) -> Result<Json<TokenPair>, ApiError> {
    let sign_in = oauth.callback(&provider, params).await.map_err(problem)?;
    Ok(Json(sign_in.tokens))
}
