//! The account lifecycle by mail, end to end over HTTP on every store backend, reading the mail
//! from the server's outbox: verification links, password reset, one-time login codes, the
//! "verified email required" switch, and the throttles. Each link or code works once; expired
//! and reused ones are refused with their codes; "mail me" answers never reveal an account.

use meterline_e2e::{Backend, Reply, Server, link_token, mailed_code, unique_email};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "staple gun lighthouse";

const RESEND: &str = "/v1/auth/verify-email/resend";
const FORGOT: &str = "/v1/auth/password/forgot";
const CODE_REQUEST: &str = "/v1/auth/login/code/request";

/// A server with no throttle on the mail routes (for tests about something else), plus
/// `extra` settings.
async fn unthrottled(backend: Backend, extra: &[(&str, &str)]) -> Server {
    let mut settings = vec![
        ("MAIL_PER_EMAIL_PER_MIN", "0"),
        ("MAIL_PER_IP_PER_MIN", "0"),
        ("AUTH_IP_LIMIT_PER_MIN", "0"),
    ];
    settings.extend_from_slice(extra);
    Server::start_with(backend, &settings).await
}

/// Posts `{email}` to a "mail me" route.
async fn ask(server: &Server, path: &str, email: &str) -> Reply {
    server.post(path, json!({ "email": email }), None).await
}

/// The same, which must answer 202: its body.
async fn asked(server: &Server, path: &str, email: &str) -> Value {
    let reply = ask(server, path, email).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    reply.body
}

async fn verify(server: &Server, token: &str) -> Reply {
    server
        .post("/v1/auth/verify-email", json!({ "token": token }), None)
        .await
}

async fn reset(server: &Server, token: &str, new_password: &str) -> Reply {
    let body = json!({ "token": token, "new_password": new_password });
    server.post("/v1/auth/password/reset", body, None).await
}

async fn code_login(server: &Server, email: &str, code: &str) -> Reply {
    let body = json!({ "email": email, "code": code });
    server.post("/v1/auth/login/code", body, None).await
}

/// Asks for a reset link for `email` and reads its token from the mail.
async fn reset_link(server: &Server, email: &str) -> String {
    asked(server, FORGOT, email).await;
    link_token(&server.last_mail(email, "password_reset"))
}

/// Asks for a login code for `email` and reads it from the mail.
async fn login_code(server: &Server, email: &str) -> String {
    asked(server, CODE_REQUEST, email).await;
    mailed_code(&server.last_mail(email, "login_code"))
}

/// A code that is not `code`.
fn other_than(code: &str) -> &'static str {
    if code == "000000" { "000001" } else { "000000" }
}

async fn signup_mails_a_link_that_verifies_once(backend: Backend) {
    let server = unthrottled(backend, &[]).await;
    let email = unique_email();
    let user = server.signup(&email, PASSWORD).await;
    assert_eq!(user["email_verified"], false);

    let mail = server.last_mail(&email, "verify_email");
    let text = |field: &str| mail[field].as_str().unwrap_or_default().to_owned();
    assert!(text("subject").contains("Confirm"));
    assert!(text("html").contains("verify-email?token="));
    let token = link_token(&mail);

    let verified = verify(&server, &token).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.body);
    assert_eq!(verified.body["id"], user["id"]);
    assert_eq!(verified.body["email_verified"], true);
    let tokens = server.login(&email, PASSWORD).await;
    assert_eq!(server.me(&tokens.access).await.body["email_verified"], true);

    verify(&server, &token)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_used");
    verify(&server, "not.a.token")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    // A reset link is not a verification link, even for the same account.
    let reset = reset_link(&server, &email).await;
    verify(&server, &reset)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    server
        .post("/v1/auth/verify-email", json!({}), None)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}

