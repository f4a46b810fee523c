//! Usage on the single table.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | event (the dedup record) | `ORG#<org_id>` | `EVENT#<event_id>` |
//! | counter | `ORG#<org_id>` | `USAGE#<granularity>#<period start, RFC 3339>#<meter>` |
//!
//! Events are applied in transactions of at most 24 events and their (at most 72) counters:
//! each event's record is put only if absent, each counter is `ADD`ed the sum of its events.
//! When a record exists (a redelivery), the transaction is cancelled, the duplicates are
//! dropped and the rest is retried, so a redelivered event never counts twice.

use super::orgs::{cancellation_codes, is_cancellation, org_pk};
use super::{DynamoStore, Item, get_n, get_s, get_time, key, malformed, ms, n, s, sdk_error};

/// A counter as read: `ADD` keeps adding past `i64::MAX` (DynamoDB numbers have 38 digits), so
/// a counter beyond it reads as `i64::MAX`, saturated, like the SQL backends store it.
fn get_counter(item: &Item, name: &str) -> StoreResult<u64> {
    let raw = item
        .get(name)
        .and_then(|v| v.as_n().ok())
        .ok_or_else(|| malformed(name))?;
    match raw.parse::<i64>() {
        Ok(value) => u64::try_from(value).map_err(|_| malformed(name)),
        Err(_) if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(i64::MAX.unsigned_abs())
        }
        Err(_) => Err(malformed(name)),
    }
}
use crate::domain::{
    ApiKeyId, CounterKey, Granularity, OrgId, UsageEvent, UsagePoint, sum_counters,
};
use crate::store::{StoreError, StoreResult, UsageStore};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::time::Duration;

/// Events per transaction: with their hour, day and month counters, at most 96 of the 100
/// items a transaction may hold.
const EVENTS_PER_TRANSACTION: usize = 24;
/// Attempts at one chunk when transactions conflict with concurrent writers.
const ATTEMPTS: u32 = 8;

