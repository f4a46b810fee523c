//! Usage events on the single table: `ORG#<org_id>` / `EVENT#<event_id>`, written with
//! `attribute_not_exists` so a redelivered event is not recorded twice.

use super::orgs::org_pk;
use super::{
    DynamoStore, Item, get_n, get_s, get_time, is_conditional_failure, key, malformed, ms, n, s,
    sdk_error,
};
use crate::domain::{ApiKeyId, OrgId, UsageEvent};
use crate::store::{StoreResult, UsageStore};
use async_trait::async_trait;
use tokio::task::JoinSet;

/// Conditional puts in flight at once for one batch.
const CONCURRENCY: usize = 16;

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

#[async_trait]
impl UsageStore for DynamoStore {
    async fn record_usage(&self, events: &[UsageEvent]) -> StoreResult<u64> {
        let mut inserted = 0;
        for chunk in events.chunks(CONCURRENCY) {
            let mut puts = JoinSet::new();
            for event in chunk {
                let request = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(event_item(event)))
                    .condition_expression("attribute_not_exists(pk)");
                puts.spawn(async move { request.send().await });
            }
            while let Some(done) = puts.join_next().await {
                match done.map_err(|err| crate::store::StoreError::Backend(err.into()))? {
                    Ok(_) => inserted += 1,
                    Err(err) if is_conditional_failure(&err) => {}
                    Err(err) => return Err(sdk_error(err)),
                }
            }
        }
        Ok(inserted)
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
