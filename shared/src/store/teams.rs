//! The team part of the store: teams inside an org, their members, with audit entries.

use async_trait::async_trait;

/// Teams and their members, with the same behaviour on every backend.
#[async_trait]
pub trait TeamStore: Send + Sync + 'static {}
