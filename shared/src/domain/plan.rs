//! Plans and subscriptions: what an org pays, the limits it gets for it, and which plan it was
//! on when. Money is integer cents throughout; no floating point ever touches an amount.

use super::{OrgId, ValidationError, parse_meter};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The quota key that applies to every meter not named in a plan's `quotas`.
pub const ANY_METER: &str = "*";

/// A plan's id: `pln_` and either a generated ULID (plans made through the API) or a slug chosen
/// in configuration (`pln_free`), so bootstrapped plans keep their id across deploys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PlanId(String);

impl PlanId {
    /// The prefix every plan id starts with.
    pub const PREFIX: &'static str = "pln";

    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(format!(
            "pln_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ))
    }

    /// Accepts `pln_` followed by 1 to 40 of `a-z 0-9 _ -`.
    pub fn parse(raw: &str) -> Option<Self> {
        let body = raw.strip_prefix("pln_")?;
        let ok = (1..=40).contains(&body.len())
            && body
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        ok.then(|| Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for PlanId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
        let object = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^pln_[a-z0-9_-]{1,40}$"))
            .build();
        utoipa::openapi::RefOr::T(Schema::Object(object))
    }
}

impl utoipa::ToSchema for PlanId {}

impl fmt::Display for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PlanId {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw).ok_or_else(|| "not a valid plan id".to_owned())
    }
}

impl From<PlanId> for String {
    fn from(id: PlanId) -> String {
        id.0
    }
}

/// One step of a graduated overage price: units beyond the included quota, up to `up_to`
/// (counted from the first unit beyond the quota; `None` for the last, unbounded tier), cost
/// `unit_amount_cents` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tier {
    /// The last overage unit this tier prices; `None` for no end.
    pub up_to: Option<u64>,
    /// Cents per unit in this tier.
    pub unit_amount_cents: u64,
}

/// A plan: its price, the limits it grants and how usage beyond them is charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    /// Its id.
    pub id: PlanId,
    /// Its display name.
    pub name: String,
    /// The base price per monthly period, in cents.
    pub price_cents: u64,
    /// ISO 4217 currency code, lowercase (`usd`).
    pub currency: String,
    /// Requests per minute across an org's keys.
    pub rate_limit_rpm: u32,
    /// Units included per meter per month (`*` for any meter not named). A meter with overage
    /// tiers may go beyond its quota and pays for it; any other meter is refused at its quota.
    pub quotas: BTreeMap<String, u64>,
    /// Graduated prices of the units beyond the quota, per meter.
    pub overage: BTreeMap<String, Vec<Tier>>,
    /// An archived plan takes no new subscribers; orgs already on it stay.
    pub archived: bool,
    /// When it was created.
    #[serde(serialize_with = "crate::time_format::serialize")]
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    #[serde(serialize_with = "crate::time_format::serialize")]
    pub updated_at: DateTime<Utc>,
}

impl Plan {
    /// The included units of `meter` (its own quota, else the `*` quota); `None` for no quota.
    pub fn included(&self, meter: &str) -> Option<u64> {
        self.quotas
            .get(meter)
            .or_else(|| self.quotas.get(ANY_METER))
            .copied()
    }

    /// The hard cap on `meter` per period: its quota unless it is billed by overage.
    pub fn hard_quota(&self, meter: &str) -> Option<u64> {
        if self.overage.contains_key(meter) {
            None
        } else {
            self.included(meter)
        }
    }
}

/// The editable fields of a plan, as a platform admin sends them; validated as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanTerms {
    /// Display name (1 to 100 characters).
    pub name: String,
    /// Base price in cents.
    pub price_cents: u64,
    /// Currency code; `usd` when omitted.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Requests per minute.
    pub rate_limit_rpm: u32,
    /// Included units per meter.
    #[serde(default)]
    pub quotas: BTreeMap<String, u64>,
    /// Overage tiers per meter.
    #[serde(default)]
    pub overage: BTreeMap<String, Vec<Tier>>,
}

fn default_currency() -> String {
    "usd".to_owned()
}

