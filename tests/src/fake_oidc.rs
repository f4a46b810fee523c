//! A small OpenID Connect provider for tests, on a free loopback port: discovery, `/authorize`
//! (which at once "logs in" the user the test chose, or answers `error=access_denied`),
//! `/token` (client credentials, redirect URI, single-use codes, PKCE S256) and `/userinfo`.
//! It also answers GitHub's shapes (`/user`, `/user/emails`) so the GitHub flow can be tested
//! with its endpoints pointed here.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// The client id the fake accepts.
pub const CLIENT_ID: &str = "meterline-e2e";
/// The client secret the fake accepts.
pub const CLIENT_SECRET: &str = "fake-oidc-client-secret";

/// Who the fake provider signs in.
#[derive(Debug, Clone)]
pub struct FakeUser {
    /// Their email.
    pub email: String,
    /// Whether the provider vouches for the email.
    pub email_verified: bool,
    /// Their display name.
    pub name: String,
}

/// A code the fake handed out at `/authorize`, until `/token` spends it.
struct Grant {
    redirect_uri: String,
    challenge: String,
    user: FakeUser,
}

#[derive(Default)]
struct Shared {
    user: Mutex<Option<FakeUser>>,
    deny: AtomicBool,
    codes: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, FakeUser>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake provider; stops when dropped.
pub struct FakeOidc {
    issuer: String,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

/// The path the fake lives under, Keycloak-style, so issuers with a path are exercised.
const REALM: &str = "/realms/e2e";

impl FakeOidc {
    /// Starts one that signs in nobody until [`FakeOidc::sign_in_as`].
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let issuer = format!("http://{}{REALM}", listener.local_addr().expect("address"));
        let shared = Arc::new(Shared::default());
        let realm = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .route("/user", get(github_user))
            .route("/user/emails", get(github_emails))
            .with_state((Arc::clone(&shared), issuer.clone()));
        let app = Router::new().nest(REALM, realm);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            issuer,
            shared,
            _stop: stop,
        }
    }

    /// The issuer (discovery at `{issuer}/.well-known/openid-configuration`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// From now on, `/authorize` signs in `user`.
    pub fn sign_in_as(&self, user: FakeUser) {
        *lock(&self.shared.user) = Some(user);
    }

    /// From now on, `/authorize` answers `error=access_denied` (the user said no), or not.
    pub fn deny(&self, deny: bool) {
        self.shared.deny.store(deny, Ordering::SeqCst);
    }

    /// The settings of an OIDC provider `name` found by discovery here.
    pub fn oidc_settings(&self, name: &str) -> Vec<(String, String)> {
        let prefix = format!("OAUTH_{}", name.to_ascii_uppercase().replace('-', "_"));
        vec![
            (format!("{prefix}_CLIENT_ID"), CLIENT_ID.into()),
            (format!("{prefix}_CLIENT_SECRET"), CLIENT_SECRET.into()),
            (format!("{prefix}_ISSUER"), self.issuer.clone()),
        ]
    }

    /// The settings of the `github` preset with its endpoints pointed here.
    pub fn github_settings(&self) -> Vec<(String, String)> {
        let at = |path: &str| format!("{}{path}", self.issuer);
        vec![
            ("OAUTH_GITHUB_CLIENT_ID".into(), CLIENT_ID.into()),
            ("OAUTH_GITHUB_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("OAUTH_GITHUB_AUTHORIZE_URL".into(), at("/authorize")),
            ("OAUTH_GITHUB_TOKEN_URL".into(), at("/token")),
            ("OAUTH_GITHUB_USERINFO_URL".into(), at("/user")),
        ]
    }
}

type FakeState = State<(Arc<Shared>, String)>;

async fn discovery(State((_, issuer)): FakeState) -> Json<Value> {
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
    }))
}

fn random() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

/// Checks the request and redirects back at once with a code (or the denial) and the state.
async fn authorize(
    State((shared, _)): FakeState,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let param = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    let bad = |why: &str| (StatusCode::BAD_REQUEST, why.to_owned()).into_response();
    if param("client_id") != CLIENT_ID {
        return bad("unknown client_id");
    }
    if param("response_type") != "code" {
        return bad("response_type must be code");
    }
    if param("code_challenge_method") != "S256" || param("code_challenge").is_empty() {
        return bad("PKCE S256 is required");
    }
    let redirect_uri = param("redirect_uri").to_owned();
    let Ok(mut back) = reqwest::Url::parse(&redirect_uri) else {
        return bad("redirect_uri is not a URL");
    };
    if shared.deny.load(Ordering::SeqCst) {
        back.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", param("state"));
        return Redirect::to(back.as_str()).into_response();
    }
    let Some(user) = lock(&shared.user).clone() else {
        return bad("the test configured no user");
    };
    let code = random();
    lock(&shared.codes).insert(
        code.clone(),
        Grant {
            redirect_uri,
            challenge: param("code_challenge").to_owned(),
            user,
        },
    );
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", param("state"));
    Redirect::to(back.as_str()).into_response()
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"error": error}))).into_response()
}

/// `client_secret_basic` credentials, if sent.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let raw = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let decoded = STANDARD.decode(raw.strip_prefix("Basic ")?).ok()?;
    let (id, secret) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// Spends the code (whatever happens next, as real providers do) and checks the client, the
/// redirect URI and the PKCE verifier against the challenge sent to `/authorize`.
async fn token(
    State((shared, _)): FakeState,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let (client_id, secret) =
        basic_credentials(&headers).unwrap_or_else(|| (field("client_id"), field("client_secret")));
    if client_id != CLIENT_ID || secret != CLIENT_SECRET {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if field("grant_type") != "authorization_code" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let Some(grant) = lock(&shared.codes).remove(&field("code")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(field("code_verifier").as_bytes()));
    if grant.redirect_uri != field("redirect_uri") || grant.challenge != challenge {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let access_token = random();
    lock(&shared.tokens).insert(access_token.clone(), grant.user);
    Json(json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 300}))
        .into_response()
}

/// The user behind a bearer token, if it is one the fake issued.
fn bearer_user(shared: &Shared, headers: &HeaderMap) -> Option<FakeUser> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| lock(&shared.tokens).get(token).cloned())
}

fn invalid_token() -> Response {
    oauth_error(StatusCode::UNAUTHORIZED, "invalid_token")
}

async fn userinfo(State((shared, _)): FakeState, headers: HeaderMap) -> Response {
    match bearer_user(&shared, &headers) {
        Some(user) => Json(json!({
            "sub": user.email,
            "email": user.email,
            "email_verified": user.email_verified,
            "name": user.name,
        }))
        .into_response(),
        None => invalid_token(),
    }
}

async fn github_user(State((shared, _)): FakeState, headers: HeaderMap) -> Response {
    match bearer_user(&shared, &headers) {
        Some(user) => Json(json!({"login": "octo", "id": 1, "name": user.name})).into_response(),
        None => invalid_token(),
    }
}

async fn github_emails(State((shared, _)): FakeState, headers: HeaderMap) -> Response {
    match bearer_user(&shared, &headers) {
        Some(user) => Json(json!([
            {"email": "noreply@users.example", "primary": false, "verified": true},
            {"email": user.email, "primary": true, "verified": user.email_verified},
        ]))
        .into_response(),
        None => invalid_token(),
    }
}
