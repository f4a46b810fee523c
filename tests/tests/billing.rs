//! The billing consumer against SQS on moto_server, on every store backend: 10,000 usage
//! events, 2,000 of them duplicates (same id, other batches, out of order), count exactly once,
//! hour, day and month totals agree, and a poison message fails alone.
//!
//! The events go through a real queue: several senders push them with `SqsSink` while several
//! consumers receive up to 10 messages per call, hand each batch to `meterline_billing::handle`
//! as Lambda does, and delete what it did not report as failed. Senders and consumers overlap
//! and senders wait while `WINDOW` messages are in the queue, so it stays short: moto scans the
//! whole queue several times for every message it sends or receives (a backlog of 1,000 makes
//! each receive take half a second).
//!
//! DynamoDB at this volume needs `infra/moto_server.py` to roll transactions back per item:
//! stock moto deep-copies the whole table for every item of a TransactWriteItems, which makes
//! the dynamodb case quadratic in the table's size.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use chrono::{Duration, Utc};
use meterline::domain::{ApiKeyId, Granularity, OrgId, UsageEvent};
use meterline::store::Store;
use meterline::usage::{Admission, SqsSink, UsageSink};
use meterline_e2e::{Backend, Lcg, sqs};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const UNIQUE: usize = 8_000;
const DUPLICATES: usize = 2_000;
/// Quantities are `1 + COUNT_BASE * n`, so a total modulo `COUNT_BASE` is the number of events
/// counted in it: the totals show how many events the store took as new, not only their sum.
const COUNT_BASE: u64 = 100_000;
/// Concurrent `SqsSink`s, each sending its share of the shuffled events.
const SENDERS: usize = 2;
/// Concurrent consumers, like the concurrent Lambda invocations of one event source mapping.
const CONSUMERS: usize = 3;
/// At most this many messages sent and not yet deleted, like a producer that keeps pace.
const WINDOW: usize = 30;
/// Long polling for the last receives: an empty answer then means the queue is drained.
const WAIT_SECONDS: i32 = 1;

fn admission() -> Admission {
    Admission {
        lateness: Duration::days(7),
        future_skew: Duration::minutes(5),
    }
}

async fn store(backend: Backend) -> Arc<dyn Store> {
    match backend {
        Backend::Sqlite => meterline::store::testing::sqlite().await,
        Backend::Postgres => meterline::store::testing::postgres().await,
        Backend::Dynamodb => meterline::store::testing::dynamodb().await,
    }
}

/// What the consumers saw: every received batch's event ids (`None` for an undecodable body)
/// and the message ids `handle` reported as failed. A message may come twice: moto, like SQS,
/// delivers at least once (two concurrent receives can take the same message).
#[derive(Default)]
struct Consumed {
    batches: Vec<Vec<Option<String>>>,
    failed: HashSet<String>,
}

/// One consumer: receives until `sending` is over and the queue answers empty, feeding each
/// batch to the billing handler and deleting what it did not report as failed (those stay
/// in flight, as they would until their retries and the DLQ). Receives are short polls while
/// senders are busy (a long poll wakes on the first message and returns a partial batch).
async fn consume(
    client: aws_sdk_sqs::Client,
    url: String,
    store: Arc<dyn Store>,
    sending: Arc<AtomicBool>,
    window: Arc<Semaphore>,
    consumed: Arc<Mutex<Consumed>>,
) {
    loop {
        // Read before receiving: an empty answer after the last send means nothing is left.
        let sent_all = !sending.load(Ordering::Acquire);
        let out = client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(if sent_all { WAIT_SECONDS } else { 0 })
            .send()
            .await
            .expect("receive");
        let messages = out.messages();
        if messages.is_empty() {
            if sent_all {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        }
        let mut batch = SqsEvent::default();
        batch.records = messages
            .iter()
            .map(|m| {
                let mut record = SqsMessage::default();
                record.message_id = m.message_id().map(str::to_owned);
                record.receipt_handle = m.receipt_handle().map(str::to_owned);
                record.body = m.body().map(str::to_owned);
                record
            })
            .collect();
        let response = meterline_billing::handle(&*store, &admission(), batch, Utc::now()).await;
        let failures: HashSet<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        let deletions: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|m| !failures.contains(m.message_id().unwrap_or_default()))
            .map(|m| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(m.message_id().unwrap_or_default())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .expect("entry")
            })
            .collect();
        if !deletions.is_empty() {
            let deleted = client
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(deletions))
                .send()
                .await
                .expect("delete");
            assert!(deleted.failed().is_empty(), "{:?}", deleted.failed());
        }
        window.add_permits(messages.len());
        let ids = messages
            .iter()
            .map(|m| {
                serde_json::from_str::<UsageEvent>(m.body().unwrap_or_default())
                    .ok()
                    .map(|e| e.id)
            })
            .collect();
        let mut consumed = consumed.lock().expect("lock");
        consumed.batches.push(ids);
        consumed.failed.extend(failures);
    }
}

