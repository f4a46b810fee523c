//! The auth router in-process (`tower::ServiceExt::oneshot`), on a clock the test moves:
//! the time-dependent rules (token expiry, lockout lifting, session end) without sleeping.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{Duration, Utc};
use http_body_util::BodyExt;
use meterline::clock::ManualClock;
use meterline::store::testing;
use meterline::{AppState, Config};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery";

struct App {
    router: Router,
    clock: Arc<ManualClock>,
}

impl App {
    async fn new(settings: &[(&str, &str)]) -> Self {
        // Mail goes to a temporary folder: tests never write into the source tree.
        let outbox =
            std::env::temp_dir().join(format!("meterline-router-outbox-{}", std::process::id()));
        let mut vars: HashMap<String, String> = HashMap::from([
            ("AUTH_IP_LIMIT_PER_MIN".into(), "0".into()),
            ("MAIL_OUTBOX_DIR".into(), outbox.display().to_string()),
        ]);
        vars.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from_vars(&vars).expect("config");
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let limiter = Arc::new(meterline::ratelimit::LocalLimiter::new());
        let state = AppState::assemble(config, testing::sqlite().await, limiter, clock.clone())
            .expect("state");
        let router = meterline::http::service(meterline_auth::router(state.clone()), &state);
        Self { router, clock }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Value,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn signup_and_login(&self, email: &str) -> (String, String) {
        let (status, _) = self
            .call(
                "POST",
                "/v1/auth/signup",
                json!({"email": email, "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        self.login(email, PASSWORD).await
    }

    async fn login(&self, email: &str, password: &str) -> (String, String) {
        let (status, body) = self
            .call(
                "POST",
                "/v1/auth/login",
                json!({"email": email, "password": password}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (
            body["access_token"].as_str().expect("access").into(),
            body["refresh_token"].as_str().expect("refresh").into(),
        )
    }
}

#[tokio::test]
async fn access_tokens_expire_on_the_clock() {
    let app = App::new(&[]).await;
    let (access, _) = app.signup_and_login("ann@example.com").await;
    app.clock.advance(Duration::minutes(14));
    assert_eq!(
        app.call("GET", "/v1/auth/me", Value::Null, Some(&access))
            .await
            .0,
        StatusCode::OK
    );
    app.clock.advance(Duration::minutes(2));
    let (status, body) = app
        .call("GET", "/v1/auth/me", Value::Null, Some(&access))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_expired"))
    );
}

#[tokio::test]
async fn the_lock_lifts_when_its_window_ends() {
    let app = App::new(&[]).await;
    app.signup_and_login("bob@example.com").await;
    for _ in 0..5 {
        let (status, _) = app
            .call(
                "POST",
                "/v1/auth/login",
                json!({"email": "bob@example.com", "password": "nope nope nope"}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = app
        .call(
            "POST",
            "/v1/auth/login",
            json!({"email": "bob@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("account_locked"))
    );
    app.clock.advance(Duration::minutes(14));
    let (status, _) = app
        .call(
            "POST",
            "/v1/auth/login",
            json!({"email": "bob@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    app.clock.advance(Duration::minutes(1));
    app.login("bob@example.com", PASSWORD).await;
}

#[tokio::test]
async fn unknown_emails_lock_too_so_lockout_reveals_nothing() {
    let app = App::new(&[]).await;
    for _ in 0..5 {
        let (status, _) = app
            .call(
                "POST",
                "/v1/auth/login",
                json!({"email": "ghost@example.com", "password": "whatever it is"}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = app
        .call(
            "POST",
            "/v1/auth/login",
            json!({"email": "ghost@example.com", "password": "whatever it is"}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_session_ends_at_its_refresh_ttl_however_often_it_is_refreshed() {
    let app = App::new(&[("REFRESH_TOKEN_TTL_SECS", "3600")]).await;
    let (_, mut refresh) = app.signup_and_login("cy@example.com").await;
    for _ in 0..3 {
        app.clock.advance(Duration::minutes(19));
        let (status, body) = app
            .call(
                "POST",
                "/v1/auth/refresh",
                json!({"refresh_token": refresh}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        refresh = body["refresh_token"].as_str().expect("refresh").into();
    }
    app.clock.advance(Duration::minutes(4));
    let (status, body) = app
        .call(
            "POST",
            "/v1/auth/refresh",
            json!({"refresh_token": refresh}),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_expired"))
    );
}

#[tokio::test]
async fn logout_without_a_body_ends_the_session() {
    let app = App::new(&[]).await;
    let (access, refresh) = app.signup_and_login("di@example.com").await;
    let (status, _) = app
        .call("POST", "/v1/auth/logout", Value::Null, Some(&access))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .call(
            "POST",
            "/v1/auth/refresh",
            json!({"refresh_token": refresh}),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_revoked"))
    );
    let (status, body) = app
        .call("POST", "/v1/auth/logout", Value::Null, Some(&access))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_revoked"))
    );
}

#[tokio::test]
async fn responses_never_contain_secrets() {
    let app = App::new(&[]).await;
    let (access, _) = app.signup_and_login("eve@example.com").await;
    let (_, me) = app
        .call("GET", "/v1/auth/me", Value::Null, Some(&access))
        .await;
    let text = me.to_string();
    assert!(
        !text.contains("argon2") && !text.contains(PASSWORD),
        "{text}"
    );
    assert_eq!(
        me.as_object().map(|o| {
            let mut k: Vec<_> = o.keys().cloned().collect();
            k.sort();
            k
        }),
        Some(
            vec![
                "created_at",
                "email",
                "email_verified",
                "id",
                "memberships",
                "name"
            ]
            .into_iter()
            .map(String::from)
            .collect()
        )
    );
}
