//! Social login end to end over HTTP, against a fake OpenID Connect provider: the authorization
//! code flow with PKCE and `state`, account creation and linking by verified email, and every
//! way a callback is refused (wrong or replayed state, wrong verifier, replayed code,
//! unverified email, provider error, unknown provider, provider down).

use meterline_e2e::fake_oidc::{FakeOidc, FakeUser};
use meterline_e2e::{Backend, Reply, Server, Tokens, on_every_backend, unique_email};
use reqwest::{Method, StatusCode, Url};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// A server whose providers are all this fake: `keycloak` and `other` by discovery, `github`
/// through the GitHub preset's shapes; and a browser that does not follow redirects.
struct Rig {
    server: Server,
    fake: FakeOidc,
    browser: reqwest::Client,
}

/// A loopback address nothing listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{address}")
}

impl Rig {
    async fn start(backend: Backend) -> Self {
        Self::start_with(backend, &[]).await
    }

    async fn start_with(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let fake = FakeOidc::start().await;
        let mut settings = fake.oidc_settings("keycloak");
        settings.extend(fake.oidc_settings("other"));
        settings.extend(fake.github_settings());
        settings.push(("OAUTH_PROVIDERS".into(), "keycloak,other,github".into()));
        // Signing in hashes an unusable password for new accounts: keep it cheap here.
        settings.push(("ARGON2_MEMORY_KIB".into(), "64".into()));
        settings.push(("ARGON2_ITERATIONS".into(), "1".into()));
        for (name, value) in extra {
            match settings.iter_mut().find(|(n, _)| n == name) {
                Some(setting) => setting.1 = (*value).to_owned(),
                None => settings.push(((*name).to_owned(), (*value).to_owned())),
            }
        }
        let pairs: Vec<(&str, &str)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let server = Server::start_with(backend, &pairs).await;
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            server,
            fake,
            browser,
        }
    }

    fn url(&self, path: &str) -> Url {
        self.server
            .request(Method::GET, path)
            .build()
            .expect("request")
            .url()
            .clone()
    }

    /// GETs `url` without following, expecting a redirect; returns where to.
    async fn redirected(&self, url: Url) -> Url {
        let response = self.browser.get(url).send().await.expect("request sent");
        assert!(
            response.status().is_redirection(),
            "status {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        let location = response.headers()["location"].to_str().expect("location");
        Url::parse(location).expect("an absolute location")
    }

    /// `GET /v1/auth/oauth/{provider}/authorize`: the provider URL it redirects to.
    async fn authorize(&self, provider: &str) -> Url {
        let response = self
            .browser
            .get(self.url(&format!("/v1/auth/oauth/{provider}/authorize")))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let location = response.headers()["location"].to_str().expect("location");
        Url::parse(location).expect("a provider URL")
    }

    /// Follows a provider URL to the fake: the redirect back, as the query our callback gets.
    async fn at_provider(&self, authorize: Url) -> String {
        let back = self.redirected(authorize).await;
        assert!(
            back.path().ends_with("/callback"),
            "back to the redirect_uri: {back}"
        );
        back.query().expect("code and state").to_owned()
    }

    /// `GET /v1/auth/oauth/{provider}/callback?{query}`.
    async fn callback(&self, provider: &str, query: &str) -> Reply {
        self.server
            .get(&format!("/v1/auth/oauth/{provider}/callback?{query}"), None)
            .await
    }

    /// The whole flow as `user`.
    async fn sign_in(&self, provider: &str, user: &FakeUser) -> Reply {
        self.fake.sign_in_as(user.clone());
        let authorize = self.authorize(provider).await;
        let query = self.at_provider(authorize).await;
        self.callback(provider, &query).await
    }
}

fn user(email: &str) -> FakeUser {
    FakeUser {
        email: email.to_owned(),
        email_verified: true,
        name: "Ada Lovelace".into(),
    }
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Signs in and returns the account behind the tokens (`/me`).
async fn signed_in(rig: &Rig, reply: &Reply) -> serde_json::Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let keys: Vec<_> = reply.body.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 4, "exactly the login body: {keys:?}");
    let tokens = Tokens::from(&reply.body);
    let me = rig.server.me(&tokens.access).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    me.body
}

