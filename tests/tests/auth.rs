//! The auth endpoints end to end over HTTP, on every store backend: the whole account
//! lifecycle, token rotation and reuse, logout, password change and the lockout.

use meterline_e2e::{Backend, Server, Tokens, claims_of, forge_access_token, unique_email};
use reqwest::StatusCode;
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

async fn account_lifecycle(backend: Backend) {
    let server = Server::start(backend).await;
    let email = unique_email();

    // Signup: 201 with the public fields only.
    let user = server.signup(&email.to_uppercase(), PASSWORD).await;
    assert_eq!(user["email"], email.as_str());
    assert!(user["id"].as_str().is_some_and(|id| id.starts_with("usr_")));
    assert_eq!(user["email_verified"], false);
    assert!(user.get("password_hash").is_none() && user.get("password").is_none());

    // The same email in another case is taken.
    let again = server
        .post(
            "/v1/auth/signup",
            json!({"email": format!("  {}", email.to_uppercase()), "password": PASSWORD}),
            None,
        )
        .await;
    again.assert_problem(StatusCode::CONFLICT, "email_taken");

    // Bad email and 9-character password: 422 naming the fields.
    let bad = server
        .post(
            "/v1/auth/signup",
            json!({"email": "not-an-email", "password": PASSWORD}),
            None,
        )
        .await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(bad.body["errors"][0]["field"], "email");
    let short = server
        .post(
            "/v1/auth/signup",
            json!({"email": unique_email(), "password": "123456789"}),
            None,
        )
        .await;
    short.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(short.body["errors"][0]["field"], "password");

    // Login with JSON and with the OAuth2 form.
    let tokens = server.login(&email, PASSWORD).await;
    let form = server
        .request(reqwest::Method::POST, "/v1/auth/login")
        .form(&[("username", email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .expect("send");
    let form = meterline_e2e::Reply::from(form).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let form_tokens = Tokens::from(&form.body);

    // Wrong password and unknown email look the same.
    let wrong = server.attempt_login(&email, "wrong password!").await;
    wrong.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let unknown = server.attempt_login(&unique_email(), PASSWORD).await;
    unknown.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(wrong.body["detail"], unknown.body["detail"]);

    // /me with the token; without, with garbage, with an expired token.
    let me = server.me(&tokens.access).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["id"], user["id"]);
    assert_eq!(me.body["memberships"], json!([]));
    server
        .get("/v1/auth/me", None)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "missing_token");
    server
        .me("garbage.token.here")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let claims = claims_of(&tokens.access);
    let now = chrono::Utc::now().timestamp();
    let expired = forge_access_token(
        claims["sub"].as_str().expect("sub"),
        claims["sid"].as_str().expect("sid"),
        now - 3600,
        now - 60,
    );
    server
        .me(&expired)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_expired");

    // Refresh rotates; the old token is then reuse, which revokes the new one too.
    let refreshed = server.refresh(&tokens.refresh).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let rotated = Tokens::from(&refreshed.body);
    assert_ne!(rotated.refresh, tokens.refresh);
    assert_eq!(server.me(&rotated.access).await.status, StatusCode::OK);
    server
        .refresh(&tokens.refresh)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_reused");
    let after_reuse = server.refresh(&rotated.refresh).await;
    assert_eq!(
        after_reuse.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        after_reuse.body
    );
    // The family's access tokens die with it.
    server
        .me(&rotated.access)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_revoked");
    server
        .refresh("not-a-token")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");

    // Logout: 204, then the access token and its refresh token are refused.
    let logout = server
        .post(
            "/v1/auth/logout",
            json!({"refresh_token": form_tokens.refresh}),
            Some(&form_tokens.access),
        )
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{}", logout.body);
    server
        .me(&form_tokens.access)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_revoked");
    let dead = server.refresh(&form_tokens.refresh).await;
    assert_eq!(dead.status, StatusCode::UNAUTHORIZED);

    // Password change: 204; every other session ends; only the new password works.
    let here = server.login(&email, PASSWORD).await;
    let elsewhere = server.login(&email, PASSWORD).await;
    let wrong_current = server
        .post(
            "/v1/auth/password",
            json!({"current_password": "not my password", "new_password": "a brand new secret"}),
            Some(&here.access),
        )
        .await;
    wrong_current.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let weak = server
        .post(
            "/v1/auth/password",
            json!({"current_password": PASSWORD, "new_password": "short"}),
            Some(&here.access),
        )
        .await;
    weak.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let changed = server
        .post(
            "/v1/auth/password",
            json!({"current_password": PASSWORD, "new_password": "a brand new secret"}),
            Some(&here.access),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.body);
    assert_eq!(server.me(&here.access).await.status, StatusCode::OK);
    server
        .me(&elsewhere.access)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_revoked");
    let other_refresh = server.refresh(&elsewhere.refresh).await;
    assert_eq!(other_refresh.status, StatusCode::UNAUTHORIZED);
    server
        .attempt_login(&email, PASSWORD)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    server.login(&email, "a brand new secret").await;
}

async fn lockout_after_five_failures(backend: Backend) {
    let server = Server::start(backend).await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    for _ in 0..5 {
        server
            .attempt_login(&email, "wrong password!")
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let locked = server.attempt_login(&email, "wrong password!").await;
    locked.assert_problem(StatusCode::TOO_MANY_REQUESTS, "account_locked");
    let retry_after: u64 = locked.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        (1..=900).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    // Even the right password waits out the lock.
    server
        .attempt_login(&email, PASSWORD)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "account_locked");
    // Other accounts are unaffected.
    let other = unique_email();
    server.signup(&other, PASSWORD).await;
    server.login(&other, PASSWORD).await;
}

async fn success_resets_the_failure_count(backend: Backend) {
    let server = Server::start(backend).await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    for _ in 0..4 {
        let reply = server.attempt_login(&email, "wrong password!").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    server.login(&email, PASSWORD).await;
    for _ in 0..4 {
        let reply = server.attempt_login(&email, "wrong password!").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    server.login(&email, PASSWORD).await;
}

meterline_e2e::on_every_backend!(
    account_lifecycle,
    lockout_after_five_failures,
    success_resets_the_failure_count,
);
