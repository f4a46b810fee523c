//! Billing: plans (public catalog, edited by platform admins), each org's subscription (owner
//! only), usage reports, the upcoming invoice, and the payment provider's webhooks. Every
//! change is an audit entry: subscription changes in the org's log, plan changes in the
//! platform log ([`PLATFORM_LOG`]).

mod plan_book;
mod webhook;

pub use plan_book::PlanBook;
pub use webhook::WebhookOutcome;

use crate::auth::WebhookSecret;
use crate::clock::Clock;
use crate::domain::{
    AuditEntry, AuditOrigin, Email, Granularity, Invoice, MAX_PLAN_CHANGES_PER_PERIOD, Org,
    OrgAction, OrgId, Page, PageRequest, Plan, PlanId, PlanSpan, PlanTerms, PricedSpan,
    Subscription, SubscriptionStatus, UsagePoint, UserId, ValidationError, billing_period,
    compute_invoice,
};
use crate::orgs::{OrgError, Orgs};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The audit log of platform-wide changes (plans): an org id no org can have (the nil ULID).
pub const PLATFORM_LOG: &str = "org_00000000000000000000000000";

/// The actor of changes Meterline makes itself (webhooks from the payment provider, a
/// cancellation taking effect): a user id no account can have.
pub const SYSTEM_ACTOR: &str = "usr_00000000000000000000000000";

/// Why a billing operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The org is unknown to the caller, or the caller lacks the role.
    #[error(transparent)]
    Org(#[from] OrgError),
    /// No such plan.
    #[error("no such plan")]
    PlanNotFound,
    /// A plan with this id exists already.
    #[error("a plan with this id exists already")]
    PlanExists,
    /// The plan takes no new subscribers.
    #[error("the plan is archived and takes no new subscribers")]
    PlanArchived,
    /// Plans are edited by platform admins only.
    #[error("only a platform admin can change plans")]
    NotPlatformAdmin,
    /// The default plan is every org's fallback, so it can never be archived.
    #[error("the default plan cannot be archived; every org falls back to it")]
    DefaultPlan,
    /// The owner made [`MAX_PLAN_CHANGES_PER_PERIOD`] plan changes this period already.
    #[error(
        "at most {MAX_PLAN_CHANGES_PER_PERIOD} plan changes are allowed per billing period; try again next period"
    )]
    TooManyPlanChanges,
    /// There is no paid subscription to cancel.
    #[error("the organization is on the default plan; there is nothing to cancel")]
    NothingToCancel,
    /// A value breaks a rule.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The webhook's signature is missing, malformed, stale or wrong.
    #[error("the webhook signature is not valid: {0}")]
    Signature(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A usage report: the counters of a range, and their totals per meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    /// The range's start (inclusive).
    #[serde(with = "crate::time_format")]
    pub from: DateTime<Utc>,
    /// The range's end (exclusive).
    #[serde(with = "crate::time_format")]
    pub to: DateTime<Utc>,
    /// The counters' period.
    pub granularity: Granularity,
    /// Counters by period, then meter.
    pub series: Vec<UsagePoint>,
    /// Units per meter over the range.
    pub totals: BTreeMap<String, u64>,
}

/// A subscription as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    /// The org.
    pub org_id: OrgId,
    /// The plan now.
    pub plan_id: PlanId,
    /// Standing with the payment provider.
    pub status: SubscriptionStatus,
    /// Whether it falls back to the default plan when the period ends.
    pub cancel_at_period_end: bool,
    /// The plan a scheduled downgrade moves to when the period ends; `null` when none.
    #[schema(value_type = Option<PlanId>)]
    pub pending_plan_id: Option<PlanId>,
    /// The current period's start.
    #[serde(with = "crate::time_format")]
    pub current_period_start: DateTime<Utc>,
    /// The current period's end.
    #[serde(with = "crate::time_format")]
    pub current_period_end: DateTime<Utc>,
}