async fn sign_in_creates_reuses_and_links_accounts(backend: Backend) {
    let rig = Rig::start(backend).await;
    let email = unique_email();

    // First sign-in: a new, verified account with the provider's name.
    let first = rig.sign_in("keycloak", &user(&email)).await;
    let me = signed_in(&rig, &first).await;
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["name"], "Ada Lovelace");
    let id = me["id"].clone();

    // Again (and through another provider with the same verified email): the same account.
    let again = rig.sign_in("keycloak", &user(&email)).await;
    assert_eq!(signed_in(&rig, &again).await["id"], id);
    let other = rig.sign_in("other", &user(&email.to_uppercase())).await;
    assert_eq!(signed_in(&rig, &other).await["id"], id);

    // The refresh token of a social session works like any other.
    let tokens = Tokens::from(&first.body);
    let refreshed = rig.server.refresh(&tokens.refresh).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);

    // POST callback, JSON and form, for a client that received the redirect itself.
    rig.fake.sign_in_as(user(&email));
    let query = rig.at_provider(rig.authorize("keycloak").await).await;
    let back = Url::parse(&format!("http://x/?{query}")).expect("query");
    let (code, state) = (param(&back, "code"), param(&back, "state"));
    let posted = rig
        .server
        .post(
            "/v1/auth/oauth/keycloak/callback",
            json!({"code": code, "state": state}),
            None,
        )
        .await;
    assert_eq!(signed_in(&rig, &posted).await["id"], id);
    let query = rig.at_provider(rig.authorize("keycloak").await).await;
    let form = rig
        .server
        .request(Method::POST, "/v1/auth/oauth/keycloak/callback")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query)
        .send()
        .await
        .expect("sent");
    let form = Reply::from(form).await;
    assert_eq!(signed_in(&rig, &form).await["id"], id);

    // An existing password account with the same email is linked: same id, now verified. Its
    // address had never been proved, so whoever chose its password may not own it: the
    // password stops working (the owner sets one by reset).
    let linked_email = unique_email();
    let created = rig.server.signup(&linked_email, PASSWORD).await;
    assert_eq!(created["email_verified"], false);
    let linked = rig.sign_in("keycloak", &user(&linked_email)).await;
    let me = signed_in(&rig, &linked).await;
    assert_eq!(me["id"], created["id"]);
    assert_eq!(me["email_verified"], true);
    rig.server
        .attempt_login(&linked_email, PASSWORD)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");

    // The GitHub flow (user + primary verified email) signs the same owner in.
    let github = rig.sign_in("github", &user(&linked_email)).await;
    assert_eq!(signed_in(&rig, &github).await["id"], created["id"]);
}

async fn state_verifier_and_code_replays_are_refused(backend: Backend) {
    let rig = Rig::start(backend).await;
    let email = unique_email();
    rig.fake.sign_in_as(user(&email));

    // A state that is garbage, or well formed but never issued.
    let query = rig.at_provider(rig.authorize("keycloak").await).await;
    let back = Url::parse(&format!("http://x/?{query}")).expect("query");
    let code = param(&back, "code").expect("code");
    for state in ["nope", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        rig.callback("keycloak", &format!("code={code}&state={state}"))
            .await
            .assert_problem(StatusCode::BAD_REQUEST, "invalid_state");
    }

    // The state is good once: replaying the whole callback is refused.
    let ok = rig.callback("keycloak", &query).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    rig.callback("keycloak", &query)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_state");

    // The same code with a fresh state: the provider refuses the spent code.
    let fresh = rig.authorize("keycloak").await;
    let fresh_state = param(&fresh, "state").expect("state");
    rig.callback("keycloak", &format!("code={code}&state={fresh_state}"))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "oauth_failed");
    // ...and that fresh state was spent by the attempt.
    let query = rig.at_provider(fresh).await;
    rig.callback("keycloak", &query)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_state");

    // A tampered code_challenge: the stored verifier no longer matches it.
    let mut tampered = rig.authorize("keycloak").await;
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "code_challenge" {
                meterline::oauth::s256_challenge("an attacker's own verifier, not ours")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let query = rig.at_provider(tampered).await;
    rig.callback("keycloak", &query)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "oauth_failed");

    // A state issued for another provider.
    let query = rig.at_provider(rig.authorize("other").await).await;
    rig.callback("keycloak", &query)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_state");
}

/// Item 2: a squatter signs up with the victim's address and password and keeps a session;
/// the victim signs in through a provider that vouches for the address: the squatter's refresh
/// and access tokens are rejected and the squatter's password no longer logs in. The victim's
/// own later sign-ins keep each other's sessions.
async fn proving_an_address_by_oauth_evicts_whoever_signed_up_with_it(backend: Backend) {
    let rig = Rig::start(backend).await;
    let victim = unique_email();
    let squatted = rig.server.signup(&victim, PASSWORD).await;
    let squatter = rig.server.login(&victim, PASSWORD).await;

    let first = rig.sign_in("keycloak", &user(&victim)).await;
    assert_eq!(signed_in(&rig, &first).await["id"], squatted["id"]);
    rig.server
        .me(&squatter.access)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_revoked");
    rig.server
        .refresh(&squatter.refresh)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_revoked");
    rig.server
        .attempt_login(&victim, PASSWORD)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");

    let owner = Tokens::from(&first.body);
    let second = rig.sign_in("github", &user(&victim)).await;
    signed_in(&rig, &second).await;
    assert_eq!(rig.server.me(&owner.access).await.status, StatusCode::OK);
}

on_every_backend!(
    proving_an_address_by_oauth_evicts_whoever_signed_up_with_it,
    sign_in_creates_reuses_and_links_accounts,
    state_verifier_and_code_replays_are_refused,
);

