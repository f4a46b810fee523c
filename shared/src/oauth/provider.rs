//! Talking to one provider: OpenID Connect discovery (cached for the life of the process), the
//! code exchange, and who signed in (the OIDC userinfo endpoint, or GitHub's user and emails).
//! Every call is bounded by the shared client's timeouts; the provider's answers are judged
//! here: a refusal is [`OAuthError::Failed`], an outage or garbage [`OAuthError::Unavailable`].

use super::OAuthError;
use super::config::{EndpointSource, Endpoints, ProviderConfig, ProviderKind};
use super::pkce::PkceVerifier;
use reqwest::header::ACCEPT;
use reqwest::{Client, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use tokio::sync::OnceCell;

/// An access token from the provider: used once for the identity, never logged or stored.
pub(crate) struct AccessToken(String);

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Who signed in, as the provider says.
#[derive(Debug, Default)]
pub(crate) struct Identity {
    /// The address, if the provider shared one.
    pub(crate) email: Option<String>,
    /// Whether the provider has proved the address belongs to the user.
    pub(crate) email_verified: bool,
    /// A display name, if any.
    pub(crate) name: Option<String>,
}

/// A configured provider with its redirect URI and discovered endpoints.
pub(crate) struct Provider {
    pub(crate) config: ProviderConfig,
    pub(crate) redirect_uri: String,
    require_https: bool,
    discovered: OnceCell<Endpoints>,
}

/// The fields of an OpenID Provider Metadata document this flow uses.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
}

/// A token endpoint's answer, success or error (GitHub answers errors with 200).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    error: Option<String>,
}

fn unavailable(reason: impl fmt::Display) -> OAuthError {
    OAuthError::Unavailable(anyhow::anyhow!("{reason}"))
}

/// A transport failure (refused, timed out, unreadable): the provider is unavailable. The URL
/// is dropped from the error so no query parameter can reach a log.
fn transport(err: reqwest::Error) -> OAuthError {
    OAuthError::Unavailable(anyhow::Error::new(err.without_url()))
}

/// A provider's error code as safe, short text for logs and problems.
fn error_code(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.' || *c == '-')
        .take(64)
        .collect()
}

impl Provider {
    /// The provider as configured, sending users back to `{redirect_base}/v1/auth/oauth/{name}/callback`.
    pub(crate) fn new(config: ProviderConfig, redirect_base: &str, require_https: bool) -> Self {
        let redirect_uri = format!("{redirect_base}/v1/auth/oauth/{}/callback", config.name);
        Self {
            config,
            redirect_uri,
            require_https,
            discovered: OnceCell::new(),
        }
    }

    /// The endpoints: configured, or discovered once (a failed discovery is tried again on the
    /// next request).
    pub(crate) async fn endpoints(&self, http: &Client) -> Result<&Endpoints, OAuthError> {
        match &self.config.endpoints {
            EndpointSource::Fixed(endpoints) => Ok(endpoints),
            EndpointSource::Discovery { issuer } => {
                self.discovered
                    .get_or_try_init(|| self.discover(http, issuer))
                    .await
            }
        }
    }

