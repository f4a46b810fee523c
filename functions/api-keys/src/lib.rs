//! The API-key endpoint group (`/v1/orgs/{org}/api-keys`). The rules live in
//! [`meterline::api_keys::ApiKeys`]; this crate maps HTTP onto them.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use chrono::{DateTime, Utc};
use meterline::AppState;
use meterline::api_keys::{ApiKeys, NewApiKey};
use meterline::domain::{
    ApiKey, ApiKeyId, OrgId, TeamId, ValidationError, parse_rate_limit, short_text,
};
use meterline::http::{
    ApiError, Caller, Json, List, Origin, PageQuery, Paging, Path, Problem, Query,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(paths(create_key, list_keys, revoke_key))]
struct Api;

/// This group's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Api::openapi()
}

/// The API-key routes, at the same paths as in `template.yaml`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/orgs/{org}/api-keys", get(list_keys).post(create_key))
        .route("/v1/orgs/{org}/api-keys/{key}", delete(revoke_key))
        .with_state(state)
}

/// A key's metadata; `key` (the plaintext) only in the creation response.
#[derive(Serialize, ToSchema)]
struct KeyView {
    id: ApiKeyId,
    /// The team the key is scoped to; `null` for an org-wide key.
    team_id: Option<TeamId>,
    name: String,
    prefix: String,
    active: bool,
    #[serde(with = "meterline::time_format")]
    created_at: DateTime<Utc>,
    #[serde(with = "meterline::time_format::option")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(with = "meterline::time_format::option")]
    last_used_at: Option<DateTime<Utc>>,
    rate_limit_rpm: Option<u32>,
    /// The key itself: in the creation answer only, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, pattern = "^ml_live_[0-9A-Za-z]+$")]
    key: Option<String>,
}

impl KeyView {
    fn of(key: ApiKey, now: DateTime<Utc>) -> Self {
        Self {
            active: key.is_active(now),
            id: key.id,
            team_id: key.team_id,
            name: key.name,
            prefix: key.prefix,
            created_at: key.created_at,
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
            rate_limit_rpm: key.rate_limit_rpm,
            key: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// When the key stops working by itself (RFC 3339, in the future).
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// The key's own requests per minute, under the org's.
    #[schema(minimum = 1)]
    rate_limit_rpm: Option<i64>,
    /// Scopes the key to a team of the organization (omit or `null` for an org-wide key).
    /// Members who are in the team may create and revoke its keys.
    #[schema(value_type = Option<TeamId>)]
    team_id: Option<String>,
}

/// A `team_id` from a client: well-formed, else a 422 on the field. (Whether the org has
/// such a team is the service's check, also a 422.)
fn team_id(raw: Option<&str>) -> Result<Option<TeamId>, ValidationError> {
    raw.map(|raw| {
        TeamId::parse(raw)
            .ok_or_else(|| ValidationError::new("team_id", "no such team in this organization"))
    })
    .transpose()
}

fn expiry(raw: Option<&str>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ValidationError> {
    let Some(raw) = raw else { return Ok(None) };
    let at = meterline::time_format::parse("expires_at", raw)?;
    if at <= now {
        return Err(ValidationError::new("expires_at", "must be in the future"));
    }
    Ok(Some(at))
}

/// Creates a key; the answer is the only time the key itself is shown.
#[utoipa::path(post, path = "/v1/orgs/{org}/api-keys", tag = "api-keys",
    security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization")),
    request_body = CreateKey,
    responses((status = 201, description = "The key, with `key` shown once", body = KeyView),
        (status = 403, description = "`forbidden`: only owners and admins manage org-wide keys; \
            members manage the keys of their own teams only",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such organization (or not a member)",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: the team was deleted while the key was \
            being created", body = Problem, content_type = "application/problem+json")))]
async fn create_key(
    State(keys): State<ApiKeys>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path(org): Path<String>,
    Json(body): Json<CreateKey>,
) -> Result<impl IntoResponse, ApiError> {
    let now = keys.now();
    let fields = (
        short_text("name", &body.name),
        expiry(body.expires_at.as_deref(), now),
        body.rate_limit_rpm
            .map(|rpm| parse_rate_limit("rate_limit_rpm", rpm))
            .transpose(),
        team_id(body.team_id.as_deref()),
    );
    let (Ok(name), Ok(expires_at), Ok(rate_limit_rpm), Ok(team_id)) = fields.clone() else {
        let (name, expires_at, rpm, team) = fields;
        let errors = [name.err(), expires_at.err(), rpm.err(), team.err()];
        return Err(ApiError::invalid(errors.into_iter().flatten().collect()));
    };
    let new = NewApiKey {
        name,
        expires_at,
        rate_limit_rpm,
        team_id,
    };
    let (key, secret) = keys.create(&caller.user_id, &org, new, &origin).await?;
    let mut view = KeyView::of(key, now);
    view.key = Some(secret.expose().to_owned());
    Ok((StatusCode::CREATED, Json(view)))
}

/// Narrows a key listing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct KeyFilter {
    /// Only the keys scoped to this team (a team of the organization, else 422).
    #[param(value_type = Option<TeamId>)]
    team_id: Option<String>,
}

/// The organization's keys (metadata only), newest first; `?team_id=` for one team's.
#[utoipa::path(get, path = "/v1/orgs/{org}/api-keys", tag = "api-keys",
    security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization"), KeyFilter, PageQuery),
    responses((status = 200, description = "A page of keys", body = List<KeyView>),
        (status = 404, description = "`not_found`: no such organization (or not a member)",
            body = Problem, content_type = "application/problem+json")))]
async fn list_keys(
    State(keys): State<ApiKeys>,
    Caller(caller): Caller,
    Path(org): Path<String>,
    Query(filter): Query<KeyFilter>,
    Paging(page): Paging,
) -> Result<List<KeyView>, ApiError> {
    let now = keys.now();
    let team = team_id(filter.team_id.as_deref())?;
    let listed = keys
        .list(&caller.user_id, &org, team.as_ref(), &page)
        .await?;
    Ok(List::of(listed, |key| KeyView::of(key, now)))
}

/// Revokes a key; warm caches stop honouring it on their next request.
#[utoipa::path(delete, path = "/v1/orgs/{org}/api-keys/{key}", tag = "api-keys",
    security(("bearer" = [])),
    params(
        ("org" = OrgId, Path, description = "The organization"),
        ("key" = ApiKeyId, Path, description = "The key's id"),
    ),
    responses((status = 204, description = "Revoked"),
        (status = 403, description = "`forbidden`: only owners and admins revoke org-wide keys; \
            members revoke the keys of their own teams only",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such organization (or not a member); \
            `api_key_not_found`: no such key in it",
            body = Problem, content_type = "application/problem+json")))]
async fn revoke_key(
    State(keys): State<ApiKeys>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path((org, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    keys.revoke(&caller.user_id, &org, &key, &origin).await?;
    Ok(StatusCode::NO_CONTENT)
}
