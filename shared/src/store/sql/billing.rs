//! Plans and subscriptions in SQL.

use super::{SqlStore, corrupt, db_error, insert_audit, is_unique_violation, millis};
use crate::domain::{AuditEntry, OrgId, Plan, PlanId, Subscription};
use crate::store::billing::document;
use crate::store::{BillingStore, StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::Row;

fn body<T: serde::de::DeserializeOwned>(row: &sqlx::any::AnyRow, what: &str) -> StoreResult<T> {
    let raw: String = row
        .try_get("body")
        .map_err(|err| StoreError::Backend(err.into()))?;
    serde_json::from_str(&raw).map_err(|_| corrupt(what))
}

fn version(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[async_trait]
impl BillingStore for SqlStore {
    async fn put_plan(&self, plan: &Plan, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO plans (id, body, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(plan.id.as_str())
        .bind(document(plan)?)
        .bind(millis(plan.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn insert_plan_if_missing(&self, plan: &Plan) -> StoreResult<bool> {
        let written = sqlx::query(
            "INSERT INTO plans (id, body, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(plan.id.as_str())
        .bind(document(plan)?)
        .bind(millis(plan.updated_at))
        .execute(&self.pool)
        .await
        .map_err(db_error)?
        .rows_affected();
        Ok(written == 1)
    }

    async fn plan(&self, id: &PlanId) -> StoreResult<Option<Plan>> {
        sqlx::query("SELECT body FROM plans WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .map(|row| body(&row, "plan"))
            .transpose()
    }

    async fn plans(&self) -> StoreResult<Vec<Plan>> {
        sqlx::query("SELECT body FROM plans ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?
            .iter()
            .map(|row| body(row, "plan"))
            .collect()
    }

    async fn subscription(&self, org: &OrgId) -> StoreResult<Option<Subscription>> {
        sqlx::query("SELECT body FROM subscriptions WHERE org_id = $1")
            .bind(org.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .map(|row| body(&row, "subscription"))
            .transpose()
    }

    async fn save_subscription(
        &self,
        subscription: &Subscription,
        audit: &AuditEntry,
        webhook_event: Option<&str>,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        if let Some(event) = webhook_event {
            let fresh = sqlx::query(
                "INSERT INTO webhook_events (id, received_at) VALUES ($1, $2) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(event)
            .bind(millis(subscription.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
            if fresh == 0 {
                return Ok(false);
            }
        }
        let json = document(subscription)?;
        let next = version(subscription.version);
        let written = if subscription.version <= 1 {
            sqlx::query("INSERT INTO subscriptions (org_id, version, body) VALUES ($1, $2, $3)")
                .bind(subscription.org_id.as_str())
                .bind(next)
                .bind(json)
                .execute(&mut *tx)
                .await
                .map(|done| done.rows_affected())
                .or_else(|err| {
                    if is_unique_violation(&err) {
                        Ok(0)
                    } else {
                        Err(err)
                    }
                })
                .map_err(db_error)?
        } else {
            sqlx::query(
                "UPDATE subscriptions SET version = $2, body = $3 \
                 WHERE org_id = $1 AND version = $4",
            )
            .bind(subscription.org_id.as_str())
            .bind(next)
            .bind(json)
            .bind(next - 1)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected()
        };
        if written != 1 {
            return Err(StoreError::Conflict);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }
}
