//! One error type for every endpoint, rendered as RFC 9457 `application/problem+json`:
//! `{"type","title","status","detail","code","request_id"}`.
//!
//! A client's mistake is a 4xx with a stable `code`; an internal failure is an opaque 500 whose
//! cause is logged (never sent).

use super::request_id;
use crate::auth::AuthError;
use crate::billing::BillingError;
use crate::domain::ValidationError;
use crate::orgs::OrgError;
use crate::store::StoreError;
use crate::teams::TeamError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Everything a handler can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request cannot be understood (e.g. malformed JSON).
    #[error("{detail}")]
    BadRequest {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        detail: String,
    },
    /// 401: no, or no acceptable, credentials.
    #[error("{detail}")]
    Unauthorized {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        detail: String,
    },
    /// 403: authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 403 with a code of its own, for refusals a client handles specially (e.g.
    /// `email_not_verified`: send the user to verify their email).
    #[error("{detail}")]
    Refused {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        detail: String,
    },
    /// 404: no such resource (or not one the caller may know of).
    #[error("{detail}")]
    NotFound {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        detail: String,
    },
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: conflicts with the current state.
    #[error("{detail}")]
    Conflict {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        detail: String,
    },
    /// 413: the body is over the limit.
    #[error("the request body is larger than the limit")]
    PayloadTooLarge,
    /// 415: a body in a format the endpoint does not read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed, but a value breaks a rule.
    #[error("{detail}")]
    Validation {
        /// Human-readable summary.
        detail: String,
        /// Each offending field and why.
        errors: Vec<ValidationError>,
    },
    /// 422 with a code of its own, for a rule a client handles specially (e.g.
    /// `event_too_large`, `too_many_meters`) rather than a field to fix.
    #[error("{detail}")]
    Unprocessable {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        detail: String,
    },
    /// 429: too many requests; try again after `retry_after_secs`.
    #[error("{detail}")]
    TooManyRequests {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        detail: String,
        /// Seconds until a retry can succeed (sent as `Retry-After`).
        retry_after_secs: u64,
    },
    /// 503: a backend is down; a retry may succeed.
    #[error("a backend service is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// 500: a bug or an unexpected backend answer. The cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// 401 with a code and explanation.
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Unauthorized {
            code,
            detail: detail.into(),
        }
    }

    /// 422 `validation_failed` listing every offending field.
    pub fn invalid(errors: Vec<ValidationError>) -> Self {
        let detail = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Self::Validation { detail, errors }
    }

    /// 404 `not_found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound {
            code: "not_found",
            detail: detail.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::Refused { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation { .. } | Self::Unprocessable { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable snake_case code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::Refused { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::TooManyRequests { code, .. } => code,
            Self::Forbidden(_) => "forbidden",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Validation { .. } => "validation_failed",
            Self::Unavailable(_) => "service_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }
}

/// The RFC 9457 body of every error answer (`application/problem+json`), public so the OpenAPI
/// document describes exactly what is sent.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:meterline:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: &'static str,
    /// The HTTP status, repeated.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// What went wrong, for programs: stable snake_case, e.g. `validation_failed`.
    pub code: &'static str,
    /// The request's `x-request-id`, to quote to support.
    pub request_id: Option<String>,
    /// Each field that broke a rule (422 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub errors: Vec<FieldError>,
}

/// One field's problem in a 422 answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field as the client sent it, e.g. `email` or `events[3].meter`.
    pub field: String,
    /// Why it was refused.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            Self::Unavailable(cause) => tracing::error!(error = ?cause, "backend unavailable"),
            _ => tracing::debug!(
                code = self.code(),
                status = status.as_u16(),
                "request refused"
            ),
        }
        let errors = match &self {
            Self::Validation { errors, .. } => errors
                .iter()
                .map(|e| FieldError {
                    field: e.field.to_string(),
                    message: e.message.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let problem = Problem {
            kind: format!("urn:meterline:problem:{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code(),
            request_id: request_id::current(),
            errors,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Self::TooManyRequests {
            retry_after_secs, ..
        } = self
        {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        Self::invalid(vec![err])
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::EmailTaken => Self::Conflict {
                code: "email_taken",
                detail: err.to_string(),
            },
            StoreError::LastOwner => Self::Conflict {
                code: "last_owner",
                detail: err.to_string(),
            },
            StoreError::Conflict => Self::Conflict {
                code: "conflict",
                detail: "the resource changed while this request ran; retry it".into(),
            },
            StoreError::Unavailable(cause) => Self::Unavailable(cause),
            StoreError::Backend(cause) => Self::Internal(cause),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        let detail = err.to_string();
        match err {
            AuthError::EmailTaken => Self::Conflict {
                code: "email_taken",
                detail,
            },
            AuthError::InvalidCredentials => Self::unauthorized("invalid_credentials", detail),
            AuthError::Locked { retry_after } => Self::TooManyRequests {
                code: "account_locked",
                detail,
                retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
            },
            AuthError::InvalidToken => Self::unauthorized("invalid_token", detail),
            AuthError::TokenExpired => Self::unauthorized("token_expired", detail),
            AuthError::TokenReused => Self::unauthorized("token_reused", detail),
            AuthError::TokenRevoked => Self::unauthorized("token_revoked", detail),
            AuthError::TokenUsed => Self::unauthorized("token_used", detail),
            AuthError::EmailNotVerified => Self::Refused {
                code: "email_not_verified",
                detail,
            },
            AuthError::InvalidCode => Self::unauthorized("invalid_code", detail),
            AuthError::CodeExpired => Self::unauthorized("code_expired", detail),
            AuthError::Throttled { retry_after } => Self::TooManyRequests {
                code: "rate_limited",
                detail,
                retry_after_secs: retry_after.as_secs_f64().ceil().max(1.0) as u64,
            },
            AuthError::Unavailable(cause) => Self::Unavailable(cause),
            AuthError::Store(err) => err.into(),
            AuthError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<OrgError> for ApiError {
    fn from(err: OrgError) -> Self {
        let detail = err.to_string();
        match err {
            OrgError::NotFound => Self::not_found(detail),
            OrgError::Forbidden(denied) => Self::Forbidden(denied.0.to_owned()),
            OrgError::UserNotFound => Self::NotFound {
                code: "user_not_found",
                detail,
            },
            OrgError::MemberNotFound => Self::NotFound {
                code: "member_not_found",
                detail,
            },
            OrgError::ApiKeyNotFound => Self::NotFound {
                code: "api_key_not_found",
                detail,
            },
            OrgError::Store(err) => err.into(),
        }
    }
}

impl From<TeamError> for ApiError {
    fn from(err: TeamError) -> Self {
        let detail = err.to_string();
        match err {
            TeamError::Org(err) => err.into(),
            TeamError::TeamNotFound => Self::not_found(detail),
            TeamError::NameTaken => Self::Conflict {
                code: "team_name_taken",
                detail,
            },
            TeamError::HasActiveKeys => Self::Conflict {
                code: "team_has_active_keys",
                detail,
            },
            TeamError::MemberNotFound => Self::NotFound {
                code: "member_not_found",
                detail,
            },
            TeamError::Invalid(err) => err.into(),
        }
    }
}

impl From<BillingError> for ApiError {
    fn from(err: BillingError) -> Self {
        let detail = err.to_string();
        match err {
            BillingError::Org(err) => err.into(),
            BillingError::Store(err) => err.into(),
            BillingError::Validation(err) => err.into(),
            BillingError::PlanNotFound => Self::NotFound {
                code: "plan_not_found",
                detail,
            },
            BillingError::PlanExists => Self::Conflict {
                code: "plan_exists",
                detail,
            },
            BillingError::PlanArchived => Self::Conflict {
                code: "plan_archived",
                detail,
            },
            BillingError::DefaultPlan => Self::Conflict {
                code: "default_plan",
                detail,
            },
            BillingError::TooManyPlanChanges => Self::Conflict {
                code: "too_many_plan_changes",
                detail,
            },
            BillingError::NothingToCancel => Self::Conflict {
                code: "not_subscribed",
                detail,
            },
            BillingError::NotPlatformAdmin => Self::Forbidden(detail),
            BillingError::Signature(_) => Self::BadRequest {
                code: "invalid_signature",
                detail,
            },
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}
