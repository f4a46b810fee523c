//! The billing consumer against SQS on moto_server, on every store backend: usage events with
//! 20% duplicated (same id, other batches, out of order) count exactly once, hour, day and
//! month totals agree, and a poison message fails alone.
//!
//! The volume is 500 events per backend: moto's SQS costs tens of milliseconds per call, so
//! the 10,000 would take many minutes per backend here (see the closing note).

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{Duration, Utc};
use meterline::domain::{ApiKeyId, Granularity, OrgId, UsageEvent};
use meterline::store::Store;
use meterline::usage::{Admission, SqsSink, UsageSink};
use meterline_e2e::Backend;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

const UNIQUE: usize = 400;
const DUPLICATES: usize = 100;

fn admission() -> Admission {
    Admission {
        lateness: Duration::days(7),
        future_skew: Duration::minutes(5),
    }
}

/// A small deterministic generator, so a failing run can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

async fn sqs() -> aws_sdk_sqs::Client {
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "billing",
        ))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

async fn store(backend: Backend) -> Arc<dyn Store> {
    match backend {
        Backend::Sqlite => meterline::store::testing::sqlite().await,
        Backend::Postgres => meterline::store::testing::postgres().await,
        Backend::Dynamodb => meterline::store::testing::dynamodb().await,
    }
}

/// Receives until the queue is empty, feeding each batch to the billing handler like Lambda
/// does, and deleting what it did not report as failed. Returns the failed message ids.
async fn drain(client: &aws_sdk_sqs::Client, url: &str, store: &dyn Store) -> Vec<String> {
    let mut failed = Vec::new();
    loop {
        let out = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        let messages = out.messages();
        if messages.is_empty() {
            return failed;
        }
        let records: Vec<_> = messages
            .iter()
            .map(|m| json!({"messageId": m.message_id(), "body": m.body(), "receiptHandle": m.receipt_handle()}))
            .collect();
        let batch: SqsEvent =
            serde_json::from_value(json!({ "Records": records })).expect("SQS event");
        let response = meterline_billing::handle(store, &admission(), batch, Utc::now()).await;
        let failures: HashSet<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        let mut deletions = Vec::with_capacity(messages.len());
        for message in messages {
            let id = message.message_id().unwrap_or_default().to_owned();
            if failures.contains(&id) {
                failed.push(id.clone());
            }
            // Failed ones are deleted too, standing in for the DLQ after their retries.
            let entry = aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .build()
                .expect("entry");
            deletions.push(entry);
        }
        client
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(deletions))
            .send()
            .await
            .expect("delete");
    }
}

async fn duplicated_events_count_exactly_once(backend: Backend) {
    let client = sqs().await;
    let name = format!("usage-{}", ulid::Ulid::new().to_string().to_lowercase());
    let url = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("moto_server is required")
        .queue_url()
        .expect("url")
        .to_owned();
    let store = store(backend).await;
    let org = OrgId::generate();
    let key = ApiKeyId::generate();
    let now = Utc::now();
    let mut random = Lcg(42);
    let meters = ["requests", "tokens", "images"];
    let unique: Vec<UsageEvent> = (0..UNIQUE)
        .map(|i| UsageEvent {
            id: format!("evt-{i}"),
            org_id: org.clone(),
            key_id: key.clone(),
            meter: meters[random.next(3) as usize].into(),
            quantity: 1 + random.next(20),
            timestamp: now - Duration::minutes(random.next(3 * 24 * 60) as i64),
            properties: None,
        })
        .collect();
    let mut all = unique.clone();
    for _ in 0..DUPLICATES {
        all.push(unique[random.next(UNIQUE as u64) as usize].clone());
    }
    for i in (1..all.len()).rev() {
        all.swap(i, random.next(i as u64 + 1) as usize);
    }
    SqsSink::new(client.clone(), &url)
        .send(&all)
        .await
        .expect("send");

    let failed = drain(&client, &url, &*store).await;
    assert!(failed.is_empty(), "{} messages failed", failed.len());

    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    for event in &unique {
        *expected.entry(event.meter.as_str()).or_default() += event.quantity;
    }
    let (from, to) = (now - Duration::days(40), now + Duration::days(1));
    for granularity in Granularity::ALL {
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for point in store
            .usage_series(&org, granularity, from, to, None)
            .await
            .expect("series")
        {
            *totals.entry(point.meter).or_default() += point.quantity;
        }
        let totals: BTreeMap<&str, u64> = totals.iter().map(|(m, q)| (m.as_str(), *q)).collect();
        assert_eq!(totals, expected, "{granularity:?} totals");
    }
}

async fn a_poison_message_fails_alone(backend: Backend) {
    let client = sqs().await;
    let name = format!("poison-{}", ulid::Ulid::new().to_string().to_lowercase());
    let url = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("moto_server is required")
        .queue_url()
        .expect("url")
        .to_owned();
    let store = store(backend).await;
    let org = OrgId::generate();
    let good: Vec<UsageEvent> = (0..8)
        .map(|i| UsageEvent {
            id: format!("good-{i}"),
            org_id: org.clone(),
            key_id: ApiKeyId::generate(),
            meter: "requests".into(),
            quantity: 2,
            timestamp: Utc::now(),
            properties: None,
        })
        .collect();
    SqsSink::new(client.clone(), &url)
        .send(&good)
        .await
        .expect("send");
    let stale = UsageEvent {
        id: "stale".into(),
        timestamp: Utc::now() - Duration::days(30),
        ..good[0].clone()
    };
    SqsSink::new(client.clone(), &url)
        .send(&[stale])
        .await
        .expect("send");
    client
        .send_message()
        .queue_url(&url)
        .message_body("{not json")
        .send()
        .await
        .expect("send");

    let failed = drain(&client, &url, &*store).await;
    assert_eq!(
        failed.len(),
        2,
        "the poison and the stale event fail, nothing else"
    );
    let day = store
        .usage_series(
            &org,
            Granularity::Day,
            Utc::now() - Duration::days(40),
            Utc::now() + Duration::days(1),
            None,
        )
        .await
        .expect("series");
    assert_eq!(day.iter().map(|p| p.quantity).sum::<u64>(), 16);
    assert!(
        store
            .usage_event(&org, "stale")
            .await
            .expect("read")
            .is_none()
    );
}

meterline_e2e::on_every_backend!(
    duplicated_events_count_exactly_once,
    a_poison_message_fails_alone
);
