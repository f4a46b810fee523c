//! Social login: OAuth 2.0 / OpenID Connect authorization code flow with PKCE and `state`,
//! Google and GitHub presets and any OIDC provider by configuration.
//!
//! [`OAuth::authorize`] makes the provider URL and keeps the request's `state` (hashed), PKCE
//! verifier and nonce as a one-time secret; [`OAuth::callback`] spends that state, exchanges
//! the code, asks the provider who signed in, and signs the owner of the verified email in
//! through [`Accounts::sign_in_verified`] (accounts are linked by verified email).
//!
//! Known limits: the `id_token` is not validated (the identity comes from the userinfo
//! endpoint, called over TLS with the access token just obtained from the provider, so the nonce
//! is sent but not checked), and the state is not bound to the browser that started the flow
//! (no cookie), so a login-CSRF is possible for a client that does not keep its own binding.

mod config;
mod pending;
mod pkce;
mod provider;

pub use config::{
    ClientSecret, DEFAULT_REDIRECT_BASE_URL, EndpointSource, Endpoints, OAuthConfig,
    ProviderConfig, ProviderKind,
};
pub use pkce::{PkceVerifier, s256_challenge};

use crate::auth::{Accounts, AuthError, TokenPair};
use crate::clock::Clock;
use crate::domain::{DisplayName, Email, User};
use crate::store::{Purpose, Store, StoreError};
use pending::Pending;
use provider::Provider;
use reqwest::Url;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long one provider call may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long connecting to a provider may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long all the provider calls of one callback may take together: inside the 9 s request
/// deadline, with room left for the store.
const CALLBACK_BUDGET: Duration = Duration::from_secs(7);

/// Why a social sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// No provider of that name is configured.
    #[error("no such sign-in provider")]
    UnknownProvider,
    /// The callback lacks `code` or `state`.
    #[error("missing {}", .0.join(" and "))]
    Missing(Vec<&'static str>),
    /// The `state` is unknown, expired, already used, or for another provider.
    #[error("the sign-in request is unknown, expired or already used; start again")]
    InvalidState,
    /// The provider answered with an error (e.g. the user said no).
    #[error("the provider did not authorize the sign-in ({0})")]
    Denied(String),
    /// The provider refused the code exchange (wrong verifier, replayed or unknown code) or its
    /// own token.
    #[error("{0}")]
    Failed(String),
    /// The provider has no verified email for the user.
    #[error("the provider has no verified email address for this account")]
    EmailNotVerified,
    /// The provider could not be reached, timed out, or answered nonsense.
    #[error("the sign-in provider is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Signing the user in failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// What a provider sends back to the redirect URI (as a query string, or posted on by a client
/// that received the redirect): `code` and `state`, or `error` and `state`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackParams {
    /// The authorization code.
    pub code: Option<String>,
    /// The `state` from the authorization request.
    pub state: Option<String>,
    /// The provider's error code instead of a code (e.g. `access_denied`).
    pub error: Option<String>,
}

/// A completed social sign-in.
#[derive(Debug)]
pub struct SignIn {
    /// The new session's tokens.
    pub tokens: TokenPair,
    /// The account signed in to.
    pub user: User,
    /// Whether this sign-in created the account.
    pub created: bool,
}

/// Where [`OAuth::authorize`] sends the user: the provider's authorization URL.
#[derive(Debug, Clone)]
pub struct AuthorizeRedirect {
    /// The URL with every parameter of the request.
    pub url: Url,
    /// The same, ready for a `Location` header.
    pub location: http::HeaderValue,
}

/// The social-login service. Cheap to clone.
#[derive(Clone)]
pub struct OAuth {
    inner: Arc<Inner>,
}

struct Inner {
    providers: HashMap<String, Provider>,
    /// Built only when a provider is configured, so the other functions pay nothing for it.
    http: Option<reqwest::Client>,
    store: Arc<dyn Store>,
    accounts: Accounts,
    clock: Arc<dyn Clock>,
}