async fn an_expired_verification_link_is_refused(backend: Backend) {
    let server = unthrottled(backend, &[("EMAIL_VERIFY_TTL_SECS", "1")]).await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    let token = link_token(&server.last_mail(&email, "verify_email"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    verify(&server, &token)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_expired");
    let tokens = server.login(&email, PASSWORD).await;
    assert_eq!(
        server.me(&tokens.access).await.body["email_verified"],
        false
    );
}

async fn a_resent_link_replaces_the_last_and_is_throttled(backend: Backend) {
    let server = Server::start_with(
        backend,
        &[
            ("MAIL_PER_EMAIL_PER_MIN", "1"),
            ("MAIL_PER_IP_PER_MIN", "0"),
        ],
    )
    .await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    let first = link_token(&server.last_mail(&email, "verify_email"));

    let known = asked(&server, RESEND, &email).await;
    let nobody = unique_email();
    let unknown = asked(&server, RESEND, &nobody).await;
    assert_eq!(known, unknown, "the answer tells nothing about the address");
    assert!(server.mails_to(&nobody).is_empty());
    assert_eq!(server.mails_to(&email).len(), 2);

    let second = link_token(&server.last_mail(&email, "verify_email"));
    assert_ne!(first, second);
    verify(&server, &first)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_used");

    // One mail of a kind per address per minute: the next ask waits, whether or not the
    // address has an account.
    for address in [&email, &nobody] {
        let again = ask(&server, RESEND, address).await;
        again.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        assert!(again.headers.contains_key("retry-after"));
    }
    assert_eq!(
        server.mails_to(&email).len(),
        2,
        "a refused ask sends nothing"
    );

    let verified = verify(&server, &second).await;
    assert_eq!(verified.body["email_verified"], true, "{}", verified.body);
}

async fn login_can_require_a_verified_email(backend: Backend) {
    let server = unthrottled(backend, &[("REQUIRE_VERIFIED_EMAIL", "true")]).await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    server
        .attempt_login(&email, PASSWORD)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "email_not_verified");
    // A wrong password still says only that the credentials are wrong.
    server
        .attempt_login(&email, "wrong password here")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let token = link_token(&server.last_mail(&email, "verify_email"));
    let verified = verify(&server, &token).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.body);
    let tokens = server.login(&email, PASSWORD).await;
    assert_eq!(server.me(&tokens.access).await.status, StatusCode::OK);
}

