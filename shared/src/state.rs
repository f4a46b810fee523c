//! What every handler can reach: configuration, the store and the services built on it.
//! Built once per process (per Lambda instance) and shared by clone.

use crate::api_keys::ApiKeys;
use crate::auth::{
    Accounts, Lifecycle, LifecycleParts, LockoutPolicy, PasswordHasher, PurposeTokens, TokenKeys,
    WebhookSecret,
};
use crate::billing::{Billing, BillingPolicy, PlanBook};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::invitations::{Invitations, MailLimit};
use crate::mail::Postman;
use crate::mail::templates::Branding;
use crate::metering::{Metering, MeteringPolicy};
use crate::oauth::OAuth;
use crate::orgs::Orgs;
use crate::ratelimit::{IpRateLimiter, Limiter, LocalLimiter, RedisLimiter};
use crate::store::{self, Store};
use crate::teams::Teams;
use crate::usage::{DirectSink, SqsSink, UsageSink};
use axum::extract::FromRef;
use std::sync::Arc;

/// Shared application state; axum hands each part to the extractors that need it.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The state backend.
    pub store: Arc<dyn Store>,
    /// Account rules (signup, login, tokens).
    pub accounts: Accounts,
    /// Email verification, password reset by mail, login codes.
    pub lifecycle: Lifecycle,
    /// Tenancy rules (orgs, members, audit log).
    pub orgs: Orgs,
    /// API-key management.
    pub api_keys: ApiKeys,
    /// Teams inside orgs.
    pub teams: Teams,
    /// Invitations to orgs (membership only with the invitee's consent).
    pub invitations: Invitations,
    /// Social login (OAuth 2.0 / OpenID Connect).
    pub oauth: OAuth,
    /// Rate limits, quotas and API-key revocation marks (Redis, or in-process).
    pub limiter: Arc<dyn Limiter>,
    /// The metering hot path (keys, limits, usage events).
    pub metering: Metering,
    /// Plans, subscriptions, usage reports, invoices, webhooks.
    pub billing: Billing,
    /// The per-IP auth throttle, when enabled.
    pub auth_ip_limit: Option<IpRateLimiter>,
    /// Where the time comes from.
    pub clock: Arc<dyn Clock>,
}

impl AppState {
    /// Connects the store named by `STORE_URL` and the limiter (`REDIS_URL`, else in-process)
    /// and builds the services on the real clock.
    pub async fn from_config(config: Config) -> anyhow::Result<Self> {
        let store = store::connect(&config.store_url).await?;
        let limiter: Arc<dyn Limiter> = match &config.redis_url {
            Some(url) => Arc::new(RedisLimiter::connect(url, "").await?),
            None => Arc::new(LocalLimiter::new()),
        };
        let sink: Option<Arc<dyn UsageSink>> = match &config.usage_queue_url {
            Some(url) => Some(Arc::new(SqsSink::connect(url).await)),
            None => None,
        };
        let state = Self::assemble(config, store, limiter, Arc::new(SystemClock))?;
        // Every process offers the configured plans; the store keeps the first of each.
        state.billing.plan_book().bootstrap().await?;
        Ok(match sink {
            Some(sink) => state.with_sink(sink),
            None => state,
        })
    }

