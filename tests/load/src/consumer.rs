//! The billing side of a run: consumers receive the usage queue while the clients run, hand
//! each batch to the real billing consumer (`meterline_billing::handle`, exactly as the Lambda
//! event source would, with the run's store) and delete what it did not report as failed. They
//! keep the queue short, as the real event source mapping does: moto scans a whole queue for
//! every send and receive, so a backlog would slow every metered request down.
//!
//! Every body received is kept (redeliveries included) so the books can compare the queue with
//! what the clients were promised.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use chrono::Utc;
use meterline::domain::UsageEvent;
use meterline::store::Store;
use meterline::usage::Admission;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The billing backlog as the tool sees it, without asking the queue (a GetQueueAttributes on
/// moto costs a scan of the queue): the messages of the requests sent (reserved before sending,
/// released when the answer is not a 2xx), less the messages the consumers deleted. Clients wait
/// while a request would take it above the limit, so the queue stays short and moto fast:
/// without it, moto's cost per call grows with the queue, consumption falls behind production,
/// and the run collapses into a growing backlog of slow calls.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Messages of requests sent and not refused (each event of a 2xx is one message).
    pub reserved: AtomicU64,
    /// Messages deleted after billing counted them.
    pub deleted: AtomicU64,
    /// Time clients spent waiting for the backlog to shrink (µs, over all clients).
    pub waited_us: AtomicU64,
    /// The most messages allowed in the backlog before clients wait (0: never wait).
    pub limit: u64,
}

