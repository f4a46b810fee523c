//! The API-key part of the store: created and revoked with their audit entries, found by hash
//! on the metering hot path.

use super::StoreResult;
use crate::auth::ApiKeyHash;
use crate::domain::{ApiKey, ApiKeyId, AuditEntry, OrgId, Page, PageRequest};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// What a revocation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The key was active and is now revoked.
    Now,
    /// It had been revoked before; nothing changed.
    Already,
    /// The org has no such key.
    NotFound,
}

/// API keys, with the same behaviour on every backend.
#[async_trait]
pub trait ApiKeyStore: Send + Sync + 'static {
    /// Stores a new key (by its hash) with the audit entry, atomically.
    async fn create_api_key(
        &self,
        key: &ApiKey,
        hash: &ApiKeyHash,
        audit: &AuditEntry,
    ) -> StoreResult<()>;

    /// An org's keys, newest first.
    async fn api_keys(&self, org: &OrgId, page: &PageRequest) -> StoreResult<Page<ApiKey>>;

    /// The key a client presented, by hash; `None` when unknown (or its org was deleted).
    async fn api_key_by_hash(&self, hash: &ApiKeyHash) -> StoreResult<Option<ApiKey>>;

    /// Revokes one of the org's keys at `at`, with the audit entry when it changes anything.
    async fn revoke_api_key(
        &self,
        org: &OrgId,
        key: &ApiKeyId,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> StoreResult<Revoked>;

    /// Records that the key authenticated a request at `at`.
    async fn touch_api_key(
        &self,
        org: &OrgId,
        key: &ApiKeyId,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
}