impl SubscriptionView {
    fn of(subscription: &Subscription, now: DateTime<Utc>) -> Self {
        let (start, end) = billing_period(now);
        Self {
            org_id: subscription.org_id.clone(),
            plan_id: subscription.plan_id.clone(),
            status: subscription.status,
            cancel_at_period_end: subscription.cancel_at.is_some(),
            pending_plan_id: subscription
                .pending
                .as_ref()
                .map(|pending| pending.plan_id.clone()),
            current_period_start: start,
            current_period_end: end,
        }
    }
}

fn subscription_state(subscription: &Subscription) -> serde_json::Value {
    json!({
        "plan_id": subscription.plan_id,
        "status": subscription.status,
        "cancel_at": subscription.cancel_at.map(|at| at.to_rfc3339()),
        "pending_plan_id": subscription.pending.as_ref().map(|pending| &pending.plan_id),
    })
}

/// The longest range a usage report covers at each granularity, so one request stays small.
fn max_range(granularity: Granularity) -> Duration {
    match granularity {
        Granularity::Hour => Duration::days(31),
        Granularity::Day => Duration::days(366),
        Granularity::Month => Duration::days(3660),
    }
}

/// Plan and webhook settings.
#[derive(Debug, Clone)]
pub struct BillingPolicy {
    /// Accounts that may create and edit plans.
    pub platform_admins: Vec<Email>,
    /// The webhook signing secret; `None` refuses every webhook.
    pub webhook_secret: Option<WebhookSecret>,
    /// How old a signed webhook may be.
    pub webhook_tolerance: Duration,
}

/// The billing service. Cheap to clone.
#[derive(Clone)]
pub struct Billing {
    store: Arc<dyn Store>,
    orgs: Orgs,
    plans: PlanBook,
    clock: Arc<dyn Clock>,
    policy: Arc<BillingPolicy>,
}

impl Billing {
    /// The service over its parts.
    pub fn new(
        store: Arc<dyn Store>,
        orgs: Orgs,
        plans: PlanBook,
        clock: Arc<dyn Clock>,
        policy: BillingPolicy,
    ) -> Self {
        Self {
            store,
            orgs,
            plans,
            clock,
            policy: Arc::new(policy),
        }
    }

    /// The plan book this service reads.
    pub fn plan_book(&self) -> &PlanBook {
        &self.plans
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now_millis()
    }

