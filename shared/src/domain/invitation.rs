//! Invitations: nobody becomes a member of an org without consent. Adding someone who is not a
//! member yet makes an invitation to their address; membership starts when they accept it.

use super::{Email, InvitationId, OrgId, Role, UserId};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// How long an invitation can be accepted, in days.
pub const INVITATION_TTL_DAYS: i64 = 7;

/// An invitation to join an org, addressed to an email (which may not have an account yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// Its id.
    pub id: InvitationId,
    /// The org to join.
    pub org_id: OrgId,
    /// The org's name when the invitation was made, for the invitee who cannot read the org.
    pub org_name: String,
    /// Whom it is for: only an account with this verified address sees or accepts it.
    pub email: Email,
    /// The role the invitee gets on accepting.
    pub role: Role,
    /// Who invited.
    pub invited_by: UserId,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it can no longer be accepted.
    pub expires_at: DateTime<Utc>,
}

/// Where an invitation stands. Accepted, declined and revoked invitations are deleted (the
/// org's audit log keeps their story), so only these two are ever seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InvitationStatus {
    /// Can be accepted or declined.
    Pending,
    /// Past its expiry: can only be declined, or revoked and made again.
    Expired,
}

impl Invitation {
    /// A new invitation made `now`, valid for [`INVITATION_TTL_DAYS`].
    pub fn new(
        org_id: &OrgId,
        org_name: &str,
        email: Email,
        role: Role,
        invited_by: &UserId,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: InvitationId::generate(),
            org_id: org_id.clone(),
            org_name: org_name.to_owned(),
            email,
            role,
            invited_by: invited_by.clone(),
            created_at: now,
            expires_at: now + Duration::days(INVITATION_TTL_DAYS),
        }
    }

    /// Its status at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> InvitationStatus {
        if now >= self.expires_at {
            InvitationStatus::Expired
        } else {
            InvitationStatus::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invitation_expires_after_seven_days() {
        let now = Utc::now();
        let invitation = Invitation::new(
            &OrgId::generate(),
            "Acme",
            Email::from_trusted("ann@example.com".into()),
            Role::Member,
            &UserId::generate(),
            now,
        );
        assert_eq!(invitation.status(now), InvitationStatus::Pending);
        assert_eq!(
            invitation.status(now + Duration::days(7) - Duration::seconds(1)),
            InvitationStatus::Pending
        );
        assert_eq!(
            invitation.status(now + Duration::days(7)),
            InvitationStatus::Expired
        );
    }
}
