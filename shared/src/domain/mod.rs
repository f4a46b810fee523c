//! Plain types and rules of Meterline, free of any I/O: what a user, an id or an email *is*.
//!
//! Everything that enters the system from outside is parsed into one of these types at the edge,
//! so the rest of the code never handles a raw, unvalidated string.

mod api_key;
mod audit;
mod email;
mod ids;
mod invitation;
mod invoice;
mod org;
mod page;
mod password;
mod plan;
mod security_event;
mod team;
mod usage;
mod user;

pub use api_key::ApiKey;
pub use audit::{AuditEntry, AuditOrigin};
pub use email::Email;
pub use ids::{
    ApiKeyId, AuditEntryId, InvitationId, OrgId, SecurityEventId, SessionId, TeamId, TokenId,
    UserId,
};
pub use invitation::{INVITATION_TTL_DAYS, Invitation, InvitationStatus};
pub use invoice::{PricedSpan, compute_invoice};
pub use org::{
    Denied, MAX_RATE_LIMIT_RPM, Membership, Org, OrgAction, OrgName, Role, authorize,
    parse_rate_limit,
};
pub use page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, PageRequest};
pub use password::{Password, PasswordAttempt};
pub use plan::{
    ANY_METER, Invoice, InvoiceLine, MAX_HISTORY_SPANS, MAX_PLAN_CHANGES_PER_PERIOD,
    MAX_PRICE_CENTS, Plan, PlanChangeCount, PlanId, PlanSpan, PlanTerms, SpanUsage, Subscription,
    SubscriptionStatus, Tier, billing_period,
};
pub use security_event::SecurityEvent;
pub use team::{Team, TeamCreated, TeamDeleted, TeamMember, TeamMemberAdded, TeamName};
pub use usage::{
    CounterKey, DEFAULT_METER, Granularity, UsageEvent, UsagePoint, parse_event_id, parse_meter,
    parse_quantity, sum_counters,
};
pub use user::{DisplayName, User, short_text};

/// Why a value from a client was refused; carried to a 422 problem naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The request field the value came from, as the client named it.
    pub field: std::borrow::Cow<'static, str>,
    /// A sentence a client developer can act on.
    pub message: String,
}

impl ValidationError {
    /// Builds the error for `field` with a human-readable `message`.
    pub fn new(
        field: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
