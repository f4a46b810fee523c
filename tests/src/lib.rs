//! The end-to-end harness: starts the local server (the same routers and layers as the Lambda
//! functions) on a free loopback port over a fresh store, and talks to it over real HTTP.

pub mod fake_oidc;
pub mod faults;
pub mod sqs;

use meterline::clock::{Clock, SystemClock};
use meterline::ratelimit::{Limiter, LocalLimiter};
use meterline::store::{Store, testing};
use meterline::usage::UsageSink;
use meterline::{AppState, Config};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Generates one test per store backend (`sqlite::case`, `postgres::case`, `dynamodb::case`)
/// for each `async fn case(backend: Backend)` named.
#[macro_export]
macro_rules! on_every_backend {
    ($($case:ident),+ $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $case() { super::$case($crate::Backend::Sqlite).await } )+ }
        mod postgres { $( #[tokio::test] async fn $case() { super::$case($crate::Backend::Postgres).await } )+ }
        mod dynamodb { $( #[tokio::test] async fn $case() { super::$case($crate::Backend::Dynamodb).await } )+ }
    };
}

/// The JWT secret the test servers sign with, so tests can forge expired tokens.
pub const TEST_JWT_SECRET: &str = "meterline-e2e-secret-0123456789abcdef";

/// Which store backend a server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A schema on the test Postgres server.
    Postgres,
    /// A table on the test DynamoDB endpoint.
    Dynamodb,
}

impl Backend {
    async fn store(self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite => testing::sqlite().await,
            Self::Postgres => testing::postgres().await,
            Self::Dynamodb => testing::dynamodb().await,
        }
    }
}

/// A running local server; stops when dropped.
pub struct Server {
    /// The server's state, to look behind the API (e.g. at recorded usage).
    pub state: AppState,
    /// The folder the server's mail goes to (`MAIL_OUTBOX_DIR`), a fresh one per server.
    pub outbox: std::path::PathBuf,
    base: String,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl Server {
    /// A server on `backend` with the default configuration (real argon2 cost).
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, &[]).await
    }

    /// A server on `backend` with extra environment-style settings.
    pub async fn start_with(backend: Backend, settings: &[(&str, &str)]) -> Self {
        Self::start_on(backend, settings, Arc::new(LocalLimiter::new()), None).await
    }

    /// A server with a chosen limiter and usage sink (default: the direct sink).
    pub async fn start_on(
        backend: Backend,
        settings: &[(&str, &str)],
        limiter: Arc<dyn Limiter>,
        sink: Option<Arc<dyn UsageSink>>,
    ) -> Self {
        Self::start_over(backend.store().await, settings, limiter, sink).await
    }

    /// A server on `store` (e.g. one reached through a fault-injection proxy) with a chosen
    /// limiter and usage sink (default: the direct sink into `store`).
    pub async fn start_over(
        store: Arc<dyn Store>,
        settings: &[(&str, &str)],
        limiter: Arc<dyn Limiter>,
        sink: Option<Arc<dyn UsageSink>>,
    ) -> Self {
        Self::start_timed(store, settings, limiter, sink, Arc::new(SystemClock)).await
    }

    /// A server on `backend` whose services read the time from `clock` (e.g. a
    /// `ManualClock`, to cross a billing period's end or let invitations expire without
    /// waiting).
    pub async fn start_with_clock(
        backend: Backend,
        settings: &[(&str, &str)],
        clock: Arc<dyn Clock>,
    ) -> Self {
        let limiter = Arc::new(LocalLimiter::new());
        Self::start_timed(backend.store().await, settings, limiter, None, clock).await
    }

    /// [`Server::start_with_clock`] with the default settings.
    pub async fn start_clocked(backend: Backend, clock: Arc<dyn Clock>) -> Self {
        Self::start_with_clock(backend, &[], clock).await
    }

    async fn start_timed(
        store: Arc<dyn Store>,
        settings: &[(&str, &str)],
        limiter: Arc<dyn Limiter>,
        sink: Option<Arc<dyn UsageSink>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let outbox = std::env::temp_dir().join(format!(
            "meterline-outbox-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        let mut vars: HashMap<String, String> = HashMap::from([
            ("APP_ENV".into(), "test".into()),
            ("JWT_SECRET".into(), TEST_JWT_SECRET.into()),
            ("MAIL_OUTBOX_DIR".into(), outbox.display().to_string()),
        ]);
        vars.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let outbox = std::path::PathBuf::from(&vars["MAIL_OUTBOX_DIR"]);
        let config = Config::from_vars(&vars).expect("test configuration is valid");
        let state = AppState::assemble(config, store, limiter, clock).expect("state");
        let state = match sink {
            Some(sink) => state.with_sink(sink),
            None => state,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(meterline_local::serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        Self {
            state,
            outbox,
            base,
            client: reqwest::Client::new(),
            _stop: stop,
        }
    }

    /// The mails sent to `email` so far, oldest first, as the outbox files hold them.
    pub fn mails_to(&self, email: &str) -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(&self.outbox) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|path| {
                serde_json::from_slice::<Value>(&std::fs::read(path).expect("read a mail"))
                    .expect("a mail is JSON")
            })
            .filter(|mail| mail["to"] == email)
            .collect()
    }

    /// The newest mail of `kind` to `email`; panics when there is none.
    #[track_caller]
    pub fn last_mail(&self, email: &str, kind: &str) -> Value {
        self.mails_to(email)
            .into_iter()
            .rev()
            .find(|mail| mail["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} mail to {email}"))
    }

    /// A request to `path` on this server.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// POSTs `body` as JSON, with a bearer token when given.
    pub async fn post(&self, path: &str, body: Value, token: Option<&str>) -> Reply {
        let mut request = self.request(Method::POST, path).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Reply::from(request.send().await.expect("request sent")).await
    }

    /// POSTs `body` as JSON from the loopback source address `ip` (e.g. `127.0.0.2`), for the
    /// rules about client IPs (the local server trusts the socket's peer address).
    pub async fn post_from(&self, ip: &str, path: &str, body: Value, token: Option<&str>) -> Reply {
        let client = reqwest::Client::builder()
            .local_address(Some(ip.parse().expect("an IP address")))
            .build()
            .expect("client");
        let mut request = client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Reply::from(request.send().await.expect("request sent")).await
    }

    /// GETs `path`, with a bearer token when given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.request(Method::GET, path);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Reply::from(request.send().await.expect("request sent")).await
    }

    /// One login attempt with JSON, whatever its outcome.
    pub async fn attempt_login(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/v1/auth/login",
            json!({"email": email, "password": password}),
            None,
        )
        .await
    }

    /// One refresh attempt.
    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh_token}),
            None,
        )
        .await
    }

    /// `GET /v1/auth/me` with `access_token`.
    pub async fn me(&self, access_token: &str) -> Reply {
        self.get("/v1/auth/me", Some(access_token)).await
    }

    /// Signs up `email` with `password`, asserting it worked.
    pub async fn signup(&self, email: &str, password: &str) -> Value {
        let reply = self
            .post(
                "/v1/auth/signup",
                json!({"email": email, "password": password}),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "signup: {}", reply.body);
        reply.body
    }

    /// Logs in with JSON, asserting it worked; returns the token pair.
    pub async fn login(&self, email: &str, password: &str) -> Tokens {
        let reply = self.attempt_login(email, password).await;
        assert_eq!(reply.status, StatusCode::OK, "login: {}", reply.body);
        Tokens::from(&reply.body)
    }
}

