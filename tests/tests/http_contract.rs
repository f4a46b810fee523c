//! The HTTP contract every endpoint keeps: bad input is a 4xx problem+json with a stable code
//! and the request id, never a 500; unknown routes 404, wrong methods 405; bodies over 1 MiB 413;
//! the per-IP auth throttle answers 429 with Retry-After.

use meterline_e2e::{Backend, Reply, Server, unique_email};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn send(
    server: &Server,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut request = server.request(method, path).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    Reply::from(request.send().await.expect("send")).await
}

#[tokio::test]
async fn malformed_bodies_are_4xx_problems() {
    let server = Server::start(Backend::Sqlite).await;
    let json_type = Some("application/json");
    let signup = "/v1/auth/signup";

    send(
        &server,
        Method::POST,
        signup,
        json_type,
        b"{\"email\":".to_vec(),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "invalid_json");
    send(&server, Method::POST, signup, json_type, Vec::new())
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_json");
    send(
        &server,
        Method::POST,
        signup,
        Some("text/plain"),
        b"{}".to_vec(),
    )
    .await
    .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    send(&server, Method::POST, signup, None, b"{}".to_vec())
        .await
        .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let wrong_type =
        serde_json::to_vec(&json!({"email": 123, "password": "correct horse battery"}))
            .expect("json");
    send(&server, Method::POST, signup, json_type, wrong_type)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    send(
        &server,
        Method::POST,
        signup,
        json_type,
        b"{\"email\":\"a@example.com\"}".to_vec(),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    send(
        &server,
        Method::POST,
        signup,
        json_type,
        b"[1,2,3]".to_vec(),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let huge_password = json!({"email": unique_email(), "password": "x".repeat(10_000)});
    server
        .post(signup, huge_password, None)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    let login = "/v1/auth/login";
    send(
        &server,
        Method::POST,
        login,
        Some("text/plain"),
        b"x".to_vec(),
    )
    .await
    .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    send(
        &server,
        Method::POST,
        login,
        Some("application/x-www-form-urlencoded"),
        b"username=a@example.com".to_vec(),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    server
        .post(
            login,
            json!({"email": unique_email(), "password": "x".repeat(10_000)}),
            None,
        )
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

/// A body must be a JSON object: serde would read a struct from an array by position, so
/// `[null, null]` once cleared an org's rate limit through `PATCH /v1/orgs/{org}`. Arrays,
/// strings and `null` are 422 and change nothing, on every route that reads a body.
async fn bodies_must_be_json_objects(backend: Backend) {
    let server = Server::start_with(backend, &[("AUTH_IP_LIMIT_PER_MIN", "0")]).await;
    let owner = server.account().await;
    let org = server.org(&owner, "Acme").await;
    let path = format!("/v1/orgs/{org}");
    let limited = meterline_e2e::call(
        &server,
        Method::PATCH,
        &path,
        &owner.token,
        json!({"rate_limit_rpm": 60}),
    )
    .await;
    assert_eq!(limited.status, StatusCode::OK, "{}", limited.body);
    let keyed = server.keyed(json!({"name": "k"})).await;

    for body in [
        json!([null, null]),
        json!(["Renamed", 5]),
        json!("x"),
        json!(null),
    ] {
        let patch = server
            .request(Method::PATCH, &path)
            .bearer_auth(&owner.token);
        let patched = Reply::from(patch.json(&body).send().await.expect("send")).await;
        patched.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let email = unique_email();
        let signup = server
            .post(
                "/v1/auth/signup",
                json!([email, "correct horse battery"]),
                None,
            )
            .await;
        signup.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(
            server
                .attempt_login(&email, "correct horse battery")
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        let events = server
            .metered(
                "/v1/events",
                Some(&keyed.key),
                json!([[{"id": "e1", "meter": "m", "quantity": 1}]]),
            )
            .await;
        events.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let verify = server
            .metered("/v1/verify", Some(&keyed.key), json!(["tokens"]))
            .await;
        verify.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    let org_now = server.get(&path, Some(&owner.token)).await;
    assert_eq!(org_now.body["name"], "Acme", "{}", org_now.body);
    assert_eq!(org_now.body["rate_limit_rpm"], 60, "{}", org_now.body);
}

meterline_e2e::on_every_backend!(bodies_must_be_json_objects);

#[tokio::test]
async fn bodies_over_one_mebibyte_are_413() {
    let server = Server::start(Backend::Sqlite).await;
    let two_mib = format!(
        "{{\"email\":\"{}\",\"password\":\"x\"}}",
        "a".repeat(2 * 1024 * 1024)
    );
    for path in [
        "/v1/auth/signup",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/me",
    ] {
        let method = if path.ends_with("/me") {
            Method::GET
        } else {
            Method::POST
        };
        send(
            &server,
            method,
            path,
            Some("application/json"),
            two_mib.clone().into_bytes(),
        )
        .await
        .assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
    // Just under the limit is read (and then judged on its content).
    let under = format!("{{\"refresh_token\":\"{}\"}}", "a".repeat(1024 * 1024 - 64));
    send(
        &server,
        Method::POST,
        "/v1/auth/refresh",
        Some("application/json"),
        under.into_bytes(),
    )
    .await
    .assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_problems() {
    let server = Server::start(Backend::Sqlite).await;
    server
        .get("/v1/nowhere", None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
    server
        .get("/", None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
    let wrong = send(&server, Method::DELETE, "/v1/auth/login", None, Vec::new()).await;
    wrong.assert_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(wrong.headers["allow"], "POST");
    send(&server, Method::POST, "/v1/auth/me", None, Vec::new())
        .await
        .assert_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn bearer_headers_that_are_not_bearer_tokens_are_401() {
    let server = Server::start(Backend::Sqlite).await;
    for header in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer    ",
        "token",
        "Bearer a.b.c",
    ] {
        let reply = Reply::from(
            server
                .request(Method::GET, "/v1/auth/me")
                .header("authorization", header)
                .send()
                .await
                .expect("send"),
        )
        .await;
        reply.assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
    }
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let server = Server::start(Backend::Sqlite).await;
    let mine = Reply::from(
        server
            .request(Method::GET, "/health")
            .header("x-request-id", "trace-abc-123")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(mine.headers["x-request-id"], "trace-abc-123");
    let hostile = Reply::from(
        server
            .request(Method::GET, "/v1/nowhere")
            .header("x-request-id", "evil\" id with spaces")
            .send()
            .await
            .expect("send"),
    )
    .await;
    let made = hostile.headers["x-request-id"].to_str().expect("ascii");
    assert_ne!(made, "evil\" id with spaces");
    assert_eq!(hostile.body["request_id"], made);
}

#[tokio::test]
async fn health_reports_the_store() {
    let server = Server::start(Backend::Sqlite).await;
    let alive = server.get("/health", None).await;
    assert_eq!(
        (alive.status, alive.body),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let deep = server.get("/v1/health", None).await;
    assert_eq!(deep.status, StatusCode::OK);
    assert_eq!(deep.body["checks"]["store"]["backend"], "sqlite");
    assert_eq!(deep.body["checks"]["store"]["status"], "ok");
    assert!(deep.body["checks"]["store"]["latency_ms"].is_number());
}

#[tokio::test]
async fn auth_requests_are_throttled_per_ip() {
    let server = Server::start_with(Backend::Sqlite, &[("AUTH_IP_LIMIT_PER_MIN", "3")]).await;
    for _ in 0..3 {
        let reply = server
            .post("/v1/auth/refresh", json!({"refresh_token": "x"}), None)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let throttled = server
        .post(
            "/v1/auth/login",
            json!({"email": "a@example.com", "password": "x"}),
            None,
        )
        .await;
    throttled.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(throttled.headers.contains_key("retry-after"));
    // Health is not an auth endpoint.
    assert_eq!(server.get("/health", None).await.status, StatusCode::OK);
}

/// Every route, every method, a spread of hostile bodies and content types: no 5xx, and every
/// error is a problem with a code.
#[tokio::test]
async fn no_request_makes_a_500() {
    let server = Server::start_with(Backend::Sqlite, &[("AUTH_IP_LIMIT_PER_MIN", "0")]).await;
    let paths = [
        "/v1/auth/signup",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/auth/me",
        "/v1/auth/password",
        "/health",
        "/v1/health",
        "/v1/auth/%ff",
        "/v1/auth/me/extra",
    ];
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    let bodies: [(&str, &[u8]); 9] = [
        ("application/json", b""),
        ("application/json", b"null"),
        (
            "application/json",
            b"{\"email\":null,\"password\":null,\"refresh_token\":null}",
        ),
        (
            "application/json",
            b"{\"email\":\"\\u0000@x.io\",\"password\":\"\\ud800\"}",
        ),
        ("application/json", b"\xff\xfe\x00garbage"),
        (
            "application/json; charset=utf-8",
            b"{\"email\":[],\"password\":{}}",
        ),
        (
            "application/x-www-form-urlencoded",
            b"username=%ZZ&password=&&==",
        ),
        ("multipart/form-data; boundary=x", b"--x\r\n\r\n--x--"),
        (
            "application/vnd.api+json",
            b"{\"current_password\":1,\"new_password\":2}",
        ),
    ];
    for path in paths {
        for method in &methods {
            for (content_type, body) in &bodies {
                let reply = send(
                    &server,
                    method.clone(),
                    path,
                    Some(content_type),
                    body.to_vec(),
                )
                .await;
                assert!(
                    reply.status.as_u16() < 500,
                    "{method} {path} {content_type}: {}",
                    reply.status
                );
                if !reply.status.is_success() {
                    assert!(
                        reply.body["code"].is_string(),
                        "{method} {path}: {}",
                        reply.body
                    );
                }
            }
        }
    }
    let garbage_bearer = Reply::from(
        server
            .request(Method::POST, "/v1/auth/logout")
            .header(
                "authorization",
                reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("obs-text"),
            )
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(garbage_bearer.status, StatusCode::UNAUTHORIZED);
}
