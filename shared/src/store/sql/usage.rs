//! Usage events in SQL.

use super::{SqlStore, corrupt, db_error, millis, time};
use crate::domain::{ApiKeyId, Granularity, OrgId, UsageEvent, UsagePoint, sum_counters};
use crate::store::{StoreError, StoreResult, UsageStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

#[async_trait]
impl UsageStore for SqlStore {
    async fn apply_usage(&self, events: &[UsageEvent]) -> StoreResult<u64> {
        // One lock order for every writer (by org, then id): concurrent deliveries of
        // overlapping batches wait for each other instead of deadlocking.
        let mut ordered: Vec<&UsageEvent> = events.iter().collect();
        ordered.sort_by(|a, b| (&a.org_id, &a.id).cmp(&(&b.org_id, &b.id)));
        ordered.dedup_by(|a, b| a.org_id == b.org_id && a.id == b.id);
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let mut fresh = Vec::with_capacity(events.len());
        for event in ordered {
            let properties = event
                .properties
                .as_ref()
                .map(|p| serde_json::Value::Object(p.clone()).to_string());
            let inserted = sqlx::query(
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
            if inserted == 1 {
                fresh.push(event);
            }
        }
        // Only events recorded just now count, summed per counter first: one upsert each. A
        // counter saturates at i64::MAX (the column's largest) instead of overflowing: SQLite
        // would turn it into a REAL, Postgres would fail the whole batch.
        for (counter, quantity) in sum_counters(fresh.iter().copied()) {
            sqlx::query(
                "INSERT INTO usage_counters (org_id, granularity, period_start, meter, quantity) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (org_id, granularity, period_start, meter) \
                 DO UPDATE SET quantity = CASE \
                     WHEN usage_counters.quantity > 9223372036854775807 - excluded.quantity \
                     THEN 9223372036854775807 \
                     ELSE usage_counters.quantity + excluded.quantity END",
            )
            .bind(counter.org_id.as_str())
            .bind(counter.granularity.as_str())
            .bind(millis(counter.period_start))
            .bind(counter.meter.as_str())
            .bind(i64::try_from(quantity).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(fresh.len() as u64)
    }

    async fn usage_series(
        &self,
        org: &OrgId,
        granularity: Granularity,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        meter: Option<&str>,
    ) -> StoreResult<Vec<UsagePoint>> {
        let sql = format!(
            "SELECT period_start, meter, quantity FROM usage_counters \
             WHERE org_id = $1 AND granularity = $2 AND period_start >= $3 AND period_start < $4 {} \
             ORDER BY period_start, meter",
            if meter.is_some() {
                "AND meter = $5"
            } else {
                ""
            }
        );
        let mut query = sqlx::query(&sql)
            .bind(org.as_str())
            .bind(granularity.as_str())
            .bind(millis(from))
            .bind(millis(to));
        if let Some(meter) = meter {
            query = query.bind(meter);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(db_error)?;
        let get = |err: sqlx::Error| StoreError::Backend(err.into());
        rows.iter()
            .map(|row| {
                let quantity: i64 = row.try_get("quantity").map_err(get)?;
                Ok(UsagePoint {
                    period_start: time(row.try_get("period_start").map_err(get)?)?,
                    meter: row.try_get("meter").map_err(get)?,
                    quantity: u64::try_from(quantity).map_err(|_| corrupt("quantity"))?,
                })
            })
            .collect()
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
