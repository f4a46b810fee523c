//! API keys as the API shows them: metadata only, never the key or its hash.

use super::{ApiKeyId, OrgId, TeamId};
use chrono::{DateTime, Utc};

/// An org's API key (what is stored besides its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Its id.
    pub id: ApiKeyId,
    /// The org whose requests it authenticates.
    pub org_id: OrgId,
    /// The team it is scoped to; `None` for an org-wide key. A team-scoped key authenticates
    /// as its org like any other, and its team's members may manage it.
    pub team_id: Option<TeamId>,
    /// A label chosen by its creator.
    pub name: String,
    /// The key's first 12 characters, to recognise it.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working by itself, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Its own requests-per-minute limit, under the org's.
    pub rate_limit_rpm: Option<u32>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether it authenticates requests at `now`: not revoked, not expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}
