//! Usage events in SQL.

use super::{SqlStore, corrupt, db_error, millis, time};
use crate::domain::{ApiKeyId, OrgId, UsageEvent};
use crate::store::{StoreError, StoreResult, UsageStore};
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl UsageStore for SqlStore {
    async fn record_usage(&self, events: &[UsageEvent]) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let mut inserted = 0;
        for event in events {
            let properties = event
                .properties
                .as_ref()
                .map(|p| serde_json::Value::Object(p.clone()).to_string());
            inserted += sqlx::query(
                "INSERT INTO usage_events (org_id, event_id, key_id, meter, quantity, \
                     occurred_at, properties_json) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (org_id, event_id) DO NOTHING",
            )
            .bind(event.org_id.as_str())
            .bind(event.id.as_str())
            .bind(event.key_id.as_str())
            .bind(event.meter.as_str())
            .bind(i64::try_from(event.quantity).unwrap_or(i64::MAX))
            .bind(millis(event.timestamp))
            .bind(properties)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        }
        tx.commit().await.map_err(db_error)?;
        Ok(inserted)
    }

    async fn usage_event(&self, org: &OrgId, id: &str) -> StoreResult<Option<UsageEvent>> {
        let row = sqlx::query(
            "SELECT org_id, event_id, key_id, meter, quantity, occurred_at, properties_json \
             FROM usage_events WHERE org_id = $1 AND event_id = $2",
        )
        .bind(org.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let get = |err: sqlx::Error| StoreError::Backend(err.into());
        let key: String = row.try_get("key_id").map_err(get)?;
        let quantity: i64 = row.try_get("quantity").map_err(get)?;
        let properties: Option<String> = row.try_get("properties_json").map_err(get)?;
        Ok(Some(UsageEvent {
            id: row.try_get("event_id").map_err(get)?,
            org_id: org.clone(),
            key_id: ApiKeyId::parse(&key).ok_or_else(|| corrupt("key id"))?,
            meter: row.try_get("meter").map_err(get)?,
            quantity: u64::try_from(quantity).map_err(|_| corrupt("quantity"))?,
            timestamp: time(row.try_get("occurred_at").map_err(get)?)?,
            properties: properties
                .map(|raw| serde_json::from_str(&raw).map_err(|_| corrupt("properties")))
                .transpose()?,
        }))
    }
}
