//! The audit log: who changed what in an org, from where, with the state before and after.

use super::{AuditEntryId, OrgId, UserId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// One audited change, as stored and as shown to owners and admins.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Its id (time-ordered: newest first is id order).
    pub id: AuditEntryId,
    /// The org it belongs to.
    pub org_id: OrgId,
    /// Who did it.
    pub actor_user_id: UserId,
    /// What was done, e.g. `org.created`, `member.role_changed`.
    pub action: String,
    /// What it was done to, e.g. an org or user id.
    pub target: String,
    /// The state before (`null` for a creation).
    pub before: Option<Value>,
    /// The state after (`null` for a removal).
    pub after: Option<Value>,
    /// The client IP, when known.
    pub ip: Option<String>,
    /// The client's User-Agent, when sent.
    pub user_agent: Option<String>,
    /// The request that made the change.
    pub request_id: Option<String>,
    /// When.
    #[serde(with = "crate::time_format")]
    pub at: DateTime<Utc>,
}

/// Where a change came from: filled from the HTTP request, copied into its audit entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditOrigin {
    /// The client IP.
    pub ip: Option<String>,
    /// The client's User-Agent.
    pub user_agent: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
}

impl AuditEntry {
    /// An entry for `action` on `target` in `org` by `actor`, stamped `at`; add the state
    /// with [`AuditEntry::change`].
    pub fn new(
        org_id: &OrgId,
        actor: &UserId,
        action: &str,
        target: &str,
        origin: &AuditOrigin,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: AuditEntryId::generate(),
            org_id: org_id.clone(),
            actor_user_id: actor.clone(),
            action: action.to_owned(),
            target: target.to_owned(),
            before: None,
            after: None,
            ip: origin.ip.clone(),
            user_agent: origin.user_agent.clone(),
            request_id: origin.request_id.clone(),
            at,
        }
    }

    /// Records the state before and after the change.
    pub fn change(mut self, before: Option<Value>, after: Option<Value>) -> Self {
        self.before = before;
        self.after = after;
        self
    }
}
