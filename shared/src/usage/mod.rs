//! Where usage events go after a request is served: SQS to the billing function (production),
//! or straight into the store (the embedded default). A request whose event cannot be handed
//! over is refused with 503: a served request without its usage event is lost revenue.

mod admission;
pub mod batch;
mod direct;
mod sqs;

pub use admission::Admission;
pub use batch::{EventWindow, MAX_EVENTS, decode_events};
pub use direct::DirectSink;
pub use sqs::SqsSink;

use crate::domain::UsageEvent;
use async_trait::async_trait;

/// The sink could not take the events (after its retries).
#[derive(Debug, thiserror::Error)]
#[error("usage sink unavailable: {0}")]
pub struct SinkError(#[source] pub anyhow::Error);

/// Takes usage events for billing.
#[async_trait]
pub trait UsageSink: Send + Sync + 'static {
    /// The backend's name, for health reports.
    fn backend(&self) -> &'static str;

    /// Hands over all `events`, or fails: never a silent partial success.
    async fn send(&self, events: &[UsageEvent]) -> Result<(), SinkError>;

    /// A cheap round trip proving the sink answers.
    async fn ping(&self) -> Result<(), SinkError>;
}
