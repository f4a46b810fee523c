//! The caller's own invitations and security log (`/v1/auth/me/invitations`,
//! `/v1/auth/me/security-log`). Invitations go to addresses, so only an account whose address
//! is verified sees or answers them. The rules live in [`meterline::invitations`] and
//! [`meterline::orgs::Orgs::security_log`].

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use meterline::AppState;
use meterline::domain::{InvitationId, SecurityEvent};
use meterline::http::{ApiError, Caller, Json, List, Origin, PageQuery, Paging, Path, Problem};
use meterline::invitations::{InvitationView, Invitations, JoinedView};
use meterline::orgs::Orgs;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(paths(my_invitations, accept_invitation, decline_invitation, security_log))]
struct Api;

/// This part's OpenAPI operations.
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    Api::openapi()
}

/// The caller's own routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/me/invitations", get(my_invitations))
        .route(
            "/v1/auth/me/invitations/{invitation}/accept",
            post(accept_invitation),
        )
        .route(
            "/v1/auth/me/invitations/{invitation}/decline",
            post(decline_invitation),
        )
        .route("/v1/auth/me/security-log", get(security_log))
}

/// The invitations to the caller's (verified) address that can still be accepted, newest
/// first.
#[utoipa::path(get, path = "/v1/auth/me/invitations", tag = "auth", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of pending invitations", body = List<InvitationView>),
        (status = 403, description = "`email_not_verified`: verify the address first",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn my_invitations(
    State(invitations): State<Invitations>,
    Caller(caller): Caller,
    Paging(page): Paging,
) -> Result<List<InvitationView>, ApiError> {
    let listed = invitations.mine(&caller.user_id, &page).await?;
    let now = invitations.now();
    Ok(List::of(listed, |invitation| {
        InvitationView::of(invitation, now)
    }))
}

/// Accepts an invitation to the caller's address: the caller becomes a member with its role.
#[utoipa::path(post, path = "/v1/auth/me/invitations/{invitation}/accept", tag = "auth",
    security(("bearer" = [])),
    params(("invitation" = InvitationId, Path, description = "The invitation")),
    responses(
        (status = 200, description = "The new membership", body = JoinedView),
        (status = 403, description = "`email_not_verified`: verify the address first",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`invitation_not_found`: no such invitation to the \
            caller's address", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invitation_expired` (ask for a new one) or \
            `already_member`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn accept_invitation(
    State(invitations): State<Invitations>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path(invitation): Path<String>,
) -> Result<Json<JoinedView>, ApiError> {
    let member = invitations
        .accept(&caller.user_id, &invitation, &origin)
        .await?;
    Ok(Json(JoinedView::of(member)))
}

/// Declines an invitation to the caller's address; it is deleted.
#[utoipa::path(post, path = "/v1/auth/me/invitations/{invitation}/decline", tag = "auth",
    security(("bearer" = [])),
    params(("invitation" = InvitationId, Path, description = "The invitation")),
    responses(
        (status = 204, description = "Declined"),
        (status = 403, description = "`email_not_verified`: verify the address first",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`invitation_not_found`: no such invitation to the \
            caller's address", body = Problem, content_type = "application/problem+json"),
    ))]
async fn decline_invitation(
    State(invitations): State<Invitations>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path(invitation): Path<String>,
) -> Result<StatusCode, ApiError> {
    invitations
        .decline(&caller.user_id, &invitation, &origin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes to the caller's account (password changed or reset, email verified), with the IP
/// and User-Agent they came from, newest first. Only the account's owner sees these.
#[utoipa::path(get, path = "/v1/auth/me/security-log", tag = "auth", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "A page of account events",
        body = List<SecurityEvent>)))]
async fn security_log(
    State(orgs): State<Orgs>,
    Caller(caller): Caller,
    Paging(page): Paging,
) -> Result<List<SecurityEvent>, ApiError> {
    Ok(List::of(
        orgs.security_log(&caller.user_id, &page).await?,
        |event| event,
    ))
}
