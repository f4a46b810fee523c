//! Plans, subscriptions and applied webhook events on the single table.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | plan | `PLANS` | `PLAN#<plan_id>` |
//! | subscription (with `version`) | `ORG#<org_id>` | `SUBSCRIPTION` |
//! | applied webhook event (`ttl` 30 days) | `WEBHOOK#<event_id>` | `WEBHOOK` |
//!
//! Plans and subscriptions are JSON documents in `body`; a subscription write is conditional on
//! its version and, for a webhook, on the event item not existing, in one transaction with the
//! audit entry.

use super::orgs::{audit_item, is_cancellation, org_pk};
use super::{DynamoStore, Item, get_s, key, malformed, n, s, sdk_error, ttl};
use crate::domain::{AuditEntry, OrgId, Plan, PlanId, Subscription};
use crate::store::billing::document;
use crate::store::{BillingStore, StoreError, StoreResult};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

/// How long an applied webhook event is remembered; providers retry for days, not weeks.
const WEBHOOK_MEMORY_DAYS: i64 = 30;

fn plan_sk(id: &PlanId) -> String {
    format!("PLAN#{id}")
}

fn body<T: serde::de::DeserializeOwned>(item: &Item, what: &str) -> StoreResult<T> {
    serde_json::from_str(get_s(item, "body")?).map_err(|_| malformed(what))
}

fn plan_item(plan: &Plan) -> StoreResult<Item> {
    let mut item = key("PLANS".to_owned(), &plan_sk(&plan.id));
    item.insert("body".into(), s(document(plan)?));
    Ok(item)
}

fn build_error(err: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend(err.into())
}

#[async_trait]
impl BillingStore for DynamoStore {
    async fn put_plan(&self, plan: &Plan, audit: &AuditEntry) -> StoreResult<()> {
        self.client
            .transact_write_items()
            .transact_items(self.put_step(plan_item(plan)?, None)?)
            .transact_items(self.put_step(audit_item(audit), None)?)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn insert_plan_if_missing(&self, plan: &Plan) -> StoreResult<bool> {
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(plan_item(plan)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(err) if super::is_conditional_failure(&err) => Ok(false),
            Err(err) => Err(sdk_error(err)),
        }
    }

    async fn plan(&self, id: &PlanId) -> StoreResult<Option<Plan>> {
        self.get("PLANS".to_owned(), &plan_sk(id))
            .await?
            .map(|item| body(&item, "plan"))
            .transpose()
    }

    async fn plans(&self) -> StoreResult<Vec<Plan>> {
        let mut plans = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s("PLANS"))
                .expression_attribute_values(":prefix", s("PLAN#"))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items() {
                plans.push(body(item, "plan")?);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(plans);
            }
        }
    }

    async fn subscription(&self, org: &OrgId) -> StoreResult<Option<Subscription>> {
        self.get(org_pk(org), "SUBSCRIPTION")
            .await?
            .map(|item| body(&item, "subscription"))
            .transpose()
    }

    async fn save_subscription(
        &self,
        subscription: &Subscription,
        audit: &AuditEntry,
        webhook_event: Option<&str>,
    ) -> StoreResult<bool> {
        let next = i64::try_from(subscription.version).unwrap_or(i64::MAX);
        let mut item = key(org_pk(&subscription.org_id), "SUBSCRIPTION");
        item.insert("body".into(), s(document(subscription)?));
        item.insert("version".into(), n(next));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(if next <= 1 {
                "attribute_not_exists(pk)"
            } else {
                "version = :previous"
            });
        let put = if next <= 1 {
            put
        } else {
            put.expression_attribute_values(":previous", n(next - 1))
        };
        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(put.build().map_err(build_error)?)
                    .build(),
            )
            .transact_items(self.put_step(audit_item(audit), None)?);
        if let Some(event) = webhook_event {
            let mut seen = key(format!("WEBHOOK#{event}"), "WEBHOOK");
            seen.insert(
                "ttl".into(),
                ttl(subscription.updated_at + chrono::Duration::days(WEBHOOK_MEMORY_DAYS)),
            );
            transaction =
                transaction.transact_items(self.put_step(seen, Some("attribute_not_exists(pk)"))?);
        }
        match transaction.send().await {
            Ok(_) => Ok(true),
            Err(err) if is_cancellation(&err) => match webhook_event {
                // Which condition failed: a replayed event leaves its record behind.
                Some(event)
                    if self
                        .get(format!("WEBHOOK#{event}"), "WEBHOOK")
                        .await?
                        .is_some() =>
                {
                    Ok(false)
                }
                _ => Err(StoreError::Conflict),
            },
            Err(err) => Err(sdk_error(err)),
        }
    }
}
