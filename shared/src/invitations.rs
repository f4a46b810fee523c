//! Invitations: nobody becomes a member of an org without consent. Owners and admins add
//! someone who is not a member by inviting their address (mailed, valid 7 days); membership
//! starts when the invitee, signed in with that address verified, accepts. The answer to the
//! inviter is the same whether or not the address has an account.
//!
//! Every step is in the org's audit log: `invitation.created`, `invitation.accepted`,
//! `invitation.declined`, `invitation.revoked`.
//!
//! Invitation mails to one address are throttled like every other mail
//! (`MAIL_PER_EMAIL_PER_MIN`, whichever org or admin sends them), so an admin cannot turn the
//! invitation route into a way to flood somebody's inbox.

use crate::clock::Clock;
use crate::config::FailMode;
use crate::domain::{
    AuditEntry, AuditOrigin, Email, Invitation, InvitationId, InvitationStatus, Membership,
    OrgAction, OrgId, Page, PageRequest, Role, UserId, authorize,
};
use crate::http::ApiError;
use crate::mail::Postman;
use crate::mail::templates::{self, Branding};
use crate::orgs::{OrgError, Orgs};
use crate::ratelimit::{Bucket, Decision, Limiter};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Why an invitation operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum InvitationError {
    /// The org-side rules refused (not a member: 404; role: 403).
    #[error(transparent)]
    Org(#[from] OrgError),
    /// No such invitation for this org, or to this caller's address.
    #[error("no such invitation")]
    NotFound,
    /// The invitation is past its expiry; ask for a new one.
    #[error("the invitation has expired; ask the organization for a new one")]
    Expired,
    /// The caller is a member of the org already.
    #[error("you are a member of this organization already")]
    AlreadyMember,
    /// The caller's address is not verified, so it is not proven to be theirs.
    #[error("verify your email address to see and answer invitations to it")]
    EmailNotVerified,
    /// The address was sent an invitation moments ago; try again after `retry_after`.
    #[error("this address was just sent an invitation; try again shortly")]
    Throttled {
        /// How long until the address may be mailed again.
        retry_after: Duration,
    },
    /// The limiter is down and fails closed: no mail can be sent safely.
    #[error("invitations cannot be sent right now")]
    Unavailable(#[source] anyhow::Error),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<InvitationError> for ApiError {
    fn from(err: InvitationError) -> Self {
        let detail = err.to_string();
        match err {
            InvitationError::Org(err) => err.into(),
            InvitationError::Store(err) => err.into(),
            InvitationError::NotFound => Self::NotFound {
                code: "invitation_not_found",
                detail,
            },
            InvitationError::Expired => Self::Conflict {
                code: "invitation_expired",
                detail,
            },
            InvitationError::AlreadyMember => Self::Conflict {
                code: "already_member",
                detail,
            },
            InvitationError::EmailNotVerified => Self::Refused {
                code: "email_not_verified",
                detail,
            },
            InvitationError::Throttled { retry_after } => Self::TooManyRequests {
                code: "rate_limited",
                detail,
                retry_after_secs: retry_after.as_secs_f64().ceil().max(1.0) as u64,
            },
            InvitationError::Unavailable(cause) => Self::Unavailable(cause),
        }
    }
}

/// What adding someone to an org did.
#[derive(Debug, Clone)]
pub enum MemberAdded {
    /// They were a member: their role is now the one asked for (200).
    Updated(Membership),
    /// They were not: an invitation went to their address (202).
    Invited(Invitation),
}

/// An invitation as the API shows it, to the org's managers and to the invitee alike.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    /// Its id.
    pub id: InvitationId,
    /// The org to join.
    pub org_id: OrgId,
    /// The org's name.
    pub org_name: String,
    /// The invited address.
    pub email: Email,
    /// The role on accepting.
    pub role: Role,
    /// `pending` or `expired`.
    pub status: InvitationStatus,
    /// When it stops being acceptable.
    #[serde(with = "crate::time_format")]
    pub expires_at: DateTime<Utc>,
}

impl InvitationView {
    /// The view of `invitation` at `now`.
    pub fn of(invitation: Invitation, now: DateTime<Utc>) -> Self {
        Self {
            status: invitation.status(now),
            id: invitation.id,
            org_id: invitation.org_id,
            org_name: invitation.org_name,
            email: invitation.email,
            role: invitation.role,
            expires_at: invitation.expires_at,
        }
    }
}

/// The membership an accepted invitation started, as its new member sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JoinedView {
    /// The org joined.
    pub org_id: OrgId,
    /// The new member (the caller).
    pub user_id: UserId,
    /// Their address.
    pub email: Email,
    /// Their role.
    pub role: Role,
    /// When they joined.
    #[serde(with = "crate::time_format")]
    pub joined_at: DateTime<Utc>,
}

impl JoinedView {
    /// The view of `member`.
    pub fn of(member: Membership) -> Self {
        Self {
            org_id: member.org_id,
            user_id: member.user_id,
            email: member.email,
            role: member.role,
            joined_at: member.joined_at,
        }
    }
}