    fn platform_log() -> Result<OrgId, BillingError> {
        OrgId::parse(PLATFORM_LOG)
            .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("bad platform log id")).into())
    }

    fn system_actor() -> Result<UserId, BillingError> {
        UserId::parse(SYSTEM_ACTOR)
            .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("bad system actor id")).into())
    }

    /// Platform-admin rights hold for a configured address only once its owner has proven it:
    /// anyone may sign up with an address, so an unverified one proves nothing.
    async fn require_platform_admin(&self, caller: &UserId) -> Result<(), BillingError> {
        let account = self.store.user_by_id(caller).await?;
        match account {
            Some(account)
                if account.user.email_verified
                    && self.policy.platform_admins.contains(&account.user.email) =>
            {
                Ok(())
            }
            _ => Err(BillingError::NotPlatformAdmin),
        }
    }

    /// The plans open to subscribers (or every plan, archived included), by id.
    pub async fn plans(&self, include_archived: bool) -> Result<Vec<Plan>, BillingError> {
        let mut plans = self.plans.all().await?;
        plans.retain(|plan| include_archived || !plan.archived);
        Ok(plans)
    }

    /// One plan, archived or not.
    pub async fn plan(&self, id: &str) -> Result<Plan, BillingError> {
        let id = PlanId::parse(id).ok_or(BillingError::PlanNotFound)?;
        self.plans
            .fresh(&id)
            .await?
            .ok_or(BillingError::PlanNotFound)
    }

    async fn write_plan(
        &self,
        caller: &UserId,
        action: &str,
        before: Option<&Plan>,
        after: &Plan,
        origin: &AuditOrigin,
    ) -> Result<(), BillingError> {
        let audit = AuditEntry::new(
            &Self::platform_log()?,
            caller,
            action,
            after.id.as_str(),
            origin,
            after.updated_at,
        )
        .change(before.map(|plan| json!(plan)), Some(json!(after)));
        self.store.put_plan(after, &audit).await?;
        self.plans.forget(&after.id);
        tracing::info!(plan_id = %after.id, action, "plan written");
        Ok(())
    }

    /// Creates a plan (platform admins), with the given id or a generated one.
    pub async fn create_plan(
        &self,
        caller: &UserId,
        id: Option<PlanId>,
        terms: PlanTerms,
        origin: &AuditOrigin,
    ) -> Result<Plan, BillingError> {
        self.require_platform_admin(caller).await?;
        terms.validate()?;
        let id = id.unwrap_or_else(PlanId::generate);
        if self.plans.fresh(&id).await?.is_some() {
            return Err(BillingError::PlanExists);
        }
        let plan = terms.into_plan(id, None, self.now());
        self.write_plan(caller, "plan.created", None, &plan, origin)
            .await?;
        Ok(plan)
    }

    /// Replaces a plan's terms (platform admins). Orgs on it get the new limits within a
    /// minute and the new prices on their next invoice. An archived plan cannot be edited.
    pub async fn update_plan(
        &self,
        caller: &UserId,
        id: &str,
        terms: PlanTerms,
        origin: &AuditOrigin,
    ) -> Result<Plan, BillingError> {
        self.require_platform_admin(caller).await?;
        let before = self.plan(id).await?;
        if before.archived {
            // Its subscribers stay on the terms they chose; an archived plan is frozen.
            return Err(BillingError::PlanArchived);
        }
        terms.validate()?;
        let after = terms.into_plan(before.id.clone(), Some(&before), self.now());
        self.write_plan(caller, "plan.updated", Some(&before), &after, origin)
            .await?;
        Ok(after)
    }

    /// Archives a plan (platform admins): no new subscribers; orgs on it stay.
    pub async fn archive_plan(
        &self,
        caller: &UserId,
        id: &str,
        origin: &AuditOrigin,
    ) -> Result<Plan, BillingError> {
        self.require_platform_admin(caller).await?;
        let before = self.plan(id).await?;
        if before.id == *self.plans.default_plan() {
            return Err(BillingError::DefaultPlan);
        }
        let mut after = before.clone();
        after.archived = true;
        after.updated_at = self.now();
        if before.archived {
            return Ok(before);
        }
        self.write_plan(caller, "plan.archived", Some(&before), &after, origin)
            .await?;
        Ok(after)
    }

    /// The plan changes, newest first (platform admins).
    pub async fn plan_audit_log(
        &self,
        caller: &UserId,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>, BillingError> {
        self.require_platform_admin(caller).await?;
        Ok(self.store.audit_log(&Self::platform_log()?, page).await?)
    }

    /// The org's subscription (owners).
    pub async fn subscription(
        &self,
        caller: &UserId,
        org: &str,
    ) -> Result<SubscriptionView, BillingError> {
        let (org, _) = self
            .orgs
            .load(caller, org, OrgAction::ManageBilling)
            .await?;
        let now = self.now();
        let subscription = self.plans.subscription(&org, now).await?;
        Ok(SubscriptionView::of(&subscription, now))
    }

    async fn save(
        &self,
        before: &Subscription,
        mut after: Subscription,
        actor: &UserId,
        action: &str,
        origin: &AuditOrigin,
        webhook_event: Option<&str>,
    ) -> Result<bool, BillingError> {
        after.version = before.version.saturating_add(1);
        after.updated_at = self.now();
        let audit = AuditEntry::new(
            &after.org_id,
            actor,
            action,
            after.org_id.as_str(),
            origin,
            after.updated_at,
        )
        .change(
            Some(subscription_state(before)),
            Some(subscription_state(&after)),
        );
        let saved = self
            .store
            .save_subscription(&after, &audit, webhook_event)
            .await?;
        if saved {
            tracing::info!(org_id = %after.org_id, plan_id = %after.plan_id, action, "subscription changed");
        }
        Ok(saved)
    }

    /// Subscribes the org to `plan` (owners). A plan with a higher base price acts at once (the
    /// invoice prorates base prices, and usage from now on is priced by it); any other is
    /// scheduled for the period's end (`pending_plan_id`), so nothing already used is priced
    /// lower. Choosing the current plan again withdraws a scheduled downgrade or a
    /// cancellation. At most [`MAX_PLAN_CHANGES_PER_PERIOD`] plan changes per period.
    pub async fn subscribe(
        &self,
        caller: &UserId,
        org: &str,
        plan: &str,
        origin: &AuditOrigin,
    ) -> Result<SubscriptionView, BillingError> {
        let (org, _) = self
            .orgs
            .load(caller, org, OrgAction::ManageBilling)
            .await?;
        let plan_id =
            PlanId::parse(plan).ok_or_else(|| ValidationError::new("plan_id", "no such plan"))?;
        let plan = self
            .plans
            .plan(&plan_id)
            .await?
            .ok_or_else(|| ValidationError::new("plan_id", "no such plan"))?;
        let now = self.now();
        let before = self.plans.subscription(&org, now).await?;
        let mut after = before.clone();
        let pending = before.pending.as_ref().map(|pending| &pending.plan_id);
        let action = if before.plan_id == plan.id {
            match (pending, before.cancel_at) {
                (None, None) => return Ok(SubscriptionView::of(&before, now)),
                (Some(_), _) => {
                    self.count_change(&mut after, now)?;
                    after.pending = None;
                    after.cancel_at = None;
                    "subscription.downgrade_withdrawn"
                }
                (None, Some(_)) => {
                    after.cancel_at = None;
                    "subscription.resumed"
                }
            }
        } else if pending == Some(&plan.id) && before.cancel_at.is_none() {
            return Ok(SubscriptionView::of(&before, now));
        } else {
            if plan.archived {
                return Err(BillingError::PlanArchived);
            }
            let current = self.plans.plan(&before.plan_id).await?;
            if current
                .as_ref()
                .is_some_and(|current| current.currency != plan.currency)
            {
                return Err(ValidationError::new(
                    "plan_id",
                    "the plan bills in another currency; cancel first, then subscribe next period",
                )
                .into());
            }
            self.count_change(&mut after, now)?;
            after.cancel_at = None;
            let upgrade = current.is_none_or(|current| plan.price_cents > current.price_cents);
            if upgrade {
                let counted = self.period_totals(&org, now).await?;
                after.switch_to(&plan.id, now, counted);
                after.status = SubscriptionStatus::Active;
                "subscription.plan_changed"
            } else {
                after.pending = Some(PlanSpan {
                    plan_id: plan.id.clone(),
                    from: billing_period(now).1,
                    usage_at_start: BTreeMap::new(),
                });
                "subscription.downgrade_scheduled"
            }
        };
        self.save(&before, after.clone(), caller, action, origin, None)
            .await?;
        Ok(SubscriptionView::of(&after, now))
    }

    /// Counts one owner plan change on `after`, refusing it past the period's allowance.
    fn count_change(
        &self,
        after: &mut Subscription,
        now: DateTime<Utc>,
    ) -> Result<(), BillingError> {
        if after.changes_in_period(now) >= MAX_PLAN_CHANGES_PER_PERIOD {
            return Err(BillingError::TooManyPlanChanges);
        }
        after.count_change(now);
        Ok(())
    }

    /// The org's usage counters of the period containing `at`, per meter: what a plan change
    /// at `at` records so that the units before and after it are priced by their own plans.
    async fn period_totals(
        &self,
        org: &Org,
        at: DateTime<Utc>,
    ) -> Result<BTreeMap<String, u64>, BillingError> {
        let (start, end) = billing_period(at);
        let mut totals = BTreeMap::new();
        for point in self
            .store
            .usage_series(&org.id, Granularity::Month, start, end, None)
            .await?
        {
            let total = totals.entry(point.meter).or_insert(0u64);
            *total = total.saturating_add(point.quantity);
        }
        Ok(totals)
    }

    /// Cancels at the end of the current period (owners): the plan and its limits stay until
    /// then, and the org falls back to the default plan.
    pub async fn cancel(
        &self,
        caller: &UserId,
        org: &str,
        origin: &AuditOrigin,
    ) -> Result<SubscriptionView, BillingError> {
        let (org, _) = self
            .orgs
            .load(caller, org, OrgAction::ManageBilling)
            .await?;
        let now = self.now();
        let before = self.plans.subscription(&org, now).await?;
        if before.plan_id == *self.plans.default_plan() {
            return Err(BillingError::NothingToCancel);
        }
        if before.cancel_at.is_some() {
            return Ok(SubscriptionView::of(&before, now));
        }
        let mut after = before.clone();
        // The fall back to the default plan replaces a scheduled downgrade.
        after.pending = None;
        after.cancel_at = Some(billing_period(now).1);
        self.save(
            &before,
            after.clone(),
            caller,
            "subscription.cancelled",
            origin,
            None,
        )
        .await?;
        Ok(SubscriptionView::of(&after, now))
    }

    /// The org's usage over `[from, to)` (any member): counters and totals per meter.
    pub async fn usage(
        &self,
        caller: &UserId,
        org: &str,
        range: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
        granularity: Granularity,
        meter: Option<&str>,
    ) -> Result<UsageReport, BillingError> {
        let (org, _) = self.orgs.load(caller, org, OrgAction::ViewUsage).await?;
        let (period_start, period_end) = billing_period(self.now());
        let from = range.0.unwrap_or(period_start);
        let to = range.1.unwrap_or(period_end);
        if to <= from {
            return Err(ValidationError::new("to", "must be after from").into());
        }
        if to - from > max_range(granularity) {
            return Err(ValidationError::new(
                "to",
                format!(
                    "the range may span at most {} days at {} granularity",
                    max_range(granularity).num_days(),
                    granularity.as_str()
                ),
            )
            .into());
        }
        let series = self
            .store
            .usage_series(&org.id, granularity, from, to, meter)
            .await?;
        let mut totals = BTreeMap::new();
        for point in &series {
            let total = totals.entry(point.meter.clone()).or_insert(0u64);
            *total = total.saturating_add(point.quantity);
        }
        Ok(UsageReport {
            from,
            to,
            granularity,
            series,
            totals,
        })
    }

    /// The invoice the current period would produce if it ended now (owners and admins).
    pub async fn upcoming_invoice(
        &self,
        caller: &UserId,
        org: &str,
    ) -> Result<Invoice, BillingError> {
        let (org, _) = self.orgs.load(caller, org, OrgAction::ViewInvoices).await?;
        self.invoice_for(&org, self.now()).await
    }

    /// The invoice of the period containing `at`, from the month counters and the plan spans:
    /// the units counted under each plan are priced by that plan.
    pub async fn invoice_for(&self, org: &Org, at: DateTime<Utc>) -> Result<Invoice, BillingError> {
        let (start, end) = billing_period(at);
        let subscription = self.plans.subscription(org, at).await?;
        let totals = self.period_totals(org, at).await?;
        let spans = subscription.usage_within(start, end, &totals);
        let mut plans = Vec::new();
        for span in &spans {
            plans.push(self.plans.plan_or_default(&span.plan_id).await?);
        }
        let priced: Vec<PricedSpan<'_>> = spans
            .iter()
            .zip(&plans)
            .map(|(span, plan)| PricedSpan {
                plan: plan.as_ref(),
                from: span.from,
                to: span.to,
                usage: &span.usage,
            })
            .collect();
        let (current, earlier) = priced
            .split_last()
            .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("a period without a plan")))?;
        Ok(compute_invoice(start, end, earlier, current))
    }
}
