//! Typed configuration, read once from environment variables and validated before anything
//! starts. A bad value stops the process with a message that names the variable.

use crate::domain::{Email, PlanId, PlanTerms};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// The JWT secret used when none is set outside production. It is public (it is in this file),
/// so production refuses it.
pub const DEVELOPMENT_JWT_SECRET: &str = "meterline-development-secret-do-not-use-in-production";

/// Secrets that appear in tutorials and templates; production refuses them whatever their length.
const KNOWN_DEFAULT_SECRETS: &[&str] = &[
    DEVELOPMENT_JWT_SECRET,
    "secret",
    "changeme",
    "change-me",
    "changethis",
    "your-secret-key",
    "supersecret",
    "jwt-secret",
    "dev-secret",
    "CHANGE_ME_IN_PRODUCTION_0123456789abcdef",
];

/// The shortest JWT secret production accepts (HS256 wants at least its 256-bit output size).
pub const MIN_PRODUCTION_SECRET_BYTES: usize = 32;

/// Which kind of deployment this is; production turns on the strict checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    /// A developer's machine: convenient defaults allowed.
    Development,
    /// Automated tests.
    Test,
    /// A real deployment: no default secrets.
    Production,
}

impl FromStr for AppEnv {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "development" | "dev" | "local" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" | "prod" => Ok(Self::Production),
            _ => Err("expected development, test or production".into()),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for CloudWatch Logs Insights.
    Json,
    /// Readable lines for a terminal.
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            _ => Err("expected json or pretty".into()),
        }
    }
}

/// What the metering path does when the rate limiter (Redis) cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Serve the request unlimited and log a warning: availability over enforcement.
    Open,
    /// Refuse with 503: enforcement over availability.
    Closed,
}

impl FromStr for FailMode {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err("expected open or closed".into()),
        }
    }
}

/// A secret that never shows up in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Argon2id cost parameters (OWASP's recommended minimum by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory per hash, KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

