//! Teams inside an organization and their members: plain types, free of I/O.

use super::user::short_text;
use super::{Email, OrgId, TeamId, UserId, ValidationError};
use chrono::{DateTime, Utc};

/// A team name: trimmed, 1 to 100 characters, no control characters (the `short_text` rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamName(String);

impl TeamName {
    /// Validates a name.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        short_text("name", raw).map(Self)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form two names are compared in for uniqueness inside an org (case-insensitive), so
    /// `Backend` and `backend` cannot both exist.
    pub fn unique_key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A team: a named group of an org's members that API keys can be scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// Its id.
    pub id: TeamId,
    /// The org it belongs to (every query about it names this org too).
    pub org_id: OrgId,
    /// Its name, unique in the org (case-insensitively).
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A member of a team. Only a current member of the team's org counts: a team membership
/// recorded before the user (last) joined the org is void.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamMember {
    /// The org.
    pub org_id: OrgId,
    /// The team.
    pub team_id: TeamId,
    /// The user.
    pub user_id: UserId,
    /// The user's email, as their org membership has it.
    pub email: Email,
    /// When the user was added to the team.
    pub added_at: DateTime<Utc>,
}

/// What creating a team did (the store's answer, named here so every layer can match it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamCreated {
    /// The team and its audit entry are stored.
    Created,
    /// The org already has a team of this name (case-insensitively); nothing was written.
    NameTaken,
}

/// What deleting a team did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamDeleted {
    /// The team, its memberships and name are gone; the audit entry is stored.
    Deleted,
    /// The org has no such team.
    NotFound,
    /// Keys scoped to the team are not revoked yet; nothing was written.
    HasActiveKeys,
}

/// What adding a team member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamMemberAdded {
    /// The user is now a member; the audit entry is stored.
    Added,
    /// The user was a member already (e.g. a concurrent add won); nothing was written.
    Already,
    /// The org has no such team.
    TeamNotFound,
    /// The user is not a member of the org.
    NotOrgMember,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_short_text_rules() {
        let name = TeamName::parse("  Backend ").expect("valid");
        assert_eq!(name.as_str(), "Backend");
        assert_eq!(name.unique_key(), "backend");
        assert!(TeamName::parse(" ").is_err());
        assert!(TeamName::parse(&"x".repeat(101)).is_err());
        assert!(TeamName::parse("a\u{7}b").is_err());
    }
}
