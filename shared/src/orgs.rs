//! The tenancy rules over the store: who may read or change an org, its members and its audit
//! log, and the audit entry each change writes. The tenant is always the org named in the path
//! *and* the caller's membership read from the store, never anything a client asserts.

use crate::clock::Clock;
use crate::domain::{
    AuditEntry, AuditOrigin, Denied, MAX_PAGE_SIZE, Membership, Org, OrgAction, OrgId, OrgName,
    Page, PageRequest, Role, SecurityEvent, UserId, authorize,
};
use crate::ratelimit::Limiter;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::sync::Arc;

/// Why a tenancy operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    /// No such org, or the caller is not a member (indistinguishable on purpose).
    #[error("organization not found")]
    NotFound,
    /// The caller is a member without the role for this.
    #[error(transparent)]
    Forbidden(#[from] Denied),
    /// The email to add has no account.
    #[error("no account has this email")]
    UserNotFound,
    /// The user is not a member of the org.
    #[error("no such member")]
    MemberNotFound,
    /// The org has no such API key.
    #[error("no such API key")]
    ApiKeyNotFound,
    /// The store refused or failed (last owner, conflict, outage).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The tenancy service. Cheap to clone.
#[derive(Clone)]
pub struct Orgs {
    store: Arc<dyn Store>,
    limiter: Arc<dyn Limiter>,
    clock: Arc<dyn Clock>,
}

fn org_state(org: &Org) -> Value {
    json!({ "name": org.name, "rate_limit_rpm": org.rate_limit_rpm })
}

fn member_state(member: &Membership) -> Value {
    json!({ "user_id": member.user_id, "email": member.email, "role": member.role })
}

impl Orgs {
    /// The service over `store`, stamping changes with `clock`; `limiter` takes the
    /// revocation marks of a deleted org's keys.
    pub fn new(store: Arc<dyn Store>, limiter: Arc<dyn Limiter>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            limiter,
            clock,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now_millis()
    }

    /// The org and the caller's role, after checking the caller may do `action`: the one
    /// door to anything org-scoped (non-members get [`OrgError::NotFound`]).
    pub async fn load(
        &self,
        caller: &UserId,
        org: &str,
        action: OrgAction,
    ) -> Result<(Org, Role), OrgError> {
        let org = OrgId::parse(org).ok_or(OrgError::NotFound)?;
        let (org, role) = self
            .store
            .org_for_member(&org, caller)
            .await?
            .ok_or(OrgError::NotFound)?;
        authorize(role, action)?;
        Ok((org, role))
    }

    /// Creates an org with the caller as its owner.
    #[tracing::instrument(skip_all, fields(user_id = %caller))]
    pub async fn create(
        &self,
        caller: &UserId,
        name: OrgName,
        rate_limit_rpm: Option<u32>,
        origin: &AuditOrigin,
    ) -> Result<Org, OrgError> {
        let account = self
            .store
            .user_by_id(caller)
            .await?
            .ok_or(OrgError::UserNotFound)?;
        let now = self.now();
        let org = Org {
            id: OrgId::generate(),
            name: name.as_str().to_owned(),
            rate_limit_rpm,
            created_at: now,
        };
        let owner = Membership {
            org_id: org.id.clone(),
            user_id: caller.clone(),
            email: account.user.email,
            role: Role::Owner,
            joined_at: now,
        };
        let audit = AuditEntry::new(&org.id, caller, "org.created", org.id.as_str(), origin, now)
            .change(None, Some(org_state(&org)));
        self.store.create_org(&org, &owner, &audit).await?;
        tracing::info!(org_id = %org.id, "organization created");
        Ok(org)
    }

    /// One org, for any member.
    pub async fn get(&self, caller: &UserId, org: &str) -> Result<(Org, Role), OrgError> {
        self.load(caller, org, OrgAction::View).await
    }

    /// The caller's orgs, newest first.
    pub async fn list(
        &self,
        caller: &UserId,
        page: &PageRequest,
    ) -> Result<Page<(Org, Role)>, OrgError> {
        Ok(self.store.orgs_of_user(caller, page).await?)
    }

    /// Renames the org and/or sets its rate limit (`Some(None)` clears it).
    #[tracing::instrument(skip_all, fields(user_id = %caller, org_id = %org))]
    pub async fn update(
        &self,
        caller: &UserId,
        org: &str,
        name: Option<OrgName>,
        rate_limit_rpm: Option<Option<u32>>,
        origin: &AuditOrigin,
    ) -> Result<(Org, Role), OrgError> {
        let (before, role) = self.load(caller, org, OrgAction::Update).await?;
        let mut after = before.clone();
        if let Some(name) = name {
            after.name = name.as_str().to_owned();
        }
        if let Some(rpm) = rate_limit_rpm {
            after.rate_limit_rpm = rpm;
        }
        if after != before {
            let audit = AuditEntry::new(
                &after.id,
                caller,
                "org.updated",
                after.id.as_str(),
                origin,
                self.now(),
            )
            .change(Some(org_state(&before)), Some(org_state(&after)));
            self.store.update_org(&after, &audit).await?;
        }
        Ok((after, role))
    }

    /// Deletes the org (owners only).
    #[tracing::instrument(skip_all, fields(user_id = %caller, org_id = %org))]
    pub async fn delete(
        &self,
        caller: &UserId,
        org: &str,
        origin: &AuditOrigin,
    ) -> Result<(), OrgError> {
        let (org, _) = self.load(caller, org, OrgAction::Delete).await?;
        let mut keys = Vec::new();
        let mut page = PageRequest::first(MAX_PAGE_SIZE);
        loop {
            let listed = self.store.api_keys(&org.id, &page).await?;
            let next = listed.next(MAX_PAGE_SIZE);
            keys.extend(listed.items.into_iter().map(|key| key.id));
            match next {
                Some(next) => page = next,
                None => break,
            }
        }
        let audit = AuditEntry::new(
            &org.id,
            caller,
            "org.deleted",
            org.id.as_str(),
            origin,
            self.now(),
        )
        .change(Some(org_state(&org)), None);
        self.store.delete_org(&org.id, &audit).await?;
        // Its keys stop at once, even where a metering function still caches them.
        let now_ms = self.now().timestamp_millis();
        for key in keys {
            let marked = self
                .limiter
                .mark_revoked(
                    org.id.as_str(),
                    key.as_str(),
                    now_ms,
                    crate::api_keys::REVOCATION_MARK_MS,
                )
                .await;
            if let Err(err) = marked {
                tracing::error!(error = ?err, key_id = %key, "could not set the revocation mark");
            }
        }
        tracing::info!(org_id = %org.id, "organization deleted");
        Ok(())
    }

    /// The org's members, for any member.
    pub async fn members(
        &self,
        caller: &UserId,
        org: &str,
        page: &PageRequest,
    ) -> Result<Page<Membership>, OrgError> {
        let (org, _) = self.load(caller, org, OrgAction::ViewMembers).await?;
        Ok(self.store.members(&org.id, page).await?)
    }

    /// Changes the role of `current`, a member of `org`, to `role`, as a caller whose role there
    /// is `actor_role` (read by [`Orgs::load`]). Adding someone who is not a member is an
    /// invitation instead: see [`crate::invitations::Invitations::add_member`].
    #[tracing::instrument(skip_all, fields(user_id = %caller, org_id = %org.id))]
    pub async fn change_role(
        &self,
        caller: &UserId,
        org: &Org,
        actor_role: Role,
        current: Membership,
        role: Role,
        origin: &AuditOrigin,
    ) -> Result<Membership, OrgError> {
        authorize(
            actor_role,
            OrgAction::ChangeRole {
                from: current.role,
                to: role,
            },
        )?;
        if current.role == role {
            return Ok(current);
        }
        let membership = Membership {
            role,
            ..current.clone()
        };
        let audit = AuditEntry::new(
            &org.id,
            caller,
            "member.role_changed",
            current.user_id.as_str(),
            origin,
            self.now(),
        )
        .change(
            Some(member_state(&current)),
            Some(member_state(&membership)),
        );
        self.store
            .set_member_role(&membership, Some(current.role), &audit)
            .await?;
        Ok(membership)
    }

    /// Removes a member: owners and admins remove others (only owners remove owners); anyone
    /// may leave.
    #[tracing::instrument(skip_all, fields(user_id = %caller, org_id = %org))]
    pub async fn remove_member(
        &self,
        caller: &UserId,
        org: &str,
        member: &str,
        origin: &AuditOrigin,
    ) -> Result<(), OrgError> {
        let (org, actor_role) = self.load(caller, org, OrgAction::ViewMembers).await?;
        let member = UserId::parse(member).ok_or(OrgError::MemberNotFound)?;
        let current = self
            .store
            .member(&org.id, &member)
            .await?
            .ok_or(OrgError::MemberNotFound)?;
        let is_self = member == *caller;
        authorize(
            actor_role,
            OrgAction::RemoveMember {
                role: current.role,
                is_self,
            },
        )?;
        let name = if is_self {
            "member.left"
        } else {
            "member.removed"
        };
        let audit = AuditEntry::new(&org.id, caller, name, member.as_str(), origin, self.now())
            .change(Some(member_state(&current)), None);
        self.store
            .remove_member(&org.id, &member, current.role, &audit)
            .await?;
        Ok(())
    }

    /// Records a change to the caller's own account (e.g. `user.password_changed`) in their
    /// own security log, with the IP and User-Agent it came from. Never in an org's audit log:
    /// an org's admins have no business seeing a member's addresses and browsers.
    pub async fn record_account_event(
        &self,
        caller: &UserId,
        action: &str,
        origin: &AuditOrigin,
    ) -> Result<(), OrgError> {
        let event = SecurityEvent::new(caller, action, origin, self.now());
        self.store.append_security_event(&event).await?;
        Ok(())
    }

    /// The caller's own security log, newest first.
    pub async fn security_log(
        &self,
        caller: &UserId,
        page: &PageRequest,
    ) -> Result<Page<SecurityEvent>, OrgError> {
        Ok(self.store.security_log(caller, page).await?)
    }

    /// The audit log, newest first (owners and admins).
    pub async fn audit_log(
        &self,
        caller: &UserId,
        org: &str,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>, OrgError> {
        let (org, _) = self.load(caller, org, OrgAction::ViewAuditLog).await?;
        Ok(self.store.audit_log(&org.id, page).await?)
    }
}
