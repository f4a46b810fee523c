//! The account rules: signup, login with lockout, refresh rotation with reuse detection,
//! logout, bearer authentication and password change. Storage-agnostic: it speaks only to
//! [`Store`].

use super::jwt::expires_at;
use super::{PasswordHasher, RefreshSecret, TokenKeys, TokenRejection};
use crate::clock::Clock;
use crate::domain::{
    DisplayName, Email, Password, PasswordAttempt, SessionId, TokenId, User, UserId,
};
use crate::store::{
    Consumed, FailureKey, LoginFailures, RefreshTokenRecord, Session, Store, StoreError, UserRecord,
};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// When repeated failed logins lock an address. Two stages: `max_failures` per (address,
/// client IP), so a stranger elsewhere cannot lock the owner out at the low threshold, and
/// `max_failures_per_address` from all IPs together, a ceiling on what many IPs can guess.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    /// Attempts within `window` from one client IP that lock the address for that IP.
    pub max_failures: u32,
    /// Attempts within `window` from every IP together that lock the address for everyone.
    pub max_failures_per_address: u32,
    /// The window failures are counted in; the lock lasts until the window that filled up ends.
    pub window: Duration,
}

impl LockoutPolicy {
    /// How long the counter stays locked, if the attempt that brought it to `failures` (a
    /// reservation, counted before the password is checked) is over `max` at `now`.
    fn retry_after(
        &self,
        failures: &LoginFailures,
        max: u32,
        now: DateTime<Utc>,
    ) -> Option<Duration> {
        let ends = failures.window_start + self.window;
        (failures.count > max && now < ends).then(|| ends - now)
    }
}

/// A token pair as returned by login and refresh.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// The JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The single-use refresh token.
    pub refresh_token: String,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Who an accepted access token speaks for.
#[derive(Debug, Clone)]
pub struct AccessContext {
    /// The user.
    pub user_id: UserId,
    /// The session the token came from.
    pub session_id: SessionId,
    /// The token's own id.
    pub jti: TokenId,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
}

/// Why an account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Signup with an email that has an account.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Wrong password or unknown email: deliberately indistinguishable.
    #[error("email or password is incorrect")]
    InvalidCredentials,
    /// Too many failed logins for this email.
    #[error("too many failed logins; try again later")]
    Locked {
        /// Until the lock lifts.
        retry_after: std::time::Duration,
    },
    /// A token that is malformed, forged, or unknown.
    #[error("the token is invalid")]
    InvalidToken,
    /// A genuine token past its expiry.
    #[error("the token has expired")]
    TokenExpired,
    /// A refresh token presented a second time: its whole session is now revoked.
    #[error("the refresh token was already used; the session has been revoked")]
    TokenReused,
    /// A token of a session that was logged out or revoked.
    #[error("the token has been revoked")]
    TokenRevoked,
    /// A one-time token (verification or reset link) that was already used, or replaced by a
    /// newer one.
    #[error("the token was already used or replaced by a newer one")]
    TokenUsed,
    /// Login refused until the email is verified (`REQUIRE_VERIFIED_EMAIL`).
    #[error("verify your email address before logging in")]
    EmailNotVerified,
    /// A login code that is wrong, unknown, spent, or out of attempts: deliberately one answer.
    #[error("the code is invalid")]
    InvalidCode,
    /// A genuine login code past its expiry.
    #[error("the code has expired; request a new one")]
    CodeExpired,
    /// A backend the rule depends on is down (the limiter, when it fails closed).
    #[error("a backend service is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Too many mails asked for this address or from this client.
    #[error("too many requests for this email or from this address; try again later")]
    Throttled {
        /// Until a retry can succeed.
        retry_after: std::time::Duration,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else (hashing, signing).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The account service. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn Store>,
    passwords: PasswordHasher,
    tokens: TokenKeys,
    clock: Arc<dyn Clock>,
    lockout: LockoutPolicy,
    refresh_ttl: Duration,
    require_verified_email: bool,
}

impl Accounts {
    /// Assembles the service from its parts.
    pub fn new(
        store: Arc<dyn Store>,
        passwords: PasswordHasher,
        tokens: TokenKeys,
        clock: Arc<dyn Clock>,
        lockout: LockoutPolicy,
        refresh_ttl: Duration,
    ) -> Self {
        Self {
            store,
            passwords,
            tokens,
            clock,
            lockout,
            refresh_ttl,
            require_verified_email: false,
        }
    }

    /// The same service, refusing password logins of unverified emails when `required`.
    pub fn requiring_verified_email(mut self, required: bool) -> Self {
        self.require_verified_email = required;
        self
    }

