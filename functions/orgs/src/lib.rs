//! The organizations endpoint group (`/v1/orgs/*`): orgs, members and roles, invitations, the
//! audit log.
//! The rules live in [`meterline::orgs::Orgs`]; this crate maps HTTP onto them.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use chrono::{DateTime, Utc};
use meterline::AppState;
use meterline::domain::{
    AuditEntry, Email, Membership, Org, OrgId, OrgName, Role, UserId, ValidationError,
    parse_rate_limit,
};
use meterline::http::{ApiError, Caller, Json, List, Origin, PageQuery, Paging, Path, Problem};
use meterline::invitations::{InvitationView, Invitations, MemberAdded};
use meterline::orgs::Orgs;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{OpenApi, ToSchema};

mod invitations;
mod teams;

#[derive(OpenApi)]
#[openapi(paths(
    create_org,
    list_orgs,
    get_org,
    update_org,
    delete_org,
    list_members,
    put_member,
    remove_member,
    audit_log
))]
struct Api;

/// This group's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = Api::openapi();
    doc.merge(teams::openapi());
    doc.merge(invitations::openapi());
    doc
}

/// The orgs routes, at the same paths as in `template.yaml`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/orgs", get(list_orgs).post(create_org))
        .route(
            "/v1/orgs/{org}",
            get(get_org).patch(update_org).delete(delete_org),
        )
        .route("/v1/orgs/{org}/members", get(list_members).post(put_member))
        .route("/v1/orgs/{org}/members/{user}", delete(remove_member))
        .route("/v1/orgs/{org}/audit-log", get(audit_log))
        .merge(teams::routes())
        .merge(invitations::routes())
        .with_state(state)
}

/// An org as its members see it, with the caller's role.
#[derive(Serialize, ToSchema)]
struct OrgView {
    id: OrgId,
    name: String,
    rate_limit_rpm: Option<u32>,
    #[serde(with = "meterline::time_format")]
    created_at: DateTime<Utc>,
    role: Role,
}

impl OrgView {
    fn of((org, role): (Org, Role)) -> Self {
        Self {
            id: org.id,
            name: org.name,
            rate_limit_rpm: org.rate_limit_rpm,
            created_at: org.created_at,
            role,
        }
    }
}

/// A member as the org's members see them.
#[derive(Serialize, ToSchema)]
struct MemberView {
    user_id: UserId,
    email: Email,
    role: Role,
    #[serde(with = "meterline::time_format")]
    joined_at: DateTime<Utc>,
}

impl MemberView {
    fn of(member: Membership) -> Self {
        Self {
            user_id: member.user_id,
            email: member.email,
            role: member.role,
            joined_at: member.joined_at,
        }
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn rate_limit(rpm: Option<i64>) -> Result<Option<u32>, ValidationError> {
    rpm.map(|rpm| parse_rate_limit("rate_limit_rpm", rpm))
        .transpose()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateOrg {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// Requests per minute across the org's keys (it may only lower the plan's).
    #[schema(minimum = 1)]
    rate_limit_rpm: Option<i64>,
}

/// Creates an organization; the caller becomes its owner.
#[utoipa::path(post, path = "/v1/orgs", tag = "orgs", security(("bearer" = [])),
    request_body = CreateOrg,
    responses((status = 201, description = "The new organization", body = OrgView)))]
async fn create_org(
    State(orgs): State<Orgs>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Json(body): Json<CreateOrg>,
) -> Result<impl IntoResponse, ApiError> {
    let (name, rpm) = (OrgName::parse(&body.name), rate_limit(body.rate_limit_rpm));
    let (Ok(name), Ok(rpm)) = (name.clone(), rpm.clone()) else {
        let errors = [name.err(), rpm.err()].into_iter().flatten().collect();
        return Err(ApiError::invalid(errors));
    };
    let org = orgs.create(&caller.user_id, name, rpm, &origin).await?;
    Ok((StatusCode::CREATED, Json(OrgView::of((org, Role::Owner)))))
}

/// The caller's organizations, newest first.
#[utoipa::path(get, path = "/v1/orgs", tag = "orgs", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "A page of organizations", body = List<OrgView>)))]
async fn list_orgs(
    State(orgs): State<Orgs>,
    Caller(caller): Caller,
    Paging(page): Paging,
) -> Result<List<OrgView>, ApiError> {
    Ok(List::of(
        orgs.list(&caller.user_id, &page).await?,
        OrgView::of,
    ))
}

/// One of the caller's organizations.
#[utoipa::path(get, path = "/v1/orgs/{org}", tag = "orgs", security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization")),
    responses(
        (status = 200, description = "The organization and the caller's role", body = OrgView),
    ))]
