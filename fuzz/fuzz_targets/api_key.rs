//! `ApiKeySecret::parse` accepts exactly the strings of the documented format
//! (`ml_live_` + 43 base62 + the 6-character base62 CRC32 of those 43), and a parsed key
//! re-renders to the same string. The oracle below is written from the format, not the code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meterline::auth::{ApiKeySecret, DISPLAY_PREFIX_CHARS, KEY_PREFIX};
use sha2::{Digest, Sha256};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BODY: usize = 43;
const SUM: usize = 6;

/// The 6 base62 digits of the CRC32 of `body`, most significant first (plain u64 arithmetic).
fn oracle_checksum(body: &str) -> String {
    let mut n = u64::from(crc32fast::hash(body.as_bytes()));
    let mut digits = [b'0'; SUM];
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    assert_eq!(n, 0, "62^6 > 2^32");
    String::from_utf8(digits.to_vec()).expect("ascii")
}

fn oracle_valid(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix("ml_live_") else {
        return false;
    };
    rest.len() == BODY + SUM
        && rest.bytes().all(|b| ALPHABET.contains(&b))
        && oracle_checksum(&rest[..BODY]) == rest[BODY..]
}

/// Parses `raw` and checks the result against the oracle and the key's other views.
fn check(raw: &str) {
    let parsed = ApiKeySecret::parse(raw);
    assert_eq!(
        parsed.is_some(),
        oracle_valid(raw),
        "parse disagrees: {raw:?}"
    );
    if let Some(key) = parsed {
        assert_eq!(key.expose(), raw, "re-renders to the same string");
        assert_eq!(key.display_prefix(), raw[..DISPLAY_PREFIX_CHARS]);
        assert_eq!(key.hash().as_str(), hex::encode(Sha256::digest(raw)));
        assert_eq!(format!("{key:?}"), "ApiKeySecret(<redacted>)");
        assert_eq!(ApiKeySecret::parse(key.expose()), Some(key));
    }
}

fuzz_target!(|data: &[u8]| {
    // 1. The input itself, as text.
    let text = String::from_utf8_lossy(data);
    check(&text);

    // 2. A well-formed key whose body is chosen by the input: always accepted.
    let body: String = (0..BODY)
        .map(|i| ALPHABET[usize::from(data.get(i).copied().unwrap_or(0)) % 62] as char)
        .collect();
    let key = format!("{KEY_PREFIX}{body}{}", oracle_checksum(&body));
    assert!(
        ApiKeySecret::parse(&key).is_some(),
        "well-formed key refused: {key}"
    );
    check(&key);

    // 3. That key edited by the input (replace, insert or delete one byte): accepted only if
    //    the oracle accepts it (a single changed character never keeps the CRC32).
    if let [op, at, byte, ..] = data {
        let mut edited = key.clone().into_bytes();
        let at = usize::from(*at) % (edited.len() + 1);
        match op % 3 {
            0 if at < edited.len() => edited[at] = *byte,
            1 => edited.insert(at, *byte),
            _ if at < edited.len() => {
                edited.remove(at);
            }
            _ => {}
        }
        let edited = String::from_utf8_lossy(&edited).into_owned();
        check(&edited);
        if edited != key {
            assert!(
                ApiKeySecret::parse(&edited).is_none(),
                "edited key accepted"
            );
        }
    }
});
