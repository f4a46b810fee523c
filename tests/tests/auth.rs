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

/// Item 5: every attempt is reserved in the lockout counter before its password is checked, so
/// a burst of concurrent wrong passwords gets at most `LOGIN_MAX_FAILURES` verdicts; the rest
/// are locked out (429) without a hash being checked.
async fn a_burst_of_wrong_passwords_gets_at_most_the_failure_limit_of_verdicts(backend: Backend) {
    let server = std::sync::Arc::new(Server::start(backend).await);
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    let burst = (0..30).map(|_| {
        let server = std::sync::Arc::clone(&server);
        let email = email.clone();
        tokio::spawn(async move { server.attempt_login(&email, "wrong password!").await })
    });
    // Spawned all at once, before any answer is awaited.
    let burst: Vec<_> = burst.collect();
    let mut verdicts = 0;
    for attempt in burst {
        let reply = attempt.await.expect("task");
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            reply.assert_problem(StatusCode::TOO_MANY_REQUESTS, "account_locked");
        } else {
            reply.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
            verdicts += 1;
        }
    }
    assert!(
        verdicts <= 5,
        "{verdicts} passwords were checked, the limit is 5"
    );
    assert!(verdicts >= 1);
    server
        .attempt_login(&email, PASSWORD)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "account_locked");
}

/// Item 12a: the lockout's first stage is per (address, client IP): a stranger on 127.0.0.2
/// who locks themselves out does not lock the owner on 127.0.0.1 out.
async fn a_stranger_on_another_ip_cannot_lock_the_owner_out(backend: Backend) {
    let server = Server::start_with(
        backend,
        &[("ARGON2_MEMORY_KIB", "64"), ("ARGON2_ITERATIONS", "1")],
    )
    .await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    let wrong = json!({"email": email, "password": "wrong password!"});
    for _ in 0..5 {
        server
            .post_from("127.0.0.2", "/v1/auth/login", wrong.clone(), None)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    for _ in 0..3 {
        server
            .post_from("127.0.0.2", "/v1/auth/login", wrong.clone(), None)
            .await
            .assert_problem(StatusCode::TOO_MANY_REQUESTS, "account_locked");
    }
    let right = json!({"email": email, "password": PASSWORD});
    let owner = server
        .post_from("127.0.0.1", "/v1/auth/login", right.clone(), None)
        .await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);
    // The stranger stays locked, even with the right password.
    server
        .post_from("127.0.0.2", "/v1/auth/login", right, None)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "account_locked");
}

/// Item 12a: over the per-IP stage, a per-address ceiling (`LOGIN_MAX_FAILURES_PER_ADDRESS`)
/// bounds the guesses of many IPs together; a locked IP's attempts do not count towards it.
async fn many_ips_together_meet_the_per_address_ceiling(backend: Backend) {
    let server = Server::start_with(
        backend,
        &[
            ("ARGON2_MEMORY_KIB", "64"),
            ("ARGON2_ITERATIONS", "1"),
            ("LOGIN_MAX_FAILURES", "2"),
            ("LOGIN_MAX_FAILURES_PER_ADDRESS", "4"),
        ],
    )
    .await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    // The owner's own logins do not add up towards the ceiling.
    for _ in 0..6 {
        server.login(&email, PASSWORD).await;
    }
    let wrong = json!({"email": email, "password": "wrong password!"});
    let attempt = |ip: &'static str| {
        let wrong = wrong.clone();
        let server = &server;
        async move { server.post_from(ip, "/v1/auth/login", wrong, None).await }
    };
    for _ in 0..2 {
        attempt("127.0.0.2")
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    for _ in 0..5 {
        attempt("127.0.0.2")
            .await
            .assert_problem(StatusCode::TOO_MANY_REQUESTS, "account_locked");
    }
    for _ in 0..2 {
        attempt("127.0.0.3")
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    attempt("127.0.0.4")
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "account_locked");
    server
        .attempt_login(&email, PASSWORD)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "account_locked");
}

meterline_e2e::on_every_backend!(
    account_lifecycle,
    lockout_after_five_failures,
    success_resets_the_failure_count,
    a_burst_of_wrong_passwords_gets_at_most_the_failure_limit_of_verdicts,
    a_stranger_on_another_ip_cannot_lock_the_owner_out,
    many_ips_together_meet_the_per_address_ceiling,
);
