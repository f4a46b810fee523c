//! Stripe webhooks: a signed event becomes a subscription change, applied once however often
//! Stripe delivers it (its event id is recorded in the same write as the change).
//!
//! The org is found in the ids the integration puts on Stripe's objects: the Checkout
//! Session's `client_reference_id` (or `metadata.org_id`), and `metadata.org_id` on the
//! subscription (Stripe copies it to invoices as `subscription_details.metadata`). The plan a
//! checkout buys is its `metadata.plan_id`.
//!
//! Payment and end events apply only when they name the org's current provider subscription
//! (and customer): a late event about a replaced or foreign subscription changes nothing.

use super::{Billing, BillingError};
use crate::auth::verify_signature;
use crate::domain::{AuditOrigin, OrgId, PlanId, SubscriptionStatus};
use serde::Serialize;
use serde_json::Value;

/// What became of a webhook event (the 200 answer; Stripe only needs a 2xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WebhookOutcome {
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// `applied`, `duplicate` (seen before, nothing changed) or `ignored` (not about the org's
    /// current subscription, or of a type Meterline does not act on).
    pub result: &'static str,
}

/// The provider subscription (and customer) an event is about, as its object names them.
struct Subject {
    subscription: Option<String>,
    customer: Option<String>,
}

impl Subject {
    /// Whether the event is about `stored`'s current provider subscription: it must name that
    /// subscription, and its customer (when it names one) must be the stored customer.
    fn is_current(&self, stored: &crate::domain::Subscription) -> bool {
        let same_subscription = matches!(
            (&self.subscription, &stored.provider_subscription_id),
            (Some(named), Some(current)) if named == current
        );
        let same_customer = match (&self.customer, &stored.provider_customer_id) {
            (Some(named), Some(current)) => named == current,
            _ => true,
        };
        same_subscription && same_customer
    }
}

/// The change an event asks for.
enum Change {
    /// A checkout bought `plan`.
    Subscribed {
        plan: PlanId,
        customer: Option<String>,
        subscription: Option<String>,
    },
    /// A payment of `Subject`'s subscription went through or failed.
    Status(SubscriptionStatus, Subject),
    /// The provider ended `Subject`'s subscription.
    Ended(Subject),
}

fn text<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(object, |value, key| value.get(key))
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
}

/// The org an event's object names, wherever this event type keeps it.
fn org_of(object: &Value) -> Option<OrgId> {
    [
        &["client_reference_id"][..],
        &["metadata", "org_id"],
        &["subscription_details", "metadata", "org_id"],
        &["parent", "subscription_details", "metadata", "org_id"],
    ]
    .iter()
    .find_map(|path| text(object, path))
    .and_then(OrgId::parse)
}

fn change_of(event_type: &str, object: &Value) -> Option<Change> {
    match event_type {
        "checkout.session.completed" => Some(Change::Subscribed {
            plan: text(object, &["metadata", "plan_id"]).and_then(PlanId::parse)?,
            customer: text(object, &["customer"]).map(str::to_owned),
            subscription: text(object, &["subscription"]).map(str::to_owned),
        }),
        "invoice.paid" => Some(Change::Status(
            SubscriptionStatus::Active,
            invoice_subject(object),
        )),
        "invoice.payment_failed" => Some(Change::Status(
            SubscriptionStatus::PastDue,
            invoice_subject(object),
        )),
        "customer.subscription.deleted" => Some(Change::Ended(Subject {
            subscription: text(object, &["id"]).map(str::to_owned),
            customer: text(object, &["customer"]).map(str::to_owned),
        })),
        _ => None,
    }
}

/// An invoice names its subscription at `subscription` (API versions before 2025-03-31) or at
/// `parent.subscription_details.subscription` (later ones).
fn invoice_subject(object: &Value) -> Subject {
    Subject {
        subscription: [
            &["subscription"][..],
            &["parent", "subscription_details", "subscription"],
        ]
        .iter()
        .find_map(|path| text(object, path))
        .map(str::to_owned),
        customer: text(object, &["customer"]).map(str::to_owned),
    }
}