async fn get_org(
    State(orgs): State<Orgs>,
    Caller(caller): Caller,
    Path(org): Path<String>,
) -> Result<Json<OrgView>, ApiError> {
    Ok(Json(OrgView::of(orgs.get(&caller.user_id, &org).await?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateOrg {
    #[schema(min_length = 1, max_length = 100)]
    name: Option<String>,
    /// A new limit, or `null` to go back to the plan's.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    rate_limit_rpm: Option<Option<i64>>,
}

/// Renames an organization or changes its rate limit (owners and admins).
#[utoipa::path(patch, path = "/v1/orgs/{org}", tag = "orgs", security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization")), request_body = UpdateOrg,
    responses((status = 200, description = "The organization as changed", body = OrgView),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json")))]
async fn update_org(
    State(orgs): State<Orgs>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path(org): Path<String>,
    Json(body): Json<UpdateOrg>,
) -> Result<Json<OrgView>, ApiError> {
    let name = body.name.as_deref().map(OrgName::parse).transpose();
    let rpm = body.rate_limit_rpm.map(rate_limit).transpose();
    let (Ok(name), Ok(rpm)) = (name.clone(), rpm.clone()) else {
        let errors = [name.err(), rpm.err()].into_iter().flatten().collect();
        return Err(ApiError::invalid(errors));
    };
    let updated = orgs
        .update(&caller.user_id, &org, name, rpm, &origin)
        .await?;
    Ok(Json(OrgView::of(updated)))
}

/// Deletes an organization and stops its keys (owners).
#[utoipa::path(delete, path = "/v1/orgs/{org}", tag = "orgs", security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization")),
    responses((status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json")))]
async fn delete_org(
    State(orgs): State<Orgs>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path(org): Path<String>,
) -> Result<StatusCode, ApiError> {
    orgs.delete(&caller.user_id, &org, &origin).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The organization's members.
#[utoipa::path(get, path = "/v1/orgs/{org}/members", tag = "orgs", security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization"), PageQuery),
    responses((status = 200, description = "A page of members", body = List<MemberView>)))]
async fn list_members(
    State(orgs): State<Orgs>,
    Caller(caller): Caller,
    Path(org): Path<String>,
    Paging(page): Paging,
) -> Result<List<MemberView>, ApiError> {
    let members = orgs.members(&caller.user_id, &org, &page).await?;
    Ok(List::of(members, MemberView::of))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PutMember {
    /// The address to invite, or a member's address to re-role.
    #[schema(format = "email")]
    email: String,
    #[schema(value_type = Role)]
    role: String,
}

/// The answer to adding someone who is not a member: the invitation mailed to them.
#[derive(Serialize, ToSchema)]
struct Invited {
    invitation: InvitationView,
}

/// Invites an address to the organization, or changes a member's role (owners and admins;
/// only owners grant or take `owner`). Nobody becomes a member without consent: anyone who is
/// not a member is mailed an invitation (valid 7 days) and joins on accepting it at
/// `POST /v1/auth/me/invitations/{id}/accept`. The 202 is the same whether or not the
/// address has an account; a new invitation replaces the org's earlier one to that address.
#[utoipa::path(post, path = "/v1/orgs/{org}/members", tag = "orgs", security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization")), request_body = PutMember,
    responses(
        (status = 202, description = "Invited: the invitation mailed to the address",
            body = Invited),
        (status = 200, description = "The member's role changed", body = MemberView),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_owner`: the org would have no owner", body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: the address was sent an invitation moments \
            ago (by any org); see `Retry-After`. Nothing is stored", body = Problem,
            content_type = "application/problem+json"),
    ))]
async fn put_member(
    State(invitations): State<Invitations>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path(org): Path<String>,
    Json(body): Json<PutMember>,
) -> Result<impl IntoResponse, ApiError> {
    let (email, role) = (Email::parse(&body.email), body.role.parse::<Role>());
    let (Ok(email), Ok(role)) = (email.clone(), role.clone()) else {
        let errors = [email.err(), role.err()].into_iter().flatten().collect();
        return Err(ApiError::invalid(errors));
    };
    let added = invitations
        .add_member(&caller.user_id, &org, &email, role, &origin)
        .await?;
    Ok(match added {
        MemberAdded::Updated(member) => {
            (StatusCode::OK, Json(MemberView::of(member))).into_response()
        }
        MemberAdded::Invited(invitation) => (
            StatusCode::ACCEPTED,
            Json(Invited {
                invitation: InvitationView::of(invitation, invitations.now()),
            }),
        )
            .into_response(),
    })
}

/// Removes a member (owners and admins; members may remove themselves).
#[utoipa::path(delete, path = "/v1/orgs/{org}/members/{user}", tag = "orgs",
    security(("bearer" = [])),
    params(
        ("org" = OrgId, Path, description = "The organization"),
        ("user" = UserId, Path, description = "The member"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_owner`: the org would have no owner", body = Problem,
            content_type = "application/problem+json"),
    ))]
async fn remove_member(
    State(orgs): State<Orgs>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path((org, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    orgs.remove_member(&caller.user_id, &org, &user, &origin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every change to the organization, newest first (owners and admins).
#[utoipa::path(get, path = "/v1/orgs/{org}/audit-log", tag = "orgs", security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization"), PageQuery),
    responses((status = 200, description = "A page of audit entries", body = List<AuditEntry>),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json")))]
async fn audit_log(
    State(orgs): State<Orgs>,
    Caller(caller): Caller,
    Path(org): Path<String>,
    Paging(page): Paging,
) -> Result<List<AuditEntry>, ApiError> {
    Ok(List::of(
        orgs.audit_log(&caller.user_id, &org, &page).await?,
        |e| e,
    ))
}