/// The largest base price or unit price a plan may name (one million currency units), so
/// invoice sums stay far from overflow.
pub const MAX_PRICE_CENTS: u64 = 100_000_000;

impl PlanTerms {
    /// Checks every rule a plan must keep; the error names the first field at fault.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(ValidationError::new("name", "must be 1 to 100 characters"));
        }
        if self.price_cents > MAX_PRICE_CENTS {
            return Err(ValidationError::new(
                "price_cents",
                format!("must be at most {MAX_PRICE_CENTS}"),
            ));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(ValidationError::new(
                "currency",
                "must be a lowercase ISO 4217 code such as usd",
            ));
        }
        super::parse_rate_limit("rate_limit_rpm", i64::from(self.rate_limit_rpm))?;
        for meter in self.quotas.keys() {
            if meter != ANY_METER {
                parse_meter("quotas", meter)?;
            }
        }
        for (meter, tiers) in &self.overage {
            let field = format!("overage.{meter}");
            parse_meter("overage", meter)?;
            if tiers.is_empty() || tiers.len() > 10 {
                return Err(ValidationError::new(field, "must have 1 to 10 tiers"));
            }
            let mut floor = 0;
            for (i, tier) in tiers.iter().enumerate() {
                let last = i + 1 == tiers.len();
                if tier.unit_amount_cents > MAX_PRICE_CENTS {
                    return Err(ValidationError::new(
                        field,
                        format!("unit_amount_cents must be at most {MAX_PRICE_CENTS}"),
                    ));
                }
                match tier.up_to {
                    None if last => {}
                    None => {
                        return Err(ValidationError::new(
                            field,
                            "only the last tier may have no up_to",
                        ));
                    }
                    Some(_) if last => {
                        return Err(ValidationError::new(
                            field,
                            "the last tier must have up_to null",
                        ));
                    }
                    Some(up_to) if up_to <= floor => {
                        return Err(ValidationError::new(
                            field,
                            "up_to must rise strictly from tier to tier, starting above 0",
                        ));
                    }
                    Some(up_to) => floor = up_to,
                }
            }
        }
        Ok(())
    }

    /// A plan with these terms, keeping `created_at` and `archived` of `existing` if given.
    pub fn into_plan(self, id: PlanId, existing: Option<&Plan>, now: DateTime<Utc>) -> Plan {
        Plan {
            id,
            name: self.name.trim().to_owned(),
            price_cents: self.price_cents,
            currency: self.currency,
            rate_limit_rpm: self.rate_limit_rpm,
            quotas: self.quotas,
            overage: self.overage,
            archived: existing.is_some_and(|plan| plan.archived),
            created_at: existing.map_or(now, |plan| plan.created_at),
            updated_at: now,
        }
    }
}

/// A subscription's standing with the payment provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Paid up (or free).
    Active,
    /// The last payment failed; limits stay until the provider gives up.
    PastDue,
    /// Ended: the org is back on the default plan.
    Canceled,
}

/// The plan an org was on from `from` (until the next span starts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlanSpan {
    /// The plan.
    pub plan_id: PlanId,
    /// When the org moved to it.
    #[serde(serialize_with = "crate::time_format::serialize")]
    pub from: DateTime<Utc>,
    /// The period's usage counters (units per meter) when the span began, so the units
    /// counted under each plan are known and priced by that plan: a span's usage is the next
    /// span's values (or the period's totals) minus these. Empty at a period's start.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage_at_start: BTreeMap<String, u64>,
}

/// The most plan changes an owner may make in one period (upgrades, scheduled downgrades and
/// withdrawn ones): enough for any honest use, few enough that the history stays small.
pub const MAX_PLAN_CHANGES_PER_PERIOD: u32 = 10;

/// The most spans a subscription keeps (this period's and the one before); older ones merge
/// into the first kept span, so the record stays far below any store's item size.
pub const MAX_HISTORY_SPANS: usize = 24;

