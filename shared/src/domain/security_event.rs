//! A user's own security log: changes to their account (password changed or reset, email
//! verified), with where they came from. It belongs to the user alone, never to an org: an
//! org's admins have no business seeing a member's IP addresses and browsers.

use super::{AuditOrigin, SecurityEventId, UserId};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One event on an account, as stored and as shown to its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SecurityEvent {
    /// Its id (time-ordered: newest first is id order).
    pub id: SecurityEventId,
    /// Whose account.
    #[serde(skip)]
    pub user_id: UserId,
    /// What happened, e.g. `user.password_changed`.
    pub action: String,
    /// The client IP, when known.
    pub ip: Option<String>,
    /// The client's User-Agent, when sent.
    pub user_agent: Option<String>,
    /// The request that did it.
    pub request_id: Option<String>,
    /// When.
    #[serde(with = "crate::time_format")]
    pub at: DateTime<Utc>,
}

impl SecurityEvent {
    /// An event `action` on `user`'s account from `origin`, stamped `at`.
    pub fn new(user: &UserId, action: &str, origin: &AuditOrigin, at: DateTime<Utc>) -> Self {
        Self {
            id: SecurityEventId::generate(),
            user_id: user.clone(),
            action: action.to_owned(),
            ip: origin.ip.clone(),
            user_agent: origin.user_agent.clone(),
            request_id: origin.request_id.clone(),
            at,
        }
    }
}
