//! The SQS sink: events as JSON messages, sent in batches (up to 10 messages and 256 KiB per
//! SendMessageBatch), with the entries SQS did not take retried with exponential backoff.

use super::{SinkError, UsageSink};
use crate::domain::UsageEvent;
use anyhow::anyhow;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use std::time::Duration;

const MAX_ENTRIES: usize = 10;
/// SQS allows 256 KiB per batch; stay under it with room for the envelope.
const MAX_BATCH_BYTES: usize = 250 * 1024;
const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(25);

/// Sends usage events to an SQS queue.
pub struct SqsSink {
    client: Client,
    queue_url: String,
}

impl SqsSink {
    /// Uses the standard AWS configuration chain (region, credentials, `AWS_ENDPOINT_URL`),
    /// with tight timeouts and no SDK-level retries: a request waits on the queue for a few
    /// seconds at most before it is refused, and this sink does its own retries of failed entries.
    pub async fn connect(queue_url: &str) -> Self {
        let config = aws_config::load_from_env().await;
        Self::connect_with(&config, queue_url)
    }

    /// Like [`SqsSink::connect`], on a given AWS configuration (e.g. another endpoint).
    pub fn connect_with(config: &aws_config::SdkConfig, queue_url: &str) -> Self {
        let sqs = aws_sdk_sqs::config::Builder::from(config)
            .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .operation_attempt_timeout(Duration::from_secs(2))
                    .build(),
            )
            .build();
        Self::new(Client::from_conf(sqs), queue_url)
    }

    /// Wraps an existing client.
    pub fn new(client: Client, queue_url: &str) -> Self {
        Self {
            client,
            queue_url: queue_url.to_owned(),
        }
    }

    /// Sends one batch, retrying only the entries that failed, until all are taken.
    async fn send_batch(
        &self,
        mut entries: Vec<SendMessageBatchRequestEntry>,
    ) -> Result<(), SinkError> {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let sent = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries.clone()))
                .send()
                .await;
            match sent {
                Ok(out) => {
                    let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
                    if failed.is_empty() {
                        return Ok(());
                    }
                    entries.retain(|entry| failed.contains(&entry.id()));
                    tracing::warn!(
                        failed = entries.len(),
                        attempt,
                        "SQS refused some usage events"
                    );
                }
                Err(err) if attempt == ATTEMPTS => {
                    return Err(SinkError(anyhow!(err).context("SendMessageBatch failed")));
                }
                Err(err) => {
                    tracing::warn!(error = %err, attempt, "SendMessageBatch failed; retrying")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff *= 4;
        }
        Err(SinkError(anyhow!(
            "SQS did not take {} usage events",
            entries.len()
        )))
    }
}

/// Packs messages into batches within SQS's count and size limits.
fn batches(events: &[UsageEvent]) -> Result<Vec<Vec<SendMessageBatchRequestEntry>>, SinkError> {
    let mut batches = Vec::new();
    let mut current: Vec<SendMessageBatchRequestEntry> = Vec::new();
    let mut bytes = 0;
    for (index, event) in events.iter().enumerate() {
        let body = serde_json::to_string(event).map_err(|err| SinkError(err.into()))?;
        if !current.is_empty()
            && (current.len() == MAX_ENTRIES || bytes + body.len() > MAX_BATCH_BYTES)
        {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += body.len();
        let entry = SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(body)
            .build()
            .map_err(|err| SinkError(err.into()))?;
        current.push(entry);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    Ok(batches)
}

#[async_trait]
impl UsageSink for SqsSink {
    fn backend(&self) -> &'static str {
        "sqs"
    }

    async fn send(&self, events: &[UsageEvent]) -> Result<(), SinkError> {
        for batch in batches(events)? {
            self.send_batch(batch).await?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), SinkError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| SinkError(anyhow!(err)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ApiKeyId, OrgId};
    use aws_sdk_sqs::config::{Credentials, Region};
    use chrono::Utc;

    fn events(count: usize, padding: usize) -> Vec<UsageEvent> {
        let (org, key) = (OrgId::generate(), ApiKeyId::generate());
        (0..count)
            .map(|i| UsageEvent {
                id: format!("evt-{i}"),
                org_id: org.clone(),
                key_id: key.clone(),
                meter: "requests".into(),
                quantity: 1,
                timestamp: Utc::now(),
                properties: serde_json::json!({"pad": "x".repeat(padding)})
                    .as_object()
                    .cloned(),
            })
            .collect()
    }

    async fn client(endpoint: &str) -> Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .load()
            .await;
        Client::new(&config)
    }

    #[test]
    fn batches_respect_count_and_size() {
        let small = batches(&events(25, 0)).expect("batches");
        assert_eq!(small.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        let large = batches(&events(6, 100 * 1024)).expect("batches");
        assert!(
            large.iter().all(|b| b.len() <= 2),
            "{:?}",
            large.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert_eq!(large.iter().map(Vec::len).sum::<usize>(), 6);
    }

    #[tokio::test]
    async fn every_event_reaches_the_queue_exactly_once() {
        let endpoint =
            std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
        let client = client(&endpoint).await;
        let name = format!("usage-{}", ulid::Ulid::new().to_string().to_lowercase());
        let queue = client
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .unwrap_or_else(|err| {
                panic!("SQS endpoint {endpoint} is required (run infra/services.sh): {err}")
            });
        let url = queue.queue_url().expect("url").to_owned();
        let sink = SqsSink::new(client.clone(), &url);
        sink.ping().await.expect("ping");
        let sent = events(37, 10);
        sink.send(&sent).await.expect("send");
        let mut received = Vec::new();
        loop {
            let out = client
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            let messages = out.messages();
            if messages.is_empty() {
                break;
            }
            for message in messages {
                let event: UsageEvent =
                    serde_json::from_str(message.body().expect("body")).expect("json");
                received.push(event.id);
            }
        }
        received.sort();
        let mut expected: Vec<String> = sent.iter().map(|e| e.id.clone()).collect();
        expected.sort();
        assert_eq!(received, expected);
    }

    #[tokio::test]
    async fn an_unreachable_queue_is_an_error() {
        let sink = SqsSink::new(
            client("http://127.0.0.1:1").await,
            "http://127.0.0.1:1/000000000000/none",
        );
        assert!(sink.send(&events(3, 0)).await.is_err());
        assert!(sink.ping().await.is_err());
    }
}