    /// The same state with usage events going to `sink` instead.
    pub fn with_sink(mut self, sink: Arc<dyn UsageSink>) -> Self {
        self.metering = Self::metering(
            &self.config,
            &self.store,
            &self.limiter,
            sink,
            self.billing.plan_book().clone(),
            self.clock(),
        );
        self
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    fn metering(
        config: &Config,
        store: &Arc<dyn Store>,
        limiter: &Arc<dyn Limiter>,
        sink: Arc<dyn UsageSink>,
        plans: PlanBook,
        clock: Arc<dyn Clock>,
    ) -> Metering {
        let policy = MeteringPolicy {
            fail_mode: config.rate_limit_fail_mode,
            key_cache_ttl: config.key_cache_ttl,
            dedup_window: config.usage_dedup_window,
            lateness: config.usage_lateness,
            max_meters_per_org: config.max_meters_per_org,
        };
        Metering::new(
            Arc::clone(store),
            Arc::clone(limiter),
            sink,
            plans,
            clock,
            policy,
        )
    }

    /// Builds the services on a given store, limiter and clock (tests pick all three).
    pub fn assemble(
        config: Config,
        store: Arc<dyn Store>,
        limiter: Arc<dyn Limiter>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let clock_for_state = Arc::clone(&clock);
        let orgs = Orgs::new(Arc::clone(&store), Arc::clone(&limiter), Arc::clone(&clock));
        let api_keys = ApiKeys::new(
            Arc::clone(&store),
            orgs.clone(),
            Arc::clone(&limiter),
            Arc::clone(&clock),
        );
        let accounts = Accounts::new(
            Arc::clone(&store),
            PasswordHasher::new(config.argon2)?,
            TokenKeys::from_config(&config)?,
            Arc::clone(&clock),
            LockoutPolicy {
                max_failures: config.login_max_failures,
                max_failures_per_address: config
                    .login_max_failures_per_address
                    .max(config.login_max_failures),
                window: chrono::Duration::from_std(config.login_lockout)?,
            },
            chrono::Duration::from_std(config.refresh_token_ttl)?,
        )
        .requiring_verified_email(config.lifecycle.require_verified_email);
        let invitation_mails = MailLimit {
            limiter: Arc::clone(&limiter),
            per_address_per_min: config.lifecycle.mails_per_email_per_min,
            fail_mode: config.rate_limit_fail_mode,
        };
        let lifecycle = Lifecycle::new(LifecycleParts {
            store: Arc::clone(&store),
            accounts: accounts.clone(),
            tokens: PurposeTokens::from_config(&config),
            code_key: config.jwt_secret.expose().as_bytes().to_vec(),
            postman: Postman::from_config(&config.mail),
            brand: Branding {
                app_name: config.mail.app_name.clone(),
                app_url: config.mail.app_url.clone(),
            },
            limiter: Arc::clone(&limiter),
            fail_mode: config.rate_limit_fail_mode,
            clock: Arc::clone(&clock),
            policy: config.lifecycle,
        });
        let plans = PlanBook::new(
            Arc::clone(&store),
            &config.plans,
            config.default_plan.clone(),
            clock.now(),
        );
        let billing = Billing::new(
            Arc::clone(&store),
            orgs.clone(),
            plans.clone(),
            Arc::clone(&clock),
            BillingPolicy {
                platform_admins: config.platform_admins.clone(),
                webhook_secret: config
                    .stripe_webhook_secret
                    .as_ref()
                    .map(|secret| WebhookSecret::new(secret.expose().to_owned())),
                webhook_tolerance: chrono::Duration::from_std(config.stripe_webhook_tolerance)?,
            },
        );
        let teams = Teams::new(Arc::clone(&store), orgs.clone(), Arc::clone(&clock));
        let invitations = Invitations::new(
            Arc::clone(&store),
            orgs.clone(),
            Postman::from_config(&config.mail),
            Branding {
                app_name: config.mail.app_name.clone(),
                app_url: config.mail.app_url.clone(),
            },
            Arc::clone(&clock),
            invitation_mails,
        );
        let oauth = OAuth::new(
            &config.oauth,
            Arc::clone(&store),
            accounts.clone(),
            Arc::clone(&clock),
        )?;
        let direct: Arc<dyn UsageSink> = Arc::new(DirectSink::new(Arc::clone(&store)));
        let metering = Self::metering(&config, &store, &limiter, direct, plans, Arc::clone(&clock));
        Ok(Self {
            metering,
            billing,
            clock: clock_for_state,
            auth_ip_limit: IpRateLimiter::per_minute(config.auth_ip_limit_per_min),
            config: Arc::new(config),
            store,
            limiter,
            accounts,
            lifecycle,
            orgs,
            api_keys,
            teams,
            invitations,
            oauth,
        })
    }
}
