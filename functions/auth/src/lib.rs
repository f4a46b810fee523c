//! The auth endpoint group (`/v1/auth/*`): accounts, sessions and tokens. The rules live in
//! [`meterline::auth::Accounts`]; this crate maps HTTP onto them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Router, middleware};
use meterline::AppState;
use meterline::auth::{Accounts, Lifecycle, TokenPair};
use meterline::domain::{
    DisplayName, Email, MAX_PAGE_SIZE, OrgId, PageRequest, Password, Role, User,
};
use meterline::http::{
    ApiError, Caller, ClientIp, Json, JsonOrForm, OptionalJson, Origin, Problem, throttle_by_ip,
};
use meterline::orgs::Orgs;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

mod lifecycle;
mod me;
mod oauth;

#[derive(OpenApi)]
#[openapi(paths(signup, login, refresh, logout, me, change_password))]
struct Api;

/// This group's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = Api::openapi();
    doc.merge(lifecycle::openapi());
    doc.merge(oauth::openapi());
    doc.merge(me::openapi());
    doc
}

/// The auth routes, at the same paths as in `template.yaml`, throttled per client IP.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/auth/signup", post(signup))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/me", get(me))
        .route("/v1/auth/password", post(change_password))
        .merge(lifecycle::routes())
        .merge(oauth::routes())
        .merge(me::routes())
        .route_layer(middleware::from_fn_with_state(
            state.auth_ip_limit.clone(),
            throttle_by_ip,
        ))
        .with_state(state)
}

#[derive(Deserialize, ToSchema)]
struct SignupRequest {
    #[schema(format = "email", max_length = 254)]
    email: String,
    #[schema(min_length = 10, max_length = 128)]
    password: String,
    #[schema(max_length = 100)]
    name: Option<String>,
}

/// Creates an account (the password is stored as an argon2id hash) and mails a link to verify
/// its email.
#[utoipa::path(post, path = "/v1/auth/signup", tag = "auth", request_body = SignupRequest,
    responses(
        (status = 201, description = "The new account", body = User),
        (status = 409, description = "`email_taken`: an account has this email", body = Problem,
            content_type = "application/problem+json"),
    ))]
async fn signup(
    State(accounts): State<Accounts>,
    State(lifecycle): State<Lifecycle>,
    Json(body): Json<SignupRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let fields = (
        Email::parse(&body.email),
        Password::parse("password", body.password),
        DisplayName::parse(body.name),
    );
    // Every field's problem at once, so a client fixes them all in one round trip.
    let (Ok(email), Ok(password), Ok(name)) = fields else {
        let (email, password, name) = fields;
        let errors = [email.err(), password.err(), name.err()];
        return Err(ApiError::invalid(errors.into_iter().flatten().collect()));
    };
    let user = accounts.signup(email, password, name).await?;
    lifecycle.send_verification(&user).await;
    Ok((StatusCode::CREATED, Json(user)))
}

/// JSON `{email, password}`, or the OAuth2 password form `username=&password=`.
#[derive(Deserialize, ToSchema)]
struct LoginRequest {
    #[serde(alias = "username")]
    email: String,
    password: String,
}

/// Exchanges email and password for an access token and a refresh token.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth",
    request_body(content(
        (LoginRequest = "application/json"),
        (LoginRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "A new session's tokens", body = TokenPair),
        (status = 401, description = "`invalid_credentials`", body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = "`account_locked` after repeated failures (from this \
            client IP, or from all of them together), or `rate_limited` for this client IP; \
            see `Retry-After`", body = Problem,
            content_type = "application/problem+json"),
    ))]
async fn login(
    State(accounts): State<Accounts>,
    ClientIp(ip): ClientIp,
    JsonOrForm(body): JsonOrForm<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    Ok(Json(accounts.login(&body.email, body.password, ip).await?))
}

#[derive(Deserialize, ToSchema)]
struct RefreshRequest {
    refresh_token: String,
}

/// Rotates a refresh token: the old one is spent, a reused one revokes its whole session.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "The session's next tokens", body = TokenPair),
        (status = 401, description = "`invalid_token`, `token_expired`, `token_reused` (the \
            session is revoked) or `token_revoked`", body = Problem,
            content_type = "application/problem+json"),
    ))]
async fn refresh(
    State(accounts): State<Accounts>,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    Ok(Json(accounts.refresh(&body.refresh_token).await?))
}

#[derive(Deserialize, ToSchema)]
struct LogoutRequest {
    refresh_token: Option<String>,
}

/// Ends the caller's session (its refresh token and access tokens stop working).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    request_body(content = Option<LogoutRequest>, description = "Optional"),
    responses((status = 204, description = "Logged out")))]
async fn logout(
    State(accounts): State<Accounts>,
    Caller(caller): Caller,
    OptionalJson(body): OptionalJson<LogoutRequest>,
) -> Result<StatusCode, ApiError> {
    let refresh_token = body.and_then(|b| b.refresh_token);
    accounts.logout(&caller, refresh_token.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account and the organizations they belong to.
#[derive(Serialize, ToSchema)]
struct Me {
    #[serde(flatten)]
    user: User,
    memberships: Vec<MembershipView>,
}

/// One of the caller's memberships.
#[derive(Serialize, ToSchema)]
struct MembershipView {
    org_id: OrgId,
    name: String,
    role: Role,
}

/// The caller's account and memberships.
#[utoipa::path(get, path = "/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = Me)))]
async fn me(
    State(accounts): State<Accounts>,
    State(orgs): State<Orgs>,
    Caller(caller): Caller,
) -> Result<Json<Me>, ApiError> {
    let user = accounts.me(&caller).await?;
    let mut memberships = Vec::new();
    let mut page = PageRequest::first(MAX_PAGE_SIZE);
    loop {
        let orgs = orgs.list(&caller.user_id, &page).await?;
        let next = orgs.next(MAX_PAGE_SIZE);
        memberships.extend(orgs.items.into_iter().map(|(org, role)| MembershipView {
            org_id: org.id,
            name: org.name,
            role,
        }));
        match next {
            Some(next) => page = next,
            None => break,
        }
    }
    Ok(Json(Me { user, memberships }))
}

#[derive(Deserialize, ToSchema)]
struct ChangePasswordRequest {
    current_password: String,
    #[schema(min_length = 10, max_length = 128)]
    new_password: String,
}

/// Changes the caller's password, revokes their other sessions and mails them a notice.
#[utoipa::path(post, path = "/v1/auth/password", tag = "auth", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed; other sessions are revoked"),
        (status = 401, description = "`invalid_credentials` (wrong current password), or the \
            token is missing, invalid, expired or revoked", body = Problem,
            content_type = "application/problem+json"),
    ))]
async fn change_password(
    State(accounts): State<Accounts>,
    State(lifecycle): State<Lifecycle>,
    State(orgs): State<Orgs>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Json(body): Json<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let new = Password::parse("new_password", body.new_password)?;
    accounts
        .change_password(&caller, body.current_password, new)
        .await?;
    orgs.record_account_event(&caller.user_id, "user.password_changed", &origin)
        .await?;
    lifecycle
        .notify_password_changed(&accounts.me(&caller).await?)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