/// How many plan changes an owner made in the period starting at `period_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlanChangeCount {
    /// The period counted.
    #[serde(serialize_with = "crate::time_format::serialize")]
    pub period_start: DateTime<Utc>,
    /// Changes made in it.
    pub count: u32,
}

/// One plan's share of a period: the plan, the part of the period it covered, and the units
/// counted while it was in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanUsage {
    /// The plan.
    pub plan_id: PlanId,
    /// The span's start within the period.
    pub from: DateTime<Utc>,
    /// The span's end within the period.
    pub to: DateTime<Utc>,
    /// Units per meter counted under this plan in this period.
    pub usage: BTreeMap<String, u64>,
}

/// An org's subscription: its plan now, the plans it had earlier this period (for prorating),
/// and its standing with the payment provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Subscription {
    /// The org.
    pub org_id: OrgId,
    /// The plan now.
    pub plan_id: PlanId,
    /// Standing with the payment provider.
    pub status: SubscriptionStatus,
    /// When it ends (back to the default plan): the end of the period in which the owner
    /// cancelled; `None` while it renews.
    #[serde(default)]
    pub cancel_at: Option<DateTime<Utc>>,
    /// The plans of this period and the one before, oldest first; the last is the current plan.
    /// (Older spans are dropped as plans change, so the record stays small.)
    pub history: Vec<PlanSpan>,
    /// The payment provider's customer id, when it has one.
    #[serde(default)]
    pub provider_customer_id: Option<String>,
    /// The payment provider's subscription id, when it has one.
    #[serde(default)]
    pub provider_subscription_id: Option<String>,
    /// A downgrade scheduled for the period's end: the plan and when it takes over.
    #[serde(default)]
    pub pending: Option<PlanSpan>,
    /// The owner's plan changes in the current period, for [`MAX_PLAN_CHANGES_PER_PERIOD`].
    #[serde(default)]
    pub changes: Option<PlanChangeCount>,
    /// Bumped on every write, for optimistic concurrency.
    pub version: u64,
    /// When it last changed.
    #[serde(serialize_with = "crate::time_format::serialize")]
    pub updated_at: DateTime<Utc>,
}

impl Subscription {
    /// The subscription every org has before it chooses: the default plan since its creation.
    pub fn default_for(org: &OrgId, plan: &PlanId, since: DateTime<Utc>) -> Self {
        Self {
            org_id: org.clone(),
            plan_id: plan.clone(),
            status: SubscriptionStatus::Active,
            cancel_at: None,
            history: vec![PlanSpan {
                plan_id: plan.clone(),
                from: since,
                usage_at_start: BTreeMap::new(),
            }],
            provider_customer_id: None,
            provider_subscription_id: None,
            pending: None,
            changes: None,
            version: 0,
            updated_at: since,
        }
    }

    /// Moves to `plan` at `at`, where `usage_at_start` is the period's counters at that moment,
    /// keeping only the spans that still matter for this period's invoice and the one before
    /// (at most [`MAX_HISTORY_SPANS`]). A scheduled downgrade is dropped: the move replaces it.
    pub fn switch_to(
        &mut self,
        plan: &PlanId,
        at: DateTime<Utc>,
        usage_at_start: BTreeMap<String, u64>,
    ) {
        let (period_start, _) = billing_period(at);
        let (previous_start, _) = billing_period(period_start - chrono::Duration::seconds(1));
        self.history.push(PlanSpan {
            plan_id: plan.clone(),
            from: at,
            usage_at_start,
        });
        self.pending = None;
        // Keep the span in force when the previous period began, and everything after: the
        // period that just ended can still be invoiced whole.
        let first_in_period = self
            .history
            .iter()
            .rposition(|span| span.from <= previous_start)
            .unwrap_or(0);
        self.history.drain(..first_in_period);
        // The first span kept counts from 0 (see `spans_within`), so dropping older ones
        // merges their units into it rather than leaving any unpriced.
        let excess = self.history.len().saturating_sub(MAX_HISTORY_SPANS);
        self.history.drain(..excess);
        self.plan_id = plan.clone();
    }