async fn a_reset_link_works_once_and_signs_out_everywhere(backend: Backend) {
    let server = unthrottled(backend, &[]).await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    let session = server.login(&email, PASSWORD).await;

    let known = asked(&server, FORGOT, &email).await;
    let nobody = unique_email();
    let unknown = asked(&server, FORGOT, &nobody).await;
    assert_eq!(
        known, unknown,
        "the same answer for known and unknown emails"
    );
    assert!(server.mails_to(&nobody).is_empty());
    let token = link_token(&server.last_mail(&email, "password_reset"));

    // A weak password is refused before the link is spent.
    reset(&server, &token, "short")
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let done = reset(&server, &token, NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.body);

    // Every session ended, the old password is gone, the new one works.
    server
        .me(&session.access)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_revoked");
    assert_eq!(
        server.refresh(&session.refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    server
        .attempt_login(&email, PASSWORD)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let fresh = server.login(&email, NEW_PASSWORD).await;
    assert_eq!(server.me(&fresh.access).await.body["email_verified"], true);
    let notice = server.last_mail(&email, "password_changed");
    assert!(
        notice["text"]
            .as_str()
            .is_some_and(|t| t.contains("changed"))
    );

    reset(&server, &token, "yet another password")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_used");
    server.login(&email, NEW_PASSWORD).await;
}

async fn an_expired_reset_link_is_refused(backend: Backend) {
    let server = unthrottled(backend, &[("PASSWORD_RESET_TTL_SECS", "1")]).await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    let token = reset_link(&server, &email).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    reset(&server, &token, NEW_PASSWORD)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_expired");
    server.login(&email, PASSWORD).await;
}

async fn forgot_password_is_throttled_per_email_and_per_ip(backend: Backend) {
    let server = Server::start_with(
        backend,
        &[
            ("MAIL_PER_EMAIL_PER_MIN", "1"),
            ("MAIL_PER_IP_PER_MIN", "3"),
        ],
    )
    .await;
    let known = unique_email();
    server.signup(&known, PASSWORD).await;
    asked(&server, FORGOT, &known).await;
    ask(&server, FORGOT, &known)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Other addresses are served until this client has asked three times a minute.
    asked(&server, FORGOT, &unique_email()).await;
    asked(&server, FORGOT, &unique_email()).await;
    let over = ask(&server, FORGOT, &unique_email()).await;
    over.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(over.headers.contains_key("retry-after"));
    assert_eq!(
        server
            .mails_to(&known)
            .iter()
            .filter(|m| m["kind"] == "password_reset")
            .count(),
        1
    );
}

async fn a_login_code_works_once(backend: Backend) {
    let server = unthrottled(backend, &[]).await;
    let email = unique_email();
    let user = server.signup(&email, PASSWORD).await;

    let known = asked(&server, CODE_REQUEST, &email).await;
    let nobody = unique_email();
    let unknown = asked(&server, CODE_REQUEST, &nobody).await;
    assert_eq!(known, unknown);
    assert!(server.mails_to(&nobody).is_empty());
    let code = mailed_code(&server.last_mail(&email, "login_code"));

    code_login(&server, &email, other_than(&code))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_code");
    let login = code_login(&server, &email, &code).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let access = login.body["access_token"].as_str().expect("access token");
    let me = server.me(access).await;
    assert_eq!(me.body["id"], user["id"]);
    assert_eq!(
        me.body["email_verified"], true,
        "the code proved the address"
    );

    for (address, code) in [
        (&email, code.as_str()),
        (&nobody, &code),
        (&email, "12ab56"),
    ] {
        code_login(&server, address, code)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_code");
    }
}

async fn a_login_code_dies_after_five_wrong_tries(backend: Backend) {
    let server = unthrottled(backend, &[]).await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    let code = login_code(&server, &email).await;
    for _ in 0..5 {
        code_login(&server, &email, other_than(&code))
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_code");
    }
    code_login(&server, &email, &code)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_code");
    // A new code starts over.
    let fresh = login_code(&server, &email).await;
    let login = code_login(&server, &email, &fresh).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
}

async fn an_expired_login_code_is_refused(backend: Backend) {
    let server = unthrottled(backend, &[("LOGIN_CODE_TTL_SECS", "1")]).await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    let code = login_code(&server, &email).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    code_login(&server, &email, &code)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "code_expired");
}

async fn a_password_change_is_announced_by_mail(backend: Backend) {
    let server = unthrottled(backend, &[]).await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    let tokens = server.login(&email, PASSWORD).await;
    let changed = server
        .post(
            "/v1/auth/password",
            json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
            Some(&tokens.access),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.body);
    let notice = server.last_mail(&email, "password_changed");
    assert!(
        notice["subject"]
            .as_str()
            .is_some_and(|s| s.contains("password was changed"))
    );
}

/// Item 1: the per-address mail limit holds whatever the client IP. From 127.0.0.2 the same
/// address gets no fresh allowance, and the refusal does not spend 127.0.0.2's own budget.
async fn a_new_client_ip_gets_no_new_allowance_for_an_address(backend: Backend) {
    let server = Server::start_with(
        backend,
        &[
            ("MAIL_PER_EMAIL_PER_MIN", "1"),
            ("MAIL_PER_IP_PER_MIN", "3"),
            ("AUTH_IP_LIMIT_PER_MIN", "0"),
        ],
    )
    .await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    let body = json!({ "email": email });
    let first = server
        .post_from("127.0.0.1", CODE_REQUEST, body.clone(), None)
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    for ip in ["127.0.0.2", "127.0.0.1", "127.0.0.2"] {
        let again = server.post_from(ip, CODE_REQUEST, body.clone(), None).await;
        again.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        assert!(again.headers.contains_key("retry-after"));
    }
    for path in [FORGOT, RESEND] {
        // Each kind of mail has its own per-address budget, also across IPs.
        let other_kind = server
            .post_from("127.0.0.2", path, body.clone(), None)
            .await;
        assert_eq!(
            other_kind.status,
            StatusCode::ACCEPTED,
            "{}",
            other_kind.body
        );
        server
            .post_from("127.0.0.1", path, body.clone(), None)
            .await
            .assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    }
    assert_eq!(
        server
            .mails_to(&email)
            .iter()
            .filter(|m| m["kind"] == "login_code")
            .count(),
        1,
        "one code mail, whichever IP asked"
    );
    // 127.0.0.2 was refused for the address and answered twice: one more request of its own.
    let other = json!({ "email": unique_email() });
    let third = server
        .post_from("127.0.0.2", CODE_REQUEST, other, None)
        .await;
    assert_eq!(third.status, StatusCode::ACCEPTED, "{}", third.body);
}

/// Item 1: code guesses are capped per account over time, not per code: ten wrong codes
/// spread over several fresh codes, then even the right code is refused (429) until the
/// window ends; asking for a new code does not reset it.
async fn wrong_login_codes_are_capped_per_account_not_per_code(backend: Backend) {
    let server = unthrottled(backend, &[]).await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    let mut wrong = 0;
    for per_code in [4, 4, 2] {
        let code = login_code(&server, &email).await;
        for _ in 0..per_code {
            code_login(&server, &email, other_than(&code))
                .await
                .assert_problem(StatusCode::UNAUTHORIZED, "invalid_code");
            wrong += 1;
        }
    }
    assert_eq!(wrong, 10);
    let code = login_code(&server, &email).await;
    let refused = code_login(&server, &email, &code).await;
    refused.assert_problem(StatusCode::TOO_MANY_REQUESTS, "account_locked");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        (1..=3600).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    let fresh = login_code(&server, &email).await;
    code_login(&server, &email, &fresh)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "account_locked");
    // The password still works, and other accounts' codes are unaffected.
    server.login(&email, PASSWORD).await;
    let other = unique_email();
    server.signup(&other, PASSWORD).await;
    let code = login_code(&server, &other).await;
    let login = code_login(&server, &other, &code).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    // An address without an account is limited alike: the 429 tells no one it has one.
    let nobody = unique_email();
    for _ in 0..10 {
        code_login(&server, &nobody, "000000")
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_code");
    }
    code_login(&server, &nobody, "000000")
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "account_locked");
}

