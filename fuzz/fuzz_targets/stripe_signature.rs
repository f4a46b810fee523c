//! The `Stripe-Signature` verifier (`meterline::auth::verify_signature`).
//!
//! - Never panics on any header, body, secret, time or tolerance.
//! - Never accepts a header without a `v1` HMAC-SHA256 (recomputed here with `hmac`) of
//!   `"{t}.{body}"` under the secret, for a `t=` it carries, within the tolerance of now.
//! - A header made by `sign` verifies within the tolerance, is `Stale` outside it, and is a
//!   `Mismatch` for another body or secret.
#![no_main]

use chrono::{DateTime, Duration, TimeZone, Utc};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use meterline::auth::{SignatureError, WebhookSecret, sign, verify_signature};
use sha2::Sha256;

/// The input: 24 bytes of numbers (little-endian `timestamp: i64, now: i64, skew: i32,
/// tolerance: u32`; missing bytes are 0), then `secret \n header \n body` as text, so corpus
/// files can carry real signatures.
#[derive(Debug)]
struct Input {
    header: String,
    body: Vec<u8>,
    secret: String,
    timestamp: i64,
    now: i64,
    skew: i32,
    tolerance: u32,
}

impl Input {
    fn parse(data: &[u8]) -> Self {
        let mut numbers = [0u8; 24];
        let split = data.len().min(24);
        numbers[..split].copy_from_slice(&data[..split]);
        let bytes = |from: usize| -> [u8; 8] {
            let mut out = [0u8; 8];
            out.copy_from_slice(&numbers[from..from + 8]);
            out
        };
        let last = bytes(16);
        let mut text = data[split..].splitn(3, |&b| b == b'\n');
        let mut next = || text.next().unwrap_or_default();
        let secret = String::from_utf8_lossy(next()).into_owned();
        let header = String::from_utf8_lossy(next()).into_owned();
        let body = next().to_vec();
        Self {
            header,
            body,
            secret,
            timestamp: i64::from_le_bytes(bytes(0)),
            now: i64::from_le_bytes(bytes(8)),
            skew: i32::from_le_bytes([last[0], last[1], last[2], last[3]]),
            tolerance: u32::from_le_bytes([last[4], last[5], last[6], last[7]]),
        }
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    // Every second chrono can represent, clamped at its ends.
    let secs = secs.clamp(
        DateTime::<Utc>::MIN_UTC.timestamp(),
        DateTime::<Utc>::MAX_UTC.timestamp(),
    );
    Utc.timestamp_opt(secs, 0).single().expect("in range")
}

/// Would Stripe's rule accept `header`? Some `v1=` is the HMAC for some `t=` it carries, and
/// that `t` is a plain decimal within the tolerance of `now`.
fn oracle_authentic(secret: &str, header: &str, body: &[u8]) -> Option<i64> {
    let items: Vec<(&str, &str)> = header
        .split(',')
        .filter_map(|item| item.trim().split_once('='))
        .collect();
    items
        .iter()
        .filter(|(key, value)| *key == "t" && value.bytes().all(|b| b.is_ascii_digit()))
        .find_map(|(_, t)| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
            mac.update(t.as_bytes());
            mac.update(b".");
            mac.update(body);
            let expected = hex::encode(mac.finalize().into_bytes());
            items
                .iter()
                .any(|(key, value)| *key == "v1" && value.eq_ignore_ascii_case(&expected))
                .then(|| t.parse().ok())
                .flatten()
        })
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let secret = WebhookSecret::new(input.secret.clone());
    let tolerance = Duration::seconds(i64::from(input.tolerance));
    let now = at(input.now);

    // Arbitrary headers: accepted only with a real signature, in time.
    let verdict = verify_signature(&secret, &input.header, &input.body, now, tolerance);
    if verdict.is_ok() {
        let t = oracle_authentic(&input.secret, &input.header, &input.body)
            .unwrap_or_else(|| panic!("forged header accepted: {:?}", input.header));
        let age = i128::from(now.timestamp()) - i128::from(t);
        assert!(
            age.abs() <= i128::from(input.tolerance),
            "stale header accepted"
        );
    }
    if verdict == Err(SignatureError::Stale) {
        assert!(
            oracle_authentic(&input.secret, &input.header, &input.body).is_some(),
            "Stale is only for authentic headers"
        );
    }

    // Headers made by `sign` (for a timestamp that is not negative, as documented).
    let t = input.timestamp.checked_abs().unwrap_or(i64::MAX);
    let header = sign(&secret, t, &input.body);
    assert_eq!(
        oracle_authentic(&input.secret, &header, &input.body),
        Some(t),
        "sign produces a Stripe header"
    );
    let then = at(t.saturating_add(i64::from(input.skew)));
    let age = i128::from(then.timestamp()) - i128::from(t);
    let expected = if age.abs() <= i128::from(input.tolerance) {
        Ok(())
    } else {
        Err(SignatureError::Stale)
    };
    assert_eq!(
        verify_signature(&secret, &header, &input.body, then, tolerance),
        expected,
        "{header} at {then}"
    );
    let mut other_body = input.body.clone();
    other_body.push(b'x');
    assert_eq!(
        verify_signature(&secret, &header, &other_body, then, tolerance),
        Err(SignatureError::Mismatch)
    );
    let other_secret = WebhookSecret::new(format!("{}x", input.secret));
    assert_eq!(
        verify_signature(&other_secret, &header, &input.body, then, tolerance),
        Err(SignatureError::Mismatch)
    );
    // Extra items Stripe may add do not change the verdict.
    let extended = format!("{header},v0={},scheme=x", "0".repeat(64));
    assert_eq!(
        verify_signature(&secret, &extended, &input.body, then, tolerance),
        expected
    );
});