    /// The owner's plan changes so far in the period containing `now`.
    pub fn changes_in_period(&self, now: DateTime<Utc>) -> u32 {
        let (period_start, _) = billing_period(now);
        self.changes
            .as_ref()
            .filter(|changes| changes.period_start == period_start)
            .map_or(0, |changes| changes.count)
    }

    /// Counts one more owner plan change in the period containing `now`.
    pub fn count_change(&mut self, now: DateTime<Utc>) {
        let (period_start, _) = billing_period(now);
        let count = self.changes_in_period(now).saturating_add(1);
        self.changes = Some(PlanChangeCount {
            period_start,
            count,
        });
    }

    /// The subscription as it stands at `now`: one whose cancellation date has passed is back
    /// on `default_plan` since that date (the stored record catches up at its next write).
    pub fn resolved(mut self, default_plan: &PlanId, now: DateTime<Utc>) -> Self {
        if let Some(pending) = self.pending.take() {
            if pending.from <= now {
                // It takes over at a period's start, when that period's counters are all 0.
                self.switch_to(&pending.plan_id, pending.from, BTreeMap::new());
            } else {
                self.pending = Some(pending);
            }
        }
        if let Some(end) = self.cancel_at.filter(|end| *end <= now) {
            self.switch_to(default_plan, end, BTreeMap::new());
            self.cancel_at = None;
            self.status = SubscriptionStatus::Canceled;
            self.provider_subscription_id = None;
        }
        self
    }

