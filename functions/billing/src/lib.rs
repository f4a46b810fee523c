//! The billing consumer: a batch of SQS messages, each one usage event, becomes counters.
//!
//! Every message that cannot be counted (undecodable, malformed, outside the lateness window)
//! is reported as a batch item failure, so SQS retries only it and then dead-letters it; the
//! rest of the batch is applied once, whatever else is in it. Delivery is at least once, and
//! the store counts each `(org, event id)` once, so redelivery is harmless.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use meterline::domain::UsageEvent;
use meterline::store::Store;
use meterline::usage::Admission;

fn failure(message_id: &str) -> BatchItemFailure {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = message_id.to_owned();
    failure
}

/// Decodes one SQS message body into the usage event it carries and checks that billing may
/// count it at `now`: the per-record step of [`handle`], on its own so it can be fuzzed. `Err`
/// is why not (logged; the message is then a batch item failure).
pub fn decode(
    body: Option<&str>,
    admission: &Admission,
    now: DateTime<Utc>,
) -> Result<UsageEvent, String> {
    let body = body.ok_or_else(|| "the message has no body".to_owned())?;
    let event = serde_json::from_str::<UsageEvent>(body)
        .map_err(|err| format!("not a usage event: {err}"))?;
    admission.check(&event, now)?;
    Ok(event)
}

/// Applies one SQS batch at `now`; the response names the messages to retry.
pub async fn handle(
    store: &dyn Store,
    admission: &Admission,
    batch: SqsEvent,
    now: DateTime<Utc>,
) -> SqsBatchResponse {
    let mut failures = Vec::new();
    let mut accepted: Vec<(String, UsageEvent)> = Vec::with_capacity(batch.records.len());
    for record in batch.records {
        let id = record.message_id.unwrap_or_default();
        match decode(record.body.as_deref(), admission, now) {
            Ok(event) => accepted.push((id, event)),
            Err(reason) => {
                tracing::warn!(message_id = %id, %reason, "usage event refused");
                failures.push(failure(&id));
            }
        }
    }
    let events: Vec<UsageEvent> = accepted.iter().map(|(_, event)| event.clone()).collect();
    match store.apply_usage(&events).await {
        Ok(new) => tracing::info!(
            received = events.len(),
            new,
            refused = failures.len(),
            "usage batch applied"
        ),
        Err(err) => {
            tracing::error!(error = ?err, "usage batch could not be applied; it will be retried");
            failures.extend(accepted.iter().map(|(id, _)| failure(id)));
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}
