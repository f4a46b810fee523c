//! Refresh tokens: 32 random bytes handed to the client once, stored only as their SHA-256.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

const SECRET_BYTES: usize = 32;

/// A refresh token as the client holds it. Never logged.
pub struct RefreshSecret(String);

impl RefreshSecret {
    /// A new random token.
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts a presented token only if it has the shape of one we issue, so garbage is
    /// refused without a store lookup.
    pub fn parse(raw: &str) -> Option<Self> {
        let decoded = URL_SAFE_NO_PAD.decode(raw.as_bytes()).ok()?;
        (decoded.len() == SECRET_BYTES).then(|| Self(raw.to_owned()))
    }

    /// What the store keeps instead of the token.
    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// The token text, to send to its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefreshSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshSecret(<redacted>)")
    }
}

/// The SHA-256 (hex) of a refresh token: its storage key. A hash is still a credential lookup
/// key, so it is never logged or returned either.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// Wraps a hash read back from the store.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_parse_and_hash_stably() {
        let token = RefreshSecret::generate();
        let again = RefreshSecret::parse(token.expose()).expect("own tokens parse");
        assert_eq!(token.hash(), again.hash());
        assert_eq!(token.hash().as_str().len(), 64);
        assert_ne!(RefreshSecret::generate().hash(), token.hash());
    }

    #[test]
    fn garbage_is_refused_before_any_lookup() {
        assert!(RefreshSecret::parse("").is_none());
        assert!(RefreshSecret::parse("not a token").is_none());
        assert!(RefreshSecret::parse(&URL_SAFE_NO_PAD.encode([0u8; 16])).is_none());
    }
}
