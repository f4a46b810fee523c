//! The client's address: API Gateway's `sourceIp` under Lambda (which a client cannot forge),
//! the TCP peer locally. `X-Forwarded-For` is deliberately ignored: anyone can write it.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use lambda_http::request::RequestContext;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// The client IP, when the transport tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// Reads the address from what Lambda or the local server attached to the request.
    pub fn of(parts: &Parts) -> Self {
        let from_lambda = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
            Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
            _ => None,
        };
        let ip = from_lambda.and_then(|raw| raw.parse().ok()).or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip())
        });
        Self(ip)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self::of(parts))
    }
}