impl Backlog {
    /// A backlog that makes clients wait above `limit` messages (0: never).
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Reserves room for a request's `messages`, waiting while they would take the backlog
    /// above the limit (a request larger than the limit goes alone).
    pub async fn reserve(&self, messages: u64) {
        let started = Instant::now();
        let mut waited = false;
        loop {
            let before = self.reserved.fetch_add(messages, Ordering::Relaxed);
            let backlog = before.saturating_sub(self.deleted.load(Ordering::Relaxed));
            if self.limit == 0 || backlog == 0 || backlog + messages <= self.limit {
                break;
            }
            self.reserved.fetch_sub(messages, Ordering::Relaxed);
            waited = true;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if waited {
            self.waited_us.fetch_add(
                u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }

    /// Gives back a reservation whose request was refused (its events were not sent).
    pub fn release(&self, messages: u64) {
        self.reserved.fetch_sub(messages, Ordering::Relaxed);
    }
}

/// What the consumers saw and did.
#[derive(Debug, Default)]
pub struct Consumed {
    /// Every usage event received, redeliveries included.
    pub events: Vec<UsageEvent>,
    /// Messages received (redeliveries included).
    pub messages: u64,
    /// Messages received again under a message id already seen (SQS redeliveries).
    pub redelivered: u64,
    message_ids: HashSet<String>,
    /// Bodies that were not usage events.
    pub undecodable: u64,
    /// Distinct messages `handle` reported as failed at least once.
    pub failed: HashSet<String>,
    /// ReceiveMessage calls.
    pub receives: u64,
    /// Time spent in ReceiveMessage, over all consumers.
    pub receive_time: Duration,
    /// Time spent in `meterline_billing::handle` (the store), over all consumers.
    pub handle_time: Duration,
    /// Time spent in DeleteMessageBatch, over all consumers.
    pub delete_time: Duration,
    /// The queue's depth (visible, in flight) sampled every second from the start.
    pub depth: Vec<(u64, u64)>,
    /// Messages still in the queue (visible, in flight) when the drain gave up.
    pub left: Option<(u64, u64)>,
    /// SQS calls that failed (each was retried).
    pub errors: Vec<String>,
}

/// The running consumers.
pub struct Consumers {
    tasks: JoinSet<Consumed>,
    sampler: tokio::task::JoinHandle<Vec<(u64, u64)>>,
    stop: Arc<AtomicBool>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

/// The billing function's admission window with the server's default settings
/// (`USAGE_LATENESS_SECS`, `USAGE_FUTURE_SKEW_SECS`).
fn admission() -> Admission {
    Admission {
        lateness: chrono::Duration::days(7),
        future_skew: chrono::Duration::minutes(5),
    }
}

/// `(visible, in flight)` messages of the queue.
async fn depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> anyhow::Result<(u64, u64)> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await?;
    let get = |name: QueueAttributeName| {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

async fn consume(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    store: Arc<dyn Store>,
    sending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    backlog: Arc<Backlog>,
) -> Consumed {
    let mut seen = Consumed::default();
    while !stop.load(Ordering::Acquire) {
        // Read before receiving: an empty answer after the last send means nothing new comes.
        let sent_all = !sending.load(Ordering::Acquire);
        let started = Instant::now();
        // Short polls only: the private moto serves one SQS call at a time, and a long poll
        // would hold everyone else up for its whole wait.
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            // Billing a batch takes milliseconds; a batch whose answer was lost (e.g. a
            // receive retried after a timeout) comes back after this, not after 30 s.
            .visibility_timeout(10)
            .wait_time_seconds(0)
            .send()
            .await;
        seen.receive_time += started.elapsed();
        seen.receives += 1;
        let out = match received {
            Ok(out) => out,
            Err(err) => {
                seen.errors.push(format!(
                    "ReceiveMessage: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&err)
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let messages = out.messages();
        if messages.is_empty() {
            if sent_all {
                match depth(&sqs, &queue_url).await {
                    // Nothing visible and nothing in flight (with another consumer, or failed
                    // and waiting out its visibility timeout): drained.
                    Ok((0, 0)) => break,
                    Ok(_) => {}
                    Err(err) => seen.errors.push(format!("GetQueueAttributes: {err:#}")),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            continue;
        }
        seen.messages += messages.len() as u64;
        for message in messages {
            if !seen
                .message_ids
                .insert(message.message_id().unwrap_or_default().to_owned())
            {
                seen.redelivered += 1;
            }
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
        for message in messages {
            match serde_json::from_str::<UsageEvent>(message.body().unwrap_or_default()) {
                Ok(event) => seen.events.push(event),
                Err(_) => seen.undecodable += 1,
            }
        }
        let started = Instant::now();
        let response = meterline_billing::handle(&*store, &admission(), batch, Utc::now()).await;
        seen.handle_time += started.elapsed();
        let failures: HashSet<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        let deletions: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|m| !failures.contains(m.message_id().unwrap_or_default()))
            .filter_map(|m| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(m.message_id().unwrap_or_default())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        seen.failed.extend(failures);
        if deletions.is_empty() {
            continue;
        }
        let started = Instant::now();
        let count = deletions.len() as u64;
        match sqs
            .delete_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(deletions))
            .send()
            .await
        {
            // A message not deleted comes back after its visibility timeout and is counted
            // once more by nobody: the store's dedup record makes that harmless.
            Ok(out) if out.failed().is_empty() => {
                backlog.deleted.fetch_add(count, Ordering::Relaxed);
            }
            Ok(out) => {
                backlog.deleted.fetch_add(
                    count.saturating_sub(out.failed().len() as u64),
                    Ordering::Relaxed,
                );
                seen.errors
                    .push(format!("DeleteMessageBatch failed for {:?}", out.failed()));
            }
            Err(err) => seen.errors.push(format!(
                "DeleteMessageBatch: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&err)
            )),
        }
        seen.delete_time += started.elapsed();
    }
    seen
}

/// Starts `count` consumers; they drain until `sending` is false and the queue is empty.
pub fn start(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    store: Arc<dyn Store>,
    count: usize,
    sending: Arc<AtomicBool>,
    backlog: Arc<Backlog>,
) -> Consumers {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        tasks.spawn(consume(
            sqs.clone(),
            queue_url.clone(),
            Arc::clone(&store),
            Arc::clone(&sending),
            Arc::clone(&stop),
            Arc::clone(&backlog),
        ));
    }
    let sampler = {
        let (sqs, queue_url, stop) = (sqs.clone(), queue_url.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while !stop.load(Ordering::Acquire) {
                tick.tick().await;
                samples.push(depth(&sqs, &queue_url).await.unwrap_or((0, 0)));
            }
            samples
        })
    };
    Consumers {
        tasks,
        sampler,
        stop,
        sqs,
        queue_url,
    }
}

impl Consumers {
    /// Waits (at most `timeout`) until the queue is drained; everything the consumers saw.
    pub async fn finish(mut self, timeout: Duration) -> Consumed {
        let mut all = Consumed::default();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.tasks.join_next()).await;
            match next {
                Ok(Some(Ok(part))) => merge(&mut all, part),
                Ok(Some(Err(err))) => all.errors.push(format!("a consumer failed: {err}")),
                Ok(None) => break,
                Err(_) => {
                    // Out of time: stop the consumers after their current batch.
                    self.stop.store(true, Ordering::Release);
                    while let Some(part) = self.tasks.join_next().await {
                        match part {
                            Ok(part) => merge(&mut all, part),
                            Err(err) => all.errors.push(format!("a consumer failed: {err}")),
                        }
                    }
                    all.left = Some(depth(&self.sqs, &self.queue_url).await.unwrap_or((0, 0)));
                    break;
                }
            }
        }
        self.stop.store(true, Ordering::Release);
        all.depth = self.sampler.await.unwrap_or_default();
        all
    }
}

fn merge(all: &mut Consumed, part: Consumed) {
    all.events.extend(part.events);
    all.messages += part.messages;
    // A message redelivered to another consumer is seen by both.
    for id in part.message_ids {
        if !all.message_ids.insert(id) {
            all.redelivered += 1;
        }
    }
    all.redelivered += part.redelivered;
    all.undecodable += part.undecodable;
    all.failed.extend(part.failed);
    all.receives += part.receives;
    all.receive_time += part.receive_time;
    all.handle_time += part.handle_time;
    all.delete_time += part.delete_time;
    all.errors.extend(part.errors);
}
