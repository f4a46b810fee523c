//! Durable state behind one trait, so DynamoDB, Postgres and SQLite behave the same and
//! handlers never know which one they talk to.
//!
//! Every backend passes the conformance suite in `conformance.rs`.

mod api_keys;
mod billing;
pub mod dynamo;
mod invitations;
mod one_time;
mod orgs;
pub mod postgres;
mod sql;
pub mod sqlite;
mod teams;
pub mod testing;
mod usage;

#[cfg(test)]
mod conformance;

pub use api_keys::{ApiKeyStore, Revoked};
pub use billing::BillingStore;
pub use dynamo::DynamoStore;
pub use invitations::{InvitationStore, SecurityLogStore};
pub use one_time::{OneTimeRecord, OneTimeStore, Purpose};
pub use orgs::OrgStore;
pub use sql::SqlStore;
pub use teams::TeamStore;
pub use usage::UsageStore;

use crate::auth::{PasswordHash, TokenHash};
use crate::domain::{Email, SessionId, TokenId, User, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// A user with the secret fields the API never shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The public part.
    pub user: User,
    /// The argon2id hash of the password.
    pub password_hash: PasswordHash,
}

/// A login session: one refresh-token family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session (family) id, also carried in its access tokens as `sid`.
    pub id: SessionId,
    /// Whose session.
    pub user_id: UserId,
    /// When the user logged in.
    pub created_at: DateTime<Utc>,
    /// When the session ends at the latest (the first refresh token's expiry).
    pub expires_at: DateTime<Utc>,
}

/// One refresh token of a session, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the token: its key.
    pub hash: TokenHash,
    /// The family it belongs to.
    pub session_id: SessionId,
    /// Whose it is.
    pub user_id: UserId,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was exchanged for a new pair; a second exchange is reuse.
    pub used_at: Option<DateTime<Utc>>,
    /// Whether its whole session has been revoked.
    pub session_revoked: bool,
}

/// What happened when a refresh token was exchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// The token was unused and its session live: it is now used and the next one stored.
    Rotated,
    /// Someone exchanged it first (a replay, or a race with a thief).
    AlreadyUsed,
    /// Its session was revoked in the meantime.
    SessionRevoked,
}

/// Failed logins counted for one email within the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    /// Failures since `window_start`.
    pub count: u32,
    /// The first failure of the window.
    pub window_start: DateTime<Utc>,
}

/// What a failure counter counts for (see [`Store::record_login_failure`]): an address, an
/// address from one client IP, or an account's login codes. Keys of different kinds never
/// collide: only the address kind is a bare email, and the others start with a prefix an
/// email cannot (`:` is not allowed in an address).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FailureKey(String);

impl FailureKey {
    /// Failed password logins of `email` from anywhere (the per-address ceiling).
    pub fn address(email: &Email) -> Self {
        Self(email.as_str().to_owned())
    }

    /// Failed password logins of `email` from one client IP (the first lockout stage).
    pub fn address_from(email: &Email, ip: Option<std::net::IpAddr>) -> Self {
        let ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        Self(format!("ip:{ip}:{}", email.as_str()))
    }

