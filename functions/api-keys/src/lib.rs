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
use meterline::domain::{ApiKey, ApiKeyId, ValidationError, parse_rate_limit, short_text};
use meterline::http::{ApiError, Caller, Json, List, Origin, Paging, Path};
use serde::{Deserialize, Serialize};

/// The API-key routes, at the same paths as in `template.yaml`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/orgs/{org}/api-keys", get(list_keys).post(create_key))
        .route("/v1/orgs/{org}/api-keys/{key}", delete(revoke_key))
        .with_state(state)
}

/// A key's metadata; `key` (the plaintext) only in the creation response.
#[derive(Serialize)]
struct KeyView {
    id: ApiKeyId,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl KeyView {
    fn of(key: ApiKey, now: DateTime<Utc>) -> Self {
        Self {
            active: key.is_active(now),
            id: key.id,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    expires_at: Option<String>,
    rate_limit_rpm: Option<i64>,
}

fn expiry(raw: Option<&str>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ValidationError> {
    let Some(raw) = raw else { return Ok(None) };
    let at = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| ValidationError::new("expires_at", "must be an RFC 3339 time"))?
        .with_timezone(&Utc);
    if at <= now {
        return Err(ValidationError::new("expires_at", "must be in the future"));
    }
    Ok(Some(at))
}

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
    );
    let (Ok(name), Ok(expires_at), Ok(rate_limit_rpm)) = fields.clone() else {
        let (name, expires_at, rpm) = fields;
        let errors = [name.err(), expires_at.err(), rpm.err()];
        return Err(ApiError::invalid(errors.into_iter().flatten().collect()));
    };
    let new = NewApiKey {
        name,
        expires_at,
        rate_limit_rpm,
    };
    let (key, secret) = keys.create(&caller.user_id, &org, new, &origin).await?;
    let mut view = KeyView::of(key, now);
    view.key = Some(secret.expose().to_owned());
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list_keys(
    State(keys): State<ApiKeys>,
    Caller(caller): Caller,
    Path(org): Path<String>,
    Paging(page): Paging,
) -> Result<List<KeyView>, ApiError> {
    let now = keys.now();
    let listed = keys.list(&caller.user_id, &org, &page).await?;
    Ok(List::of(listed, |key| KeyView::of(key, now)))
}

async fn revoke_key(
    State(keys): State<ApiKeys>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path((org, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    keys.revoke(&caller.user_id, &org, &key, &origin).await?;
    Ok(StatusCode::NO_CONTENT)
}
