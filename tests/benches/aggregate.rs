//! Aggregation throughput of the billing consumer, in-process (no SQS): SQS batches of 10 JSON
//! usage events go through `meterline_billing::handle` one after the other on a current-thread
//! runtime, so events/s is what one core does. Rows: the in-memory part alone (decode,
//! admission, `sum_counters`), then each store backend (SQLite file, Postgres on loopback,
//! DynamoDB on moto_server). "Writes per batch" is what one batch asks of the store: distinct
//! hour/day/month counters (`sum_counters(batch).len()`) and dedup records (one per event).
//!
//! The events: 25 orgs with 2 keys each, 4 meters, most events from the last hour and the rest
//! late (up to 3 days old), and 10% redeliveries of a recent event (same id, often another
//! batch).
//!
//! `cargo bench -p meterline-e2e --bench aggregate` (needs `eval "$(bash infra/services.sh)"`
//! first). `AGGREGATE_EVENTS` sets the event count (default 20,000); `AGGREGATE_DYNAMODB_EVENTS`
//! the count for DynamoDB (default 500: moto's DynamoDB is Python and far slower than the
//! code measured here, ~130 events/s, and stock moto copies the whole table per transaction
//! item, so its time grows with the square of the count); `AGGREGATE_BACKENDS` picks backends
//! (comma-separated, default `sqlite,postgres,dynamodb`).

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, Duration, Utc};
use meterline::domain::{ApiKeyId, OrgId, UsageEvent, sum_counters};
use meterline::store::{Store, testing};
use meterline::usage::Admission;
use meterline_e2e::Lcg;
use std::sync::Arc;
use std::time::Instant;

const DEFAULT_EVENTS: usize = 20_000;
const DEFAULT_DYNAMODB_EVENTS: usize = 500;
const BATCH: usize = 10;
const ORGS: usize = 25;
const METERS: [&str; 4] = ["requests", "tokens", "images", "gb_stored"];

fn admission() -> Admission {
    Admission {
        lateness: Duration::days(7),
        future_skew: Duration::minutes(5),
    }
}

/// `count` events (10% of them redeliveries of one of the previous 100) as SQS batches of 10.
fn batches(count: usize, now: DateTime<Utc>) -> Vec<SqsEvent> {
    let mut random = Lcg(7);
    let orgs: Vec<(OrgId, [ApiKeyId; 2])> = (0..ORGS)
        .map(|_| {
            (
                OrgId::generate(),
                [ApiKeyId::generate(), ApiKeyId::generate()],
            )
        })
        .collect();
    let mut events: Vec<UsageEvent> = Vec::with_capacity(count);
    for i in 0..count {
        if i >= 100 && random.next(10) == 0 {
            let again = events[i - 1 - random.next(100) as usize].clone();
            events.push(again);
            continue;
        }
        // A few orgs make most of the traffic.
        let org =
            &orgs[(random.next(ORGS as u64) * random.next(ORGS as u64) / ORGS as u64) as usize];
        let meter = METERS[random.next(METERS.len() as u64) as usize];
        let quantity = match meter {
            "requests" => 1,
            "tokens" => 1 + random.next(4_000),
            "images" => 1 + random.next(4),
            _ => 1 + random.next(100),
        };
        let age_seconds = if random.next(5) == 0 {
            random.next(3 * 24 * 3600)
        } else {
            random.next(3600)
        };
        events.push(UsageEvent {
            id: format!("evt_{i:07}"),
            org_id: org.0.clone(),
            key_id: org.1[random.next(2) as usize].clone(),
            meter: meter.into(),
            quantity,
            timestamp: now - Duration::seconds(age_seconds as i64),
            properties: None,
        });
    }
    events
        .chunks(BATCH)
        .enumerate()
        .map(|(b, chunk)| {
            let mut batch = SqsEvent::default();
            batch.records = chunk
                .iter()
                .enumerate()
                .map(|(m, event)| {
                    let mut message = SqsMessage::default();
                    message.message_id = Some(format!("msg-{b}-{m}"));
                    message.body = Some(serde_json::to_string(event).expect("JSON"));
                    message
                })
                .collect();
            batch
        })
        .collect()
}

fn row(name: &str, events: usize, seconds: f64, counters: f64, dedup: f64) {
    println!(
        "| {name:<9} | {events:>6} | {seconds:>7.2} | {:>9.0} | {counters:>15.1} | {dedup:>13.1} |",
        events as f64 / seconds
    );
}

/// Decode, admission and `sum_counters` per batch, as `handle` does before it writes; returns
/// the average counter and dedup writes per batch.
fn in_memory(batches: &[SqsEvent], now: DateTime<Utc>) -> (f64, f64) {
    let admission = admission();
    let (mut counters, mut dedup) = (0usize, 0usize);
    for batch in batches {
        let events: Vec<UsageEvent> = batch
            .records
            .iter()
            .filter_map(|record| serde_json::from_str(record.body.as_deref()?).ok())
            .filter(|event| admission.check(event, now).is_ok())
            .collect();
        counters += std::hint::black_box(sum_counters(&events)).len();
        dedup += events.len();
    }
    let n = batches.len() as f64;
    (counters as f64 / n, dedup as f64 / n)
}

async fn store(name: &str) -> Arc<dyn Store> {
    match name {
        "sqlite" => testing::sqlite().await,
        "postgres" => testing::postgres().await,
        "dynamodb" => testing::dynamodb().await,
        other => panic!("unknown backend {other} (sqlite, postgres, dynamodb)"),
    }
}

fn count(variable: &str, default: usize) -> usize {
    std::env::var(variable)
        .ok()
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| panic!("{variable} is a number"))
        })
        .unwrap_or(default)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let events = count("AGGREGATE_EVENTS", DEFAULT_EVENTS);
    let dynamodb_events = count("AGGREGATE_DYNAMODB_EVENTS", DEFAULT_DYNAMODB_EVENTS);
    let backends =
        std::env::var("AGGREGATE_BACKENDS").unwrap_or_else(|_| "sqlite,postgres,dynamodb".into());
    let now = Utc::now();
    let batches = batches(events.max(dynamodb_events), now);
    println!(
        "billing aggregation: SQS batches of {BATCH} through meterline_billing::handle, \
         one task on a current-thread runtime (events/s = one core)"
    );
    println!("| backend   | events | seconds | events/s  | counters/batch  | dedup/batch   |");
    println!("|-----------|--------|---------|-----------|-----------------|---------------|");
    let work = &batches[..events.div_ceil(BATCH)];
    in_memory(work, now); // warm-up
    let started = Instant::now();
    let (counters, dedup) = in_memory(work, now);
    let seconds = started.elapsed().as_secs_f64();
    row("in-memory", events, seconds, counters, dedup);
    for name in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let events = if name == "dynamodb" {
            dynamodb_events
        } else {
            events
        };
        let work = batches[..events.div_ceil(BATCH)].to_vec();
        let (counters, dedup) = in_memory(&work, now);
        let store = store(name).await;
        let admission = admission();
        let started = Instant::now();
        for batch in work {
            let response = meterline_billing::handle(&*store, &admission, batch, now).await;
            assert!(
                response.batch_item_failures.is_empty(),
                "{name}: {} messages failed",
                response.batch_item_failures.len()
            );
        }
        let seconds = started.elapsed().as_secs_f64();
        row(name, events, seconds, counters, dedup);
    }
}
