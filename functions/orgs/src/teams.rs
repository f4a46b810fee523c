//! Team routes (`/v1/orgs/{org}/teams/*`): the HTTP side of [`meterline::teams::Teams`].

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use chrono::{DateTime, Utc};
use meterline::AppState;
use meterline::domain::{
    Email, OrgId, Team, TeamId, TeamMember, TeamName, UserId, ValidationError,
};
use meterline::http::{ApiError, Caller, Json, List, Origin, PageQuery, Paging, Path, Problem};
use meterline::teams::{MemberRef, TeamMemberChange, Teams};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(paths(
    create_team,
    list_teams,
    get_team,
    delete_team,
    list_team_members,
    add_team_member,
    remove_team_member
))]
struct Api;

/// This part's OpenAPI operations.
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    Api::openapi()
}

/// The team routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/orgs/{org}/teams", get(list_teams).post(create_team))
        .route(
            "/v1/orgs/{org}/teams/{team}",
            get(get_team).delete(delete_team),
        )
        .route(
            "/v1/orgs/{org}/teams/{team}/members",
            get(list_team_members).post(add_team_member),
        )
        .route(
            "/v1/orgs/{org}/teams/{team}/members/{user}",
            delete(remove_team_member),
        )
}

/// A team of an organization.
#[derive(Serialize, ToSchema)]
struct TeamView {
    id: TeamId,
    org_id: OrgId,
    name: String,
    #[serde(with = "meterline::time_format")]
    created_at: DateTime<Utc>,
}

impl TeamView {
    fn of(team: Team) -> Self {
        Self {
            id: team.id,
            org_id: team.org_id,
            name: team.name,
            created_at: team.created_at,
        }
    }
}

/// A member of a team.
#[derive(Serialize, ToSchema)]
struct TeamMemberView {
    user_id: UserId,
    email: Email,
    #[serde(with = "meterline::time_format")]
    added_at: DateTime<Utc>,
}

