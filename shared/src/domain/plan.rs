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
            }],
            provider_customer_id: None,
            provider_subscription_id: None,
            version: 0,
            updated_at: since,
        }
    }

    /// Moves to `plan` at `at`, keeping only the spans that still matter for this period's
    /// invoice (those overlapping the period containing `at`).
    pub fn switch_to(&mut self, plan: &PlanId, at: DateTime<Utc>) {
        let (period_start, _) = billing_period(at);
        let (previous_start, _) = billing_period(period_start - chrono::Duration::seconds(1));
        self.history.push(PlanSpan {
            plan_id: plan.clone(),
            from: at,
        });
        // Keep the span in force when the previous period began, and everything after: the
        // period that just ended can still be invoiced whole.
        let first_in_period = self
            .history
            .iter()
            .rposition(|span| span.from <= previous_start)
            .unwrap_or(0);
        self.history.drain(..first_in_period);
        self.plan_id = plan.clone();
    }

    /// The subscription as it stands at `now`: one whose cancellation date has passed is back
    /// on `default_plan` since that date (the stored record catches up at its next write).
    pub fn resolved(mut self, default_plan: &PlanId, now: DateTime<Utc>) -> Self {
        if let Some(end) = self.cancel_at.filter(|end| *end <= now) {
            self.switch_to(default_plan, end);
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
        sub.switch_to(&pro, at(16));
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
        sub.switch_to(&team, dec2);
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
        sub.switch_to(&free, jan2);
        assert_eq!(sub.history.len(), 3, "spans before December are gone");
        // A cancellation taking effect at the period's end leaves that period whole.
        let mut cancelled = Subscription::default_for(&OrgId::generate(), &free, at(1));
        cancelled.switch_to(&pro, at(10));
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
