//! The usage part of the store: events applied once per `(org, id)`, each adding to its hour,
//! day and month counters in the same atomic write as its dedup record.

use super::StoreResult;
use crate::domain::{Granularity, OrgId, UsageEvent, UsagePoint};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Usage events and counters, with the same behaviour on every backend.
#[async_trait]
pub trait UsageStore: Send + Sync + 'static {
    /// Applies the events not applied before: records each (the dedup record) and adds its
    /// quantity to its counters, atomically per write. Returns how many were new; a
    /// redelivered event changes nothing.
    async fn apply_usage(&self, events: &[UsageEvent]) -> StoreResult<u64>;

    /// One applied event.
    async fn usage_event(&self, org: &OrgId, id: &str) -> StoreResult<Option<UsageEvent>>;

    /// The org's counters of `granularity` for periods starting in `[from, to)`, by period then
    /// meter; only `meter` when given.
    async fn usage_series(
        &self,
        org: &OrgId,
        granularity: Granularity,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        meter: Option<&str>,
    ) -> StoreResult<Vec<UsagePoint>>;
}
