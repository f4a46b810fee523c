//! The `POST /v1/events` body decoder (`meterline::usage::batch`).
//!
//! - Never panics, and refuses only with a 400 or a 422 (a client's mistake is never a 500).
//! - Accepts only bodies whose every event follows the field rules, checked here by an
//!   independent oracle over `serde_json::Value`: id 1-128 printable ASCII, meter
//!   `[a-z][a-z0-9_.-]{0,63}`, quantity a positive i64, timestamp absent/null or RFC 3339
//!   inside the window; 1 to MAX_EVENTS events; no other fields; at most `i64::MAX` of one
//!   meter in one request; each event at most MAX_EVENT_BYTES serialized.
//! - What it accepts is the first event of each id, in order, with the fields as sent and the
//!   caller's org and key: never more events than the input holds.
//! - A body the oracle finds valid is accepted (so the decoder is not stricter than the rules).
//! - The per-meter usage of an accepted batch is the exact sum of its quantities.
#![no_main]

use chrono::{DateTime, Duration, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use meterline::Config;
use meterline::domain::{ApiKeyId, OrgId, UsageEvent};
use meterline::http::ApiError;
use meterline::usage::batch::{
    EventWindow, MAX_EVENT_BYTES, MAX_EVENTS, decode_events, usage_by_meter,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_717_200_000, 0).single().expect("time") // 2024-06-01T00:00:00Z
}

fn window() -> EventWindow {
    static WINDOW: OnceLock<EventWindow> = OnceLock::new();
    *WINDOW.get_or_init(|| {
        let config = Config::from_vars(&HashMap::new()).expect("default config");
        let window = EventWindow::of(&config, now());
        // Billing's defaults: 7 days late (less the edge's 1 hour margin), 5 minutes early.
        assert_eq!(
            window.earliest,
            now() - Duration::days(7) + Duration::hours(1)
        );
        assert_eq!(window.latest, now() + Duration::minutes(5));
        window
    })
}

fn ids() -> &'static (OrgId, ApiKeyId) {
    static IDS: OnceLock<(OrgId, ApiKeyId)> = OnceLock::new();
    IDS.get_or_init(|| {
        (
            OrgId::parse("org_01hzx3k6d5m9q0a1b2c3d4e5f6").expect("id"),
            ApiKeyId::parse("key_01hzx3k6d5m9q0a1b2c3d4e5f7").expect("id"),
        )
    })
}

/// One event as the oracle reads it from the JSON.
struct Expected<'a> {
    id: &'a str,
    meter: &'a str,
    quantity: u64,
    timestamp: DateTime<Utc>,
    properties: Option<&'a serde_json::Map<String, Value>>,
}

fn oracle_event(event: &Value) -> Option<Expected<'_>> {
    let object = event.as_object()?;
    let known = ["id", "meter", "quantity", "timestamp", "properties"];
    if object.keys().any(|key| !known.contains(&key.as_str())) {
        return None;
    }
    let id = object.get("id")?.as_str()?;
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return None;
    }
    let meter = object.get("meter")?.as_str()?;
    let mut chars = meter.chars();
    if meter.len() > 64
        || !chars.next().is_some_and(|c| c.is_ascii_lowercase())
        || !chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'))
    {
        return None;
    }
    let quantity = object.get("quantity")?.as_i64()?;
    if quantity <= 0 {
        return None;
    }
    let timestamp = match object.get("timestamp") {
        None | Some(Value::Null) => now(),
        Some(Value::String(raw)) => {
            let at = DateTime::parse_from_rfc3339(raw).ok()?.with_timezone(&Utc);
            if at < window().earliest || at > window().latest {
                return None;
            }
            at
        }
        Some(_) => return None,
    };
    let properties = match object.get("properties") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => return None,
    };
    Some(Expected {
        id,
        meter,
        quantity: u64::try_from(quantity).ok()?,
        timestamp,
        properties,
    })
}

