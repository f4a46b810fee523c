//! Teams inside an org: who may create them and change their members, and the audit entry each
//! change writes. Same tenancy rules as [`crate::orgs`]: the org comes from the path and the
//! caller's membership from the store, a non-member gets "not found" for everything about the
//! org, and every store query names the org, so another org's team is simply not found.
//!
//! Roles: owners and admins create and delete teams and add or remove team members; any org
//! member reads them; a member may remove themself from a team.

use crate::clock::Clock;
use crate::domain::{
    AuditEntry, AuditOrigin, Denied, Email, Org, OrgAction, Page, PageRequest, Role, Team,
    TeamCreated, TeamDeleted, TeamId, TeamMember, TeamMemberAdded, TeamName, UserId,
    ValidationError,
};
use crate::orgs::{OrgError, Orgs};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::sync::Arc;

/// Why a team operation, or an operation on a team-scoped API key, was refused.
#[derive(Debug, thiserror::Error)]
pub enum TeamError {
    /// The org-level refusal: not found (non-member), forbidden, unknown user, store failure.
    #[error(transparent)]
    Org(#[from] OrgError),
    /// The org has no such team (404 `not_found`, also for another org's team).
    #[error("team not found")]
    TeamNotFound,
    /// The org already has a team of this name (409 `team_name_taken`).
    #[error("the organization already has a team with this name")]
    NameTaken,
    /// The team still has unrevoked API keys (409 `team_has_active_keys`).
    #[error("the team still has API keys that are not revoked; revoke them first")]
    HasActiveKeys,
    /// The user is not a member of the team (404 `member_not_found`).
    #[error("no such team member")]
    MemberNotFound,
    /// A field names something that does not exist, e.g. a `team_id` not of this org (422).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl From<StoreError> for TeamError {
    fn from(err: StoreError) -> Self {
        Self::Org(OrgError::Store(err))
    }
}

impl From<Denied> for TeamError {
    fn from(denied: Denied) -> Self {
        Self::Org(OrgError::Forbidden(denied))
    }
}

/// Whether a team member was added or was one already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamMemberChange {
    /// Newly added (201).
    Added,
    /// A member already; nothing changed (200).
    Unchanged,
}

/// Who to add to a team: an org member named by id or by email.
#[derive(Debug, Clone)]
pub enum MemberRef {
    /// By user id (as the client sent it; an unknown or malformed id is "user not found").
    Id(String),
    /// By the email of their account.
    Email(Email),
}

/// The team service. Cheap to clone.
#[derive(Clone)]
pub struct Teams {
    store: Arc<dyn Store>,
    orgs: Orgs,
    clock: Arc<dyn Clock>,
}

fn team_state(team: &Team) -> Value {
    json!({ "id": team.id, "name": team.name })
}

fn member_state(member: &TeamMember) -> Value {
    json!({ "team_id": member.team_id, "user_id": member.user_id, "email": member.email })
}

/// Owners and admins manage teams; members only read them.
pub(crate) fn require_manager(role: Role) -> Result<(), Denied> {
    if role >= Role::Admin {
        Ok(())
    } else {
        Err(Denied("this needs the admin or owner role"))
    }
}

impl Teams {
    /// Builds the service: `orgs` is the door to the org (membership and role), `store` holds
    /// the teams, `clock` stamps changes.
    pub fn new(store: Arc<dyn Store>, orgs: Orgs, clock: Arc<dyn Clock>) -> Self {
        Self { store, orgs, clock }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now_millis()
    }

    /// The org and the caller's role, for any member (non-members get "not found").
    async fn load(&self, caller: &UserId, org: &str) -> Result<(Org, Role), TeamError> {
        Ok(self.orgs.load(caller, org, OrgAction::View).await?)
    }

    /// The team of `org` named in the path.
    async fn find(&self, org: &Org, team: &str) -> Result<Team, TeamError> {
        let team = TeamId::parse(team).ok_or(TeamError::TeamNotFound)?;
        self.store
            .team(&org.id, &team)
            .await?
            .ok_or(TeamError::TeamNotFound)
    }

    /// Creates a team (owners and admins).
    #[tracing::instrument(skip_all, fields(user_id = %caller, org_id = %org))]
    pub async fn create(
        &self,
        caller: &UserId,
        org: &str,
        name: TeamName,
        origin: &AuditOrigin,
    ) -> Result<Team, TeamError> {
        let (org, role) = self.load(caller, org).await?;
        require_manager(role)?;
        let now = self.now();
        let team = Team {
            id: TeamId::generate(),
            org_id: org.id.clone(),
            name: name.as_str().to_owned(),
            created_at: now,
        };
        let audit = AuditEntry::new(
            &org.id,
            caller,
            "team.created",
            team.id.as_str(),
            origin,
            now,
        )
        .change(None, Some(team_state(&team)));
        match self.store.create_team(&team, &audit).await? {
            TeamCreated::Created => {
                tracing::info!(team_id = %team.id, "team created");
                Ok(team)
            }
            TeamCreated::NameTaken => Err(TeamError::NameTaken),
        }
    }

