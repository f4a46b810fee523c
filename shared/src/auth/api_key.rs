//! API keys: `ml_live_` + 32 random bytes in base62 + a 6-character CRC32 checksum.
//!
//! The checksum lets a mistyped or truncated key be refused before any lookup, and the fixed
//! prefix lets secret scanners find leaked keys. Only the SHA-256 of a key is stored; its first
//! 12 characters are kept for display.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

/// Every live key starts with this.
pub const KEY_PREFIX: &str = "ml_live_";
const BODY_CHARS: usize = 43; // ceil(256 / log2(62))
const CHECKSUM_CHARS: usize = 6; // 62^6 > 2^32
const KEY_CHARS: usize = KEY_PREFIX.len() + BODY_CHARS + CHECKSUM_CHARS;
/// How much of a key is kept and shown to identify it.
pub const DISPLAY_PREFIX_CHARS: usize = 12;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Base62 of a big-endian number, left-padded with `0` to `width` characters.
fn base62(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while number.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 62) as u8;
            remainder = value % 62;
        }
        digits.push(ALPHABET[remainder as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

fn checksum(body: &str) -> String {
    base62(
        &crc32fast::hash(body.as_bytes()).to_be_bytes(),
        CHECKSUM_CHARS,
    )
}

/// A plaintext API key: shown once at creation, then only ever presented by clients.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let body = base62(&bytes, BODY_CHARS);
        Self(format!("{KEY_PREFIX}{body}{}", checksum(&body)))
    }

    /// Accepts only a well-formed key whose checksum matches: no lookup for garbage.
    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix(KEY_PREFIX)?;
        if raw.len() != KEY_CHARS || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let (body, sum) = rest.split_at(BODY_CHARS);
        (checksum(body) == sum).then(|| Self(raw.to_owned()))
    }

    /// What the store keys the key by.
    pub fn hash(&self) -> ApiKeyHash {
        ApiKeyHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// The first characters, kept to tell keys apart in listings.
    pub fn display_prefix(&self) -> String {
        self.0.chars().take(DISPLAY_PREFIX_CHARS).collect()
    }

    /// The key itself, to hand to its creator once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

/// SHA-256 (hex) of an API key. Still a lookup credential: never logged or returned.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyHash(String);

impl ApiKeyHash {
    /// Wraps a hash read back from the store.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeyHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape_and_parse() {
        let key = ApiKeySecret::generate();
        assert_eq!(key.expose().len(), KEY_CHARS);
        assert!(key.expose().starts_with("ml_live_"));
        assert_eq!(ApiKeySecret::parse(key.expose()), Some(key.clone()));
        assert_eq!(key.display_prefix().len(), 12);
        assert_eq!(key.hash().as_str().len(), 64);
        assert_ne!(ApiKeySecret::generate().hash(), key.hash());
    }

    #[test]
    fn mistyped_truncated_or_foreign_keys_fail_the_checksum() {
        let key = ApiKeySecret::generate();
        let text = key.expose();
        let mut typo = text.as_bytes().to_vec();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).expect("ascii");
        for bad in [
            typo.as_str(),
            &text[..text.len() - 1],
            &text.replace("ml_live_", "ml_test_"),
            "",
            "ml_live_",
            &format!("{text}x"),
        ] {
            assert!(ApiKeySecret::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn base62_is_positional() {
        assert_eq!(base62(&[0, 0], 3), "000");
        assert_eq!(base62(&[61], 1), "z");
        assert_eq!(base62(&[62], 2), "10");
        assert_eq!(base62(&[0xff, 0xff, 0xff, 0xff], 6), "4gfFC3");
    }
}
