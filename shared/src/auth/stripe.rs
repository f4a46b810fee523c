//! Stripe webhook signatures: proof that a webhook request came from Stripe and was not
//! replayed much later. Stripe's scheme: the `Stripe-Signature` header carries
//! `t=<unix seconds>,v1=<hex HMAC-SHA256>` (possibly several `v1`, while a secret is rolled,
//! and a `v0` we ignore); the HMAC is of `"{t}.{raw body}"`, keyed with the endpoint secret.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The longest `Stripe-Signature` header looked at; anything longer is refused unread.
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 4096;

/// How far a signature's timestamp may be from now before it is refused, as Stripe's own
/// libraries default to: long enough for clock skew and retries, short enough to stop replays.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// A webhook endpoint's signing secret (`whsec_...`), used as the raw bytes of the whole string,
/// as Stripe does. Never logged.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// Wraps the secret as the Stripe dashboard shows it.
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    fn mac(&self, timestamp: &str, body: &[u8]) -> Option<HmacSha256> {
        // HMAC takes keys of any length, so this never fails; it is an Option only so no code
        // path can panic.
        let mut mac = HmacSha256::new_from_slice(self.0.as_bytes()).ok()?;
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        Some(mac)
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Why a webhook's signature was refused; every variant means "do not process the event".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not of Stripe's form (no or non-numeric `t`, no `v1`, bad hex, too long).
    #[error("malformed Stripe-Signature header")]
    Malformed,
    /// The signature is authentic but its timestamp is outside the tolerance: a replay, or a
    /// badly skewed clock.
    #[error("Stripe-Signature timestamp outside the tolerance")]
    Stale,
    /// No `v1` signature matches the body under this secret.
    #[error("no Stripe-Signature v1 signature matches")]
    Mismatch,
}

/// The parts of a header that matter: the timestamp as sent (it is signed as text) and its
/// value, and the decoded `v1` signatures.
struct ParsedHeader<'a> {
    timestamp_text: &'a str,
    timestamp: i64,
    signatures: Vec<Vec<u8>>,
}

fn parse_header(header: &str) -> Result<ParsedHeader<'_>, SignatureError> {
    if header.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" => {
                if timestamp.is_some()
                    || value.is_empty()
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(SignatureError::Malformed);
                }
                let parsed: i64 = value.parse().map_err(|_| SignatureError::Malformed)?;
                timestamp = Some((value, parsed));
            }
            "v1" => {
                let bytes = hex::decode(value).map_err(|_| SignatureError::Malformed)?;
                if bytes.len() != 32 {
                    return Err(SignatureError::Malformed);
                }
                signatures.push(bytes);
            }
            // v0 (test-mode legacy) and any scheme Stripe may add later are not ours to check.
            _ => {}
        }
    }
    let (timestamp_text, timestamp) = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    Ok(ParsedHeader {
        timestamp_text,
        timestamp,
        signatures,
    })
}