    /// The org's teams, oldest first, for any member.
    pub async fn list(
        &self,
        caller: &UserId,
        org: &str,
        page: &PageRequest,
    ) -> Result<Page<Team>, TeamError> {
        let (org, _) = self.load(caller, org).await?;
        Ok(self.store.teams(&org.id, page).await?)
    }

    /// One team, for any member.
    pub async fn get(&self, caller: &UserId, org: &str, team: &str) -> Result<Team, TeamError> {
        let (org, _) = self.load(caller, org).await?;
        self.find(&org, team).await
    }

    /// Deletes a team (owners and admins); refused while keys scoped to it are unrevoked.
    #[tracing::instrument(skip_all, fields(user_id = %caller, org_id = %org))]
    pub async fn delete(
        &self,
        caller: &UserId,
        org: &str,
        team: &str,
        origin: &AuditOrigin,
    ) -> Result<(), TeamError> {
        let (org, role) = self.load(caller, org).await?;
        require_manager(role)?;
        let team = self.find(&org, team).await?;
        let audit = AuditEntry::new(
            &org.id,
            caller,
            "team.deleted",
            team.id.as_str(),
            origin,
            self.now(),
        )
        .change(Some(team_state(&team)), None);
        match self.store.delete_team(&org.id, &team.id, &audit).await? {
            TeamDeleted::Deleted => {
                tracing::info!(team_id = %team.id, "team deleted");
                Ok(())
            }
            TeamDeleted::NotFound => Err(TeamError::TeamNotFound),
            TeamDeleted::HasActiveKeys => Err(TeamError::HasActiveKeys),
        }
    }

    /// A team's members, for any org member.
    pub async fn members(
        &self,
        caller: &UserId,
        org: &str,
        team: &str,
        page: &PageRequest,
    ) -> Result<Page<TeamMember>, TeamError> {
        let (org, _) = self.load(caller, org).await?;
        let team = self.find(&org, team).await?;
        Ok(self.store.team_members(&org.id, &team.id, page).await?)
    }

    /// Adds an org member to a team (owners and admins); adding a member again changes nothing.
    #[tracing::instrument(skip_all, fields(user_id = %caller, org_id = %org))]
    pub async fn add_member(
        &self,
        caller: &UserId,
        org: &str,
        team: &str,
        who: &MemberRef,
        origin: &AuditOrigin,
    ) -> Result<(TeamMember, TeamMemberChange), TeamError> {
        let (org, role) = self.load(caller, org).await?;
        require_manager(role)?;
        let team = self.find(&org, team).await?;
        let user = match who {
            MemberRef::Id(raw) => UserId::parse(raw),
            MemberRef::Email(email) => self
                .store
                .user_by_email(email)
                .await?
                .map(|record| record.user.id),
        };
        let not_a_member = || TeamError::Org(OrgError::UserNotFound);
        let user = user.ok_or_else(not_a_member)?;
        let membership = self
            .store
            .member(&org.id, &user)
            .await?
            .ok_or_else(not_a_member)?;
        if let Some(current) = self.store.team_member(&org.id, &team.id, &user).await? {
            return Ok((current, TeamMemberChange::Unchanged));
        }
        let now = self.now();
        let member = TeamMember {
            org_id: org.id.clone(),
            team_id: team.id.clone(),
            user_id: user.clone(),
            email: membership.email,
            added_at: now,
        };
        let audit = AuditEntry::new(
            &org.id,
            caller,
            "team.member_added",
            user.as_str(),
            origin,
            now,
        )
        .change(None, Some(member_state(&member)));
        match self.store.add_team_member(&member, &audit).await? {
            TeamMemberAdded::Added => Ok((member, TeamMemberChange::Added)),
            TeamMemberAdded::Already => {
                let current = self.store.team_member(&org.id, &team.id, &user).await?;
                Ok((current.unwrap_or(member), TeamMemberChange::Unchanged))
            }
            TeamMemberAdded::TeamNotFound => Err(TeamError::TeamNotFound),
            TeamMemberAdded::NotOrgMember => Err(not_a_member()),
        }
    }

    /// Removes a user from a team: owners and admins remove anyone, a member themself.
    #[tracing::instrument(skip_all, fields(user_id = %caller, org_id = %org))]
    pub async fn remove_member(
        &self,
        caller: &UserId,
        org: &str,
        team: &str,
        user: &str,
        origin: &AuditOrigin,
    ) -> Result<(), TeamError> {
        let (org, role) = self.load(caller, org).await?;
        let user = UserId::parse(user);
        let is_self = user.as_ref() == Some(caller);
        if !is_self {
            require_manager(role)?;
        }
        let team = self.find(&org, team).await?;
        let user = user.ok_or(TeamError::MemberNotFound)?;
        let current = self
            .store
            .team_member(&org.id, &team.id, &user)
            .await?
            .ok_or(TeamError::MemberNotFound)?;
        let action = if is_self {
            "team.member_left"
        } else {
            "team.member_removed"
        };
        let audit = AuditEntry::new(&org.id, caller, action, user.as_str(), origin, self.now())
            .change(Some(member_state(&current)), None);
        if self
            .store
            .remove_team_member(&org.id, &team.id, &user, &audit)
            .await?
        {
            Ok(())
        } else {
            Err(TeamError::MemberNotFound)
        }
    }
}