    /// Sets a new password without the old one (a reset link proved the owner), signs the
    /// account out everywhere and lifts a lockout (the address's, and the one of the client IP
    /// the reset came from); returns how many sessions ended.
    pub(crate) async fn reset_password(
        &self,
        user: &User,
        new: &Password,
        ip: Option<IpAddr>,
    ) -> Result<u64, AuthError> {
        let hash = self.passwords.hash(new).await?;
        self.store.set_password_hash(&user.id, &hash).await?;
        // No session has a fresh id, so every session of the account ends.
        let revoked = self
            .store
            .revoke_other_sessions(&user.id, &SessionId::generate())
            .await?;
        self.store
            .clear_login_failures(&FailureKey::address(&user.email))
            .await?;
        self.store
            .clear_login_failures(&FailureKey::address_from(&user.email, ip))
            .await?;
        Ok(revoked)
    }

    /// Now, at the millisecond precision every store keeps.
    fn now(&self) -> DateTime<Utc> {
        self.clock.now_millis()
    }

    /// Creates an account.
    #[tracing::instrument(skip_all)]
    pub async fn signup(
        &self,
        email: Email,
        password: Password,
        name: Option<DisplayName>,
    ) -> Result<User, AuthError> {
        let password_hash = self.passwords.hash(&password).await?;
        let record = UserRecord {
            user: User {
                id: UserId::generate(),
                email,
                name: name.map(DisplayName::into_inner),
                email_verified: false,
                created_at: self.now(),
            },
            password_hash,
        };
        match self.store.create_user(&record).await {
            Ok(()) => {
                tracing::info!(user_id = %record.user.id, "account created");
                Ok(record.user)
            }
            Err(StoreError::EmailTaken) => Err(AuthError::EmailTaken),
            Err(err) => Err(err.into()),
        }
    }

