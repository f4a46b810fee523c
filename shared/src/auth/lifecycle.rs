//! The account lifecycle around login: email verification, password reset by mail and one-time
//! login codes. Every secret sent by mail is kept only hashed as a one-time record, works once,
//! and expires; every "send me a mail" request answers the same whether or not the account
//! exists, and is throttled per email (whatever the client IP) and per client IP.

use super::{Accounts, AuthError, PurposeTokens, TokenHash, TokenPair, TokenRejection};
use crate::clock::Clock;
use crate::config::{ConfigError, Env, FailMode};
use crate::domain::{Email, Password, User, UserId};
use crate::mail::templates::{self, Branding};
use crate::mail::{MailConfig, MailerKind, Message, Postman};
use crate::ratelimit::{Bucket, Decision, Limiter};
use crate::store::{FailureKey, OneTimeRecord, Purpose, Store};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The lifecycle settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecyclePolicy {
    /// `REQUIRE_VERIFIED_EMAIL`: password logins of unverified accounts get 403
    /// `email_not_verified` (default false).
    pub require_verified_email: bool,
    /// `EMAIL_VERIFY_TTL_SECS`: how long a verification link works (default 48 h).
    pub verify_ttl: Duration,
    /// `PASSWORD_RESET_TTL_SECS`: how long a reset link works (default 30 min).
    pub reset_ttl: Duration,
    /// `LOGIN_CODE_TTL_SECS`: how long a login code works (default 15 min).
    pub code_ttl: Duration,
    /// `LOGIN_CODE_MAX_ATTEMPTS`: guesses before a code is dead (default 5).
    pub code_max_attempts: u32,
    /// `LOGIN_CODE_MAX_FAILURES`: code attempts on one address (so one account) per window,
    /// whichever codes they were for; then codes are refused until the window ends (default
    /// 10). A new code does not reset it, so guessing is bounded per account, not per code.
    pub code_max_failures: u32,
    /// `LOGIN_CODE_FAILURE_WINDOW_SECS`: the window of `code_max_failures` (default 1 h).
    pub code_failure_window: Duration,
    /// `MAIL_PER_EMAIL_PER_MIN`: mails of one kind one address may be sent per minute
    /// (default 1; 0 = unlimited).
    pub mails_per_email_per_min: u32,
    /// `MAIL_PER_IP_PER_MIN`: mail requests one client IP may make per minute (default 10;
    /// 0 = unlimited).
    pub mails_per_ip_per_min: u32,
}

impl LifecyclePolicy {
    /// Reads the lifecycle variables; requiring verified emails needs a way to send them.
    pub(crate) fn from_env(env: &Env<'_>, mail: &MailConfig) -> Result<Self, ConfigError> {
        let secs = |name, default| {
            env.seconds(name, default).and_then(|ttl| {
                Duration::from_std(ttl).map_err(|_| ConfigError {
                    variable: name.into(),
                    reason: "is too long".into(),
                })
            })
        };
        let require_verified_email = env.parse("REQUIRE_VERIFIED_EMAIL", false)?;
        if require_verified_email && mail.mailer == MailerKind::Disabled {
            return Err(ConfigError {
                variable: "REQUIRE_VERIFIED_EMAIL".into(),
                reason: "needs mail (MAIL_FROM): nobody could verify an email".into(),
            });
        }
        Ok(Self {
            require_verified_email,
            verify_ttl: secs("EMAIL_VERIFY_TTL_SECS", 48 * 3600)?,
            reset_ttl: secs("PASSWORD_RESET_TTL_SECS", 30 * 60)?,
            code_ttl: secs("LOGIN_CODE_TTL_SECS", 15 * 60)?,
            code_max_attempts: env.ranged("LOGIN_CODE_MAX_ATTEMPTS", 5, 1..=20)?,
            code_max_failures: env.ranged("LOGIN_CODE_MAX_FAILURES", 10, 1..=1000)?,
            code_failure_window: secs("LOGIN_CODE_FAILURE_WINDOW_SECS", 3600)?,
            mails_per_email_per_min: env.ranged("MAIL_PER_EMAIL_PER_MIN", 1, 0..=1000)?,
            mails_per_ip_per_min: env.ranged("MAIL_PER_IP_PER_MIN", 10, 0..=100_000)?,
        })
    }
}

