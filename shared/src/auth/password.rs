//! Argon2id password hashing, run off the async threads, with equal work for unknown accounts.
//!
//! Each hash needs its memory cost (19 MiB by default) while it runs. Hashes run under a
//! semaphore sized to the cores, so a burst of logins queues for a core instead of starting
//! one blocking thread and one 19 MiB block per request (more hashes at once than cores would
//! not finish sooner). And the blocks are kept and reused rather than allocated per hash: the
//! allocator would otherwise keep freed 19 MiB blocks per thread and fragment around them, and
//! a burst would still cost hundreds of MiB. Memory for hashing is thus one block per core.

use crate::config::Argon2Params;
use crate::domain::{Password, PasswordAttempt};
use argon2::password_hash::{self, Output, ParamsString, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Semaphore;

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
    /// One permit per core: how many hashes may run at once.
    permits: Arc<Semaphore>,
    /// Argon2 memory blocks of finished hashes, reused by the next ones (at most one per
    /// permit is ever in use).
    memory: Mutex<Vec<Vec<Block>>>,
}

impl Inner {
    /// Runs `work` with at least `blocks` argon2 blocks of reused memory.
    fn with_memory<T>(&self, blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
        let spare = self
            .memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut memory = spare.unwrap_or_default();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        let result = work(&mut memory[..blocks]);
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(memory);
        result
    }
}

impl PasswordHasher {
    /// Builds a hasher with the configured cost; computes the dummy hash once.
    pub fn new(cost: Argon2Params) -> anyhow::Result<Self> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|err| anyhow::anyhow!("invalid argon2 parameters: {err}"))?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut inner = Inner {
            params,
            dummy: PasswordHash(String::new()),
            permits: Arc::new(Semaphore::new(cores)),
            memory: Mutex::default(),
        };
        inner.dummy = hash_blocking(&inner, "meterline-dummy-password-for-unknown-accounts")?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Runs `work` on a blocking thread once a core's permit is free; the permit is held
    /// until the work ends, even if the caller stops waiting for it.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let inner = Arc::clone(&self.inner);
        let permit = Arc::clone(&inner.permits).acquire_owned().await?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&inner)
        })
        .await?
    }

    /// Hashes a new password with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> anyhow::Result<PasswordHash> {
        let password = password.clone();
        self.run(move |inner| hash_blocking(inner, password.expose()))
            .await
    }

    /// True when `attempt` matches `stored`. With no stored hash (unknown account) it verifies
    /// against the dummy hash and answers false.
    pub async fn verify(
        &self,
        attempt: &PasswordAttempt,
        stored: Option<&PasswordHash>,
    ) -> anyhow::Result<bool> {
        let attempt = attempt.clone();
        let known = stored.is_some();
        let stored = stored.cloned();
        let matches = self
            .run(move |inner| {
                let hash = stored.as_ref().unwrap_or(&inner.dummy);
                verify_blocking(inner, attempt.expose(), hash)
            })
            .await?;
        Ok(known && matches)
    }
}

fn phc_error(err: password_hash::Error) -> anyhow::Error {
    anyhow::anyhow!("argon2: {err}")
}

/// The raw argon2 output of `password` under `argon2`'s settings, in reused memory.
fn compute(
    inner: &Inner,
    argon2: &Argon2<'_>,
    params: &Params,
    password: &str,
    salt: &[u8],
    len: usize,
) -> anyhow::Result<Output> {
    inner
        .with_memory(params.block_count(), |memory| {
            Output::init_with(len, |out| {
                argon2
                    .hash_password_into_with_memory(password.as_bytes(), salt, out, memory)
                    .map_err(password_hash::Error::from)
            })
        })
        .map_err(phc_error)
}

fn hash_blocking(inner: &Inner, password: &str) -> anyhow::Result<PasswordHash> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(phc_error)?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, inner.params.clone());
    let len = inner
        .params
        .output_len()
        .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = compute(inner, &argon2, &inner.params, password, raw_salt, len)?;
    let phc = password_hash::PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&inner.params).map_err(phc_error)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(PasswordHash(phc.to_string()))
}

/// The stored hash carries its own parameters, so hashes made under an older cost setting keep
/// verifying after the setting changes. The comparison is constant-time (`Output`'s `==`).
fn verify_blocking(inner: &Inner, attempt: &str, stored: &PasswordHash) -> anyhow::Result<bool> {
    let parsed = password_hash::PasswordHash::new(stored.as_str())
        .map_err(|err| anyhow::anyhow!("stored password hash is not a PHC string: {err}"))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        anyhow::bail!("stored password hash has no salt or no output");
    };
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(phc_error)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|err| anyhow::anyhow!("argon2 version: {err}"))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(phc_error)?;
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt.decode_b64(&mut salt_bytes).map_err(phc_error)?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let computed = compute(inner, &argon2, &params, attempt, raw_salt, expected.len())?;
    Ok(computed == expected)
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

    /// Hashes made by the argon2 crate's own `PasswordHasher` (any cost) keep verifying.
    #[tokio::test]
    async fn verifies_hashes_made_elsewhere_and_under_other_costs() {
        use argon2::PasswordHasher as _;
        let hasher = cheap();
        let params = Params::new(128, 2, 2, None).expect("params");
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"another password", &salt)
            .expect("hash")
            .to_string();
        let stored = PasswordHash::from_stored(phc);
        let right = PasswordAttempt::new("another password".into()).expect("short");
        let wrong = PasswordAttempt::new("another passworD".into()).expect("short");
        assert!(hasher.verify(&right, Some(&stored)).await.expect("verify"));
        assert!(!hasher.verify(&wrong, Some(&stored)).await.expect("verify"));
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
