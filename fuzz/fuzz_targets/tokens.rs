//! Access tokens (HS256 JWTs) and refresh tokens.
//!
//! - A token signed with the test key round-trips to its claims; the same claims with a wrong
//!   issuer, audience or a past `exp` are refused with the right rejection.
//! - Any edit of a valid token is refused, without panicking.
//! - Arbitrary text is accepted only if it really is an HS256 JWT whose HMAC (recomputed here
//!   with `hmac`, not `jsonwebtoken`) matches, with our issuer and audience, not expired.
//! - `RefreshSecret::parse` accepts exactly the canonical unpadded base64url of 32 bytes, and a
//!   token built from 32 bytes parses back to itself.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use meterline::Config;
use meterline::auth::{AccessClaims, RefreshSecret, TokenKeys, TokenRejection};
use meterline::config::DEVELOPMENT_JWT_SECRET;
use meterline::domain::{SessionId, TokenId, UserId};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::OnceLock;

const NOW: i64 = 1_717_200_000; // 2024-06-01T00:00:00Z
const ISSUER: &str = "meterline";
const AUDIENCE: &str = "meterline-api";

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(NOW, 0).single().expect("time")
}

fn keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let config = Config::from_vars(&HashMap::new()).expect("default config");
        assert_eq!(config.jwt_issuer, ISSUER);
        assert_eq!(config.jwt_audience, AUDIENCE);
        TokenKeys::from_config(&config).expect("keys")
    })
}

fn claims(iss: &str, aud: &str, iat: i64, exp: i64) -> AccessClaims {
    AccessClaims {
        sub: UserId::parse("usr_01hzx3k6d5m9q0a1b2c3d4e5f6").expect("id"),
        iat,
        exp,
        jti: TokenId::parse("tok_01hzx3k6d5m9q0a1b2c3d4e5f7").expect("id"),
        iss: iss.to_owned(),
        aud: aud.to_owned(),
        sid: SessionId::parse("ses_01hzx3k6d5m9q0a1b2c3d4e5f8").expect("id"),
    }
}

fn sign(claims: &AccessClaims, algorithm: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(DEVELOPMENT_JWT_SECRET.as_bytes()),
    )
    .expect("sign")
}

/// The fixed, valid token every edit starts from.
fn valid_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| sign(&claims(ISSUER, AUDIENCE, NOW, NOW + 900), Algorithm::HS256))
}

/// Would an independent check accept `token`? HS256 header, matching HMAC, our iss/aud.
fn oracle_authentic(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return false;
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(DEVELOPMENT_JWT_SECRET.as_bytes()).expect("any key size");
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    if mac.verify_slice(&signature).is_err() {
        return false;
    }
    let json = |segment: &str| {
        URL_SAFE_NO_PAD
            .decode(segment)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
    };
    let (Some(header), Some(payload)) = (json(header), json(payload)) else {
        return false;
    };
    header["alg"] == "HS256" && payload["iss"] == ISSUER && payload["aud"] == AUDIENCE
}

#[derive(Arbitrary, Debug)]
struct SignedClaims {
    iat: i64,
    exp_from_now: i32,
    other_issuer: bool,
    other_audience: bool,
    hs512: bool,
}

fn check_text(token: &str) {
    match keys().verify(token, now()) {
        Ok(claims) => {
            assert!(oracle_authentic(token), "forged token accepted: {token:?}");
            assert!(claims.exp > NOW, "expired token accepted");
            assert_eq!(
                (claims.iss.as_str(), claims.aud.as_str()),
                (ISSUER, AUDIENCE)
            );
        }
        Err(TokenRejection::Expired) => {
            assert!(
                oracle_authentic(token),
                "a forgery must be Invalid, not Expired"
            );
        }
        Err(TokenRejection::Invalid) => {}
    }
}

fn check_refresh(raw: &str) {
    const CANONICAL_LAST: &[u8] = b"AEIMQUYcgkosw048";
    let oracle = raw.len() == 43
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && raw
            .as_bytes()
            .last()
            .is_some_and(|b| CANONICAL_LAST.contains(b));
    let parsed = RefreshSecret::parse(raw);
    assert_eq!(parsed.is_some(), oracle, "refresh parse disagrees: {raw:?}");
    if let Some(secret) = parsed {
        assert_eq!(secret.expose(), raw);
        assert_eq!(secret.hash().as_str(), hex::encode(Sha256::digest(raw)));
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    // Arbitrary text as an access token and as a refresh token.
    check_text(&text);
    check_refresh(&text);

    // The valid token round-trips; every edit of it is refused.
    let valid = valid_token();
    let claims_back = keys().verify(valid, now()).expect("valid token verifies");
    assert_eq!((claims_back.iat, claims_back.exp), (NOW, NOW + 900));
    let mut edited = valid.as_bytes().to_vec();
    for edit in data.chunks_exact(3).take(4) {
        let at = usize::from(u16::from_le_bytes([edit[1], edit[0] >> 2])) % (edited.len() + 1);
        match edit[0] % 3 {
            0 if at < edited.len() => edited[at] = edit[2],
            1 => edited.insert(at, edit[2]),
            _ if at < edited.len() => {
                edited.remove(at);
            }
            _ => {}
        }
    }
    let edited = String::from_utf8_lossy(&edited);
    if edited != valid {
        assert!(
            keys().verify(&edited, now()).is_err(),
            "edited token accepted: {edited:?}"
        );
    }
    check_text(&edited);

    // Claims chosen by the input, signed with the test key.
    let mut input = Unstructured::new(data);
    if let Ok(chosen) = SignedClaims::arbitrary(&mut input) {
        let exp = NOW.saturating_add(i64::from(chosen.exp_from_now));
        let iss = if chosen.other_issuer {
            "someone-else"
        } else {
            ISSUER
        };
        let aud = if chosen.other_audience {
            "another-api"
        } else {
            AUDIENCE
        };
        let algorithm = if chosen.hs512 {
            Algorithm::HS512
        } else {
            Algorithm::HS256
        };
        let token = sign(&claims(iss, aud, chosen.iat, exp), algorithm);
        let verdict = keys().verify(&token, now());
        // jsonwebtoken reads `exp` as an unsigned NumericDate: a negative one is malformed.
        let expected = if chosen.other_issuer || chosen.other_audience || chosen.hs512 || exp < 0 {
            Err(TokenRejection::Invalid)
        } else if exp <= NOW {
            Err(TokenRejection::Expired)
        } else {
            Ok((chosen.iat, exp))
        };
        assert_eq!(verdict.map(|c| (c.iat, c.exp)), expected, "{chosen:?}");
    }

    // A refresh token built from 32 input bytes parses back to itself.
    let mut bytes = [0u8; 32];
    for (slot, byte) in bytes.iter_mut().zip(data.iter().rev()) {
        *slot = *byte;
    }
    let encoded = URL_SAFE_NO_PAD.encode(bytes);
    let parsed = RefreshSecret::parse(&encoded).expect("an issued-shape token parses");
    assert_eq!(parsed.expose(), encoded);
    check_refresh(&encoded);
});