/// SHA-256 of a token id: how a mailed link's record is keyed to the link.
fn digest(text: &str) -> TokenHash {
    TokenHash::from_stored(hex::encode(Sha256::digest(text.as_bytes())))
}

/// The lifecycle service. Cheap to clone.
#[derive(Clone)]
pub struct Lifecycle {
    store: Arc<dyn Store>,
    accounts: Accounts,
    tokens: PurposeTokens,
    code_key: Arc<[u8]>,
    postman: Postman,
    brand: Branding,
    limiter: Arc<dyn Limiter>,
    fail_mode: FailMode,
    clock: Arc<dyn Clock>,
    policy: LifecyclePolicy,
}

/// What the service is built from (one argument per part would be a long list).
pub struct LifecycleParts {
    /// The state backend.
    pub store: Arc<dyn Store>,
    /// Sessions and passwords.
    pub accounts: Accounts,
    /// Signs mailed links.
    pub tokens: PurposeTokens,
    /// Keys the HMAC of login codes (the JWT secret): six digits alone hash to a guessable value.
    pub code_key: Vec<u8>,
    /// Sends the mail.
    pub postman: Postman,
    /// Product name and front-end URL for the templates.
    pub brand: Branding,
    /// Counts mail requests per email and per IP.
    pub limiter: Arc<dyn Limiter>,
    /// What to do when the limiter is down.
    pub fail_mode: FailMode,
    /// Where the time comes from.
    pub clock: Arc<dyn Clock>,
    /// The settings.
    pub policy: LifecyclePolicy,
}