impl Billing {
    /// Verifies and applies one Stripe webhook delivery: `signature` is the `Stripe-Signature`
    /// header, `body` the raw request body. A bad or stale signature changes nothing.
    pub async fn stripe_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        origin: &AuditOrigin,
    ) -> Result<WebhookOutcome, BillingError> {
        let secret = self
            .policy
            .webhook_secret
            .as_ref()
            .ok_or_else(|| BillingError::Signature("no webhook secret is configured".into()))?;
        let header = signature.ok_or_else(|| {
            BillingError::Signature("the Stripe-Signature header is missing".into())
        })?;
        verify_signature(
            secret,
            header,
            body,
            self.now(),
            self.policy.webhook_tolerance,
        )
        .map_err(|err| BillingError::Signature(err.to_string()))?;
        let event: Value = serde_json::from_slice(body)
            .map_err(|_| BillingError::Signature("the body is not a JSON event".into()))?;
        let event_id = text(&event, &["id"])
            .ok_or_else(|| BillingError::Signature("the event has no id".into()))?
            .to_owned();
        let event_type = text(&event, &["type"]).unwrap_or_default().to_owned();
        let object = event
            .get("data")
            .and_then(|data| data.get("object"))
            .cloned()
            .unwrap_or(Value::Null);
        let outcome = |result| WebhookOutcome {
            event_id: event_id.clone(),
            event_type: event_type.clone(),
            result,
        };
        let (Some(change), Some(org_id)) = (change_of(&event_type, &object), org_of(&object))
        else {
            tracing::info!(event_id, event_type, "webhook event ignored");
            return Ok(outcome("ignored"));
        };
        let Some(org) = self.store.org(&org_id).await? else {
            tracing::warn!(event_id, %org_id, "webhook event for an unknown org ignored");
            return Ok(outcome("ignored"));
        };
        let now = self.now();
        let before = self.plans.subscription(&org, now).await?;
        let mut after = before.clone();
        let action = match change {
            Change::Subscribed {
                plan,
                customer,
                subscription,
            } => {
                if self.plans.plan(&plan).await?.is_none() {
                    tracing::warn!(event_id, %plan, "checkout for an unknown plan ignored");
                    return Ok(outcome("ignored"));
                }
                if after.plan_id != plan {
                    let counted = self.period_totals(&org, now).await?;
                    after.switch_to(&plan, now, counted);
                }
                after.pending = None;
                after.status = SubscriptionStatus::Active;
                after.cancel_at = None;
                after.provider_customer_id = customer.or(after.provider_customer_id);
                after.provider_subscription_id = subscription;
                "subscription.checkout_completed"
            }
            Change::Status(_, subject) | Change::Ended(subject) if !subject.is_current(&before) => {
                tracing::info!(event_id, %org_id, "webhook event about another subscription ignored");
                return Ok(outcome("ignored"));
            }
            Change::Status(status, _) => {
                after.status = status;
                match status {
                    SubscriptionStatus::PastDue => "subscription.payment_failed",
                    _ => "subscription.payment_succeeded",
                }
            }
            Change::Ended(_) => {
                let default = self.plans.default_plan().clone();
                if after.plan_id != default {
                    let counted = self.period_totals(&org, now).await?;
                    after.switch_to(&default, now, counted);
                }
                after.pending = None;
                after.status = SubscriptionStatus::Canceled;
                after.cancel_at = None;
                after.provider_subscription_id = None;
                "subscription.ended"
            }
        };
        let applied = self
            .save(
                &before,
                after,
                &Self::system_actor()?,
                action,
                origin,
                Some(&event_id),
            )
            .await?;
        Ok(outcome(if applied { "applied" } else { "duplicate" }))
    }
}
