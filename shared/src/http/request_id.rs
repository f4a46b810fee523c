//! A request id on every request, response and log line: API Gateway's own id when Lambda
//! serves the request, else a sane incoming `x-request-id`, else a fresh one.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use lambda_http::request::RequestContext;
use tracing::Instrument;

/// The header carrying the id in both directions.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being served on this task, for error bodies and logs.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// API Gateway's request id (what the client and the access logs see), else the Lambda
/// invocation's id.
fn from_lambda(request: &Request) -> Option<String> {
    let gateway = match request.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    let invocation = || {
        request
            .extensions()
            .get::<lambda_http::Context>()
            .map(|ctx| ctx.request_id.clone())
    };
    gateway
        .filter(|id| !id.is_empty())
        .or_else(invocation)
        .filter(|id| !id.is_empty())
}

/// A client-chosen id is kept only if it is short, printable ASCII: it ends up in logs.
fn from_header(request: &Request) -> Option<String> {
    let raw = request.headers().get(HEADER)?.to_str().ok()?;
    let sane = !raw.is_empty()
        && raw.len() <= 128
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    sane.then(|| raw.to_owned())
}

/// Middleware: picks the id, runs the request inside a span and task-local carrying it, and
/// echoes it on the response.
pub async fn layer(request: Request, next: Next) -> Response {
    let id = from_lambda(&request)
        .or_else(|| from_header(&request))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        user_id = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let mut response = CURRENT
        .scope(id.clone(), next.run(request).instrument(span.clone()))
        .await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "served"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route("/", get(|| async { current().unwrap_or_default() }))
            .layer(axum::middleware::from_fn(layer))
    }

    async fn id_of(request: axum::http::Request<Body>) -> (String, String) {
        let response = app().oneshot(request).await.expect("infallible");
        let header = response.headers()[HEADER]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        (header, String::from_utf8(body.to_vec()).expect("utf-8"))
    }

    #[tokio::test]
    async fn api_gateway_request_id_wins() {
        let mut context = ApiGatewayV2httpRequestContext::default();
        context.request_id = Some("apigw-req-42".into());
        let mut request = axum::http::Request::get("/")
            .header(HEADER, "client-chosen")
            .body(Body::empty())
            .expect("request");
        request
            .extensions_mut()
            .insert(RequestContext::ApiGatewayV2(context));
        assert_eq!(
            id_of(request).await,
            ("apigw-req-42".into(), "apigw-req-42".into())
        );
    }

    #[tokio::test]
    async fn a_fresh_id_is_made_and_seen_by_the_handler() {
        let request = axum::http::Request::get("/")
            .body(Body::empty())
            .expect("request");
        let (header, seen) = id_of(request).await;
        assert_eq!(header, seen);
        assert_eq!(header.len(), 36);
    }
}
