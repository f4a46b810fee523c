//! The random values of an authorization request: `state`, `nonce` and the PKCE verifier with
//! its S256 challenge (RFC 7636).

use crate::auth::TokenHash;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

/// Random bytes in a state, nonce or verifier (43 base64url characters).
const RANDOM_BYTES: usize = 32;

/// 32 random bytes, base64url without padding: a `state` or `nonce`.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; RANDOM_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `raw` has the shape of a token [`random_token`] makes, so garbage is refused
/// without a store lookup.
pub(crate) fn is_random_token(raw: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(raw.as_bytes())
        .is_ok_and(|bytes| bytes.len() == RANDOM_BYTES)
}

/// The SHA-256 (hex) of a `state`: its key and its hash in the one-time store.
pub(crate) fn state_hash(state: &str) -> TokenHash {
    TokenHash::from_stored(hex::encode(Sha256::digest(state.as_bytes())))
}

/// A PKCE code verifier: kept server-side, sent only with the code to the token endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct PkceVerifier(String);

impl PkceVerifier {
    /// A fresh verifier from 32 random bytes.
    pub fn generate() -> Self {
        Self(random_token())
    }

    /// A verifier read back from the store.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The verifier text, for the token request and the store.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `BASE64URL(SHA256(verifier))`: the `code_challenge` for `code_challenge_method=S256`.
    pub fn challenge(&self) -> String {
        s256_challenge(&self.0)
    }
}

impl fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PkceVerifier(<redacted>)")
    }
}

/// The S256 code challenge of `verifier` (RFC 7636 section 4.2).
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7636_appendix_b() {
        let verifier =
            PkceVerifier::from_stored("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(
            verifier.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn fresh_values_are_43_url_safe_characters_and_differ() {
        let verifier = PkceVerifier::generate();
        assert_eq!(verifier.expose().len(), 43);
        assert!(
            verifier
                .expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(verifier, PkceVerifier::generate());
        assert!(!format!("{verifier:?}").contains(verifier.expose()));
        let state = random_token();
        assert!(is_random_token(&state));
        assert!(!is_random_token("short"));
        assert!(!is_random_token(&format!("{state}=")));
        assert_eq!(state_hash(&state).as_str().len(), 64);
        assert_eq!(state_hash(&state), state_hash(&state));
    }
}
