//! Organizations, their members' roles, and who may do what: the tenancy rules, kept free of
//! I/O so every endpoint and backend applies the same ones.

use super::user::short_text;
use super::{Email, OrgId, UserId, ValidationError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A member's role; `Owner` > `Admin` > `Member`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the org and its members.
    Member,
    /// Also manages members (not owners), settings, keys and reads the audit log.
    Admin,
    /// Everything, including granting or removing `owner` and deleting the org.
    Owner,
}

impl Role {
    /// The role as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ValidationError;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "member" => Ok(Self::Member),
            "admin" => Ok(Self::Admin),
            "owner" => Ok(Self::Owner),
            _ => Err(ValidationError::new(
                "role",
                "must be one of owner, admin, member",
            )),
        }
    }
}

/// An organization name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgName(String);

impl OrgName {
    /// Validates a name.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        short_text("name", raw).map(Self)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The highest per-org request rate accepted (requests per minute).
pub const MAX_RATE_LIMIT_RPM: u32 = 1_000_000;

/// Checks a requested per-minute rate limit (`1..=1_000_000`).
pub fn parse_rate_limit(field: &'static str, rpm: i64) -> Result<u32, ValidationError> {
    u32::try_from(rpm)
        .ok()
        .filter(|rpm| (1..=MAX_RATE_LIMIT_RPM).contains(rpm))
        .ok_or_else(|| ValidationError::new(field, format!("must be 1 to {MAX_RATE_LIMIT_RPM}")))
}

/// An organization: the tenant every key, limit, event and invoice belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    /// Its id.
    pub id: OrgId,
    /// Its display name.
    pub name: String,
    /// Requests per minute across the org's keys; `None` for the plan default.
    pub rate_limit_rpm: Option<u32>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A user's membership of an org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The org.
    pub org_id: OrgId,
    /// The user.
    pub user_id: UserId,
    /// The user's email (kept with the membership so listings need no join).
    pub email: Email,
    /// The role in this org.
    pub role: Role,
    /// When the user joined.
    pub joined_at: DateTime<Utc>,
}

/// What a caller wants to do to an org, for [`authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgAction {
    /// Read the org.
    View,
    /// Rename it or change its limits.
    Update,
    /// Delete it.
    Delete,
    /// List its members.
    ViewMembers,
    /// Add a user with a role.
    AddMember(Role),
    /// Change a member's role.
    ChangeRole {
        /// The member's role now.
        from: Role,
        /// The role asked for.
        to: Role,
    },
    /// Remove a member (possibly oneself).
    RemoveMember {
        /// The member's role.
        role: Role,
        /// Whether the caller removes themself (leaves).
        is_self: bool,
    },
    /// Read the audit log.
    ViewAuditLog,
    /// List the org's API keys (metadata only).
    ViewApiKeys,
    /// Create or revoke API keys.
    ManageApiKeys,
    /// Read the org's usage reports.
    ViewUsage,
    /// Read the upcoming invoice.
    ViewInvoices,
    /// Read or change the subscription.
    ManageBilling,
}

/// The caller's role does not allow the action (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub &'static str);

/// The role rules: owner > admin > member; only an owner grants or removes `owner`; anyone
/// may leave. (Whether the last owner may go is the store's atomic check, not this one.)
pub fn authorize(actor: Role, action: OrgAction) -> Result<(), Denied> {
    let managers = actor >= Role::Admin;
    let touches_owner = match action {
        OrgAction::AddMember(role) => role == Role::Owner,
        OrgAction::ChangeRole { from, to } => from == Role::Owner || to == Role::Owner,
        OrgAction::RemoveMember { role, is_self } => !is_self && role == Role::Owner,
        _ => false,
    };
    if touches_owner && actor != Role::Owner {
        return Err(Denied("only an owner can grant or remove the owner role"));
    }
    let allowed = match action {
        OrgAction::View
        | OrgAction::ViewMembers
        | OrgAction::ViewApiKeys
        | OrgAction::ViewUsage => true,
        OrgAction::Delete | OrgAction::ManageBilling => actor == Role::Owner,
        OrgAction::RemoveMember { is_self: true, .. } => true,
        OrgAction::Update
        | OrgAction::AddMember(_)
        | OrgAction::ChangeRole { .. }
        | OrgAction::RemoveMember { .. }
        | OrgAction::ViewAuditLog
        | OrgAction::ManageApiKeys
        | OrgAction::ViewInvoices => managers,
    };
    if allowed {
        Ok(())
    } else if action == OrgAction::Delete {
        Err(Denied("only an owner can delete the organization"))
    } else if action == OrgAction::ManageBilling {
        Err(Denied("only an owner can manage the subscription"))
    } else {
        Err(Denied("this needs the admin or owner role"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::{Admin, Member, Owner};

    #[test]
    fn roles_order_and_parse() {
        assert!(Owner > Admin && Admin > Member);
        assert_eq!("admin".parse::<Role>(), Ok(Admin));
        assert!("Admin".parse::<Role>().is_err());
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn the_role_matrix() {
        let ok = |actor, action| authorize(actor, action).is_ok();
        for role in [Owner, Admin, Member] {
            assert!(ok(role, OrgAction::View));
            assert!(ok(role, OrgAction::ViewMembers));
            assert!(ok(
                role,
                OrgAction::RemoveMember {
                    role,
                    is_self: true
                }
            ));
        }
        assert!(ok(Owner, OrgAction::Delete));
        assert!(!ok(Admin, OrgAction::Delete) && !ok(Member, OrgAction::Delete));
        for action in [
            OrgAction::Update,
            OrgAction::ViewAuditLog,
            OrgAction::AddMember(Member),
        ] {
            assert!(ok(Owner, action) && ok(Admin, action) && !ok(Member, action));
        }
        assert!(ok(Owner, OrgAction::AddMember(Owner)));
        assert!(!ok(Admin, OrgAction::AddMember(Owner)));
        assert!(ok(
            Admin,
            OrgAction::ChangeRole {
                from: Member,
                to: Admin
            }
        ));
        assert!(!ok(
            Admin,
            OrgAction::ChangeRole {
                from: Owner,
                to: Admin
            }
        ));
        assert!(!ok(
            Admin,
            OrgAction::ChangeRole {
                from: Admin,
                to: Owner
            }
        ));
        assert!(ok(
            Owner,
            OrgAction::ChangeRole {
                from: Owner,
                to: Member
            }
        ));
        assert!(ok(
            Admin,
            OrgAction::RemoveMember {
                role: Admin,
                is_self: false
            }
        ));
        assert!(!ok(
            Admin,
            OrgAction::RemoveMember {
                role: Owner,
                is_self: false
            }
        ));
        assert!(!ok(
            Member,
            OrgAction::RemoveMember {
                role: Member,
                is_self: false
            }
        ));
    }

    #[test]
    fn names_and_limits_are_checked() {
        assert_eq!(
            OrgName::parse("  Acme  ").map(|n| n.as_str().to_owned()),
            Ok("Acme".into())
        );
        assert!(OrgName::parse("   ").is_err());
        assert!(OrgName::parse(&"x".repeat(101)).is_err());
        assert_eq!(parse_rate_limit("rate_limit_rpm", 600), Ok(600));
        assert!(parse_rate_limit("rate_limit_rpm", 0).is_err());
        assert!(parse_rate_limit("rate_limit_rpm", -5).is_err());
        assert!(parse_rate_limit("rate_limit_rpm", 1_000_001).is_err());
    }
}