impl OAuth {
    /// Builds the service on the configured providers.
    pub fn new(
        config: &OAuthConfig,
        store: Arc<dyn Store>,
        accounts: Accounts,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let http = if config.providers.is_empty() {
            None
        } else {
            Some(
                reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(REQUEST_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("meterline/", env!("CARGO_PKG_VERSION")))
                    .build()?,
            )
        };
        let providers = config
            .providers
            .iter()
            .map(|p| {
                let provider =
                    Provider::new(p.clone(), &config.redirect_base, config.require_https);
                (p.name.clone(), provider)
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                providers,
                http,
                store,
                accounts,
                clock,
            }),
        })
    }

    /// The configured providers' names.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.inner.providers.keys().map(String::as_str)
    }

    fn provider(&self, name: &str) -> Result<(&Provider, &reqwest::Client), OAuthError> {
        let provider = self
            .inner
            .providers
            .get(name)
            .ok_or(OAuthError::UnknownProvider)?;
        let http = self
            .inner
            .http
            .as_ref()
            .ok_or(OAuthError::UnknownProvider)?;
        Ok((provider, http))
    }

    /// Starts a sign-in with `provider`: stores a fresh state (with its PKCE verifier and nonce)
    /// for ten minutes and returns the provider URL to send the user to.
    #[tracing::instrument(skip_all, fields(provider = %name))]
    pub async fn authorize(&self, name: &str) -> Result<AuthorizeRedirect, OAuthError> {
        let (provider, http) = self.provider(name)?;
        let endpoints = provider.endpoints(http).await?;
        let state = pkce::random_token();
        let verifier = PkceVerifier::generate();
        let nonce = (provider.config.kind == ProviderKind::Oidc).then(pkce::random_token);
        let pending = Pending {
            provider: provider.config.name.clone(),
            verifier: verifier.expose().to_owned(),
            nonce: nonce.clone(),
        };
        let record = pending.record(&state, self.inner.clock.now_millis())?;
        self.inner.store.put_one_time(&record).await?;
        let mut url = endpoints.authorize.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &provider.config.client_id)
                .append_pair("redirect_uri", &provider.redirect_uri)
                .append_pair("scope", &provider.config.scopes)
                .append_pair("state", &state)
                .append_pair("code_challenge", &verifier.challenge())
                .append_pair("code_challenge_method", "S256");
            if let Some(nonce) = &nonce {
                query.append_pair("nonce", nonce);
            }
        }
        let location = http::HeaderValue::from_str(url.as_str())
            .map_err(|err| OAuthError::Internal(err.into()))?;
        tracing::info!("social sign-in started");
        Ok(AuthorizeRedirect { url, location })
    }

    /// Completes a sign-in with `provider`: spends the state (once), exchanges the code, reads
    /// the verified email and signs its owner in, creating or linking the account.
    #[tracing::instrument(skip_all, fields(provider = %name))]
    pub async fn callback(&self, name: &str, params: CallbackParams) -> Result<SignIn, OAuthError> {
        let outcome = self.complete(name, params).await;
        match &outcome {
            Ok(sign_in) => tracing::info!(
                user_id = %sign_in.user.id,
                created = sign_in.created,
                "social sign-in succeeded"
            ),
            Err(OAuthError::Unavailable(cause)) => {
                tracing::warn!(error = ?cause, "social sign-in: provider unavailable");
            }
            Err(err) => tracing::info!(reason = %err, "social sign-in refused"),
        }
        outcome
    }

    async fn complete(&self, name: &str, params: CallbackParams) -> Result<SignIn, OAuthError> {
        let (provider, http) = self.provider(name)?;
        if let Some(error) = params.error {
            // The request is over either way: spend its state so it cannot be replayed.
            if let Some(state) = &params.state {
                let _ = self.take_state(provider, state).await;
            }
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(OAuthError::Denied(code));
        }
        let (code, state) = match (params.code, params.state) {
            (Some(code), Some(state)) if !code.is_empty() && !state.is_empty() => (code, state),
            (code, state) => {
                let missing = [("code", code), ("state", state)]
                    .into_iter()
                    .filter(|(_, value)| value.as_deref().is_none_or(str::is_empty))
                    .map(|(field, _)| field)
                    .collect();
                return Err(OAuthError::Missing(missing));
            }
        };
        let pending = self.take_state(provider, &state).await?;
        let identity = tokio::time::timeout(CALLBACK_BUDGET, async {
            let endpoints = provider.endpoints(http).await?;
            let token = provider
                .exchange(http, endpoints, &code, &pending.verifier())
                .await?;
            provider.identity(http, endpoints, &token).await
        })
        .await
        .map_err(|_| OAuthError::Unavailable(anyhow::anyhow!("the provider took too long")))??;
        let email = match identity.email {
            Some(email) if identity.email_verified => {
                Email::parse(&email).map_err(|_| OAuthError::EmailNotVerified)?
            }
            _ => return Err(OAuthError::EmailNotVerified),
        };
        let name = identity
            .name
            .map(|name| name.chars().take(100).collect::<String>());
        let name = DisplayName::parse(name).ok().flatten();
        let (tokens, user, created) = self.inner.accounts.sign_in_verified(email, name).await?;
        Ok(SignIn {
            tokens,
            user,
            created,
        })
    }

    /// Spends `state`: true for exactly one caller, and only while it is fresh and for this
    /// provider.
    async fn take_state(&self, provider: &Provider, state: &str) -> Result<Pending, OAuthError> {
        if !pkce::is_random_token(state) {
            return Err(OAuthError::InvalidState);
        }
        let hash = pkce::state_hash(state);
        let record = self
            .inner
            .store
            .one_time(Purpose::OAuthState, hash.as_str())
            .await?
            .ok_or(OAuthError::InvalidState)?;
        if !self
            .inner
            .store
            .take_one_time(Purpose::OAuthState, hash.as_str(), &hash)
            .await?
        {
            return Err(OAuthError::InvalidState);
        }
        let pending = Pending::from_record(&record)?;
        if record.expires_at <= self.inner.clock.now() || pending.provider != provider.config.name {
            return Err(OAuthError::InvalidState);
        }
        Ok(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::pending::STATE_TTL_MINUTES;
    use super::*;
    use crate::clock::ManualClock;
    use crate::ratelimit::LocalLimiter;
    use crate::{AppState, Config};

    /// A state with one provider at fixed (never contacted) endpoints, on a clock the test moves.
    async fn service() -> (OAuth, Arc<ManualClock>) {
        let vars = [
            ("APP_ENV", "test"),
            ("OAUTH_PROVIDERS", "acme,other"),
            ("OAUTH_ACME_CLIENT_ID", "id"),
            ("OAUTH_ACME_CLIENT_SECRET", "secret"),
            (
                "OAUTH_ACME_AUTHORIZE_URL",
                "https://acme.example/authorize?prompt=login",
            ),
            ("OAUTH_ACME_TOKEN_URL", "https://acme.example/token"),
            ("OAUTH_ACME_USERINFO_URL", "https://acme.example/userinfo"),
            ("OAUTH_OTHER_CLIENT_ID", "id"),
            ("OAUTH_OTHER_CLIENT_SECRET", "secret"),
            ("OAUTH_OTHER_ISSUER", "https://other.example"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = Config::from_vars(&vars).expect("config");
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let state = AppState::assemble(
            config,
            crate::store::testing::sqlite().await,
            Arc::new(LocalLimiter::new()),
            clock.clone(),
        )
        .expect("state");
        (state.oauth, clock)
    }

    fn param(url: &Url, name: &str) -> Option<String> {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    #[tokio::test]
    async fn the_authorize_url_keeps_the_providers_own_parameters() {
        let (oauth, _) = service().await;
        let redirect = oauth.authorize("acme").await.expect("authorize");
        assert_eq!(param(&redirect.url, "prompt").as_deref(), Some("login"));
        assert_eq!(
            param(&redirect.url, "redirect_uri").as_deref(),
            Some("http://127.0.0.1:3000/v1/auth/oauth/acme/callback")
        );
        assert_eq!(redirect.location, redirect.url.as_str());
        assert!(matches!(
            oauth.authorize("nope").await,
            Err(OAuthError::UnknownProvider)
        ));
    }

    #[tokio::test]
    async fn a_state_expires_after_ten_minutes_and_is_spent_by_the_attempt() {
        let (oauth, clock) = service().await;
        let redirect = oauth.authorize("acme").await.expect("authorize");
        let state = param(&redirect.url, "state").expect("state");
        clock.advance(chrono::Duration::minutes(STATE_TTL_MINUTES));
        let params = || CallbackParams {
            code: Some("code".into()),
            state: Some(state.clone()),
            error: None,
        };
        let err = oauth.callback("acme", params()).await.expect_err("expired");
        assert!(matches!(err, OAuthError::InvalidState), "{err:?}");
        clock.advance(chrono::Duration::minutes(-5));
        let err = oauth.callback("acme", params()).await.expect_err("spent");
        assert!(matches!(err, OAuthError::InvalidState), "{err:?}");
    }
}
