//! The team part of the store: teams inside an org, their members, with audit entries.
//!
//! Every query names the org as well as the team, so a team id of another org is simply not
//! found (tenant isolation in the store, not only in the service). Every change is written with
//! its audit entry in one atomic step.
//!
//! Team membership counts only while the user is a member of the org *since before* they were
//! added to the team: a user who leaves (or is removed from) the org disappears from its teams
//! at once, and does not reappear if they rejoin later. Backends filter on that instead of
//! deleting team memberships when someone leaves.

use super::StoreResult;
use crate::domain::{
    ApiKey, ApiKeyId, AuditEntry, OrgId, Page, PageRequest, Team, TeamCreated, TeamDeleted, TeamId,
    TeamMember, TeamMemberAdded, UserId,
};
use async_trait::async_trait;

/// Teams and their members, with the same behaviour on every backend.
#[async_trait]
pub trait TeamStore: Send + Sync + 'static {
    /// Creates a team with the audit entry, atomically; of concurrent creations of one name
    /// in one org exactly one succeeds.
    async fn create_team(&self, team: &Team, audit: &AuditEntry) -> StoreResult<TeamCreated>;

    /// One team of the org.
    async fn team(&self, org: &OrgId, team: &TeamId) -> StoreResult<Option<Team>>;

    /// The org's teams, oldest first.
    async fn teams(&self, org: &OrgId, page: &PageRequest) -> StoreResult<Page<Team>>;

    /// Deletes a team, its memberships and its name with the audit entry, atomically, unless
    /// keys scoped to it are still unrevoked (checked in the same step, so a key created
    /// concurrently either blocks the deletion or fails itself).
    async fn delete_team(
        &self,
        org: &OrgId,
        team: &TeamId,
        audit: &AuditEntry,
    ) -> StoreResult<TeamDeleted>;

    /// One current member of the team (see the module doc for "current").
    async fn team_member(
        &self,
        org: &OrgId,
        team: &TeamId,
        user: &UserId,
    ) -> StoreResult<Option<TeamMember>>;

    /// The team's current members, by user id. A page may hold fewer than `limit` items when
    /// stale memberships were skipped; follow its cursor.
    async fn team_members(
        &self,
        org: &OrgId,
        team: &TeamId,
        page: &PageRequest,
    ) -> StoreResult<Page<TeamMember>>;

    /// Adds `member` (its `email` is the org membership's) to its team with the audit entry,
    /// atomically with the checks that the team exists and the user is a member of the org.
    async fn add_team_member(
        &self,
        member: &TeamMember,
        audit: &AuditEntry,
    ) -> StoreResult<TeamMemberAdded>;

    /// Removes a user from a team with the audit entry; `false` (nothing written) when they
    /// were not in it.
    async fn remove_team_member(
        &self,
        org: &OrgId,
        team: &TeamId,
        user: &UserId,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;

    /// One API key of the org by id, to decide who may revoke it (team members may revoke
    /// their team's keys). Here rather than in the API-key store because teams need it.
    async fn api_key(&self, org: &OrgId, key: &ApiKeyId) -> StoreResult<Option<ApiKey>>;

    /// The org's keys scoped to `team`, newest first. A page may hold fewer than `limit`
    /// items on backends that filter; follow its cursor.
    async fn team_api_keys(
        &self,
        org: &OrgId,
        team: &TeamId,
        page: &PageRequest,
    ) -> StoreResult<Page<ApiKey>>;
}