impl TeamMemberView {
    fn of(member: TeamMember) -> Self {
        Self {
            user_id: member.user_id,
            email: member.email,
            added_at: member.added_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTeam {
    /// Unique in the organization (case-insensitively).
    #[schema(min_length = 1, max_length = 100)]
    name: String,
}

/// Creates a team in the organization (owners and admins).
#[utoipa::path(post, path = "/v1/orgs/{org}/teams", tag = "orgs", security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization")), request_body = CreateTeam,
    responses(
        (status = 201, description = "The new team", body = TeamView),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such organization (or not a member)",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`team_name_taken`: the organization has a team of this name",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_team(
    State(teams): State<Teams>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path(org): Path<String>,
    Json(body): Json<CreateTeam>,
) -> Result<impl IntoResponse, ApiError> {
    let name = TeamName::parse(&body.name)?;
    let team = teams.create(&caller.user_id, &org, name, &origin).await?;
    Ok((StatusCode::CREATED, Json(TeamView::of(team))))
}

/// The organization's teams, oldest first (any member).
#[utoipa::path(get, path = "/v1/orgs/{org}/teams", tag = "orgs", security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization"), PageQuery),
    responses(
        (status = 200, description = "A page of teams", body = List<TeamView>),
        (status = 404, description = "`not_found`: no such organization (or not a member)",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_teams(
    State(teams): State<Teams>,
    Caller(caller): Caller,
    Path(org): Path<String>,
    Paging(page): Paging,
) -> Result<List<TeamView>, ApiError> {
    let listed = teams.list(&caller.user_id, &org, &page).await?;
    Ok(List::of(listed, TeamView::of))
}

/// One team (any member).
#[utoipa::path(get, path = "/v1/orgs/{org}/teams/{team}", tag = "orgs",
    security(("bearer" = [])),
    params(
        ("org" = OrgId, Path, description = "The organization"),
        ("team" = TeamId, Path, description = "The team"),
    ),
    responses(
        (status = 200, description = "The team", body = TeamView),
        (status = 404, description = "`not_found`: no such organization (or not a member), or \
            no such team in it", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_team(
    State(teams): State<Teams>,
    Caller(caller): Caller,
    Path((org, team)): Path<(String, String)>,
) -> Result<Json<TeamView>, ApiError> {
    let team = teams.get(&caller.user_id, &org, &team).await?;
    Ok(Json(TeamView::of(team)))
}

/// Deletes a team (owners and admins); its keys must be revoked first.
#[utoipa::path(delete, path = "/v1/orgs/{org}/teams/{team}", tag = "orgs",
    security(("bearer" = [])),
    params(
        ("org" = OrgId, Path, description = "The organization"),
        ("team" = TeamId, Path, description = "The team"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such organization (or not a member), or \
            no such team in it", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`team_has_active_keys`: revoke the team's API keys first",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_team(
    State(teams): State<Teams>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path((org, team)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    teams.delete(&caller.user_id, &org, &team, &origin).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A team's members (any member of the organization).
#[utoipa::path(get, path = "/v1/orgs/{org}/teams/{team}/members", tag = "orgs",
    security(("bearer" = [])),
    params(
        ("org" = OrgId, Path, description = "The organization"),
        ("team" = TeamId, Path, description = "The team"),
        PageQuery,
    ),
    responses(
        (status = 200, description = "A page of team members, by user id", body = List<TeamMemberView>),
        (status = 404, description = "`not_found`: no such organization (or not a member), or \
            no such team in it", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_team_members(
    State(teams): State<Teams>,
    Caller(caller): Caller,
    Path((org, team)): Path<(String, String)>,
    Paging(page): Paging,
) -> Result<List<TeamMemberView>, ApiError> {
    let members = teams.members(&caller.user_id, &org, &team, &page).await?;
    Ok(List::of(members, TeamMemberView::of))
}

/// Names an existing member of the organization: `user_id` or `email`, exactly one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AddTeamMember {
    user_id: Option<String>,
    #[schema(format = "email")]
    email: Option<String>,
}

fn member_ref(body: AddTeamMember) -> Result<MemberRef, ValidationError> {
    match (body.user_id, body.email) {
        (Some(id), None) => Ok(MemberRef::Id(id)),
        (None, Some(email)) => Email::parse(&email).map(MemberRef::Email),
        _ => Err(ValidationError::new(
            "user_id",
            "give exactly one of user_id and email",
        )),
    }
}

/// Adds a member of the organization to a team (owners and admins); adding a member again
/// changes nothing.
#[utoipa::path(post, path = "/v1/orgs/{org}/teams/{team}/members", tag = "orgs",
    security(("bearer" = [])),
    params(
        ("org" = OrgId, Path, description = "The organization"),
        ("team" = TeamId, Path, description = "The team"),
    ),
    request_body = AddTeamMember,
    responses(
        (status = 201, description = "Added", body = TeamMemberView),
        (status = 200, description = "Already a member; nothing changed", body = TeamMemberView),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such organization (or not a member), or \
            no such team in it; `user_not_found`: the user is not a member of the organization",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn add_team_member(
    State(teams): State<Teams>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path((org, team)): Path<(String, String)>,
    Json(body): Json<AddTeamMember>,
) -> Result<impl IntoResponse, ApiError> {
    let who = member_ref(body)?;
    let (member, change) = teams
        .add_member(&caller.user_id, &org, &team, &who, &origin)
        .await?;
    let status = match change {
        TeamMemberChange::Added => StatusCode::CREATED,
        TeamMemberChange::Unchanged => StatusCode::OK,
    };
    Ok((status, Json(TeamMemberView::of(member))))
}

/// Removes a member from a team (owners and admins; members may remove themselves).
#[utoipa::path(delete, path = "/v1/orgs/{org}/teams/{team}/members/{user}", tag = "orgs",
    security(("bearer" = [])),
    params(
        ("org" = OrgId, Path, description = "The organization"),
        ("team" = TeamId, Path, description = "The team"),
        ("user" = UserId, Path, description = "The team member"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such organization (or not a member), or \
            no such team in it; `member_not_found`: the user is not in the team",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn remove_team_member(
    State(teams): State<Teams>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path((org, team, user)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    teams
        .remove_member(&caller.user_id, &org, &team, &user, &origin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
