//! The authenticated caller, from `Authorization: Bearer <access token>`.

use super::ApiError;
use crate::auth::{AccessContext, Accounts};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

/// A caller whose access token was verified and is not revoked.
#[derive(Debug, Clone)]
pub struct Caller(pub AccessContext);

impl<S> FromRequestParts<S> for Caller
where
    Accounts: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "missing_token",
                "send the access token as `Authorization: Bearer <token>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|raw| raw.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("invalid_token", "expected `Authorization: Bearer <token>`")
            })?;
        let context = Accounts::from_ref(state).authenticate(token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(&context.user_id));
        Ok(Self(context))
    }
}