/// Every setting Meterline reads, parsed and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// `APP_ENV`.
    pub app_env: AppEnv,
    /// `HOST`: where the local server listens.
    pub host: IpAddr,
    /// `PORT`: the local server's port.
    pub port: u16,
    /// `STORE_URL`: which state backend (`sqlite://`, `postgres://`, `dynamodb://`).
    pub store_url: String,
    /// `JWT_SECRET`: HS256 key for access tokens.
    pub jwt_secret: Secret,
    /// `JWT_ISSUER`: the `iss` claim written and required.
    pub jwt_issuer: String,
    /// `JWT_AUDIENCE`: the `aud` claim written and required.
    pub jwt_audience: String,
    /// `ACCESS_TOKEN_TTL_SECS`: access-token lifetime.
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_SECS`: refresh-token (session) lifetime.
    pub refresh_token_ttl: Duration,
    /// `ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM`.
    pub argon2: Argon2Params,
    /// `LOGIN_MAX_FAILURES`: failed logins that lock an account.
    pub login_max_failures: u32,
    /// `LOGIN_LOCKOUT_SECS`: the window failures are counted in, and how long the lock lasts.
    pub login_lockout: Duration,
    /// `LOGIN_MAX_FAILURES_PER_ADDRESS`: password attempts on one address from all client IPs
    /// together that lock it (the ceiling over the per-IP `LOGIN_MAX_FAILURES`; default 100).
    pub login_max_failures_per_address: u32,
    /// `AUTH_IP_LIMIT_PER_MIN`: auth requests per client IP per minute; 0 turns it off.
    pub auth_ip_limit_per_min: u32,
    /// `MAX_BODY_BYTES`: the largest request body accepted.
    pub max_body_bytes: usize,
    /// `LOG_FORMAT`: json under Lambda, pretty elsewhere, unless set.
    pub log_format: LogFormat,
    /// `REDIS_URL`: the rate-limit and quota store; without it, the in-process limiter.
    pub redis_url: Option<String>,
    /// `RATE_LIMIT_FAIL_MODE`: what metering does when Redis is unreachable.
    pub rate_limit_fail_mode: FailMode,
    /// `DEFAULT_ORG_RATE_LIMIT_RPM`: an org's requests per minute until a plan sets it.
    pub default_org_rpm: u32,
    /// `DEFAULT_MONTHLY_QUOTA`: units per meter per month until plans exist; 0 = no quota.
    pub default_monthly_quota: u64,
    /// `KEY_CACHE_TTL_SECS`: how long the metering path keeps an API key in memory.
    pub key_cache_ttl: Duration,
    /// `USAGE_QUEUE_URL`: the SQS queue for usage events; unset = recorded directly.
    pub usage_queue_url: Option<String>,
    /// `USAGE_LATENESS_SECS`: events older than this are refused by billing (default 7 days).
    pub usage_lateness: Duration,
    /// `USAGE_FUTURE_SKEW_SECS`: events further in the future than this are refused.
    pub usage_future_skew: Duration,
    /// `USAGE_DEDUP_WINDOW_SECS`: how long the limiter remembers an event id, so a resent event
    /// spends no quota (default and minimum 24 h, as Stripe's meter events promise).
    pub usage_dedup_window: Duration,
    /// `MAX_METERS_PER_ORG`: the most distinct meters an org may use (default 100; 0 = no cap).
    pub max_meters_per_org: u32,
    /// `PLANS_JSON`: the plans offered from the first start (a JSON array of plans with their
    /// `id`); without it, a free plan built from the two defaults above and a paid example.
    pub plans: Vec<PlanSeed>,
    /// `DEFAULT_PLAN_ID`: the plan every org is on until it subscribes (default `pln_free`).
    pub default_plan: PlanId,
    /// `PLATFORM_ADMIN_EMAILS`: comma-separated accounts that may create and edit plans.
    pub platform_admins: Vec<Email>,
    /// `STRIPE_WEBHOOK_SECRET`: the endpoint's signing secret (`whsec_...`); unset refuses
    /// every webhook.
    pub stripe_webhook_secret: Option<Secret>,
    /// `STRIPE_WEBHOOK_TOLERANCE_SECS`: how old a signed webhook may be (default 300).
    pub stripe_webhook_tolerance: Duration,
    /// Social-login providers (`OAUTH_*`).
    pub oauth: crate::oauth::OAuthConfig,
    /// Outgoing mail (`MAILER`, `MAIL_FROM`, `APP_URL` ...).
    pub mail: crate::mail::MailConfig,
    /// Email verification, password reset and login codes (`REQUIRE_VERIFIED_EMAIL` ...).
    pub lifecycle: crate::auth::LifecyclePolicy,
}

/// One plan as configuration offers it: an id and its terms.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PlanSeed {
    /// The plan's id (`pln_` + a slug).
    pub id: PlanId,
    /// Its price and limits.
    #[serde(flatten)]
    pub terms: PlanTerms,
}

/// The catalog when `PLANS_JSON` is unset: free (the defaults' limits, hard quota) and an
/// example paid plan whose extra requests are billed by graduated tiers.
fn default_plans(rpm: u32, monthly_quota: u64) -> Vec<PlanSeed> {
    let free = serde_json::json!({
        "id": "pln_free", "name": "Free", "price_cents": 0, "rate_limit_rpm": rpm,
        "quotas": if monthly_quota > 0 { serde_json::json!({"*": monthly_quota}) } else { serde_json::json!({}) },
    });
    let pro = serde_json::json!({
        "id": "pln_pro", "name": "Pro", "price_cents": 4900,
        "rate_limit_rpm": (rpm.saturating_mul(10)).min(crate::domain::MAX_RATE_LIMIT_RPM),
        "quotas": {"requests": 1_000_000, "*": 10_000_000},
        "overage": {"requests": [
            {"up_to": 1_000_000, "unit_amount_cents": 2},
            {"up_to": null, "unit_amount_cents": 1}
        ]},
    });
    [free, pro]
        .into_iter()
        .filter_map(|plan| serde_json::from_value(plan).ok())
        .collect()
}

fn parse_plans(raw: &str) -> Result<Vec<PlanSeed>, ConfigError> {
    let refuse = |reason: String| ConfigError {
        variable: "PLANS_JSON".into(),
        reason,
    };
    let plans: Vec<PlanSeed> =
        serde_json::from_str(raw).map_err(|err| refuse(format!("not a list of plans: {err}")))?;
    let mut ids = std::collections::HashSet::new();
    for plan in &plans {
        plan.terms
            .validate()
            .map_err(|err| refuse(format!("plan {}: {err}", plan.id)))?;
        if !ids.insert(plan.id.clone()) {
            return Err(refuse(format!("plan {} is listed twice", plan.id)));
        }
    }
    Ok(plans)
}

/// A setting that could not be used; the message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error in {variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: std::borrow::Cow<'static, str>,
    /// What is wrong with it.
    pub reason: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_vars(&vars)
    }

    /// Reads settings from a map, as if it were the environment (tests use this; nothing ever
    /// writes the real environment at run time).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env(vars);
        let app_env = env.parse("APP_ENV", AppEnv::Development)?;
        let under_lambda = vars.contains_key("AWS_LAMBDA_FUNCTION_NAME");
        let jwt_secret = match env.get("JWT_SECRET") {
            Some(secret) => secret.to_owned(),
            None if app_env == AppEnv::Production => {
                return Err(ConfigError {
                    variable: "JWT_SECRET".into(),
                    reason: "is required when APP_ENV=production".into(),
                });
            }
            None => DEVELOPMENT_JWT_SECRET.to_owned(),
        };
        if app_env == AppEnv::Production {
            check_production_secret(&jwt_secret)?;
        } else if jwt_secret.is_empty() {
            return Err(ConfigError {
                variable: "JWT_SECRET".into(),
                reason: "must not be empty".into(),
            });
        }
        let default_log = if under_lambda {
            LogFormat::Json
        } else {
            LogFormat::Pretty
        };
        let default_org_rpm = env.ranged("DEFAULT_ORG_RATE_LIMIT_RPM", 600, 1..=1_000_000)?;
        let mail = crate::mail::MailConfig::from_env(&env, app_env)?;
        let default_monthly_quota = env.parse("DEFAULT_MONTHLY_QUOTA", 1_000_000)?;
        let config = Self {
            app_env,
            host: env.parse("HOST", IpAddr::from([127, 0, 0, 1]))?,
            port: env.parse("PORT", 3000)?,
            store_url: env
                .get("STORE_URL")
                .unwrap_or("sqlite://meterline.db")
                .to_owned(),
            jwt_secret: Secret::new(jwt_secret),
            jwt_issuer: env.non_empty("JWT_ISSUER", "meterline")?,
            jwt_audience: env.non_empty("JWT_AUDIENCE", "meterline-api")?,
            access_token_ttl: env.seconds("ACCESS_TOKEN_TTL_SECS", 15 * 60)?,
            refresh_token_ttl: env.seconds("REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?,
            argon2: Argon2Params {
                memory_kib: env.ranged("ARGON2_MEMORY_KIB", 19_456, 8..=4_194_304)?,
                iterations: env.ranged("ARGON2_ITERATIONS", 2, 1..=64)?,
                parallelism: env.ranged("ARGON2_PARALLELISM", 1, 1..=64)?,
            },
            login_max_failures: env.ranged("LOGIN_MAX_FAILURES", 5, 1..=1000)?,
            login_lockout: env.seconds("LOGIN_LOCKOUT_SECS", 15 * 60)?,
            login_max_failures_per_address: env.ranged(
                "LOGIN_MAX_FAILURES_PER_ADDRESS",
                100,
                1..=1_000_000,
            )?,
            auth_ip_limit_per_min: env.parse("AUTH_IP_LIMIT_PER_MIN", 300)?,
            max_body_bytes: env.ranged("MAX_BODY_BYTES", 1024 * 1024, 1024..=6 * 1024 * 1024)?,
            log_format: env.parse("LOG_FORMAT", default_log)?,
            redis_url: env
                .get("REDIS_URL")
                .filter(|url| !url.trim().is_empty())
                .map(str::to_owned),
            rate_limit_fail_mode: env.parse("RATE_LIMIT_FAIL_MODE", FailMode::Open)?,
            default_org_rpm,
            default_monthly_quota,
            // At most 30 s: with the plan cache's 30 s, a plan change acts within a minute.
            key_cache_ttl: Duration::from_secs(env.ranged("KEY_CACHE_TTL_SECS", 30, 1..=30)?),
            usage_queue_url: env
                .get("USAGE_QUEUE_URL")
                .filter(|url| !url.trim().is_empty())
                .map(str::to_owned),
            usage_lateness: env.seconds("USAGE_LATENESS_SECS", 7 * 24 * 3600)?,
            usage_future_skew: env.seconds("USAGE_FUTURE_SKEW_SECS", 300)?,
            usage_dedup_window: Duration::from_secs(env.ranged(
                "USAGE_DEDUP_WINDOW_SECS",
                24 * 3600,
                24 * 3600..=366 * 24 * 3600,
            )?),
            max_meters_per_org: env.parse("MAX_METERS_PER_ORG", 100)?,
            plans: match env.get("PLANS_JSON").filter(|raw| !raw.trim().is_empty()) {
                Some(raw) => parse_plans(raw)?,
                None => default_plans(default_org_rpm, default_monthly_quota),
            },
            default_plan: match env.get("DEFAULT_PLAN_ID") {
                None => PlanId::parse("pln_free").ok_or_else(|| ConfigError {
                    variable: "DEFAULT_PLAN_ID".into(),
                    reason: "pln_free".into(),
                })?,
                Some(raw) => PlanId::parse(raw.trim()).ok_or_else(|| ConfigError {
                    variable: "DEFAULT_PLAN_ID".into(),
                    reason: format!("{raw:?} is not a plan id (pln_ and a slug)"),
                })?,
            },
            platform_admins: env
                .get("PLATFORM_ADMIN_EMAILS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|raw| !raw.is_empty())
                .map(|raw| {
                    Email::parse(raw).map_err(|_| ConfigError {
                        variable: "PLATFORM_ADMIN_EMAILS".into(),
                        reason: format!("{raw:?} is not an email address"),
                    })
                })
                .collect::<Result<_, _>>()?,
            stripe_webhook_secret: env
                .get("STRIPE_WEBHOOK_SECRET")
                .filter(|raw| !raw.trim().is_empty())
                .map(|raw| Secret::new(raw.trim())),
            stripe_webhook_tolerance: env.seconds("STRIPE_WEBHOOK_TOLERANCE_SECS", 300)?,
            oauth: crate::oauth::OAuthConfig::from_env(&env, app_env)?,
            lifecycle: crate::auth::LifecyclePolicy::from_env(&env, &mail)?,
            mail,
        };
        if !config
            .plans
            .iter()
            .any(|plan| plan.id == config.default_plan)
        {
            return Err(ConfigError {
                variable: "DEFAULT_PLAN_ID".into(),
                reason: format!("{} is not one of the configured plans", config.default_plan),
            });
        }
        if config.argon2.memory_kib < 8 * config.argon2.parallelism {
            return Err(ConfigError {
                variable: "ARGON2_MEMORY_KIB".into(),
                reason: "must be at least 8 x ARGON2_PARALLELISM".into(),
            });
        }
        Ok(config)
    }
}

fn check_production_secret(secret: &str) -> Result<(), ConfigError> {
    let refuse = |reason: String| ConfigError {
        variable: "JWT_SECRET".into(),
        reason,
    };
    if KNOWN_DEFAULT_SECRETS
        .iter()
        .any(|known| known.eq_ignore_ascii_case(secret))
    {
        return Err(refuse(
            "is a published default; generate one (e.g. `openssl rand -base64 48`)".into(),
        ));
    }
    if secret.len() < MIN_PRODUCTION_SECRET_BYTES {
        return Err(refuse(format!(
            "must be at least {MIN_PRODUCTION_SECRET_BYTES} bytes when APP_ENV=production"
        )));
    }
    Ok(())
}

/// Typed access to the variables, each error naming its variable.
pub(crate) struct Env<'a>(pub(crate) &'a HashMap<String, String>);

impl Env<'_> {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn parse<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|err: T::Err| ConfigError {
                variable: name.into(),
                reason: format!("{raw:?} is not valid: {err}"),
            }),
        }
    }

    pub(crate) fn ranged<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let value = self.parse(name, default)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError {
                variable: name.into(),
                reason: format!("{value} is outside {}..={}", range.start(), range.end()),
            })
        }
    }

    pub(crate) fn seconds(
        &self,
        name: &'static str,
        default: u64,
    ) -> Result<Duration, ConfigError> {
        self.ranged(name, default, 1..=366 * 24 * 3600)
            .map(Duration::from_secs)
    }

    pub(crate) fn non_empty(
        &self,
        name: &'static str,
        default: &str,
    ) -> Result<String, ConfigError> {
        match self.get(name) {
            None => Ok(default.to_owned()),
            Some(raw) if raw.trim().is_empty() => Err(ConfigError {
                variable: name.into(),
                reason: "must not be empty".into(),
            }),
            Some(raw) => Ok(raw.trim().to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_run_locally_on_sqlite() {
        let config = Config::from_vars(&vars(&[])).expect("defaults are valid");
        assert_eq!(config.port, 3000);
        assert_eq!(config.store_url, "sqlite://meterline.db");
        assert_eq!(config.argon2.memory_kib, 19_456);
        assert_eq!(config.argon2.iterations, 2);
        assert_eq!(config.argon2.parallelism, 1);
        assert_eq!(config.login_max_failures, 5);
        assert_eq!(config.auth_ip_limit_per_min, 300);
        assert_eq!(config.log_format, LogFormat::Pretty);
        assert_eq!(config.redis_url, None);
        assert_eq!(config.rate_limit_fail_mode, FailMode::Open);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = Config::from_vars(&vars(&[("PORT", "eighty")])).expect_err("bad port");
        assert_eq!(err.variable, "PORT");
        assert!(err.to_string().contains("PORT"));
        let err = Config::from_vars(&vars(&[("ARGON2_ITERATIONS", "0")])).expect_err("zero");
        assert_eq!(err.variable, "ARGON2_ITERATIONS");
        let err = Config::from_vars(&vars(&[("APP_ENV", "staging")])).expect_err("unknown env");
        assert_eq!(err.variable, "APP_ENV");
    }

    #[test]
    fn production_refuses_missing_short_or_default_secrets() {
        for secret in [None, Some("short"), Some(DEVELOPMENT_JWT_SECRET)] {
            let mut pairs = vec![("APP_ENV", "production")];
            if let Some(secret) = secret {
                pairs.push(("JWT_SECRET", secret));
            }
            let err = Config::from_vars(&vars(&pairs)).expect_err("must refuse");
            assert_eq!(err.variable, "JWT_SECRET");
        }
        let strong = "k3Jq9x7Vt2mWc8pZr5sYb1nHd6fGa4Lu0eQi";
        let config = Config::from_vars(&vars(&[("APP_ENV", "production"), ("JWT_SECRET", strong)]))
            .expect("strong secret accepted");
        assert_eq!(config.jwt_secret.expose(), strong);
        assert!(!format!("{config:?}").contains(strong));
    }

    #[test]
    fn lambda_defaults_to_json_logs() {
        let config =
            Config::from_vars(&vars(&[("AWS_LAMBDA_FUNCTION_NAME", "auth")])).expect("valid");
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn plans_come_from_json_or_the_defaults() {
        let config =
            Config::from_vars(&vars(&[("DEFAULT_MONTHLY_QUOTA", "500")])).expect("defaults");
        assert_eq!(config.default_plan.as_str(), "pln_free");
        let free = config
            .plans
            .iter()
            .find(|p| p.id == config.default_plan)
            .expect("free");
        assert_eq!(free.terms.quotas.get("*"), Some(&500));
        assert_eq!(config.plans.len(), 2);

        let json = r#"[{"id":"pln_team","name":"Team","price_cents":1000,"rate_limit_rpm":60}]"#;
        let config = Config::from_vars(&vars(&[
            ("PLANS_JSON", json),
            ("DEFAULT_PLAN_ID", "pln_team"),
        ]))
        .expect("custom");
        assert_eq!(config.plans[0].terms.currency, "usd");
        let err = Config::from_vars(&vars(&[("PLANS_JSON", json)])).expect_err("no pln_free");
        assert_eq!(err.variable, "DEFAULT_PLAN_ID");
        let bad = r#"[{"id":"pln_x","name":"X","price_cents":1,"rate_limit_rpm":0}]"#;
        let err = Config::from_vars(&vars(&[("PLANS_JSON", bad)])).expect_err("bad rpm");
        assert_eq!(err.variable, "PLANS_JSON");
        let err = Config::from_vars(&vars(&[("PLATFORM_ADMIN_EMAILS", "a@example.com, nope")]))
            .expect_err("bad email");
        assert_eq!(err.variable, "PLATFORM_ADMIN_EMAILS");
    }
}