/// The events the oracle expects accepted from `body`, or `None` if it must be refused.
fn oracle(body: &Value) -> Option<Vec<Expected<'_>>> {
    let object = body.as_object()?;
    if object.len() != 1 {
        return None;
    }
    let events = object.get("events")?.as_array()?;
    if events.is_empty() || events.len() > MAX_EVENTS {
        return None;
    }
    let all: Vec<Expected> = events.iter().map(oracle_event).collect::<Option<_>>()?;
    let mut seen = HashSet::new();
    let unique: Vec<Expected> = all.into_iter().filter(|e| seen.insert(e.id)).collect();
    // One request counts at most i64::MAX of each meter.
    let mut totals: HashMap<&str, u128> = HashMap::new();
    for event in &unique {
        *totals.entry(event.meter).or_default() += u128::from(event.quantity);
    }
    if totals.values().any(|total| *total > i64::MAX as u128) {
        return None;
    }
    // Each event, as it travels to billing, is at most MAX_EVENT_BYTES.
    let (org, key) = ids();
    let too_large = unique.iter().any(|e| {
        let event = UsageEvent {
            id: e.id.into(),
            org_id: org.clone(),
            key_id: key.clone(),
            meter: e.meter.into(),
            quantity: e.quantity,
            timestamp: e.timestamp,
            properties: e.properties.cloned(),
        };
        serde_json::to_vec(&event).map_or(true, |json| json.len() > MAX_EVENT_BYTES)
    });
    if too_large {
        return None;
    }
    Some(unique)
}

fn assert_matches(accepted: &[UsageEvent], expected: &[Expected]) {
    let (org, key) = ids();
    assert_eq!(accepted.len(), expected.len(), "accepted count");
    for (got, want) in accepted.iter().zip(expected) {
        assert_eq!(got.id, want.id);
        assert_eq!(got.meter, want.meter);
        assert_eq!(got.quantity, want.quantity);
        assert_eq!(got.timestamp, want.timestamp);
        assert_eq!(got.properties.as_ref(), want.properties);
        assert_eq!((&got.org_id, &got.key_id), (org, key));
    }
}

fn decode(body: &[u8]) -> Result<Vec<UsageEvent>, ApiError> {
    let (org, key) = ids();
    decode_events(body, org, key, now(), window())
}

fuzz_target!(|data: &[u8]| {
    let result = decode(data);
    let value: Option<Value> = serde_json::from_slice(data).ok();
    match result {
        Ok(accepted) => {
            // Accepted: the oracle agrees, event by event.
            let value = value.expect("an accepted body is JSON");
            let expected = oracle(&value).expect("the oracle refuses an accepted body");
            let input_events = value["events"].as_array().map_or(0, Vec::len);
            assert!(!accepted.is_empty() && accepted.len() <= input_events);
            assert_matches(&accepted, &expected);
            let ids: HashSet<&str> = accepted.iter().map(|e| e.id.as_str()).collect();
            assert_eq!(ids.len(), accepted.len(), "ids are unique");

            // The usage the request is metered with is the exact per-meter sum.
            let mut sums: BTreeMap<&str, u128> = BTreeMap::new();
            for event in &accepted {
                *sums.entry(&event.meter).or_default() += u128::from(event.quantity);
            }
            let usage = usage_by_meter(&accepted);
            let usage: Vec<(&str, u128)> = usage
                .iter()
                .map(|(meter, total)| (meter.as_str(), u128::from(*total)))
                .collect();
            assert_eq!(usage, sums.into_iter().collect::<Vec<_>>(), "usage totals");
        }
        Err(err) => {
            let status = axum::response::IntoResponse::into_response(err).status();
            assert!(
                status == 400 || status == 422,
                "a body is refused with 400 or 422, not {status}"
            );
            // Refused: then the oracle refuses it too (checked on the canonical JSON text,
            // which has no duplicate keys; a duplicate key is a fair reason to refuse).
            if let Some(value) = value
                && let Some(expected) = oracle(&value)
            {
                let canonical = serde_json::to_vec(&value).expect("serialize");
                match decode(&canonical) {
                    Ok(accepted) => assert_matches(&accepted, &expected),
                    Err(err) => panic!("a valid body was refused: {err:?}"),
                }
            }
        }
    }
});
