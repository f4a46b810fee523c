//! The embedded default: events are recorded in the store at once (idempotent by org and id).

use super::{SinkError, UsageSink};
use crate::domain::UsageEvent;
use crate::store::Store;
use async_trait::async_trait;
use std::sync::Arc;

/// Records events straight into the store.
pub struct DirectSink {
    store: Arc<dyn Store>,
}

impl DirectSink {
    /// A sink writing to `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl UsageSink for DirectSink {
    fn backend(&self) -> &'static str {
        "direct"
    }

    async fn send(&self, events: &[UsageEvent]) -> Result<(), SinkError> {
        self.store
            .apply_usage(events)
            .await
            .map(|_| ())
            .map_err(|err| SinkError(err.into()))
    }

    async fn ping(&self) -> Result<(), SinkError> {
        self.store.ping().await.map_err(|err| SinkError(err.into()))
    }
}