    /// Checks credentials and starts a session. Unknown emails, malformed emails and wrong
    /// passwords cost the same hashing work and get the same answer. Every attempt on a
    /// well-formed email is first reserved in the lockout counters (atomically, before the
    /// hash is checked), so a burst of concurrent guesses gets at most `max_failures` verdicts
    /// from one client IP. A success clears that IP's counter, and the address's too while it
    /// holds no more than one IP's worth (the owner's own attempts, not a spread attack).
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        email: &str,
        password: String,
        ip: Option<IpAddr>,
    ) -> Result<TokenPair, AuthError> {
        let now = self.now();
        let email = Email::parse(email).ok();
        let everywhere = match &email {
            Some(email) => self.reserve_attempt(email, ip, now).await?,
            None => 0,
        };
        let record = match &email {
            Some(email) => self.store.user_by_email(email).await?,
            None => None,
        };
        let (attempt, plausible) = match PasswordAttempt::new(password) {
            Some(attempt) => (attempt, true),
            None => (
                PasswordAttempt::new(String::new()).unwrap_or_else(|| unreachable!()),
                false,
            ),
        };
        let stored = record.as_ref().map(|r| &r.password_hash);
        let matches = self.passwords.verify(&attempt, stored).await? && plausible;
        let (Some(email), Some(record), true) = (email.as_ref(), record, matches) else {
            tracing::info!("failed login");
            return Err(AuthError::InvalidCredentials);
        };
        self.store
            .clear_login_failures(&FailureKey::address_from(email, ip))
            .await?;
        if everywhere <= self.lockout.max_failures {
            self.store
                .clear_login_failures(&FailureKey::address(email))
                .await?;
        }
        if self.require_verified_email && !record.user.email_verified {
            return Err(AuthError::EmailNotVerified);
        }
        self.start_session(&record.user.id, now).await
    }

    /// Counts one password attempt on `email` from `ip` before its hash is checked: first in
    /// the (address, IP) counter, then, only if that one has room, in the address's ceiling.
    /// A locked IP therefore adds nothing to the ceiling: locking the owner out everywhere
    /// takes `max_failures_per_address / max_failures` IPs. Returns the address's count.
    async fn reserve_attempt(
        &self,
        email: &Email,
        ip: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> Result<u32, AuthError> {
        let floor = now - self.lockout.window;
        let locked = |wait: Duration| AuthError::Locked {
            retry_after: wait.to_std().unwrap_or_default(),
        };
        let here = self
            .store
            .record_login_failure(&FailureKey::address_from(email, ip), now, floor)
            .await?;
        if let Some(wait) = self
            .lockout
            .retry_after(&here, self.lockout.max_failures, now)
        {
            tracing::info!(attempts = here.count, "login locked for this client");
            return Err(locked(wait));
        }
        let everywhere = self
            .store
            .record_login_failure(&FailureKey::address(email), now, floor)
            .await?;
        if let Some(wait) =
            self.lockout
                .retry_after(&everywhere, self.lockout.max_failures_per_address, now)
        {
            tracing::warn!(attempts = everywhere.count, "login locked for every client");
            return Err(locked(wait));
        }
        Ok(everywhere.count)
    }

    /// Logs in the owner of `email`, whose address a trusted party has just proved (a login
    /// code from our mail, an OAuth provider's verified email): marks the email verified and
    /// starts a session, creating the account (with an unusable random password) when there is
    /// none. Returns the tokens, the account, and whether it was created.
    #[tracing::instrument(skip_all)]
    pub async fn sign_in_verified(
        &self,
        email: Email,
        name: Option<DisplayName>,
    ) -> Result<(TokenPair, User, bool), AuthError> {
        let (user, created) = match self.store.user_by_email(&email).await? {
            Some(record) => (record.user, false),
            None => self.create_verified(email, name).await?,
        };
        let (pair, user) = self.sign_in(user).await?;
        Ok((pair, user, created))
    }

    /// Creates the account of a proved email, with an unusable random password; when a
    /// concurrent sign-in created it first, that account. True when this call created it.
    async fn create_verified(
        &self,
        email: Email,
        name: Option<DisplayName>,
    ) -> Result<(User, bool), AuthError> {
        let unusable = Password::parse("password", RefreshSecret::generate().expose().to_owned())
            .map_err(|err| anyhow::anyhow!("random password refused: {err}"))?;
        let record = UserRecord {
            user: User {
                id: UserId::generate(),
                email: email.clone(),
                name: name.map(DisplayName::into_inner),
                email_verified: true,
                created_at: self.now(),
            },
            password_hash: self.passwords.hash(&unusable).await?,
        };
        match self.store.create_user(&record).await {
            Ok(()) => {
                tracing::info!(user_id = %record.user.id, "account created by a verified sign-in");
                Ok((record.user, true))
            }
            Err(StoreError::EmailTaken) => match self.store.user_by_email(&email).await? {
                Some(existing) => Ok((existing.user, false)),
                None => Err(AuthError::InvalidCredentials),
            },
            Err(err) => Err(err.into()),
        }
    }

    /// Starts a session for `user`, whose email a trusted party has just proved (a login code,
    /// an OAuth provider). When the address had never been proved, whoever made the account
    /// may not be its owner (pre-account takeover): the account is claimed first (see
    /// [`Self::claim_for_proved_owner`]). Returns the tokens and the account as it now is.
    pub(crate) async fn sign_in(&self, mut user: User) -> Result<(TokenPair, User), AuthError> {
        if !user.email_verified {
            self.claim_for_proved_owner(&user).await?;
            user.email_verified = true;
        }
        let pair = self.start_session(&user.id, self.now()).await?;
        Ok((pair, user))
    }

    /// Hands an account whose address was never proved to the person who just proved it from
    /// outside any session: every session ends (refresh and access tokens), the password,
    /// which whoever signed up chose, stops working (the owner sets one by reset), then the
    /// address is marked verified. In this order, so a failure midway leaves the account
    /// unverified and the next proof does it all again.
    async fn claim_for_proved_owner(&self, user: &User) -> Result<(), AuthError> {
        let revoked = self
            .store
            .revoke_other_sessions(&user.id, &SessionId::generate())
            .await?;
        let unusable = Password::parse("password", RefreshSecret::generate().expose().to_owned())
            .map_err(|err| anyhow::anyhow!("random password refused: {err}"))?;
        let hash = self.passwords.hash(&unusable).await?;
        self.store.set_password_hash(&user.id, &hash).await?;
        self.store.set_email_verified(&user.id).await?;
        tracing::warn!(
            user_id = %user.id,
            revoked_sessions = revoked,
            "unverified account claimed by the proved owner of its address"
        );
        Ok(())
    }

    async fn start_session(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AuthError> {
        let session = Session {
            id: SessionId::generate(),
            user_id: user.clone(),
            created_at: now,
            expires_at: now + self.refresh_ttl,
        };
        let secret = RefreshSecret::generate();
        let token = RefreshTokenRecord {
            hash: secret.hash(),
            session_id: session.id.clone(),
            user_id: user.clone(),
            created_at: now,
            expires_at: session.expires_at,
            used_at: None,
            session_revoked: false,
        };
        self.store.create_session(&session, &token).await?;
        tracing::info!(user_id = %user, session_id = %session.id, "session started");
        self.pair(user, &session.id, secret, now)
    }

    fn pair(
        &self,
        user: &UserId,
        session: &SessionId,
        refresh: RefreshSecret,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AuthError> {
        let access = self.tokens.issue(user, session, now)?;
        Ok(TokenPair {
            access_token: access.token,
            token_type: "bearer",
            expires_in: self.tokens.ttl().num_seconds(),
            refresh_token: refresh.expose().to_owned(),
        })
    }

    /// Exchanges a refresh token for a new pair. The presented token stops working; presenting
    /// it again revokes its whole session (someone else has a copy). The new token keeps the
    /// session's end: a login lasts at most the refresh TTL, however often it is refreshed.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, presented: &str) -> Result<TokenPair, AuthError> {
        let now = self.now();
        let presented = RefreshSecret::parse(presented).ok_or(AuthError::InvalidToken)?;
        let hash = presented.hash();
        let token = self
            .store
            .refresh_token(&hash)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        if token.used_at.is_some() {
            return Err(self.reuse_detected(&token).await);
        }
        if token.session_revoked {
            return Err(AuthError::TokenRevoked);
        }
        if token.expires_at <= now {
            return Err(AuthError::TokenExpired);
        }
        let secret = RefreshSecret::generate();
        let next = RefreshTokenRecord {
            hash: secret.hash(),
            created_at: now,
            used_at: None,
            ..token.clone()
        };
        match self.store.consume_refresh_token(&hash, &next, now).await? {
            Consumed::Rotated => self.pair(&token.user_id, &token.session_id, secret, now),
            Consumed::AlreadyUsed => Err(self.reuse_detected(&token).await),
            Consumed::SessionRevoked => Err(AuthError::TokenRevoked),
        }
    }

    async fn reuse_detected(&self, token: &RefreshTokenRecord) -> AuthError {
        tracing::warn!(
            user_id = %token.user_id,
            session_id = %token.session_id,
            "refresh token reuse detected; revoking the session"
        );
        match self
            .store
            .revoke_session(&token.user_id, &token.session_id)
            .await
        {
            Ok(()) => AuthError::TokenReused,
            Err(err) => err.into(),
        }
    }

    /// Accepts a bearer access token: signature, claims, expiry, then revocation (one store
    /// round trip).
    pub async fn authenticate(&self, bearer: &str) -> Result<AccessContext, AuthError> {
        let claims = self
            .tokens
            .verify(bearer, self.clock.now())
            .map_err(|rejection| match rejection {
                TokenRejection::Expired => AuthError::TokenExpired,
                TokenRejection::Invalid => AuthError::InvalidToken,
            })?;
        if self
            .store
            .access_token_revoked(&claims.sub, &claims.sid, &claims.jti)
            .await?
        {
            return Err(AuthError::TokenRevoked);
        }
        Ok(AccessContext {
            expires_at: expires_at(&claims),
            user_id: claims.sub,
            session_id: claims.sid,
            jti: claims.jti,
        })
    }

    /// Ends the caller's session: its refresh tokens, and this access token at once. A refresh
    /// token of the caller's from another session ends that session too.
    #[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
    pub async fn logout(
        &self,
        caller: &AccessContext,
        refresh_token: Option<&str>,
    ) -> Result<(), AuthError> {
        self.store
            .revoke_access_token(&caller.jti, caller.expires_at)
            .await?;
        self.store
            .revoke_session(&caller.user_id, &caller.session_id)
            .await?;
        let other = match refresh_token.and_then(RefreshSecret::parse) {
            Some(secret) => self.store.refresh_token(&secret.hash()).await?,
            None => None,
        };
        // Someone else's token is ignored, not revoked: logout cannot harm others.
        if let Some(token) = other.filter(|token| token.user_id == caller.user_id) {
            self.store
                .revoke_session(&caller.user_id, &token.session_id)
                .await?;
        }
        Ok(())
    }

    /// The caller's account.
    pub async fn me(&self, caller: &AccessContext) -> Result<User, AuthError> {
        self.store
            .user_by_id(&caller.user_id)
            .await?
            .map(|record| record.user)
            .ok_or(AuthError::InvalidToken)
    }

    /// Changes the password after checking the current one, then revokes every other session.
    #[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
    pub async fn change_password(
        &self,
        caller: &AccessContext,
        current: String,
        new: Password,
    ) -> Result<(), AuthError> {
        let record = self
            .store
            .user_by_id(&caller.user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let attempt = PasswordAttempt::new(current).ok_or(AuthError::InvalidCredentials)?;
        if !self
            .passwords
            .verify(&attempt, Some(&record.password_hash))
            .await?
        {
            return Err(AuthError::InvalidCredentials);
        }
        let hash = self.passwords.hash(&new).await?;
        self.store.set_password_hash(&caller.user_id, &hash).await?;
        let revoked = self
            .store
            .revoke_other_sessions(&caller.user_id, &caller.session_id)
            .await?;
        tracing::info!(revoked_sessions = revoked, "password changed");
        Ok(())
    }
}