/// Checks a webhook request: `header` is the `Stripe-Signature` value, `body` the raw request
/// body exactly as received. Accepts when any `v1` signature matches (compared in constant
/// time) and the signed timestamp is within `tolerance` of `now` in either direction
/// ([`DEFAULT_TOLERANCE_SECS`] is the usual choice).
///
/// The signature is checked before the time, so `Stale` is reported only for authentic
/// requests (a replay or a skewed clock) and a forged one is always `Mismatch`.
pub fn verify_signature(
    secret: &WebhookSecret,
    header: &str,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: chrono::Duration,
) -> Result<(), SignatureError> {
    let parsed = parse_header(header)?;
    let mac = secret
        .mac(parsed.timestamp_text, body)
        .ok_or(SignatureError::Mismatch)?;
    let matched = parsed
        .signatures
        .iter()
        .any(|signature| mac.clone().verify_slice(signature).is_ok());
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let age = i128::from(now.timestamp()) - i128::from(parsed.timestamp);
    if age.abs() > i128::from(tolerance.num_seconds()) {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// A full `Stripe-Signature` value (`t=...,v1=...`) for `body` at `timestamp` (unix seconds,
/// not negative), as Stripe would send it: for tests, and for developers replaying events
/// against a local server.
pub fn sign(secret: &WebhookSecret, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let signature = secret
        .mac(&t, body)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default();
    format!("t={t},v1={signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const BODY: &[u8] = br#"{"id":"evt_1"}"#;
    const T: i64 = 1_700_000_000;

    fn secret() -> WebhookSecret {
        WebhookSecret::new("whsec_test".to_owned())
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().expect("time")
    }

    fn tolerance() -> chrono::Duration {
        chrono::Duration::seconds(DEFAULT_TOLERANCE_SECS)
    }

    fn verify(header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
        verify_signature(&secret(), header, body, at(now), tolerance())
    }

    #[test]
    fn stripe_sign_matches_a_known_answer() {
        // python3 -c "import hmac,hashlib;print(hmac.new(b'whsec_test',
        //   b'1700000000.{\"id\":\"evt_1\"}',hashlib.sha256).hexdigest())"
        assert_eq!(
            sign(&secret(), T, BODY),
            "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
        );
    }

    #[test]
    fn stripe_valid_signature_is_accepted() {
        assert_eq!(verify(&sign(&secret(), T, BODY), BODY, T), Ok(()));
        assert_eq!(verify(&sign(&secret(), T, b""), b"", T + 10), Ok(()));
    }

    #[test]
    fn stripe_wrong_secret_or_tampered_body_is_a_mismatch() {
        let other = WebhookSecret::new("whsec_other".to_owned());
        assert_eq!(
            verify(&sign(&other, T, BODY), BODY, T),
            Err(SignatureError::Mismatch)
        );
        let header = sign(&secret(), T, BODY);
        assert_eq!(
            verify(&header, br#"{"id":"evt_2"}"#, T),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed too: moving it breaks the signature.
        let moved = header.replacen("t=1700000000", "t=1700000001", 1);
        assert_eq!(verify(&moved, BODY, T), Err(SignatureError::Mismatch));
    }

    #[test]
    fn stripe_timestamps_outside_the_tolerance_are_stale() {
        let header = sign(&secret(), T, BODY);
        assert_eq!(verify(&header, BODY, T + 300), Ok(()));
        assert_eq!(verify(&header, BODY, T - 300), Ok(()));
        assert_eq!(verify(&header, BODY, T + 301), Err(SignatureError::Stale));
        assert_eq!(
            verify(&header, BODY, T - 301),
            Err(SignatureError::Stale),
            "future"
        );
        // A forged, stale request is a mismatch: staleness is only reported for real ones.
        let forged = sign(&WebhookSecret::new("whsec_other".to_owned()), T, BODY);
        assert_eq!(
            verify(&forged, BODY, T + 301),
            Err(SignatureError::Mismatch)
        );
        // A huge timestamp does not overflow.
        let far = sign(&secret(), i64::MAX, BODY);
        assert_eq!(verify(&far, BODY, T), Err(SignatureError::Stale));
    }

    #[test]
    fn stripe_any_matching_v1_is_enough() {
        let good = sign(&secret(), T, BODY);
        let good_v1 = good.split_once(",v1=").expect("v1").1;
        let wrong = "0".repeat(64);
        for header in [
            format!("t={T},v1={wrong},v1={good_v1}"),
            format!("t={T},v1={good_v1},v1={wrong}"),
            format!("t={T},v0={wrong},v1={good_v1},scheme2=whatever"),
            format!("v1={good_v1}, t={T}"),
        ] {
            assert_eq!(verify(&header, BODY, T), Ok(()), "{header}");
        }
        let only_wrong = format!("t={T},v1={wrong},v1={wrong}");
        assert_eq!(verify(&only_wrong, BODY, T), Err(SignatureError::Mismatch));
    }

    #[test]
    fn stripe_malformed_headers_are_refused_without_panicking() {
        let good_v1 = sign(&secret(), T, BODY)
            .split_once(",v1=")
            .expect("v1")
            .1
            .to_owned();
        let long = format!("t={T},v1={good_v1},{}", "v0=0,".repeat(1000));
        for header in [
            String::new(),
            ",".to_owned(),
            "=".to_owned(),
            "t=abc,v1=00".to_owned(),
            format!("t=abc,v1={good_v1}"),
            format!("t=,v1={good_v1}"),
            format!("t=-1,v1={good_v1}"),
            format!("t=+{T},v1={good_v1}"),
            format!("t=99999999999999999999,v1={good_v1}"),
            format!("t={T},t={T},v1={good_v1}"),
            format!("t={T}"),
            format!("t={T},v0={good_v1}"),
            format!("v1={good_v1}"),
            format!("t={T},v1=abc"),
            format!("t={T},v1=zz{}", &good_v1[2..]),
            format!("t={T},v1={}", &good_v1[..62]),
            format!("t={T},v1={good_v1}00"),
            format!("t={T},v1={good_v1},garbage"),
            format!("t={T};v1={good_v1}"),
            "t=1700000000,v1=é€😀\u{0}\u{7f}".to_owned(),
            "\u{0}\u{1}\u{2}ÿ".to_owned(),
            "t=１７,v1=00".to_owned(),
            long,
        ] {
            assert_eq!(
                verify(&header, BODY, T),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
    }

    #[test]
    fn stripe_secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", secret()), "WebhookSecret(<redacted>)");
    }
}
