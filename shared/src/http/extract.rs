//! Body extractors whose rejections are problems: malformed JSON 400, a wrong type or a
//! missing field 422, a wrong content type 415, an oversized body 413. Never a 500.
//!
//! Every JSON body must be an object: serde would otherwise read a struct from an array by
//! position (`[null, null]` as `{"name": null, "rate_limit_rpm": null}`), a form the contract
//! never documents. [`json_object`] is the one parser of request bodies.

use super::ApiError;
use crate::domain::{Page, PageRequest};
use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// JSON in and out; like `axum::Json` but rejecting with [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(expected_json());
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_error(rejection.status()))?;
        Ok(Self(json_object(&bytes)?))
    }
}

/// Parses a request body that must be a JSON object into `T`: malformed JSON is 400, any other
/// JSON value (an array, a string, `null`) or a body `T` refuses is 422.
pub fn json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let axum::Json(value) = axum::Json::<T>::from_bytes(bytes)?;
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::Validation {
            detail: "the request body must be a JSON object".into(),
            errors: Vec::new(),
        });
    }
    Ok(value)
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A JSON body that may be absent: an empty body is `None`, anything else must be JSON.
#[derive(Debug, Clone)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_error(rejection.status()))?;
        if bytes.is_empty() {
            return Ok(Self(None));
        }
        if !is_json {
            return Err(expected_json());
        }
        Ok(Self(Some(json_object(&bytes)?)))
    }
}

/// A body that may be JSON or an HTML form (`application/x-www-form-urlencoded`), as OAuth2
/// password-grant clients send logins.
#[derive(Debug, Clone)]
pub struct JsonOrForm<T>(pub T);

impl<T, S> FromRequest<S> for JsonOrForm<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if is_json(req.headers()) {
            let Json(value) = Json::<T>::from_request(req, state).await?;
            return Ok(Self(value));
        }
        if content_type(req.headers()).is_some_and(|ct| ct == "application/x-www-form-urlencoded") {
            let axum::Form(value) = axum::Form::<T>::from_request(req, state).await?;
            return Ok(Self(value));
        }
        Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: application/json or application/x-www-form-urlencoded".into(),
        ))
    }
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = raw.split(';').next()?.trim().to_ascii_lowercase();
    Some(essence)
}

fn is_json(headers: &HeaderMap) -> bool {
    content_type(headers).is_some_and(|ct| {
        ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))
    })
}

fn expected_json() -> ApiError {
    ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
}

fn body_error(status: axum::http::StatusCode) -> ApiError {
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest {
            code: "invalid_body",
            detail: "the request body could not be read".into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(err) => Self::Validation {
                detail: err.body_text(),
                errors: Vec::new(),
            },
            JsonRejection::JsonSyntaxError(err) => Self::BadRequest {
                code: "invalid_json",
                detail: err.body_text(),
            },
            JsonRejection::MissingJsonContentType(_) => expected_json(),
            other => body_error(other.status()),
        }
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        match rejection {
            FormRejection::FailedToDeserializeForm(err) => Self::BadRequest {
                code: "invalid_form",
                detail: err.body_text(),
            },
            FormRejection::FailedToDeserializeFormBody(err) => Self::Validation {
                detail: err.body_text(),
                errors: Vec::new(),
            },
            FormRejection::InvalidFormContentType(_) => Self::UnsupportedMediaType(
                "expected Content-Type: application/x-www-form-urlencoded".into(),
            ),
            other => body_error(other.status()),
        }
    }
}

/// Query-string parameters; like `axum::extract::Query` but rejecting with [`ApiError`].
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| ApiError::BadRequest {
                    code: "invalid_query",
                    detail: rejection.body_text(),
                })?;
        Ok(Self(value))
    }
}

/// The paging query of list endpoints, public for the OpenAPI document (`params(PageQuery)`).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `?limit=` (1-100, default 50) and `?cursor=` for list endpoints.
#[derive(Debug, Clone)]
pub struct Paging(pub PageRequest);

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(query) = Query::<PageQuery>::from_request_parts(parts, state).await?;
        Ok(Self(PageRequest::parse(
            query.limit,
            query.cursor.as_deref(),
        )?))
    }
}

/// A list response: `{"data":[...],"next_cursor":null|"..."}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct List<T> {
    data: Vec<T>,
    next_cursor: Option<String>,
}

impl<T> List<T> {
    /// Shows a page, each item through `view`.
    pub fn of<U>(page: Page<U>, view: impl FnMut(U) -> T) -> Self {
        let page = page.map(view);
        Self {
            data: page.items,
            next_cursor: page.next_cursor,
        }
    }
}

impl<T: Serialize> IntoResponse for List<T> {
    fn into_response(self) -> Response {
        axum::Json(self).into_response()
    }
}

/// Path parameters; a segment that cannot be decoded is a 404 problem (no such resource).
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) = axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("no such resource"))?;
        Ok(Self(value))
    }
}