impl Lifecycle {
    /// Assembles the service.
    pub fn new(parts: LifecycleParts) -> Self {
        Self {
            store: parts.store,
            accounts: parts.accounts,
            tokens: parts.tokens,
            code_key: parts.code_key.into(),
            postman: parts.postman,
            brand: parts.brand,
            limiter: parts.limiter,
            fail_mode: parts.fail_mode,
            clock: parts.clock,
            policy: parts.policy,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now_millis()
    }

    fn std(ttl: Duration) -> std::time::Duration {
        ttl.to_std().unwrap_or_default()
    }

    /// Mails `message`; a failure is logged, not returned: the callers answer the same whether
    /// or not a mail went out (no account enumeration), and the user can ask again.
    async fn deliver(&self, message: &Message) {
        if let Err(err) = self.postman.send(message).await {
            tracing::error!(kind = message.kind, error = %err, "mail not sent");
        }
    }

    /// Throttles mail of `purpose` to `email` and from `ip`, in the shared limiter (Redis in
    /// AWS), so the bound holds across every instance. The two are independent buckets: the
    /// address's is keyed by the address alone, so it holds whatever the client IP.
    async fn throttle(
        &self,
        purpose: Purpose,
        email: &Email,
        ip: Option<IpAddr>,
    ) -> Result<(), AuthError> {
        let (per_email, per_ip) = (
            self.policy.mails_per_email_per_min,
            self.policy.mails_per_ip_per_min,
        );
        if per_email == 0 && per_ip == 0 {
            return Ok(());
        }
        // The address is hashed so limiter keys never hold an email.
        let email_hash = digest(email.as_str());
        let email_bucket = &email_hash.as_str()[..32];
        let ip_bucket = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let mut buckets = Vec::with_capacity(2);
        if per_email > 0 {
            buckets.push(Bucket {
                key: format!("mail:{}:{email_bucket}", purpose.as_str()),
                per_minute: per_email,
            });
        }
        if per_ip > 0 {
            buckets.push(Bucket {
                key: format!("mailip:{ip_bucket}"),
                per_minute: per_ip,
            });
        }
        let now_ms = self.clock.now().timestamp_millis();
        match self.limiter.check_buckets(&buckets, now_ms).await {
            Ok(Decision::RateLimited { retry_after_ms, .. }) => {
                tracing::warn!(purpose = purpose.as_str(), "mail requests throttled");
                Err(AuthError::Throttled {
                    retry_after: std::time::Duration::from_millis(retry_after_ms),
                })
            }
            Ok(_) => Ok(()),
            Err(err) => match self.fail_mode {
                FailMode::Open => {
                    tracing::warn!(error = %err, "limiter down; mail request let through");
                    Ok(())
                }
                FailMode::Closed => Err(AuthError::Unavailable(err.into())),
            },
        }
    }

    /// Stores a fresh link of `purpose` for `user` (replacing the previous one) and returns it.
    async fn new_link(
        &self,
        purpose: Purpose,
        user: &UserId,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let now = self.now();
        let (token, grant) = self.tokens.issue(purpose, user, now, ttl)?;
        self.store
            .put_one_time(&OneTimeRecord {
                purpose,
                subject: user.to_string(),
                secret_hash: digest(grant.jti.as_str()),
                created_at: now,
                expires_at: now + ttl,
                attempts: 0,
                payload: None,
            })
            .await?;
        Ok(token)
    }

    /// Checks a mailed link and spends it: signature and purpose, then expiry, then single use.
    async fn spend_link(&self, purpose: Purpose, token: &str) -> Result<UserId, AuthError> {
        let grant = self
            .tokens
            .verify(purpose, token.trim(), self.clock.now())
            .map_err(|rejection| match rejection {
                TokenRejection::Expired => AuthError::TokenExpired,
                TokenRejection::Invalid => AuthError::InvalidToken,
            })?;
        let spent = self
            .store
            .take_one_time(purpose, grant.user.as_str(), &digest(grant.jti.as_str()))
            .await?;
        if !spent {
            return Err(AuthError::TokenUsed);
        }
        Ok(grant.user)
    }

    /// Mails `user` a verification link, unless the email is verified already. Signup calls it;
    /// a failure is logged (the account exists either way; the user can ask again).
    #[tracing::instrument(skip_all, fields(user_id = %user.id))]
    pub async fn send_verification(&self, user: &User) {
        if user.email_verified {
            return;
        }
        match self
            .new_link(Purpose::VerifyEmail, &user.id, self.policy.verify_ttl)
            .await
        {
            Ok(token) => {
                let mail = templates::verify_email(
                    &self.brand,
                    user.email.clone(),
                    &token,
                    Self::std(self.policy.verify_ttl),
                );
                self.deliver(&mail).await;
            }
            Err(err) => tracing::error!(error = %err, "verification link not stored"),
        }
    }

    /// Sends a new verification link to `email` if it has an unverified account. Answers the
    /// same for every address (after the throttle); a new link replaces the previous one.
    #[tracing::instrument(skip_all)]
    pub async fn resend_verification(
        &self,
        email: &Email,
        ip: Option<IpAddr>,
    ) -> Result<(), AuthError> {
        self.throttle(Purpose::VerifyEmail, email, ip).await?;
        if let Some(record) = self.store.user_by_email(email).await? {
            self.send_verification(&record.user).await;
        }
        Ok(())
    }

    /// Spends a verification link and marks the email verified.
    #[tracing::instrument(skip_all)]
    pub async fn verify_email(&self, token: &str) -> Result<User, AuthError> {
        let user_id = self.spend_link(Purpose::VerifyEmail, token).await?;
        self.store.set_email_verified(&user_id).await?;
        let record = self
            .store
            .user_by_id(&user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        tracing::info!(user_id = %user_id, "email verified");
        Ok(record.user)
    }

    /// Mails a reset link to `email` if it has an account. Answers the same for every address.
    #[tracing::instrument(skip_all)]
    pub async fn forgot_password(
        &self,
        email: &Email,
        ip: Option<IpAddr>,
    ) -> Result<(), AuthError> {
        self.throttle(Purpose::PasswordReset, email, ip).await?;
        let Some(record) = self.store.user_by_email(email).await? else {
            tracing::info!("password reset asked for an unknown email");
            return Ok(());
        };
        let token = self
            .new_link(
                Purpose::PasswordReset,
                &record.user.id,
                self.policy.reset_ttl,
            )
            .await?;
        let mail = templates::password_reset(
            &self.brand,
            record.user.email,
            &token,
            Self::std(self.policy.reset_ttl),
        );
        self.deliver(&mail).await;
        Ok(())
    }

    /// Spends a reset link: sets the new password, ends every session, lifts a lockout, marks
    /// the email verified (the link proved it) and mails a notice. Returns the account.
    #[tracing::instrument(skip_all)]
    pub async fn reset_password(
        &self,
        token: &str,
        new: Password,
        ip: Option<IpAddr>,
    ) -> Result<User, AuthError> {
        let user_id = self.spend_link(Purpose::PasswordReset, token).await?;
        let mut user = self
            .store
            .user_by_id(&user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?
            .user;
        let revoked = self.accounts.reset_password(&user, &new, ip).await?;
        if !user.email_verified {
            self.store.set_email_verified(&user.id).await?;
            user.email_verified = true;
        }
        tracing::info!(user_id = %user.id, revoked_sessions = revoked, "password reset");
        self.notify_password_changed(&user).await;
        Ok(user)
    }

    /// Tells the owner their password changed, so someone who did not do it can react.
    pub async fn notify_password_changed(&self, user: &User) {
        let mail = templates::password_changed(&self.brand, user.email.clone(), self.now());
        self.deliver(&mail).await;
    }

    /// HMAC of a login code, bound to its account: a stolen table reveals no code.
    fn code_hash(&self, user: &UserId, code: &str) -> Result<TokenHash, AuthError> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.code_key)
            .map_err(|err| AuthError::Internal(anyhow::anyhow!("login code key: {err}")))?;
        mac.update(format!("login_code:{user}:{code}").as_bytes());
        Ok(TokenHash::from_stored(hex::encode(
            mac.finalize().into_bytes(),
        )))
    }

    /// Counts one code attempt on `email` before the code is checked; refuses it when the
    /// address has used up its attempts of the window.
    async fn reserve_code_attempt(&self, email: &Email) -> Result<(), AuthError> {
        let now = self.now();
        let window = self.policy.code_failure_window;
        let attempts = self
            .store
            .record_login_failure(&FailureKey::login_codes(email), now, now - window)
            .await?;
        let ends = attempts.window_start + window;
        if attempts.count > self.policy.code_max_failures && now < ends {
            tracing::warn!(
                attempts = attempts.count,
                "login codes locked for the account"
            );
            return Err(AuthError::Locked {
                retry_after: (ends - now).to_std().unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Mails a six-digit login code to `email` if it has an account (replacing any earlier
    /// code). Answers the same for every address.
    #[tracing::instrument(skip_all)]
    pub async fn request_login_code(
        &self,
        email: &Email,
        ip: Option<IpAddr>,
    ) -> Result<(), AuthError> {
        self.throttle(Purpose::LoginCode, email, ip).await?;
        let Some(record) = self.store.user_by_email(email).await? else {
            tracing::info!("login code asked for an unknown email");
            return Ok(());
        };
        let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32));
        let now = self.now();
        self.store
            .put_one_time(&OneTimeRecord {
                purpose: Purpose::LoginCode,
                subject: record.user.id.to_string(),
                secret_hash: self.code_hash(&record.user.id, &code)?,
                created_at: now,
                expires_at: now + self.policy.code_ttl,
                attempts: 0,
                payload: None,
            })
            .await?;
        let mail = templates::login_code(
            &self.brand,
            record.user.email,
            &code,
            Self::std(self.policy.code_ttl),
        );
        self.deliver(&mail).await;
        Ok(())
    }

    /// Logs in with a mailed code. Each try is first counted against the account (at most
    /// `code_max_failures` a window, whichever code it is for: past it, `account_locked` until
    /// the window ends, and a new code changes nothing), then spends one of the code's
    /// attempts (both atomically, so racing guesses cannot exceed either limit); a wrong,
    /// unknown, spent or exhausted code is `invalid_code` alike. Success signs in as a proof
    /// of the address (`Accounts::sign_in`).
    #[tracing::instrument(skip_all)]
    pub async fn login_with_code(&self, email: &str, code: &str) -> Result<TokenPair, AuthError> {
        let code = code.trim();
        let well_formed = code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit());
        let Some(email) = Email::parse(email).ok().filter(|_| well_formed) else {
            return Err(AuthError::InvalidCode);
        };
        // Counted before the account is looked up: an address without one is limited alike.
        self.reserve_code_attempt(&email).await?;
        let record = self
            .store
            .user_by_email(&email)
            .await?
            .ok_or(AuthError::InvalidCode)?;
        let user = record.user;
        let Some(stored) = self
            .store
            .spend_one_time_attempt(
                Purpose::LoginCode,
                user.id.as_str(),
                self.policy.code_max_attempts,
            )
            .await?
        else {
            return Err(AuthError::InvalidCode);
        };
        if stored.expires_at <= self.now() {
            return Err(AuthError::CodeExpired);
        }
        let presented = self.code_hash(&user.id, code)?;
        let matches: bool = presented
            .as_str()
            .as_bytes()
            .ct_eq(stored.secret_hash.as_str().as_bytes())
            .into();
        if !matches {
            tracing::info!(attempts = stored.attempts, "wrong login code");
            return Err(AuthError::InvalidCode);
        }
        if !self
            .store
            .take_one_time(Purpose::LoginCode, user.id.as_str(), &stored.secret_hash)
            .await?
        {
            return Err(AuthError::InvalidCode);
        }
        let (pair, _) = self.accounts.sign_in(user).await?;
        Ok(pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Config;
    use crate::mail::Mailer;
    use crate::ratelimit::LocalLimiter;
    use crate::store::testing;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Keeps what was sent, for the tests to read.
    #[derive(Default)]
    struct Inbox(Mutex<Vec<Message>>);

    #[async_trait::async_trait]
    impl Mailer for Inbox {
        fn backend(&self) -> &'static str {
            "inbox"
        }

        async fn send(&self, message: &Message) -> anyhow::Result<()> {
            self.0
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .push(message.clone());
            Ok(())
        }
    }

    struct Fixture {
        lifecycle: Lifecycle,
        inbox: Arc<Inbox>,
        clock: Arc<ManualClock>,
        accounts: Accounts,
    }

    async fn fixture() -> Fixture {
        fixture_on(Arc::new(LocalLimiter::new()), FailMode::Open, "0").await
    }

    /// The service on `limiter`, with a per-address mail limit of `per_email` a minute.
    async fn fixture_on(
        limiter: Arc<dyn Limiter>,
        fail_mode: FailMode,
        per_email: &str,
    ) -> Fixture {
        let vars: HashMap<String, String> = [
            ("ARGON2_MEMORY_KIB", "64"),
            ("ARGON2_ITERATIONS", "1"),
            ("MAIL_PER_EMAIL_PER_MIN", per_email),
            ("MAIL_PER_IP_PER_MIN", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = Config::from_vars(&vars).expect("config");
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let store = testing::sqlite().await;
        let state = crate::AppState::assemble(
            config.clone(),
            Arc::clone(&store),
            limiter.clone(),
            clock.clone(),
        )
        .expect("state");
        let inbox = Arc::new(Inbox::default());
        let lifecycle = Lifecycle::new(LifecycleParts {
            store,
            accounts: state.accounts.clone(),
            tokens: PurposeTokens::from_config(&config),
            code_key: b"test-key".to_vec(),
            postman: Postman::new(inbox.clone(), "a@b.co", std::time::Duration::from_secs(1)),
            brand: Branding::default(),
            limiter,
            fail_mode,
            clock: clock.clone(),
            policy: config.lifecycle,
        });
        Fixture {
            lifecycle,
            inbox,
            clock,
            accounts: state.accounts,
        }
    }

    impl Fixture {
        /// A new account's email.
        async fn account(&self) -> Email {
            let email = Email::parse(&format!("{}@example.com", ulid::Ulid::new())).expect("email");
            let password = Password::parse("p", "correct horse battery".into()).expect("pw");
            self.accounts
                .signup(email.clone(), password, None)
                .await
                .expect("signup");
            email
        }

        /// Asks for a login code for `email` and reads it from the mail.
        async fn mailed_code(&self, email: &Email) -> String {
            self.lifecycle
                .request_login_code(email, None)
                .await
                .expect("requested");
            let mails = self.inbox.0.lock().expect("inbox");
            let text = &mails.last().expect("a mail").text;
            text.lines()
                .map(str::trim)
                .find(|line| line.len() == 6 && line.bytes().all(|b| b.is_ascii_digit()))
                .expect("a code line")
                .to_owned()
        }
    }

    #[tokio::test]
    async fn a_code_dies_after_its_attempts_even_when_the_last_guess_is_right() {
        let f = fixture().await;
        let email = f.account().await;
        let code = f.mailed_code(&email).await;
        let wrong = if code == "000000" { "000001" } else { "000000" };
        for _ in 0..5 {
            assert!(matches!(
                f.lifecycle.login_with_code(email.as_str(), wrong).await,
                Err(AuthError::InvalidCode)
            ));
        }
        assert!(matches!(
            f.lifecycle.login_with_code(email.as_str(), &code).await,
            Err(AuthError::InvalidCode)
        ));
    }

    #[tokio::test]
    async fn a_code_expires_on_the_clock_and_works_once() {
        let f = fixture().await;
        let email = f.account().await;
        let code = f.mailed_code(&email).await;
        f.clock.advance(Duration::minutes(15));
        assert!(matches!(
            f.lifecycle.login_with_code(email.as_str(), &code).await,
            Err(AuthError::CodeExpired)
        ));
        let code = f.mailed_code(&email).await;
        f.lifecycle
            .login_with_code(email.as_str(), &code)
            .await
            .expect("the fresh code logs in");
        assert!(matches!(
            f.lifecycle.login_with_code(email.as_str(), &code).await,
            Err(AuthError::InvalidCode)
        ));
    }

    /// A limiter whose backend is down.
    struct Down;

    #[async_trait::async_trait]
    impl Limiter for Down {
        fn backend(&self) -> &'static str {
            "down"
        }

        async fn check(
            &self,
            _request: &crate::ratelimit::LimitRequest,
        ) -> Result<Decision, crate::ratelimit::LimiterError> {
            Err(crate::ratelimit::LimiterError(anyhow::anyhow!(
                "unreachable"
            )))
        }

        async fn check_buckets(
            &self,
            _buckets: &[crate::ratelimit::Bucket],
            _now_ms: i64,
        ) -> Result<Decision, crate::ratelimit::LimiterError> {
            Err(crate::ratelimit::LimiterError(anyhow::anyhow!(
                "unreachable"
            )))
        }

        async fn mark_revoked(
            &self,
            _org_id: &str,
            _key_id: &str,
            _now_ms: i64,
            _ttl_ms: u64,
        ) -> Result<(), crate::ratelimit::LimiterError> {
            Err(crate::ratelimit::LimiterError(anyhow::anyhow!(
                "unreachable"
            )))
        }

        async fn ping(&self) -> Result<(), crate::ratelimit::LimiterError> {
            Err(crate::ratelimit::LimiterError(anyhow::anyhow!(
                "unreachable"
            )))
        }
    }

    #[tokio::test]
    async fn a_limiter_outage_follows_the_fail_mode() {
        let closed = fixture_on(Arc::new(Down), FailMode::Closed, "1").await;
        let email = closed.account().await;
        assert!(matches!(
            closed.lifecycle.forgot_password(&email, None).await,
            Err(AuthError::Unavailable(_))
        ));
        let open = fixture_on(Arc::new(Down), FailMode::Open, "1").await;
        let email = open.account().await;
        open.lifecycle
            .forgot_password(&email, None)
            .await
            .expect("served without the limiter");
        assert_eq!(open.inbox.0.lock().expect("inbox").len(), 1);
    }
}
