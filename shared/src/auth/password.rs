//! Argon2id password hashing, run off the async threads, with equal work for unknown accounts.

use crate::config::Argon2Params;
use crate::domain::{Password, PasswordAttempt};
use argon2::password_hash::{SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier, Version};
use std::fmt;
use std::sync::Arc;

/// A stored password hash in PHC string format (`$argon2id$v=19$m=...`). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a hash read back from the store.
    pub fn from_stored(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string, for the store only.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// Hashes and verifies passwords with argon2id. Cloning is cheap.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    /// Verified against when the account does not exist, so an unknown email costs exactly
    /// as much as a wrong password and response times reveal nothing.
    dummy: PasswordHash,
}

impl PasswordHasher {
    /// Builds a hasher with the configured cost; computes the dummy hash once.
    pub fn new(cost: Argon2Params) -> anyhow::Result<Self> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|err| anyhow::anyhow!("invalid argon2 parameters: {err}"))?;
        let dummy = hash_blocking(&params, "meterline-dummy-password-for-unknown-accounts")?;
        Ok(Self {
            inner: Arc::new(Inner { params, dummy }),
        })
    }

    /// Hashes a new password with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> anyhow::Result<PasswordHash> {
        let inner = Arc::clone(&self.inner);
        let password = password.clone();
        tokio::task::spawn_blocking(move || hash_blocking(&inner.params, password.expose())).await?
    }

    /// True when `attempt` matches `stored`. With no stored hash (unknown account) it verifies
    /// against the dummy hash and answers false.
    pub async fn verify(
        &self,
        attempt: &PasswordAttempt,
        stored: Option<&PasswordHash>,
    ) -> anyhow::Result<bool> {
        let inner = Arc::clone(&self.inner);
        let attempt = attempt.clone();
        let known = stored.is_some();
        let stored = stored.cloned();
        let matches = tokio::task::spawn_blocking(move || {
            let hash = stored.as_ref().unwrap_or(&inner.dummy);
            verify_blocking(&inner.params, attempt.expose(), hash)
        })
        .await??;
        Ok(known && matches)
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> anyhow::Result<PasswordHash> {
    let salt = SaltString::generate(&mut OsRng);
    let phc = argon2(params)
        .hash_password(password.as_bytes(), &salt)
        .map_err(|err| anyhow::anyhow!("argon2 hashing failed: {err}"))?;
    Ok(PasswordHash(phc.to_string()))
}

/// The stored hash carries its own parameters, so hashes made under an older cost setting keep
/// verifying after the setting changes.
fn verify_blocking(params: &Params, attempt: &str, stored: &PasswordHash) -> anyhow::Result<bool> {
    let parsed = argon2::PasswordHash::new(stored.as_str())
        .map_err(|err| anyhow::anyhow!("stored password hash is not a PHC string: {err}"))?;
    match argon2(params).verify_password(attempt.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(err) => Err(anyhow::anyhow!("argon2 verification failed: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHasher {
        PasswordHasher::new(Argon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .expect("valid params")
    }

    #[tokio::test]
    async fn verifies_the_right_password_only() {
        let hasher = cheap();
        let password = Password::parse("password", "correct horse battery".into()).expect("ok");
        let hash = hasher.hash(&password).await.expect("hash");
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        let right = PasswordAttempt::new("correct horse battery".into()).expect("short");
        let wrong = PasswordAttempt::new("correct horse battery!".into()).expect("short");
        assert!(hasher.verify(&right, Some(&hash)).await.expect("verify"));
        assert!(!hasher.verify(&wrong, Some(&hash)).await.expect("verify"));
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify_even_with_the_dummy_password() {
        let hasher = cheap();
        let dummy = PasswordAttempt::new("meterline-dummy-password-for-unknown-accounts".into())
            .expect("short");
        assert!(!hasher.verify(&dummy, None).await.expect("verify"));
    }

    #[tokio::test]
    async fn salts_differ_between_hashes_of_one_password() {
        let hasher = cheap();
        let password = Password::parse("password", "same password".into()).expect("ok");
        let a = hasher.hash(&password).await.expect("hash");
        let b = hasher.hash(&password).await.expect("hash");
        assert_ne!(a, b);
    }
}
