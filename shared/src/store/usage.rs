//! The usage part of the store: events recorded once per `(org, id)`.

use super::StoreResult;
use crate::domain::{OrgId, UsageEvent};
use async_trait::async_trait;

/// Usage events, idempotent by `(org_id, id)`, with the same behaviour on every backend.
#[async_trait]
pub trait UsageStore: Send + Sync + 'static {
    /// Records the events not recorded before; returns how many were new.
    async fn record_usage(&self, events: &[UsageEvent]) -> StoreResult<u64>;

    /// One recorded event.
    async fn usage_event(&self, org: &OrgId, id: &str) -> StoreResult<Option<UsageEvent>>;
}