    async fn discover(&self, http: &Client, issuer: &Url) -> Result<Endpoints, OAuthError> {
        let issuer_text = issuer.as_str().trim_end_matches('/');
        let url = format!("{issuer_text}/.well-known/openid-configuration");
        let response = http
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "{}: discovery answered {}",
                self.config.name,
                response.status()
            )));
        }
        let doc: Discovery = response.json().await.map_err(transport)?;
        if doc.issuer.trim_end_matches('/') != issuer_text {
            return Err(unavailable(format!(
                "{}: the discovery document is for issuer {:?}",
                self.config.name, doc.issuer
            )));
        }
        let url = |field: &str, raw: Option<&str>| {
            let raw =
                raw.ok_or_else(|| unavailable(format!("{}: no {field}", self.config.name)))?;
            let url = Url::parse(raw)
                .map_err(|err| unavailable(format!("{}: {field}: {err}", self.config.name)))?;
            match url.scheme() {
                "https" => Ok(url),
                "http" if !self.require_https => Ok(url),
                _ => Err(unavailable(format!(
                    "{}: {field} is not an https URL",
                    self.config.name
                ))),
            }
        };
        let endpoints = Endpoints {
            authorize: url(
                "authorization_endpoint",
                Some(doc.authorization_endpoint.as_str()),
            )?,
            token: url("token_endpoint", Some(doc.token_endpoint.as_str()))?,
            userinfo: url("userinfo_endpoint", doc.userinfo_endpoint.as_deref())?,
        };
        tracing::info!(provider = %self.config.name, "OpenID Connect discovery done");
        Ok(endpoints)
    }

    /// Exchanges an authorization code (with the PKCE verifier and the client's credentials,
    /// `client_secret_post`) for an access token.
    pub(crate) async fn exchange(
        &self,
        http: &Client,
        endpoints: &Endpoints,
        code: &str,
        verifier: &PkceVerifier,
    ) -> Result<AccessToken, OAuthError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", verifier.expose()),
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.config.client_secret.expose()),
        ];
        let response = http
            .post(endpoints.token.clone())
            .header(ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status.is_server_error() {
            return Err(unavailable(format!("token endpoint answered {status}")));
        }
        let body: Option<TokenResponse> = response.json().await.ok();
        match body {
            Some(TokenResponse {
                error: Some(error), ..
            }) => Err(OAuthError::Failed(format!(
                "the provider refused the authorization code ({})",
                error_code(&error)
            ))),
            _ if !status.is_success() => Err(OAuthError::Failed(format!(
                "the provider refused the authorization code ({status})"
            ))),
            Some(TokenResponse {
                access_token: Some(token),
                ..
            }) if !token.is_empty() => Ok(AccessToken(token)),
            _ => Err(unavailable("the token endpoint answered no access token")),
        }
    }

    /// Who the access token belongs to.
    pub(crate) async fn identity(
        &self,
        http: &Client,
        endpoints: &Endpoints,
        token: &AccessToken,
    ) -> Result<Identity, OAuthError> {
        match self.config.kind {
            ProviderKind::Oidc => {
                let info =
                    get_json(http, endpoints.userinfo.clone(), token, "application/json").await?;
                Ok(Identity {
                    email: text(&info["email"]),
                    email_verified: match &info["email_verified"] {
                        Value::Bool(verified) => *verified,
                        // Some providers send the claim as a string.
                        Value::String(verified) => verified == "true",
                        _ => false,
                    },
                    name: text(&info["name"]),
                })
            }
            ProviderKind::GitHub => {
                const GITHUB_JSON: &str = "application/vnd.github+json";
                let user_url = endpoints.userinfo.clone();
                let emails_url = Url::parse(&format!(
                    "{}/emails",
                    user_url.as_str().trim_end_matches('/')
                ))
                .map_err(|err| OAuthError::Internal(err.into()))?;
                let user = get_json(http, user_url, token, GITHUB_JSON).await?;
                let emails = get_json(http, emails_url, token, GITHUB_JSON).await?;
                let primary = emails.as_array().and_then(|emails| {
                    emails.iter().find(|e| {
                        e["primary"] == Value::Bool(true) && e["verified"] == Value::Bool(true)
                    })
                });
                Ok(Identity {
                    email: primary.and_then(|e| text(&e["email"])),
                    email_verified: primary.is_some(),
                    name: text(&user["name"]).or_else(|| text(&user["login"])),
                })
            }
        }
    }
}

fn text(value: &Value) -> Option<String> {
    value
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A bearer-authenticated GET whose answer is JSON. A refused token is a failed sign-in; any
/// other failure is the provider's.
async fn get_json(
    http: &Client,
    url: Url,
    token: &AccessToken,
    accept: &str,
) -> Result<Value, OAuthError> {
    let response = http
        .get(url)
        .bearer_auth(&token.0)
        .header(ACCEPT, accept)
        .send()
        .await
        .map_err(transport)?;
    match response.status() {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(OAuthError::Failed(
            "the provider refused its own access token".into(),
        )),
        status if !status.is_success() => Err(unavailable(format!(
            "the identity endpoint answered {status}"
        ))),
        _ => response.json().await.map_err(transport),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_error_codes_are_made_safe() {
        assert_eq!(error_code("invalid_grant"), "invalid_grant");
        assert_eq!(error_code("bad\ncode <script>"), "badcodescript");
        assert_eq!(error_code(&"x".repeat(100)).len(), 64);
    }
}