fn invitation_state(invitation: &Invitation) -> Value {
    json!({
        "email": invitation.email,
        "role": invitation.role,
        "expires_at": invitation
            .expires_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

fn member_state(member: &Membership) -> Value {
    json!({ "user_id": member.user_id, "email": member.email, "role": member.role })
}

/// The invitation service. Cheap to clone.
#[derive(Clone)]
pub struct Invitations {
    store: Arc<dyn Store>,
    orgs: Orgs,
    postman: Postman,
    brand: Branding,
    clock: Arc<dyn Clock>,
    mail_limit: MailLimit,
}

/// How invitation mails to one address are throttled.
#[derive(Clone)]
pub struct MailLimit {
    /// The limiter the other mails are throttled in.
    pub limiter: Arc<dyn Limiter>,
    /// Invitation mails one address may be sent per minute (0 = unlimited).
    pub per_address_per_min: u32,
    /// What to do when the limiter is down.
    pub fail_mode: FailMode,
}

impl Invitations {
    /// The service over `store`, checking org roles through `orgs` and mailing invitees
    /// through `postman`.
    pub fn new(
        store: Arc<dyn Store>,
        orgs: Orgs,
        postman: Postman,
        brand: Branding,
        clock: Arc<dyn Clock>,
        mail_limit: MailLimit,
    ) -> Self {
        Self {
            store,
            orgs,
            postman,
            brand,
            clock,
            mail_limit,
        }
    }

    /// Counts one invitation mail to `email`, or refuses it when the address had its share.
    async fn throttle_mail(&self, email: &Email) -> Result<(), InvitationError> {
        let limit = &self.mail_limit;
        if limit.per_address_per_min == 0 {
            return Ok(());
        }
        // The address is hashed so limiter keys never hold an email.
        let hashed = hex::encode(Sha256::digest(email.as_str().as_bytes()));
        let bucket = Bucket {
            key: format!("mail:invitation:{}", &hashed[..32]),
            per_minute: limit.per_address_per_min,
        };
        let now_ms = self.clock.now().timestamp_millis();
        match limit.limiter.check_buckets(&[bucket], now_ms).await {
            Ok(Decision::RateLimited { retry_after_ms, .. }) => {
                tracing::warn!("invitation mails to one address throttled");
                Err(InvitationError::Throttled {
                    retry_after: Duration::from_millis(retry_after_ms),
                })
            }
            Ok(_) => Ok(()),
            Err(err) => match limit.fail_mode {
                FailMode::Open => {
                    tracing::warn!(error = %err, "limiter down; invitation mail let through");
                    Ok(())
                }
                FailMode::Closed => Err(InvitationError::Unavailable(err.into())),
            },
        }
    }

    /// The time invitations are judged at.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now_millis()
    }

    /// `POST /v1/orgs/{org}/members`: re-roles a member, or invites anyone else (replacing an
    /// earlier invitation of the org to the same address) and mails them. Owners and admins
    /// only; only owners invite owners.
    #[tracing::instrument(skip_all, fields(user_id = %caller, org_id = %org))]
    pub async fn add_member(
        &self,
        caller: &UserId,
        org: &str,
        email: &Email,
        role: Role,
        origin: &AuditOrigin,
    ) -> Result<MemberAdded, InvitationError> {
        let (org, actor_role) = self.orgs.load(caller, org, OrgAction::ViewMembers).await?;
        if let Some(account) = self.store.user_by_email(email).await?
            && let Some(current) = self.store.member(&org.id, &account.user.id).await?
        {
            let member = self
                .orgs
                .change_role(caller, &org, actor_role, current, role, origin)
                .await?;
            return Ok(MemberAdded::Updated(member));
        }
        authorize(actor_role, OrgAction::AddMember(role)).map_err(OrgError::from)?;
        self.throttle_mail(email).await?;
        let now = self.now();
        let earlier = self.store.invitation_of_org_to(&org.id, email).await?;
        let invitation = Invitation::new(&org.id, &org.name, email.clone(), role, caller, now);
        let audit = AuditEntry::new(
            &org.id,
            caller,
            "invitation.created",
            invitation.id.as_str(),
            origin,
            now,
        )
        .change(
            earlier.as_ref().map(invitation_state),
            Some(invitation_state(&invitation)),
        );
        self.store
            .create_invitation(&invitation, earlier.as_ref(), &audit)
            .await?;
        let mail = templates::invitation(
            &self.brand,
            email.clone(),
            &org.name,
            role.as_str(),
            invitation.expires_at,
        );
        if let Err(err) = self.postman.send(&mail).await {
            tracing::error!(error = %err, "invitation mail not sent");
        }
        tracing::info!(invitation_id = %invitation.id, "invitation created");
        Ok(MemberAdded::Invited(invitation))
    }

    /// The org's invitations, pending and expired, newest first (owners and admins).
    pub async fn of_org(
        &self,
        caller: &UserId,
        org: &str,
        page: &PageRequest,
    ) -> Result<Page<Invitation>, InvitationError> {
        // Whoever may add members may see the invitations that add them.
        let (org, _) = self
            .orgs
            .load(caller, org, OrgAction::AddMember(Role::Member))
            .await?;
        Ok(self.store.org_invitations(&org.id, page).await?)
    }

    /// Revokes one of the org's invitations (owners and admins; only owners revoke an
    /// invitation to become owner).
    #[tracing::instrument(skip_all, fields(user_id = %caller, org_id = %org))]
    pub async fn revoke(
        &self,
        caller: &UserId,
        org: &str,
        id: &str,
        origin: &AuditOrigin,
    ) -> Result<(), InvitationError> {
        let (org, actor_role) = self
            .orgs
            .load(caller, org, OrgAction::AddMember(Role::Member))
            .await?;
        let id = InvitationId::parse(id).ok_or(InvitationError::NotFound)?;
        let invitation = self
            .store
            .org_invitation(&org.id, &id)
            .await?
            .ok_or(InvitationError::NotFound)?;
        authorize(actor_role, OrgAction::AddMember(invitation.role)).map_err(OrgError::from)?;
        let audit = AuditEntry::new(
            &org.id,
            caller,
            "invitation.revoked",
            invitation.id.as_str(),
            origin,
            self.now(),
        )
        .change(Some(invitation_state(&invitation)), None);
        if !self.store.delete_invitation(&invitation, &audit).await? {
            return Err(InvitationError::NotFound);
        }
        Ok(())
    }

    /// The caller's address, once proven theirs: invitations go to addresses, so an account
    /// whose address is not verified (anyone can sign up with anyone's) sees none.
    async fn verified_email(&self, caller: &UserId) -> Result<Email, InvitationError> {
        let account = self
            .store
            .user_by_id(caller)
            .await?
            .ok_or(InvitationError::EmailNotVerified)?;
        if !account.user.email_verified {
            return Err(InvitationError::EmailNotVerified);
        }
        Ok(account.user.email)
    }

    /// The caller's invitation `id`, after checking their address is verified.
    async fn mine_by_id(&self, caller: &UserId, id: &str) -> Result<Invitation, InvitationError> {
        let email = self.verified_email(caller).await?;
        let id = InvitationId::parse(id).ok_or(InvitationError::NotFound)?;
        self.store
            .invitation_to(&email, &id)
            .await?
            .ok_or(InvitationError::NotFound)
    }

    /// The caller's pending invitations, newest first. A page may hold fewer than `limit`
    /// items when expired ones were skipped; follow its cursor.
    pub async fn mine(
        &self,
        caller: &UserId,
        page: &PageRequest,
    ) -> Result<Page<Invitation>, InvitationError> {
        let email = self.verified_email(caller).await?;
        let now = self.now();
        let mut listed = self.store.invitations_to(&email, page).await?;
        listed
            .items
            .retain(|invitation| invitation.status(now) == InvitationStatus::Pending);
        Ok(listed)
    }

    /// Accepts the caller's invitation: they become a member with its role.
    #[tracing::instrument(skip_all, fields(user_id = %caller))]
    pub async fn accept(
        &self,
        caller: &UserId,
        id: &str,
        origin: &AuditOrigin,
    ) -> Result<Membership, InvitationError> {
        let invitation = self.mine_by_id(caller, id).await?;
        let now = self.now();
        if invitation.status(now) == InvitationStatus::Expired {
            return Err(InvitationError::Expired);
        }
        let membership = Membership {
            org_id: invitation.org_id.clone(),
            user_id: caller.clone(),
            email: invitation.email.clone(),
            role: invitation.role,
            joined_at: now,
        };
        let audit = AuditEntry::new(
            &invitation.org_id,
            caller,
            "invitation.accepted",
            invitation.id.as_str(),
            origin,
            now,
        )
        .change(
            Some(invitation_state(&invitation)),
            Some(member_state(&membership)),
        );
        match self
            .store
            .accept_invitation(&invitation, &membership, &audit)
            .await
        {
            Ok(()) => Ok(membership),
            Err(StoreError::Conflict) => {
                // Already a member, or the invitation (or its org) went in the meantime.
                match self.store.member(&invitation.org_id, caller).await? {
                    Some(_) => Err(InvitationError::AlreadyMember),
                    None => Err(InvitationError::NotFound),
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Declines the caller's invitation (expired ones too): it is deleted.
    #[tracing::instrument(skip_all, fields(user_id = %caller))]
    pub async fn decline(
        &self,
        caller: &UserId,
        id: &str,
        origin: &AuditOrigin,
    ) -> Result<(), InvitationError> {
        let invitation = self.mine_by_id(caller, id).await?;
        let audit = AuditEntry::new(
            &invitation.org_id,
            caller,
            "invitation.declined",
            invitation.id.as_str(),
            origin,
            self.now(),
        )
        .change(Some(invitation_state(&invitation)), None);
        if !self.store.delete_invitation(&invitation, &audit).await? {
            return Err(InvitationError::NotFound);
        }
        Ok(())
    }
}
