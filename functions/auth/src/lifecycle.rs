//! Account lifecycle routes: email verification, password reset by mail and one-time login
//! codes. The rules live in [`meterline::auth::Lifecycle`]; this module maps HTTP onto them.
//! Every "mail me" route answers 202 with the same body whether or not the address has an
//! account.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use meterline::AppState;
use meterline::auth::{Lifecycle, TokenPair};
use meterline::domain::{Email, Password, User};
use meterline::http::{ApiError, ClientIp, Json, Origin, Problem};
use meterline::orgs::Orgs;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(paths(
    verify_email,
    resend_verification,
    forgot_password,
    reset_password,
    request_login_code,
    login_with_code
))]
struct Api;

/// This part's OpenAPI operations.
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    Api::openapi()
}

/// The lifecycle routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/verify-email", post(verify_email))
        .route("/v1/auth/verify-email/resend", post(resend_verification))
        .route("/v1/auth/password/forgot", post(forgot_password))
        .route("/v1/auth/password/reset", post(reset_password))
        .route("/v1/auth/login/code/request", post(request_login_code))
        .route("/v1/auth/login/code", post(login_with_code))
}

/// The one answer to every "mail me" request, so it tells nothing about the address.
#[derive(Serialize, ToSchema)]
struct MailAccepted {
    /// Always `accepted`.
    status: &'static str,
    /// What happens next.
    message: &'static str,
}

/// A 202 with [`MailAccepted`].
type Accepted = (StatusCode, Json<MailAccepted>);

fn accepted() -> Accepted {
    (
        StatusCode::ACCEPTED,
        Json(MailAccepted {
            status: "accepted",
            message: "If this address has an account, a mail is on its way.",
        }),
    )
}

#[derive(Deserialize, ToSchema)]
struct EmailRequest {
    #[schema(format = "email", max_length = 254)]
    email: String,
}

#[derive(Deserialize, ToSchema)]
struct TokenRequest {
    /// The `token` parameter of the mailed link.
    token: String,
}

/// Confirms the email address with the token from the verification mail (works once).
#[utoipa::path(post, path = "/v1/auth/verify-email", tag = "auth", request_body = TokenRequest,
    responses(
        (status = 200, description = "The account, now with `email_verified: true`", body = User),
        (status = 401, description = "`invalid_token`, `token_expired`, or `token_used` (already \
            used, or replaced by a newer link)", body = Problem,
            content_type = "application/problem+json"),
    ))]
async fn verify_email(
    State(lifecycle): State<Lifecycle>,
    State(orgs): State<Orgs>,
    Origin(origin): Origin,
    Json(body): Json<TokenRequest>,
) -> Result<Json<User>, ApiError> {
    let user = lifecycle.verify_email(&body.token).await?;
    orgs.record_account_event(&user.id, "user.email_verified", &origin)
        .await?;
    Ok(Json(user))
}

/// Mails a new verification link (the previous one stops working). Throttled per address and
/// per client IP.
#[utoipa::path(post, path = "/v1/auth/verify-email/resend", tag = "auth",
    request_body = EmailRequest,
    responses(
        (status = 202, description = "The same answer for every address", body = MailAccepted),
        (status = 429, description = "`rate_limited`: too many mails for this address or from \
            this client; see `Retry-After`", body = Problem,
            content_type = "application/problem+json"),
    ))]
async fn resend_verification(
    State(lifecycle): State<Lifecycle>,
    ClientIp(ip): ClientIp,
    Json(body): Json<EmailRequest>,
) -> Result<Accepted, ApiError> {
    let email = Email::parse(&body.email)?;
    lifecycle.resend_verification(&email, ip).await?;
    Ok(accepted())
}

/// Mails a password-reset link if the address has an account; the answer is the same either
/// way. Throttled per address and per client IP.
#[utoipa::path(post, path = "/v1/auth/password/forgot", tag = "auth",
    request_body = EmailRequest,
    responses(
        (status = 202, description = "The same answer for every address", body = MailAccepted),
        (status = 429, description = "`rate_limited`: too many mails for this address or from \
            this client; see `Retry-After`", body = Problem,
            content_type = "application/problem+json"),
    ))]
async fn forgot_password(
    State(lifecycle): State<Lifecycle>,
    ClientIp(ip): ClientIp,
    Json(body): Json<EmailRequest>,
) -> Result<Accepted, ApiError> {
    let email = Email::parse(&body.email)?;
    lifecycle.forgot_password(&email, ip).await?;
    Ok(accepted())
}

#[derive(Deserialize, ToSchema)]
struct ResetRequest {
    /// The `token` parameter of the mailed link.
    token: String,
    #[schema(min_length = 10, max_length = 128)]
    new_password: String,
}

/// Sets a new password with the token from the reset mail (works once, for 30 minutes by
/// default) and signs the account out everywhere.
#[utoipa::path(post, path = "/v1/auth/password/reset", tag = "auth", request_body = ResetRequest,
    responses(
        (status = 204, description = "Changed; every session is revoked"),
        (status = 401, description = "`invalid_token`, `token_expired`, or `token_used` (already \
            used, or replaced by a newer link)", body = Problem,
            content_type = "application/problem+json"),
    ))]
async fn reset_password(
    State(lifecycle): State<Lifecycle>,
    State(orgs): State<Orgs>,
    Origin(origin): Origin,
    ClientIp(ip): ClientIp,
    Json(body): Json<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    // The password is checked first, so a weak one does not spend the link.
    let new = Password::parse("new_password", body.new_password)?;
    let user = lifecycle.reset_password(&body.token, new, ip).await?;
    orgs.record_account_event(&user.id, "user.password_reset", &origin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mails a six-digit login code if the address has an account (the previous code stops
/// working); the answer is the same either way. Throttled per address and per client IP.
#[utoipa::path(post, path = "/v1/auth/login/code/request", tag = "auth",
    request_body = EmailRequest,
    responses(
        (status = 202, description = "The same answer for every address", body = MailAccepted),
        (status = 429, description = "`rate_limited`: too many mails for this address or from \
            this client; see `Retry-After`", body = Problem,
            content_type = "application/problem+json"),
    ))]
async fn request_login_code(
    State(lifecycle): State<Lifecycle>,
    ClientIp(ip): ClientIp,
    Json(body): Json<EmailRequest>,
) -> Result<Accepted, ApiError> {
    let email = Email::parse(&body.email)?;
    lifecycle.request_login_code(&email, ip).await?;
    Ok(accepted())
}

#[derive(Deserialize, ToSchema)]
struct CodeLoginRequest {
    email: String,
    #[schema(pattern = "^[0-9]{6}$")]
    code: String,
}

/// Logs in with a mailed code: six digits, 15 minutes, one use, five tries; at most ten code
/// attempts per account an hour, whichever codes they were for.
#[utoipa::path(post, path = "/v1/auth/login/code", tag = "auth", request_body = CodeLoginRequest,
    responses(
        (status = 200, description = "A new session's tokens", body = TokenPair),
        (status = 401, description = "`invalid_code` (wrong, unknown, used, or out of tries) \
            or `code_expired`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`account_locked`: the account used up its code \
            attempts of the window (a new code does not reset it); see `Retry-After`",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn login_with_code(
    State(lifecycle): State<Lifecycle>,
    Json(body): Json<CodeLoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    Ok(Json(
        lifecycle.login_with_code(&body.email, &body.code).await?,
    ))
}
