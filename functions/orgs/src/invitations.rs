//! The org side of invitations (`/v1/orgs/{org}/invitations/*`): owners and admins list and
//! revoke them. Invitations are made by `POST /v1/orgs/{org}/members`; the invitee answers
//! them under `/v1/auth/me/invitations`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use meterline::AppState;
use meterline::domain::{InvitationId, OrgId};
use meterline::http::{ApiError, Caller, List, Origin, PageQuery, Paging, Path, Problem};
use meterline::invitations::{InvitationView, Invitations};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(paths(list_invitations, revoke_invitation))]
struct Api;

/// This part's OpenAPI operations.
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    Api::openapi()
}

/// The org-side invitation routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/orgs/{org}/invitations", get(list_invitations))
        .route(
            "/v1/orgs/{org}/invitations/{invitation}",
            delete(revoke_invitation),
        )
}

/// The organization's invitations, pending and expired, newest first (owners and admins).
#[utoipa::path(get, path = "/v1/orgs/{org}/invitations", tag = "orgs",
    security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization"), PageQuery),
    responses(
        (status = 200, description = "A page of invitations", body = List<InvitationView>),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_invitations(
    State(invitations): State<Invitations>,
    Caller(caller): Caller,
    Path(org): Path<String>,
    Paging(page): Paging,
) -> Result<List<InvitationView>, ApiError> {
    let listed = invitations.of_org(&caller.user_id, &org, &page).await?;
    let now = invitations.now();
    Ok(List::of(listed, |invitation| {
        InvitationView::of(invitation, now)
    }))
}

/// Revokes an invitation before it is answered (owners and admins; only owners revoke an
/// invitation to become owner).
#[utoipa::path(delete, path = "/v1/orgs/{org}/invitations/{invitation}", tag = "orgs",
    security(("bearer" = [])),
    params(
        ("org" = OrgId, Path, description = "The organization"),
        ("invitation" = InvitationId, Path, description = "The invitation"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`invitation_not_found`: no such invitation in this \
            organization", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke_invitation(
    State(invitations): State<Invitations>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path((org, invitation)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    invitations
        .revoke(&caller.user_id, &org, &invitation, &origin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