    /// Login-code attempts on `email`'s account, whichever code they were meant for. Keyed by
    /// the address (one account per address), so an address without an account counts
    /// alike and the limit does not tell which addresses have one.
    pub fn login_codes(email: &Email) -> Self {
        Self(format!("code:{}", email.as_str()))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The email already belongs to an account.
    #[error("email is already registered")]
    EmailTaken,
    /// The change would leave the org without an owner.
    #[error("the last owner can be neither demoted nor removed")]
    LastOwner,
    /// The record changed since it was read (a concurrent change won); re-read and retry.
    #[error("the record was changed concurrently")]
    Conflict,
    /// The backend could not be reached or refused to work; a retry may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else the backend reported.
    #[error("store error: {0}")]
    Backend(#[from] anyhow::Error),
}

/// Results of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Durable state: what every backend must provide, with the same behaviour.
#[async_trait]
pub trait Store:
    OrgStore
    + ApiKeyStore
    + UsageStore
    + BillingStore
    + TeamStore
    + OneTimeStore
    + InvitationStore
    + SecurityLogStore
    + Send
    + Sync
    + 'static
{
    /// The backend's name (`sqlite`, `postgres`, `dynamodb`), for health reports and logs.
    fn backend(&self) -> &'static str;

    /// A cheap round trip proving the backend answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Creates an account; [`StoreError::EmailTaken`] when the email is in use, atomically with
    /// any concurrent signup for the same email.
    async fn create_user(&self, record: &UserRecord) -> StoreResult<()>;

    /// The account with this id.
    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<UserRecord>>;

    /// The account with this (normalised) email.
    async fn user_by_email(&self, email: &Email) -> StoreResult<Option<UserRecord>>;

    /// Replaces an account's password hash.
    async fn set_password_hash(&self, id: &UserId, hash: &PasswordHash) -> StoreResult<()>;

    /// Records that the account's owner proved they read mail at its address.
    async fn set_email_verified(&self, id: &UserId) -> StoreResult<()>;

    /// Starts a session with its first refresh token.
    async fn create_session(
        &self,
        session: &Session,
        first_token: &RefreshTokenRecord,
    ) -> StoreResult<()>;

    /// A refresh token by its hash, with its session's revocation state.
    async fn refresh_token(&self, hash: &TokenHash) -> StoreResult<Option<RefreshTokenRecord>>;

    /// Marks `presented` used and stores `next` in the same session, in one atomic step that
    /// succeeds only if `presented` was unused and the session live.
    async fn consume_refresh_token(
        &self,
        presented: &TokenHash,
        next: &RefreshTokenRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<Consumed>;

    /// Revokes one session: its refresh tokens and the access tokens issued from it stop working.
    async fn revoke_session(&self, user: &UserId, session: &SessionId) -> StoreResult<()>;

    /// Revokes every session of `user` except `keep`; returns how many were revoked.
    async fn revoke_other_sessions(&self, user: &UserId, keep: &SessionId) -> StoreResult<u64>;

    /// Revokes one access token until it would have expired anyway.
    async fn revoke_access_token(
        &self,
        jti: &TokenId,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// True when the access token `jti`, or its session, has been revoked (or the session is
    /// unknown). One round trip: this runs on every authenticated request.
    async fn access_token_revoked(
        &self,
        user: &UserId,
        session: &SessionId,
        jti: &TokenId,
    ) -> StoreResult<bool>;

    /// Counts one failed login (or one reserved attempt) for `key`: starts a new window at
    /// `now` when the current one began at or before `window_floor`. Atomic under concurrent
    /// failures: each caller gets its own count.
    async fn record_login_failure(
        &self,
        key: &FailureKey,
        now: DateTime<Utc>,
        window_floor: DateTime<Utc>,
    ) -> StoreResult<LoginFailures>;

    /// The failures counted for `key`, if any.
    async fn login_failures(&self, key: &FailureKey) -> StoreResult<Option<LoginFailures>>;

    /// Forgets the failures of `key` (after a successful login).
    async fn clear_login_failures(&self, key: &FailureKey) -> StoreResult<()>;
}

/// Opens the store a `STORE_URL` names: `sqlite://PATH`, `postgres://...` or
/// `dynamodb://TABLE` (add `?create=true` to create a missing table, for local endpoints).
pub async fn connect(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(sqlite::open(path).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::connect(url).await?))
    } else if let Some(rest) = url.strip_prefix("dynamodb://") {
        let (table, query) = rest.split_once('?').unwrap_or((rest, ""));
        let create = query.split('&').any(|pair| pair == "create=true");
        Ok(Arc::new(DynamoStore::connect(table, create).await?))
    } else {
        anyhow::bail!("STORE_URL must start with sqlite://, postgres:// or dynamodb://")
    }
}