fn period(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn counter_sk(granularity: Granularity, start: DateTime<Utc>, meter: &str) -> String {
    format!("USAGE#{}#{}#{meter}", granularity.as_str(), period(start))
}

fn event_item(event: &UsageEvent) -> Item {
    let mut item = key(org_pk(&event.org_id), &format!("EVENT#{}", event.id));
    item.insert("event_id".into(), s(event.id.as_str()));
    item.insert("key_id".into(), s(event.key_id.as_str()));
    item.insert("meter".into(), s(event.meter.as_str()));
    item.insert(
        "quantity".into(),
        n(i64::try_from(event.quantity).unwrap_or(i64::MAX)),
    );
    item.insert("occurred_at".into(), ms(event.timestamp));
    if let Some(properties) = &event.properties {
        item.insert(
            "properties".into(),
            s(serde_json::Value::Object(properties.clone()).to_string()),
        );
    }
    item
}

impl DynamoStore {
    fn counter_step(&self, counter: &CounterKey, quantity: u64) -> StoreResult<TransactWriteItem> {
        let sk = counter_sk(counter.granularity, counter.period_start, &counter.meter);
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(org_pk(&counter.org_id), &sk)))
            .update_expression(
                "SET meter = :meter, period_start = :start, granularity = :granularity \
                 ADD quantity :quantity",
            )
            .expression_attribute_values(":meter", s(counter.meter.as_str()))
            .expression_attribute_values(":start", ms(counter.period_start))
            .expression_attribute_values(":granularity", s(counter.granularity.as_str()))
            .expression_attribute_values(
                ":quantity",
                n(i64::try_from(quantity).unwrap_or(i64::MAX)),
            )
            .build()
            .map_err(|err| StoreError::Backend(err.into()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Applies up to [`EVENTS_PER_TRANSACTION`] distinct events; returns how many were new.
    async fn apply_chunk(&self, mut pending: Vec<&UsageEvent>) -> StoreResult<u64> {
        let mut backoff = Duration::from_millis(10);
        for _ in 0..ATTEMPTS {
            if pending.is_empty() {
                return Ok(0);
            }
            let mut steps = Vec::with_capacity(pending.len() * 4);
            for event in &pending {
                steps.push(self.put_step(event_item(event), Some("attribute_not_exists(pk)"))?);
            }
            for (counter, quantity) in sum_counters(pending.iter().copied()) {
                steps.push(self.counter_step(&counter, quantity)?);
            }
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(steps))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(pending.len() as u64),
                Err(err) if is_cancellation(&err) => err,
                Err(err) => return Err(sdk_error(err)),
            };
            let before = pending.len();
            match cancellation_codes(&err) {
                Some(codes) => {
                    let mut index = 0;
                    pending.retain(|_| {
                        let duplicate = codes.get(index).cloned().flatten().as_deref()
                            == Some("ConditionalCheckFailed");
                        index += 1;
                        !duplicate
                    });
                }
                None => {
                    // No per-step reasons from this endpoint: look the records up instead.
                    let mut still_new = Vec::with_capacity(pending.len());
                    for event in pending {
                        let record = self
                            .get(org_pk(&event.org_id), &format!("EVENT#{}", event.id))
                            .await?;
                        if record.is_none() {
                            still_new.push(event);
                        }
                    }
                    pending = still_new;
                }
            }
            if pending.len() == before {
                // Cancelled by a concurrent writer, not by duplicates: wait and go again.
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(StoreError::Backend(anyhow::anyhow!(
            "usage transaction kept conflicting with concurrent writers"
        )))
    }
}

#[async_trait]
impl UsageStore for DynamoStore {
    async fn apply_usage(&self, events: &[UsageEvent]) -> StoreResult<u64> {
        // One transaction may not touch an item twice: an id repeated in the input is one event.
        let mut seen = HashSet::new();
        let unique: Vec<&UsageEvent> = events
            .iter()
            .filter(|e| seen.insert((e.org_id.clone(), e.id.clone())))
            .collect();
        let mut applied = 0;
        for chunk in unique.chunks(EVENTS_PER_TRANSACTION) {
            applied += self.apply_chunk(chunk.to_vec()).await?;
        }
        Ok(applied)
    }

    async fn usage_series(
        &self,
        org: &OrgId,
        granularity: Granularity,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        meter: Option<&str>,
    ) -> StoreResult<Vec<UsagePoint>> {
        let prefix = format!("USAGE#{}#", granularity.as_str());
        let mut points = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(org_pk(org)))
                .expression_attribute_values(":from", s(format!("{prefix}{}", period(from))))
                .expression_attribute_values(":to", s(format!("{prefix}{}", period(to))))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in page.items() {
                let point = UsagePoint {
                    period_start: get_time(item, "period_start")?,
                    meter: get_s(item, "meter")?.to_owned(),
                    quantity: get_counter(item, "quantity")?,
                };
                let wanted = point.period_start < to && meter.is_none_or(|m| m == point.meter);
                if wanted {
                    points.push(point);
                }
            }
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        points.sort_by(|a, b| (a.period_start, &a.meter).cmp(&(b.period_start, &b.meter)));
        Ok(points)
    }

    async fn usage_event(&self, org: &OrgId, id: &str) -> StoreResult<Option<UsageEvent>> {
        let Some(item) = self.get(org_pk(org), &format!("EVENT#{id}")).await? else {
            return Ok(None);
        };
        Ok(Some(UsageEvent {
            id: get_s(&item, "event_id")?.to_owned(),
            org_id: org.clone(),
            key_id: ApiKeyId::parse(get_s(&item, "key_id")?).ok_or_else(|| malformed("key_id"))?,
            meter: get_s(&item, "meter")?.to_owned(),
            quantity: u64::try_from(get_n(&item, "quantity")?)
                .map_err(|_| malformed("quantity"))?,
            timestamp: get_time(&item, "occurred_at")?,
            properties: match item.get("properties").and_then(|v| v.as_s().ok()) {
                Some(raw) => Some(serde_json::from_str(raw).map_err(|_| malformed("properties"))?),
                None => None,
            },
        }))
    }
}