/// Sends `events` in `SENDERS` concurrent shares while `CONSUMERS` consumers drain the queue
/// into `store`; returns what they consumed once the queue is empty.
async fn through_sqs(
    client: &aws_sdk_sqs::Client,
    url: &str,
    store: &Arc<dyn Store>,
    events: Vec<UsageEvent>,
) -> Consumed {
    let sending = Arc::new(AtomicBool::new(true));
    let window = Arc::new(Semaphore::new(WINDOW));
    let consumed = Arc::new(Mutex::new(Consumed::default()));
    let mut consumers = JoinSet::new();
    for _ in 0..CONSUMERS {
        consumers.spawn(consume(
            client.clone(),
            url.to_owned(),
            store.clone(),
            sending.clone(),
            window.clone(),
            consumed.clone(),
        ));
    }
    let mut senders = JoinSet::new();
    let share = events.len().div_ceil(SENDERS).max(1);
    for chunk in events.chunks(share) {
        let (sink, chunk) = (SqsSink::new(client.clone(), url), chunk.to_vec());
        let window = window.clone();
        senders.spawn(async move {
            for batch in chunk.chunks(10) {
                let permits = u32::try_from(batch.len()).expect("10");
                window.acquire_many(permits).await.expect("open").forget();
                sink.send(batch).await?;
            }
            Ok::<_, meterline::usage::SinkError>(())
        });
    }
    let all_sent = async {
        while let Some(sent) = senders.join_next().await {
            sent.expect("sender").expect("send");
        }
    };
    // A consumer stops only once everything is sent: one that ends sooner failed, and the
    // senders would wait for its window forever.
    tokio::select! {
        () = all_sent => {}
        Some(stopped) = consumers.join_next() => {
            stopped.expect("consumer");
            panic!("a consumer stopped while events were still being sent");
        }
    }
    sending.store(false, Ordering::Release);
    while let Some(done) = consumers.join_next().await {
        done.expect("consumer");
    }
    let mut consumed = consumed.lock().expect("lock");
    std::mem::take(&mut *consumed)
}

async fn duplicated_events_count_exactly_once(backend: Backend) {
    let started = std::time::Instant::now();
    let client = sqs::client().await;
    let url = sqs::fresh_queue(&client, "usage").await;
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
            quantity: 1 + COUNT_BASE * random.next(20),
            timestamp: now - Duration::minutes(random.next(3 * 24 * 60) as i64),
            properties: None,
        })
        .collect();
    let mut all = unique.clone();
    for _ in 0..DUPLICATES {
        all.push(unique[random.next(UNIQUE as u64) as usize].clone());
    }
    // Shuffled: a duplicate lands anywhere, before or after its first copy, in another batch.
    for i in (1..all.len()).rev() {
        all.swap(i, random.next(i as u64 + 1) as usize);
    }

    let consumed = through_sqs(&client, &url, &store, all).await;
    client
        .delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("delete queue");
    assert!(
        consumed.failed.is_empty(),
        "{} messages failed",
        consumed.failed.len()
    );

    // Every message arrived (SQS delivers at least once: a redelivery is one more duplicate),
    // and the duplicates really came in other batches.
    let mut deliveries: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, batch) in consumed.batches.iter().enumerate() {
        for id in batch {
            let id = id.as_deref().expect("every body is an event");
            deliveries.entry(id).or_default().push(index);
        }
    }
    let messages: usize = deliveries.values().map(Vec::len).sum();
    assert_eq!(deliveries.len(), UNIQUE);
    assert!(
        messages >= UNIQUE + DUPLICATES,
        "{messages} messages received"
    );
    let across_batches: usize = deliveries
        .values()
        .map(|batches| batches.iter().collect::<HashSet<_>>().len() - 1)
        .sum();
    assert!(
        across_batches >= DUPLICATES * 95 / 100,
        "only {across_batches} of {DUPLICATES} duplicates came in another batch"
    );

    // Counted exactly once. The totals are the unique events' sums, at every granularity, and
    // modulo COUNT_BASE they are how many events were counted: exactly the unique ones, so the
    // store took each as new once and every duplicate as a redelivery.
    let mut expected: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for event in &unique {
        let (events, sum) = expected.entry(event.meter.as_str()).or_default();
        *events += 1;
        *sum += event.quantity;
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
        let totals: BTreeMap<&str, (u64, u64)> = totals
            .iter()
            .map(|(meter, sum)| (meter.as_str(), (sum % COUNT_BASE, *sum)))
            .collect();
        assert_eq!(
            totals, expected,
            "{granularity:?} (events, total) per meter"
        );
        let counted: u64 = totals.values().map(|(events, _)| events).sum();
        assert_eq!(counted, UNIQUE as u64, "{granularity:?} events counted");
    }
    // And the dedup records are the events themselves (a sample: lookups are slow on moto).
    for event in unique.iter().step_by(16) {
        let recorded = store
            .usage_event(&org, &event.id)
            .await
            .expect("read")
            .unwrap_or_else(|| panic!("{} was not recorded", event.id));
        assert_eq!(
            (recorded.meter.as_str(), recorded.quantity),
            (event.meter.as_str(), event.quantity)
        );
    }
    eprintln!(
        "{backend:?}: {messages} messages in {} batches through SQS, checked in {:.1}s",
        consumed.batches.len(),
        started.elapsed().as_secs_f64()
    );
}

async fn a_poison_message_fails_alone(backend: Backend) {
    let client = sqs::client().await;
    let url = sqs::fresh_queue(&client, "poison").await;
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

    let consumed = through_sqs(&client, &url, &store, Vec::new()).await;
    client
        .delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("delete queue");
    assert_eq!(
        consumed.failed.len(),
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