#[tokio::test]
async fn the_authorize_redirect_carries_pkce_state_and_nonce() {
    let rig = Rig::start(Backend::Sqlite).await;
    let url = rig.authorize("keycloak").await;
    assert_eq!(
        format!("{}{}", url.origin().ascii_serialization(), url.path()),
        format!("{}/authorize", rig.fake.issuer())
    );
    assert_eq!(param(&url, "response_type").as_deref(), Some("code"));
    assert_eq!(
        param(&url, "client_id").as_deref(),
        Some(meterline_e2e::fake_oidc::CLIENT_ID)
    );
    assert_eq!(
        param(&url, "redirect_uri").as_deref(),
        Some("http://127.0.0.1:3000/v1/auth/oauth/keycloak/callback")
    );
    assert_eq!(
        param(&url, "scope").as_deref(),
        Some("openid email profile")
    );
    assert_eq!(
        param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    for name in ["state", "code_challenge", "nonce"] {
        let value = param(&url, name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(value.len(), 43, "{name}: 32 bytes base64url");
    }
    let again = rig.authorize("keycloak").await;
    assert_ne!(param(&url, "state"), param(&again, "state"));
    assert_ne!(
        param(&url, "code_challenge"),
        param(&again, "code_challenge")
    );
    // GitHub is not OIDC: its scopes, and no nonce.
    let github = rig.authorize("github").await;
    assert_eq!(
        param(&github, "scope").as_deref(),
        Some("read:user user:email")
    );
    assert_eq!(param(&github, "nonce"), None);
}

#[tokio::test]
async fn an_unverified_email_is_refused_and_creates_no_account() {
    let rig = Rig::start(Backend::Sqlite).await;
    let email = unique_email();
    let unverified = FakeUser {
        email_verified: false,
        ..user(&email)
    };
    rig.sign_in("keycloak", &unverified)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "email_not_verified");
    rig.sign_in("github", &unverified)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "email_not_verified");
    // No account was made: the address is still free.
    rig.server.signup(&email, PASSWORD).await;
}

#[tokio::test]
async fn a_provider_error_is_oauth_denied_and_spends_the_state() {
    let rig = Rig::start(Backend::Sqlite).await;
    rig.fake.sign_in_as(user(&unique_email()));
    rig.fake.deny(true);
    let query = rig.at_provider(rig.authorize("keycloak").await).await;
    assert!(query.contains("error=access_denied"), "{query}");
    rig.callback("keycloak", &query)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "oauth_denied");
    let back = Url::parse(&format!("http://x/?{query}")).expect("query");
    let state = param(&back, "state").expect("state");
    rig.callback("keycloak", &format!("code=anything&state={state}"))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_state");
}

#[tokio::test]
async fn unknown_providers_and_missing_parameters_are_problems() {
    let rig = Rig::start(Backend::Sqlite).await;
    rig.server
        .get("/v1/auth/oauth/nope/authorize", None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "unknown_provider");
    rig.callback("nope", "code=a&state=b")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "unknown_provider");
    let missing = rig.callback("keycloak", "").await;
    missing.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let fields: Vec<_> = missing.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field").to_owned())
        .collect();
    assert_eq!(fields, ["code", "state"]);
    rig.server
        .post(
            "/v1/auth/oauth/keycloak/callback",
            json!({"code": "x"}),
            None,
        )
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    rig.server
        .post("/v1/auth/oauth/keycloak/callback", json!({"code": 1}), None)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    // With no provider configured at all, every name is unknown.
    let none = Server::start(Backend::Sqlite).await;
    none.get("/v1/auth/oauth/google/authorize", None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "unknown_provider");
}

#[tokio::test]
async fn an_unreachable_provider_is_503_not_500() {
    let down = closed_port_url();
    let rig = Rig::start_with(
        Backend::Sqlite,
        &[
            ("OAUTH_PROVIDERS", "keycloak,down,gone"),
            ("OAUTH_DOWN_CLIENT_ID", "id"),
            ("OAUTH_DOWN_CLIENT_SECRET", "secret"),
            ("OAUTH_DOWN_AUTHORIZE_URL", &format!("{down}/authorize")),
            ("OAUTH_DOWN_TOKEN_URL", &format!("{down}/token")),
            ("OAUTH_DOWN_USERINFO_URL", &format!("{down}/userinfo")),
            ("OAUTH_GONE_CLIENT_ID", "id"),
            ("OAUTH_GONE_CLIENT_SECRET", "secret"),
            ("OAUTH_GONE_ISSUER", &down),
        ],
    )
    .await;
    // Discovery cannot be fetched.
    rig.server
        .get("/v1/auth/oauth/gone/authorize", None)
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    // Fixed endpoints need no network to start; the code exchange cannot connect.
    let url = rig.authorize("down").await;
    let state = param(&url, "state").expect("state");
    rig.callback("down", &format!("code=some-code&state={state}"))
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
}
