//! The `OAUTH_*` settings: which providers are offered, their clients and their endpoints.
//!
//! `OAUTH_PROVIDERS` names the providers (`google,github,keycloak`); each has
//! `OAUTH_<NAME>_CLIENT_ID` and `OAUTH_<NAME>_CLIENT_SECRET`, and either `OAUTH_<NAME>_ISSUER`
//! (OpenID Connect discovery) or the explicit `_AUTHORIZE_URL`, `_TOKEN_URL` and `_USERINFO_URL`
//! (the names `google` and `github` come with them), and optionally `_SCOPES`.

use crate::config::{AppEnv, ConfigError, Env};
use reqwest::Url;
use std::fmt;

/// Where the API is reached when `OAUTH_REDIRECT_BASE_URL` is unset: the local server.
pub const DEFAULT_REDIRECT_BASE_URL: &str = "http://127.0.0.1:3000";

/// The longest provider name, so the variable names stay readable.
const MAX_NAME_LEN: usize = 32;

/// An OAuth client secret: shown to no log and no `Debug` output.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a secret read from the environment.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret, for the token request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// How a provider tells who signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenID Connect: the userinfo endpoint's `email`, `email_verified` and `name`.
    Oidc,
    /// GitHub (plain OAuth 2.0): `GET /user` for the name, `GET /user/emails` for the primary,
    /// verified address.
    GitHub,
}

/// A provider's three endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Where the user's browser is sent to sign in.
    pub authorize: Url,
    /// Where the code is exchanged for an access token.
    pub token: Url,
    /// Who the access token belongs to (GitHub: the `/user` endpoint, emails at `/user/emails`).
    pub userinfo: Url,
}

/// Where a provider's endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    /// OpenID Connect discovery: `{issuer}/.well-known/openid-configuration`, fetched once.
    Discovery {
        /// The issuer identifier (e.g. `https://sso.example.com/realms/main`).
        issuer: Url,
    },
    /// Configured (or preset) endpoints.
    Fixed(Endpoints),
}

/// One configured provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Its name in the routes (`/v1/auth/oauth/{name}/...`), lowercase.
    pub name: String,
    /// OIDC or GitHub.
    pub kind: ProviderKind,
    /// The client id registered with the provider.
    pub client_id: String,
    /// The client secret registered with the provider.
    pub client_secret: ClientSecret,
    /// Discovery or fixed endpoints.
    pub endpoints: EndpointSource,
    /// The `scope` requested, space-separated.
    pub scopes: String,
}

/// The configured providers and where they send users back to.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The providers, in `OAUTH_PROVIDERS` order.
    pub providers: Vec<ProviderConfig>,
    /// `OAUTH_REDIRECT_BASE_URL`: the API's public base URL, without a trailing slash.
    pub redirect_base: String,
    /// Production: discovered endpoints must be https too.
    pub require_https: bool,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            redirect_base: DEFAULT_REDIRECT_BASE_URL.to_owned(),
            require_https: false,
        }
    }
}

impl OAuthConfig {
    /// Reads the `OAUTH_*` variables. Production wants https everywhere once a provider is
    /// configured (codes and tokens travel these URLs).
    pub(crate) fn from_env(env: &Env<'_>, app_env: AppEnv) -> Result<Self, ConfigError> {
        let production = app_env == AppEnv::Production;
        let names = provider_names(env.get("OAUTH_PROVIDERS").unwrap_or_default())?;
        let redirect_base = redirect_base(env, production && !names.is_empty())?;
        let providers = names
            .iter()
            .map(|name| provider(env, name, production))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            providers,
            redirect_base,
            require_https: production,
        })
    }
}

fn refuse(
    variable: impl Into<std::borrow::Cow<'static, str>>,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError {
        variable: variable.into(),
        reason: reason.into(),
    }
}