    /// The spans of the period `[start, end)`: each plan with the part of the period it covered.
    pub fn spans_within(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Vec<(PlanId, DateTime<Utc>, DateTime<Utc>)> {
        let mut spans = Vec::new();
        for (i, span) in self.history.iter().enumerate() {
            let next = self.history.get(i + 1).map_or(end, |next| next.from);
            let (from, to) = (span.from.max(start), next.min(end));
            if from < to {
                spans.push((span.plan_id.clone(), from, to));
            }
        }
        if spans.is_empty() {
            spans.push((self.plan_id.clone(), start, end));
        }
        spans
    }

    /// The spans of the period `[start, end)` with the units counted under each, given the
    /// period's counter totals: a span's units run from its own counter values (0 for a span
    /// that began before the period, and for the oldest span kept) to the next span's (or the
    /// totals, for the span in force at the period's end). Every unit lands in exactly one span.
    pub fn usage_within(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        totals: &BTreeMap<String, u64>,
    ) -> Vec<SpanUsage> {
        let none = BTreeMap::new();
        let mut spans = Vec::new();
        for (i, span) in self.history.iter().enumerate() {
            let next = self.history.get(i + 1);
            let to = next.map_or(end, |next| next.from);
            if to <= start || span.from >= end {
                continue; // outside the period
            }
            // A span may last no time at all (two changes in the same instant); its units, if
            // any, are still its own.
            let (from, to) = (span.from.max(start), to.min(end));
            let opening = if i == 0 || span.from <= start {
                &none
            } else {
                &span.usage_at_start
            };
            let closing = match next {
                Some(next) if next.from < end => &next.usage_at_start,
                _ => totals,
            };
            let usage: BTreeMap<String, u64> = closing
                .iter()
                .map(|(meter, &at_end)| {
                    let at_start = opening.get(meter).copied().unwrap_or(0);
                    (meter.clone(), at_end.saturating_sub(at_start))
                })
                .filter(|(_, units)| *units > 0)
                .collect();
            if from == to && usage.is_empty() {
                continue;
            }
            spans.push(SpanUsage {
                plan_id: span.plan_id.clone(),
                from,
                to,
                usage,
            });
        }
        if spans.is_empty() {
            spans.push(SpanUsage {
                plan_id: self.plan_id.clone(),
                from: start,
                to: end,
                usage: totals.clone(),
            });
        }
        spans
    }
}

/// The billing period (a UTC calendar month) containing `at`: `[start, end)`.
pub fn billing_period(at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = Utc
        .with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(at);
    let (year, month) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    let end = Utc
        .with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(at);
    (start, end)
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InvoiceLine {
    /// What the line charges for, for people.
    pub description: String,
    /// The meter, for usage lines; `None` for the base price.
    pub meter: Option<String>,
    /// Units charged (1 for a base price).
    pub quantity: u64,
    /// Cents per unit (for a prorated base price, the prorated amount).
    pub unit_amount_cents: u64,
    /// `quantity * unit_amount_cents`.
    pub amount_cents: u64,
}

/// An invoice for one period: base prices and usage charges, in integer cents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Invoice {
    /// The period's start.
    #[serde(with = "crate::time_format")]
    pub period_start: DateTime<Utc>,
    /// The period's end (exclusive).
    #[serde(with = "crate::time_format")]
    pub period_end: DateTime<Utc>,
    /// The plan at the end of the period, which prices its usage.
    pub plan_id: PlanId,
    /// The currency of every amount.
    pub currency: String,
    /// The lines, base prices first.
    pub lines: Vec<InvoiceLine>,
    /// The sum of the lines.
    pub total_cents: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> PlanTerms {
        serde_json::from_value(serde_json::json!({
            "name": "Pro", "price_cents": 2900, "rate_limit_rpm": 6000,
            "quotas": {"requests": 100000, "*": 5000},
            "overage": {"requests": [
                {"up_to": 100000, "unit_amount_cents": 2},
                {"up_to": null, "unit_amount_cents": 1}
            ]}
        }))
        .expect("terms")
    }

    #[test]
    fn plan_ids_are_prefixed_slugs_or_ulids() {
        assert!(PlanId::parse("pln_free").is_some());
        assert!(PlanId::parse(PlanId::generate().as_str()).is_some());
        assert!(PlanId::parse("pln_").is_none());
        assert!(PlanId::parse("pln_Free").is_none());
        assert!(PlanId::parse("org_free").is_none());
    }

    #[test]
    fn terms_are_validated() {
        assert_eq!(terms().validate(), Ok(()));
        let mut bad = terms();
        bad.overage.insert(
            "requests".into(),
            vec![Tier {
                up_to: Some(10),
                unit_amount_cents: 1,
            }],
        );
        assert!(bad.validate().is_err(), "last tier bounded");
        let mut bad = terms();
        bad.overage.insert(
            "requests".into(),
            vec![
                Tier {
                    up_to: Some(10),
                    unit_amount_cents: 1,
                },
                Tier {
                    up_to: Some(10),
                    unit_amount_cents: 1,
                },
                Tier {
                    up_to: None,
                    unit_amount_cents: 1,
                },
            ],
        );
        assert!(bad.validate().is_err(), "tiers must rise");
        let mut bad = terms();
        bad.currency = "USD".into();
        assert!(bad.validate().is_err());
        let mut bad = terms();
        bad.quotas.insert("Bad Meter".into(), 1);
        assert!(bad.validate().is_err());
        let mut bad = terms();
        bad.rate_limit_rpm = 0;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn quotas_fall_back_to_any_meter_and_overage_makes_them_soft() {
        let plan = terms().into_plan(PlanId::generate(), None, Utc::now());
        assert_eq!(plan.included("requests"), Some(100_000));
        assert_eq!(plan.included("tokens"), Some(5000));
        assert_eq!(plan.hard_quota("requests"), None);
        assert_eq!(plan.hard_quota("tokens"), Some(5000));
    }

    #[test]
    fn history_is_bounded_and_every_unit_lands_in_one_span() {
        let start = Utc
            .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
            .single()
            .expect("t");
        let (free, pro) = (
            PlanId::parse("pln_free").expect("id"),
            PlanId::parse("pln_pro").expect("id"),
        );
        let mut sub = Subscription::default_for(&OrgId::generate(), &free, start);
        for i in 0..200u64 {
            let plan = if i % 2 == 0 { &pro } else { &free };
            let at = start + chrono::Duration::minutes(i64::try_from(i).expect("i") + 1);
            sub.switch_to(plan, at, BTreeMap::from([("requests".to_owned(), i * 10)]));
        }
        assert_eq!(sub.history.len(), MAX_HISTORY_SPANS);
        let (start, end) = billing_period(start);
        let totals = BTreeMap::from([("requests".to_owned(), 5000)]);
        let spans = sub.usage_within(start, end, &totals);
        let counted: u64 = spans
            .iter()
            .map(|span| span.usage.get("requests").copied().unwrap_or(0))
            .sum();
        assert_eq!(counted, 5000, "no unit lost or counted twice");
        // Two changes in one instant leave a span of no time that keeps its units.
        let mut sub = Subscription::default_for(&OrgId::generate(), &free, start);
        sub.switch_to(
            &pro,
            start + chrono::Duration::days(3),
            BTreeMap::from([("requests".to_owned(), 20)]),
        );
        let spans = sub.usage_within(start, end, &BTreeMap::from([("requests".to_owned(), 50)]));
        let split: Vec<u64> = spans.iter().map(|s| s.usage["requests"]).collect();
        assert_eq!(split, [20, 30]);
        let mut instant =
            Subscription::default_for(&OrgId::generate(), &free, start + chrono::Duration::days(3));
        instant.switch_to(
            &pro,
            start + chrono::Duration::days(3),
            BTreeMap::from([("requests".to_owned(), 20)]),
        );
        let spans =
            instant.usage_within(start, end, &BTreeMap::from([("requests".to_owned(), 50)]));
        let split: Vec<(PlanId, u64)> = spans
            .iter()
            .map(|s| (s.plan_id.clone(), s.usage["requests"]))
            .collect();
        assert_eq!(split, [(free.clone(), 20), (pro.clone(), 30)]);
    }

    #[test]
    fn history_keeps_this_periods_spans() {
        let at = |d: u32| {
            Utc.with_ymd_and_hms(2026, 11, d, 0, 0, 0)
                .single()
                .expect("t")
        };
        let free = PlanId::parse("pln_free").expect("id");
        let pro = PlanId::parse("pln_pro").expect("id");
        let mut sub = Subscription::default_for(
            &OrgId::generate(),
            &free,
            Utc.with_ymd_and_hms(2026, 9, 3, 0, 0, 0)
                .single()
                .expect("t"),
        );
        sub.switch_to(&pro, at(16), BTreeMap::new());
        let (start, end) = billing_period(at(20));
        assert_eq!(
            sub.spans_within(start, end),
            vec![(free.clone(), at(1), at(16)), (pro.clone(), at(16), end)]
        );
        let team = PlanId::parse("pln_team").expect("id");
        let dec2 = Utc
            .with_ymd_and_hms(2026, 12, 2, 0, 0, 0)
            .single()
            .expect("t");
        sub.switch_to(&team, dec2, BTreeMap::new());
        assert_eq!(sub.plan_id, team);
        assert_eq!(
            sub.spans_within(start, end),
            vec![(free.clone(), at(1), at(16)), (pro.clone(), at(16), end)],
            "the period just ended keeps its spans"
        );
        let jan2 = Utc
            .with_ymd_and_hms(2027, 1, 2, 0, 0, 0)
            .single()
            .expect("t");
        sub.switch_to(&free, jan2, BTreeMap::new());
        assert_eq!(sub.history.len(), 3, "spans before December are gone");
        // A cancellation taking effect at the period's end leaves that period whole.
        let mut cancelled = Subscription::default_for(&OrgId::generate(), &free, at(1));
        cancelled.switch_to(&pro, at(10), BTreeMap::new());
        cancelled.cancel_at = Some(end);
        let cancelled = cancelled.resolved(&free, end + chrono::Duration::hours(3));
        assert_eq!(cancelled.plan_id, free);
        assert_eq!(cancelled.status, SubscriptionStatus::Canceled);
        assert_eq!(
            cancelled.spans_within(start, end),
            vec![(free.clone(), at(1), at(10)), (pro.clone(), at(10), end)]
        );
    }
}
