//! The billing part of the store: plans, each org's subscription, and the payment provider's
//! webhook events already applied (so a replay changes nothing).

use super::{StoreError, StoreResult};
use crate::domain::{AuditEntry, OrgId, Plan, PlanId, Subscription};
use async_trait::async_trait;

/// Plans and subscriptions, with the same behaviour on every backend.
#[async_trait]
pub trait BillingStore: Send + Sync + 'static {
    /// Creates or replaces a plan, with its audit entry, atomically.
    async fn put_plan(&self, plan: &Plan, audit: &AuditEntry) -> StoreResult<()>;

    /// Creates a plan unless one with its id exists (configuration bootstrap: every cold start
    /// offers its plans, the first one wins and later edits through the API are kept). Returns
    /// whether it was written.
    async fn insert_plan_if_missing(&self, plan: &Plan) -> StoreResult<bool>;

    /// One plan, archived or not.
    async fn plan(&self, id: &PlanId) -> StoreResult<Option<Plan>>;

    /// Every plan, archived ones included, by id.
    async fn plans(&self) -> StoreResult<Vec<Plan>>;

    /// The org's stored subscription; `None` while it is on the default plan it started with.
    async fn subscription(&self, org: &OrgId) -> StoreResult<Option<Subscription>>;

    /// Writes `subscription` with its audit entry, atomically, if the stored version is
    /// `subscription.version - 1` (none stored counts as 0); [`super::StoreError::Conflict`]
    /// otherwise. With `webhook_event`, the write also records that event id and happens only
    /// if it was never recorded: `Ok(false)` then, and nothing changes.
    async fn save_subscription(
        &self,
        subscription: &Subscription,
        audit: &AuditEntry,
        webhook_event: Option<&str>,
    ) -> StoreResult<bool>;
}

/// Plans and subscriptions are stored as JSON documents on every backend, in this one encoding.
pub(super) fn document<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|err| StoreError::Backend(err.into()))
}