/// `google,github` -> the names, checked: lowercase letters, digits, `-` and `_`, each once
/// (also once as a variable prefix: `a-b` and `a_b` would share one).
fn provider_names(raw: &str) -> Result<Vec<String>, ConfigError> {
    let mut names: Vec<String> = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let name = name.to_ascii_lowercase();
        let valid = name.len() <= MAX_NAME_LEN
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(refuse(
                "OAUTH_PROVIDERS",
                format!(
                    "{name:?} is not a provider name (letters, digits, - and _, at most \
                     {MAX_NAME_LEN} characters)"
                ),
            ));
        }
        if names.iter().any(|known| prefix(known) == prefix(&name)) {
            return Err(refuse(
                "OAUTH_PROVIDERS",
                format!("{name:?} is listed twice"),
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// `keycloak-eu` -> `KEYCLOAK_EU`, the middle of its variables' names.
fn prefix(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

fn redirect_base(env: &Env<'_>, require_https: bool) -> Result<String, ConfigError> {
    const VAR: &str = "OAUTH_REDIRECT_BASE_URL";
    let raw = env
        .get(VAR)
        .map(str::trim)
        .filter(|raw| !raw.is_empty())
        .unwrap_or(DEFAULT_REDIRECT_BASE_URL);
    let url = parse_url(VAR.into(), raw, require_https)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(refuse(VAR, "must have no query or fragment"));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// An http(s) URL; https when `require_https`.
fn parse_url(
    variable: std::borrow::Cow<'static, str>,
    raw: &str,
    require_https: bool,
) -> Result<Url, ConfigError> {
    let url = Url::parse(raw)
        .map_err(|err| refuse(variable.clone(), format!("{raw:?} is not a URL: {err}")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if !require_https => Ok(url),
        "http" => Err(refuse(
            variable,
            "must be an https URL when APP_ENV=production",
        )),
        other => Err(refuse(variable, format!("{other}: is not http or https"))),
    }
}

/// The endpoints that come with a well-known name.
struct Preset {
    kind: ProviderKind,
    authorize: &'static str,
    token: &'static str,
    userinfo: &'static str,
}

fn preset(name: &str) -> Option<Preset> {
    match name {
        "google" => Some(Preset {
            kind: ProviderKind::Oidc,
            authorize: "https://accounts.google.com/o/oauth2/v2/auth",
            token: "https://oauth2.googleapis.com/token",
            userinfo: "https://openidconnect.googleapis.com/v1/userinfo",
        }),
        "github" => Some(Preset {
            kind: ProviderKind::GitHub,
            authorize: "https://github.com/login/oauth/authorize",
            token: "https://github.com/login/oauth/access_token",
            userinfo: "https://api.github.com/user",
        }),
        _ => None,
    }
}

fn provider(env: &Env<'_>, name: &str, production: bool) -> Result<ProviderConfig, ConfigError> {
    let prefix = prefix(name);
    let var = |suffix: &str| format!("OAUTH_{prefix}_{suffix}");
    let value = |suffix: &str| {
        env.get(&var(suffix))
            .map(str::trim)
            .filter(|raw| !raw.is_empty())
    };
    let required = |suffix: &str| {
        value(suffix)
            .map(str::to_owned)
            .ok_or_else(|| refuse(var(suffix), format!("is required for provider {name:?}")))
    };
    let url = |suffix: &str| {
        value(suffix)
            .map(|raw| parse_url(var(suffix).into(), raw, production))
            .transpose()
    };
    let client_id = required("CLIENT_ID")?;
    let client_secret = ClientSecret::new(required("CLIENT_SECRET")?);
    let issuer = url("ISSUER")?;
    let explicit = [
        url("AUTHORIZE_URL")?,
        url("TOKEN_URL")?,
        url("USERINFO_URL")?,
    ];
    let preset = preset(name);
    let (kind, endpoints) = match issuer {
        Some(issuer) => {
            if explicit.iter().any(Option::is_some) {
                return Err(refuse(
                    var("ISSUER"),
                    "set either the issuer (discovery) or the endpoint URLs, not both",
                ));
            }
            (ProviderKind::Oidc, EndpointSource::Discovery { issuer })
        }
        None => {
            let [authorize, token, userinfo] = explicit;
            let pick = |given: Option<Url>, suffix: &str, preset_url: Option<&str>| match (
                given, preset_url,
            ) {
                (Some(url), _) => Ok(url),
                (None, Some(preset_url)) => parse_url(var(suffix).into(), preset_url, production),
                (None, None) => Err(refuse(
                    var(suffix),
                    format!(
                        "is required for provider {name:?} (or set {} for OpenID Connect \
                         discovery)",
                        var("ISSUER")
                    ),
                )),
            };
            let endpoints = Endpoints {
                authorize: pick(
                    authorize,
                    "AUTHORIZE_URL",
                    preset.as_ref().map(|p| p.authorize),
                )?,
                token: pick(token, "TOKEN_URL", preset.as_ref().map(|p| p.token))?,
                userinfo: pick(
                    userinfo,
                    "USERINFO_URL",
                    preset.as_ref().map(|p| p.userinfo),
                )?,
            };
            let kind = preset.as_ref().map_or(ProviderKind::Oidc, |p| p.kind);
            (kind, EndpointSource::Fixed(endpoints))
        }
    };
    let scopes = match value("SCOPES") {
        Some(raw) => raw
            .replace(',', " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        None => match kind {
            ProviderKind::Oidc => "openid email profile".to_owned(),
            ProviderKind::GitHub => "read:user user:email".to_owned(),
        },
    };
    Ok(ProviderConfig {
        name: name.to_owned(),
        kind,
        client_id,
        client_secret,
        endpoints,
        scopes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(app_env: AppEnv, pairs: &[(&str, &str)]) -> Result<OAuthConfig, ConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OAuthConfig::from_env(&Env(&vars), app_env)
    }

    const CLIENTS: [(&str, &str); 6] = [
        ("OAUTH_GOOGLE_CLIENT_ID", "g-id"),
        ("OAUTH_GOOGLE_CLIENT_SECRET", "g-secret-value"),
        ("OAUTH_GITHUB_CLIENT_ID", "gh-id"),
        ("OAUTH_GITHUB_CLIENT_SECRET", "gh-secret-value"),
        ("OAUTH_KEYCLOAK_CLIENT_ID", "kc-id"),
        ("OAUTH_KEYCLOAK_CLIENT_SECRET", "kc-secret-value"),
    ];

    #[test]
    fn none_by_default_and_when_empty() {
        let config = parse(AppEnv::Production, &[]).expect("no providers");
        assert!(config.providers.is_empty());
        assert_eq!(config.redirect_base, DEFAULT_REDIRECT_BASE_URL);
        let config = parse(
            AppEnv::Production,
            &[("OAUTH_PROVIDERS", " "), ("OAUTH_REDIRECT_BASE_URL", "")],
        )
        .expect("empty means none");
        assert!(config.providers.is_empty());
    }

    #[test]
    fn presets_discovery_and_explicit_endpoints() {
        let mut pairs = CLIENTS.to_vec();
        pairs.extend([
            ("OAUTH_PROVIDERS", "Google, github,keycloak,acme"),
            (
                "OAUTH_KEYCLOAK_ISSUER",
                "https://sso.example.com/realms/main",
            ),
            ("OAUTH_ACME_CLIENT_ID", "acme-id"),
            ("OAUTH_ACME_CLIENT_SECRET", "acme-secret-value"),
            ("OAUTH_ACME_AUTHORIZE_URL", "https://acme.example/auth"),
            ("OAUTH_ACME_TOKEN_URL", "https://acme.example/token"),
            ("OAUTH_ACME_USERINFO_URL", "https://acme.example/me"),
            ("OAUTH_ACME_SCOPES", "openid,email"),
            ("OAUTH_REDIRECT_BASE_URL", "https://api.example.com/"),
        ]);
        let config = parse(AppEnv::Production, &pairs).expect("valid");
        assert_eq!(config.redirect_base, "https://api.example.com");
        let names: Vec<_> = config.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["google", "github", "keycloak", "acme"]);
        let [google, github, keycloak, acme] = &config.providers[..] else {
            panic!("four providers");
        };
        assert_eq!(google.kind, ProviderKind::Oidc);
        assert_eq!(google.scopes, "openid email profile");
        assert!(matches!(&google.endpoints, EndpointSource::Fixed(e)
            if e.authorize.as_str() == "https://accounts.google.com/o/oauth2/v2/auth"));
        assert_eq!(github.kind, ProviderKind::GitHub);
        assert_eq!(github.scopes, "read:user user:email");
        assert!(matches!(&github.endpoints, EndpointSource::Fixed(e)
            if e.token.as_str() == "https://github.com/login/oauth/access_token"
                && e.userinfo.as_str() == "https://api.github.com/user"));
        assert!(
            matches!(&keycloak.endpoints, EndpointSource::Discovery { issuer }
            if issuer.as_str() == "https://sso.example.com/realms/main")
        );
        assert_eq!(keycloak.kind, ProviderKind::Oidc);
        assert_eq!(acme.scopes, "openid email");
        assert_eq!(acme.client_id, "acme-id");
        assert_eq!(acme.client_secret.expose(), "acme-secret-value");
        let debug = format!("{config:?}");
        assert!(!debug.contains("secret-value"), "{debug}");
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("OAUTH_PROVIDERS", "bad name")], "OAUTH_PROVIDERS"),
            (&[("OAUTH_PROVIDERS", "google,GOOGLE")], "OAUTH_PROVIDERS"),
            (&[("OAUTH_PROVIDERS", "a-b,a_b")], "OAUTH_PROVIDERS"),
            (&[("OAUTH_PROVIDERS", "google")], "OAUTH_GOOGLE_CLIENT_ID"),
            (
                &[
                    ("OAUTH_PROVIDERS", "google"),
                    ("OAUTH_GOOGLE_CLIENT_ID", "x"),
                ],
                "OAUTH_GOOGLE_CLIENT_SECRET",
            ),
            (
                &[
                    ("OAUTH_PROVIDERS", "my-idp"),
                    ("OAUTH_MY_IDP_CLIENT_ID", "x"),
                    ("OAUTH_MY_IDP_CLIENT_SECRET", "y"),
                ],
                "OAUTH_MY_IDP_AUTHORIZE_URL",
            ),
            (
                &[
                    ("OAUTH_PROVIDERS", "kc"),
                    ("OAUTH_KC_CLIENT_ID", "x"),
                    ("OAUTH_KC_CLIENT_SECRET", "y"),
                    ("OAUTH_KC_ISSUER", "not a url"),
                ],
                "OAUTH_KC_ISSUER",
            ),
            (
                &[
                    ("OAUTH_PROVIDERS", "kc"),
                    ("OAUTH_KC_CLIENT_ID", "x"),
                    ("OAUTH_KC_CLIENT_SECRET", "y"),
                    ("OAUTH_KC_ISSUER", "https://sso.example.com"),
                    ("OAUTH_KC_TOKEN_URL", "https://sso.example.com/token"),
                ],
                "OAUTH_KC_ISSUER",
            ),
            (
                &[("OAUTH_REDIRECT_BASE_URL", "ftp://x")],
                "OAUTH_REDIRECT_BASE_URL",
            ),
            (
                &[("OAUTH_REDIRECT_BASE_URL", "https://x/?a=b")],
                "OAUTH_REDIRECT_BASE_URL",
            ),
        ];
        for (pairs, variable) in cases {
            let err = parse(AppEnv::Development, pairs).expect_err("must refuse");
            assert_eq!(err.variable, *variable, "{pairs:?}: {err}");
        }
    }

    #[test]
    fn production_wants_https_once_a_provider_is_configured() {
        let mut pairs = CLIENTS[..2].to_vec();
        pairs.push(("OAUTH_PROVIDERS", "google"));
        let err = parse(AppEnv::Production, &pairs).expect_err("default base is http");
        assert_eq!(err.variable, "OAUTH_REDIRECT_BASE_URL");
        parse(AppEnv::Development, &pairs).expect("http is fine locally");
        pairs.push(("OAUTH_REDIRECT_BASE_URL", "https://api.example.com"));
        parse(AppEnv::Production, &pairs).expect("https base");
        pairs.push(("OAUTH_GOOGLE_TOKEN_URL", "http://plain.example/token"));
        let err = parse(AppEnv::Production, &pairs).expect_err("http endpoint");
        assert_eq!(err.variable, "OAUTH_GOOGLE_TOKEN_URL");
    }
}
