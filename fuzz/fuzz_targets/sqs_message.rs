//! The billing consumer's per-message decoder (`meterline_billing::decode`), and what the batch
//! does with the events it accepts (`sum_counters`).
//!
//! The input is an SQS batch: message bodies separated by newlines.
//! - Never panics, whatever the bodies.
//! - Accepts only events that follow the field rules (checked independently here): a valid id,
//!   meter, org and key id, a quantity of 1 to `i64::MAX` (what the edge sends and the store
//!   holds), a time inside the admission window.
//! - An accepted event re-encodes to JSON that decodes to the same event.
//! - The batch's counters are the exact per-(org, meter, period) sums of what was accepted
//!   (saturating at `u64::MAX`).
#![no_main]

use chrono::{DateTime, Duration, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use meterline::domain::{ApiKeyId, OrgId, UsageEvent, sum_counters};
use meterline::usage::Admission;
use meterline_billing::decode;
use std::collections::BTreeMap;

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_717_200_000, 0).single().expect("time") // 2024-06-01T00:00:00Z
}

const ADMISSION: Admission = Admission {
    lateness: Duration::days(7),
    future_skew: Duration::minutes(5),
};

fn assert_admissible(event: &UsageEvent) {
    let id = &event.id;
    assert!(
        !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "bad id accepted: {id:?}"
    );
    let meter = &event.meter;
    let mut chars = meter.chars();
    assert!(
        meter.len() <= 64
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-')),
        "bad meter accepted: {meter:?}"
    );
    assert!(
        event.quantity > 0 && event.quantity <= i64::MAX as u64,
        "a quantity the edge never sends (and the store cannot hold) accepted"
    );
    assert!(
        event.timestamp >= now() - ADMISSION.lateness
            && event.timestamp <= now() + ADMISSION.future_skew,
        "out-of-window time accepted: {}",
        event.timestamp
    );
    assert_eq!(
        OrgId::parse(event.org_id.as_str()).as_ref(),
        Some(&event.org_id)
    );
    assert_eq!(
        ApiKeyId::parse(event.key_id.as_str()).as_ref(),
        Some(&event.key_id)
    );
}

fuzz_target!(|data: &[u8]| {
    let batch = String::from_utf8_lossy(data);
    assert!(
        decode(None, &ADMISSION, now()).is_err(),
        "no body is refused"
    );
    let mut accepted = Vec::new();
    for body in batch.split('\n').take(10) {
        let Ok(event) = decode(Some(body), &ADMISSION, now()) else {
            continue;
        };
        assert_admissible(&event);
        let json = serde_json::to_string(&event).expect("serialize");
        assert_eq!(
            decode(Some(&json), &ADMISSION, now()).as_ref(),
            Ok(&event),
            "re-encoded event decodes to itself"
        );
        accepted.push(event);
    }

    let mut expected: BTreeMap<_, u128> = BTreeMap::new();
    for event in &accepted {
        for (key, _) in sum_counters([event]) {
            *expected.entry(key).or_default() += u128::from(event.quantity);
        }
    }
    // Exact below u64::MAX; a sum past it saturates (the stores cap counters at i64::MAX).
    let expected: BTreeMap<_, u128> = expected
        .into_iter()
        .map(|(key, total)| (key, total.min(u128::from(u64::MAX))))
        .collect();
    let counters: BTreeMap<_, u128> = sum_counters(&accepted)
        .into_iter()
        .map(|(key, total)| (key, u128::from(total)))
        .collect();
    assert_eq!(
        counters, expected,
        "counters are the exact sums, saturating"
    );
});
