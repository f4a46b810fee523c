//! One-time secrets: email-verification and password-reset tokens, login codes and OAuth
//! `state`. Each is stored only as a hash, lives until its expiry, and is spent by exactly one
//! caller however many race for it.

use super::StoreResult;
use crate::auth::TokenHash;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// What a one-time secret is for; each purpose is a namespace of its own, so a reset token can
/// never pass as a verification token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A link proving the account's owner reads mail at its address.
    VerifyEmail,
    /// A link that lets the owner set a new password.
    PasswordReset,
    /// A six-digit code that logs the owner in.
    LoginCode,
    /// The `state` of an OAuth authorization request, holding its PKCE verifier.
    OAuthState,
}

impl Purpose {
    /// The stable name stored with the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
            Self::LoginCode => "login_code",
            Self::OAuthState => "oauth_state",
        }
    }

    /// The purpose a stored name stands for.
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::VerifyEmail,
            Self::PasswordReset,
            Self::LoginCode,
            Self::OAuthState,
        ]
        .into_iter()
        .find(|purpose| purpose.as_str() == raw)
    }
}

/// A one-time secret as stored: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeRecord {
    /// What it is for.
    pub purpose: Purpose,
    /// Whose it is: a user id, or for OAuth the hash of the `state` itself. One live secret per
    /// purpose and subject: a new one replaces the last.
    pub subject: String,
    /// The hash of the secret (SHA-256, or an HMAC for short codes).
    pub secret_hash: TokenHash,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Guesses spent on it so far.
    pub attempts: u32,
    /// What the flow needs back when the secret returns (OAuth: provider and PKCE verifier),
    /// as text the flow itself encodes.
    pub payload: Option<String>,
}

/// One-time secrets, with the same behaviour on every backend.
#[async_trait]
pub trait OneTimeStore: Send + Sync + 'static {
    /// Stores `record`, replacing any earlier secret of its purpose and subject (so a new mail
    /// makes the previous link useless).
    async fn put_one_time(&self, record: &OneTimeRecord) -> StoreResult<()>;

    /// The secret of `purpose` and `subject`, if one is stored (expired ones included: the
    /// caller decides, so it can say "expired" rather than "unknown").
    async fn one_time(&self, purpose: Purpose, subject: &str)
    -> StoreResult<Option<OneTimeRecord>>;

    /// Spends one guess on the secret: atomically counts it when fewer than `max_attempts` were
    /// spent and returns the record with the new count; `None` when there is no secret or its
    /// guesses are used up. However many guesses race, at most `max_attempts` are counted.
    async fn spend_one_time_attempt(
        &self,
        purpose: Purpose,
        subject: &str,
        max_attempts: u32,
    ) -> StoreResult<Option<OneTimeRecord>>;

    /// Deletes the secret if it is still the one hashed `secret_hash`: true for exactly one of
    /// any number of racing callers, false when it was taken, replaced or never stored.
    async fn take_one_time(
        &self,
        purpose: Purpose,
        subject: &str,
        secret_hash: &TokenHash,
    ) -> StoreResult<bool>;
}