/// A token pair from login or refresh.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The bearer JWT.
    pub access: String,
    /// The single-use refresh token.
    pub refresh: String,
}

impl From<&Value> for Tokens {
    fn from(body: &Value) -> Self {
        assert_eq!(body["token_type"], "bearer");
        assert!(body["expires_in"].as_i64().is_some_and(|s| s > 0));
        Self {
            access: body["access_token"].as_str().expect("access_token").into(),
            refresh: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .into(),
        }
    }
}

/// A response read whole: status, headers, JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON.
    pub body: Value,
}

impl Reply {
    /// Reads a response.
    pub async fn from(response: Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
        }
    }

    /// Asserts a problem+json answer with `status` and `code`, in the one error shape.
    #[track_caller]
    pub fn assert_problem(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.body["code"], code, "body: {}", self.body);
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        assert_eq!(self.body["status"], status.as_u16());
        for field in ["type", "title", "detail"] {
            assert!(
                self.body[field].is_string(),
                "{field} missing: {}",
                self.body
            );
        }
        let request_id = self
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok());
        assert!(request_id.is_some());
        assert_eq!(self.body["request_id"].as_str(), request_id);
    }
}

/// A unique email for one test.
pub fn unique_email() -> String {
    format!(
        "user-{}@example.com",
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

/// Signs an access token like the server does, with chosen times, to test expiry.
pub fn forge_access_token(sub: &str, sid: &str, iat: i64, exp: i64) -> String {
    let claims = json!({
        "sub": sub, "sid": sid, "iat": iat, "exp": exp,
        "jti": format!("tok_{}", ulid::Ulid::new().to_string().to_lowercase()),
        "iss": "meterline", "aud": "meterline-api",
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .expect("sign")
}

/// The claims of a token (without checking it), to reuse its `sub` and `sid`.
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

/// A request with a JSON body (or none, when `body` is `Null`) and a bearer token.
pub async fn call(server: &Server, method: Method, path: &str, token: &str, body: Value) -> Reply {
    let mut request = server.request(method, path).bearer_auth(token);
    if !body.is_null() {
        request = request.json(&body);
    }
    Reply::from(request.send().await.expect("request sent")).await
}

/// A signed-up, logged-in user.
#[derive(Debug, Clone)]
pub struct Account {
    /// The user id.
    pub id: String,
    /// The email.
    pub email: String,
    /// A bearer token.
    pub token: String,
}

impl Server {
    /// Signs up and logs in a fresh user.
    pub async fn account(&self) -> Account {
        let email = unique_email();
        let user = self.signup(&email, "correct horse battery").await;
        let tokens = self.login(&email, "correct horse battery").await;
        Account {
            id: user["id"].as_str().expect("id").into(),
            email,
            token: tokens.access,
        }
    }

    /// Creates an org as `owner`, returning its id.
    pub async fn org(&self, owner: &Account, name: &str) -> String {
        let reply = call(
            self,
            Method::POST,
            "/v1/orgs",
            &owner.token,
            json!({"name": name}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["id"].as_str().expect("id").into()
    }
}

impl Server {
    /// Verifies `account`'s email with the link of its verification mail, as its owner would.
    pub async fn verify_email(&self, account: &Account) {
        let token = link_token(&self.last_mail(&account.email, "verify_email"));
        let reply = call(
            self,
            Method::POST,
            "/v1/auth/verify-email",
            &account.token,
            json!({ "token": token }),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "verify: {}", reply.body);
    }

    /// Invites `by` adding `email` to `org` as `role`, asserting the 202; returns the
    /// invitation.
    pub async fn invite(&self, by: &Account, org: &str, email: &str, role: &str) -> Value {
        let reply = call(
            self,
            Method::POST,
            &format!("/v1/orgs/{org}/members"),
            &by.token,
            json!({"email": email, "role": role}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "invite: {}", reply.body);
        reply.body["invitation"].clone()
    }

    /// Makes `member` a member of `org` with `role` the only way there is: `by` invites
    /// their address, they verify it (if not yet) and accept. Returns the invitation.
    pub async fn add_member(&self, by: &Account, org: &str, member: &Account, role: &str) -> Value {
        let invitation = self.invite(by, org, &member.email, role).await;
        if self.me(&member.token).await.body["email_verified"] != true {
            self.verify_email(member).await;
        }
        let id = invitation["id"].as_str().expect("invitation id");
        let reply = call(
            self,
            Method::POST,
            &format!("/v1/auth/me/invitations/{id}/accept"),
            &member.token,
            Value::Null,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "accept: {}", reply.body);
        assert_eq!(reply.body["role"], role);
        invitation
    }
}

/// An org with an API key, ready for metered requests.
#[derive(Debug, Clone)]
pub struct Keyed {
    /// The owner.
    pub owner: Account,
    /// The org id.
    pub org: String,
    /// The key id.
    pub key_id: String,
    /// The plaintext key.
    pub key: String,
}

impl Server {
    /// Creates an owner, an org and a key with `settings` (`{name, rate_limit_rpm?, ...}`).
    pub async fn keyed(&self, settings: Value) -> Keyed {
        let owner = self.account().await;
        let org = self.org(&owner, "Metered").await;
        let reply = call(
            self,
            Method::POST,
            &format!("/v1/orgs/{org}/api-keys"),
            &owner.token,
            settings,
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        Keyed {
            key_id: reply.body["id"].as_str().expect("id").into(),
            key: reply.body["key"].as_str().expect("key").into(),
            owner,
            org,
        }
    }

    /// A metered request with `X-API-Key`.
    pub async fn metered(&self, path: &str, key: Option<&str>, body: Value) -> Reply {
        let mut request = self.request(Method::POST, path);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if !body.is_null() {
            request = request.json(&body);
        }
        Reply::from(request.send().await.expect("request sent")).await
    }
}

impl Reply {
    /// Like [`Reply::assert_problem`], for services outside the Meterline stack (no request id).
    #[track_caller]
    pub fn assert_problem_shape(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.body["code"], code, "body: {}", self.body);
        assert_eq!(self.body["status"], status.as_u16());
    }
}

/// A private redis-server on a free loopback port, so its command counts are one test's alone.
pub struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    /// Starts one (redis-server must be installed: `infra/services.sh`).
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is required (run infra/services.sh)");
        let server = Self { child, port };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {port}");
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// EVALSHA calls so far, from `INFO commandstats`.
    pub async fn script_calls(&self) -> u64 {
        self.command_calls("evalsha").await
    }

    /// Calls of `command` (lowercase, e.g. `ping`) so far, from `INFO commandstats`.
    pub async fn command_calls(&self, command: &str) -> u64 {
        let client = redis::Client::open(self.url()).expect("url");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut connection)
            .await
            .expect("info");
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small deterministic generator (a 64-bit LCG), so generated test and benchmark data is the
/// same on every run and a failing run can be replayed.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number in `0..bound`.
    pub fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// The `token` of the link in a mail's text.
#[track_caller]
pub fn link_token(mail: &Value) -> String {
    let text = mail["text"].as_str().expect("a text body");
    let start = text.find("token=").expect("a link with a token") + "token=".len();
    text[start..]
        .split(|c: char| c.is_whitespace())
        .next()
        .expect("token")
        .to_owned()
}

/// The six-digit code in a login-code mail's text.
#[track_caller]
pub fn mailed_code(mail: &Value) -> String {
    let text = mail["text"].as_str().expect("a text body");
    text.lines()
        .map(str::trim)
        .find(|line| line.len() == 6 && line.bytes().all(|b| b.is_ascii_digit()))
        .expect("a code line")
        .to_owned()
}
