//! The tenancy part of the store: orgs, memberships seen from both sides, and the audit log.
//! Every change is written with its audit entry in one atomic step.

use super::StoreResult;
use crate::domain::{AuditEntry, Membership, Org, OrgId, Page, PageRequest, Role, UserId};
use async_trait::async_trait;

/// Orgs, members and the audit log, with the same behaviour on every backend.
#[async_trait]
pub trait OrgStore: Send + Sync + 'static {
    /// Creates an org with its first owner, and the audit entry, atomically.
    async fn create_org(
        &self,
        org: &Org,
        owner: &Membership,
        audit: &AuditEntry,
    ) -> StoreResult<()>;

    /// The org and the role of `user` in it; `None` when the org does not exist or `user` is not
    /// a member (the two are deliberately indistinguishable).
    async fn org_for_member(&self, org: &OrgId, user: &UserId) -> StoreResult<Option<(Org, Role)>>;

    /// An org by id, for the metering path (which knows the org from the API key).
    async fn org(&self, org: &OrgId) -> StoreResult<Option<Org>>;

    /// Writes an org's name and rate limit, with the audit entry.
    async fn update_org(&self, org: &Org, audit: &AuditEntry) -> StoreResult<()>;

    /// Deletes an org and its memberships; the audit entry (and the org's log) is kept.
    async fn delete_org(&self, org: &OrgId, audit: &AuditEntry) -> StoreResult<()>;

    /// The orgs `user` belongs to with their role there, newest org first.
    async fn orgs_of_user(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> StoreResult<Page<(Org, Role)>>;

    /// One membership.
    async fn member(&self, org: &OrgId, user: &UserId) -> StoreResult<Option<Membership>>;

    /// An org's members, in the order they were created as users.
    async fn members(&self, org: &OrgId, page: &PageRequest) -> StoreResult<Page<Membership>>;

    /// Adds a member (`previous` = `None`) or changes a member's role from `previous`, with the
    /// audit entry, atomically. [`StoreError::Conflict`](super::StoreError::Conflict) when the membership is no longer as
    /// read; [`StoreError::LastOwner`](super::StoreError::LastOwner) when it would leave the org without an owner, however
    /// many such changes race.
    async fn set_member_role(
        &self,
        membership: &Membership,
        previous: Option<Role>,
        audit: &AuditEntry,
    ) -> StoreResult<()>;

    /// Removes a member whose role is `previous`, with the audit entry; same guarantees as
    /// [`OrgStore::set_member_role`].
    async fn remove_member(
        &self,
        org: &OrgId,
        user: &UserId,
        previous: Role,
        audit: &AuditEntry,
    ) -> StoreResult<()>;

    /// An org's audit log, newest first.
    async fn audit_log(&self, org: &OrgId, page: &PageRequest) -> StoreResult<Page<AuditEntry>>;

    /// Appends entries recorded about a change made elsewhere (a member's password change,
    /// seen in each of their orgs).
    async fn append_audit(&self, entries: &[AuditEntry]) -> StoreResult<()>;
}

/// How a role change moves the org's owner count: -1, 0 or +1.
pub(crate) fn owner_delta(previous: Option<Role>, next: Option<Role>) -> i64 {
    let owner = |role: Option<Role>| i64::from(role == Some(Role::Owner));
    owner(next) - owner(previous)
}
