//! Invitations to orgs and each user's own security log.
//!
//! An invitation is found either from its org (owners and admins manage it) or from its
//! address (the invitee answers it): every lookup names one of the two as well as the id, so an
//! id of another org, or of someone else's invitation, is simply not found.

use super::StoreResult;
use crate::domain::{
    AuditEntry, Email, Invitation, InvitationId, Membership, OrgId, Page, PageRequest,
    SecurityEvent, UserId,
};
use async_trait::async_trait;

/// Invitations, with the same behaviour on every backend.
#[async_trait]
pub trait InvitationStore: Send + Sync + 'static {
    /// Stores a new invitation with its audit entry, deleting `replaces` (the earlier
    /// invitation of the same org and address) in the same atomic step.
    async fn create_invitation(
        &self,
        invitation: &Invitation,
        replaces: Option<&Invitation>,
        audit: &AuditEntry,
    ) -> StoreResult<()>;

    /// One invitation of the org.
    async fn org_invitation(
        &self,
        org: &OrgId,
        id: &InvitationId,
    ) -> StoreResult<Option<Invitation>>;

    /// One invitation to the address.
    async fn invitation_to(
        &self,
        email: &Email,
        id: &InvitationId,
    ) -> StoreResult<Option<Invitation>>;

    /// The org's invitation to the address, if there is one.
    async fn invitation_of_org_to(
        &self,
        org: &OrgId,
        email: &Email,
    ) -> StoreResult<Option<Invitation>>;

    /// The org's invitations (expired ones included), newest first.
    async fn org_invitations(
        &self,
        org: &OrgId,
        page: &PageRequest,
    ) -> StoreResult<Page<Invitation>>;

    /// The invitations to the address (expired ones included), newest first.
    async fn invitations_to(
        &self,
        email: &Email,
        page: &PageRequest,
    ) -> StoreResult<Page<Invitation>>;

    /// Deletes an invitation (declined or revoked) with the audit entry; `false`, and nothing
    /// written, when it was already gone.
    async fn delete_invitation(
        &self,
        invitation: &Invitation,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;

    /// Spends the invitation on `membership` with the audit entry, atomically: of racing
    /// accepts one wins. [`super::StoreError::Conflict`] when the invitation is gone, the
    /// user is a member already or the org was deleted.
    async fn accept_invitation(
        &self,
        invitation: &Invitation,
        membership: &Membership,
        audit: &AuditEntry,
    ) -> StoreResult<()>;
}

/// Each user's own security log, with the same behaviour on every backend.
#[async_trait]
pub trait SecurityLogStore: Send + Sync + 'static {
    /// Appends one event to its user's log.
    async fn append_security_event(&self, event: &SecurityEvent) -> StoreResult<()>;

    /// A user's log, newest first.
    async fn security_log(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> StoreResult<Page<SecurityEvent>>;
}