/// Item 2: a squatter signs up with the victim's address and a password of their own and keeps
/// a session; when the victim proves the address with a login code, the squatter's refresh
/// and access tokens stop working and their password no longer logs in.
async fn proving_an_address_by_code_evicts_whoever_signed_up_with_it(backend: Backend) {
    let server = unthrottled(backend, &[]).await;
    let victim = unique_email();
    server.signup(&victim, PASSWORD).await;
    let squatter = server.login(&victim, PASSWORD).await;

    let code = login_code(&server, &victim).await;
    let login = code_login(&server, &victim, &code).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let owner = meterline_e2e::Tokens::from(&login.body);

    server
        .me(&squatter.access)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_revoked");
    server
        .refresh(&squatter.refresh)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_revoked");
    server
        .attempt_login(&victim, PASSWORD)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let me = server.me(&owner.access).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["email_verified"], true);

    // Once proved, a later code sign-in keeps the owner's other sessions.
    let code = login_code(&server, &victim).await;
    let again = code_login(&server, &victim, &code).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(server.me(&owner.access).await.status, StatusCode::OK);
    // The owner sets a password by reset.
    let token = reset_link(&server, &victim).await;
    assert_eq!(
        reset(&server, &token, NEW_PASSWORD).await.status,
        StatusCode::NO_CONTENT
    );
    server.login(&victim, NEW_PASSWORD).await;
}

/// Item 2, the other side: proving the address from inside a session (the verification link
/// mailed at signup) keeps that session and the password.
async fn proving_an_address_by_its_verification_link_keeps_the_session(backend: Backend) {
    let server = unthrottled(backend, &[]).await;
    let email = unique_email();
    server.signup(&email, PASSWORD).await;
    let session = server.login(&email, PASSWORD).await;
    let token = link_token(&server.last_mail(&email, "verify_email"));
    let verified = verify(&server, &token).await;
    assert!(verified.status.is_success(), "{}", verified.body);
    assert_eq!(
        server.me(&session.access).await.body["email_verified"],
        true
    );
    assert_eq!(
        server.refresh(&session.refresh).await.status,
        StatusCode::OK
    );
    server.login(&email, PASSWORD).await;
}

meterline_e2e::on_every_backend!(
    signup_mails_a_link_that_verifies_once,
    an_expired_verification_link_is_refused,
    a_resent_link_replaces_the_last_and_is_throttled,
    login_can_require_a_verified_email,
    a_reset_link_works_once_and_signs_out_everywhere,
    an_expired_reset_link_is_refused,
    forgot_password_is_throttled_per_email_and_per_ip,
    a_login_code_works_once,
    a_login_code_dies_after_five_wrong_tries,
    an_expired_login_code_is_refused,
    a_password_change_is_announced_by_mail,
    a_new_client_ip_gets_no_new_allowance_for_an_address,
    wrong_login_codes_are_capped_per_account_not_per_code,
    proving_an_address_by_code_evicts_whoever_signed_up_with_it,
    proving_an_address_by_its_verification_link_keeps_the_session,
);
