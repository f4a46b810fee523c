//! Where a request came from, for audit entries: client IP, User-Agent, request id.

use super::{ClientIp, request_id};
use crate::domain::AuditOrigin;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use std::convert::Infallible;

/// The longest User-Agent kept in an audit entry.
const MAX_USER_AGENT: usize = 512;

/// The audit origin of the current request.
#[derive(Debug, Clone)]
pub struct Origin(pub AuditOrigin);

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
        Ok(Self(AuditOrigin {
            ip: ClientIp::of(parts).0.map(|ip| ip.to_string()),
            user_agent,
            request_id: request_id::current(),
        }))
    }
}
