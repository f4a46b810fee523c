//! API keys in SQL.

use super::{AnyTx, SqlStore, corrupt, db_error, insert_audit, millis, time};
use crate::auth::ApiKeyHash;
use crate::domain::{ApiKey, ApiKeyId, AuditEntry, OrgId, Page, PageRequest, TeamId};
use crate::store::{ApiKeyStore, Revoked, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

/// The columns [`key_from_row`] reads (teams list their keys with them too).
pub(super) const COLUMNS: &str = "id, org_id, team_id, name, prefix, created_at, expires_at, \
     last_used_at, rate_limit_rpm, revoked_at";

pub(super) fn key_from_row(row: &AnyRow) -> StoreResult<ApiKey> {
    let get = |err: sqlx::Error| StoreError::Backend(err.into());
    let optional_time = |column: &str| -> StoreResult<Option<DateTime<Utc>>> {
        let ms: Option<i64> = row.try_get(column).map_err(get)?;
        Ok(ms.map(time).transpose()?)
    };
    let id: String = row.try_get("id").map_err(get)?;
    let org: String = row.try_get("org_id").map_err(get)?;
    let team: Option<String> = row.try_get("team_id").map_err(get)?;
    let rpm: Option<i64> = row.try_get("rate_limit_rpm").map_err(get)?;
    Ok(ApiKey {
        id: ApiKeyId::parse(&id).ok_or_else(|| corrupt("api key id"))?,
        org_id: OrgId::parse(&org).ok_or_else(|| corrupt("org id"))?,
        team_id: team
            .map(|team| TeamId::parse(&team).ok_or_else(|| corrupt("team id")))
            .transpose()?,
        name: row.try_get("name").map_err(get)?,
        prefix: row.try_get("prefix").map_err(get)?,
        created_at: time(row.try_get("created_at").map_err(get)?)?,
        expires_at: optional_time("expires_at")?,
        last_used_at: optional_time("last_used_at")?,
        rate_limit_rpm: rpm.and_then(|rpm| u32::try_from(rpm).ok()),
        revoked_at: optional_time("revoked_at")?,
    })
}

async fn commit_with_audit(mut tx: AnyTx, audit: &AuditEntry) -> StoreResult<()> {
    insert_audit(&mut tx, audit).await?;
    tx.commit().await.map_err(db_error)
}

#[async_trait]
impl ApiKeyStore for SqlStore {
    #[tracing::instrument(skip_all, fields(org_id = %key.org_id, key_id = %key.id))]
    async fn create_api_key(
        &self,
        key: &ApiKey,
        hash: &ApiKeyHash,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        if let Some(team) = &key.team_id {
            // Counts the team's live keys on the team's row, which also proves the team exists
            // and serialises with its deletion (which needs the count at zero).
            let counted = sqlx::query(
                "UPDATE teams SET key_count = key_count + 1 WHERE org_id = $1 AND id = $2",
            )
            .bind(key.org_id.as_str())
            .bind(team.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
            if counted != 1 {
                tx.rollback().await.map_err(db_error)?;
                return Err(StoreError::Conflict);
            }
        }
        sqlx::query(
            "INSERT INTO api_keys (id, org_id, hash, name, prefix, created_at, expires_at, \
                 last_used_at, rate_limit_rpm, revoked_at, team_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, NULL, $9)",
        )
        .bind(key.id.as_str())
        .bind(key.org_id.as_str())
        .bind(hash.as_str())
        .bind(key.name.as_str())
        .bind(key.prefix.as_str())
        .bind(millis(key.created_at))
        .bind(key.expires_at.map(millis))
        .bind(key.rate_limit_rpm.map(i64::from))
        .bind(key.team_id.as_ref().map(TeamId::as_str))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        commit_with_audit(tx, audit).await
    }

    async fn api_keys(&self, org: &OrgId, page: &PageRequest) -> StoreResult<Page<ApiKey>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys WHERE org_id = $1 {}",
            super::keyset("id", "<", 2, page, "DESC")
        );
        self.page(&sql, &[org.as_str()], page, key_from_row, |k| {
            k.id.to_string()
        })
        .await
    }

    async fn api_key_by_hash(&self, hash: &ApiKeyHash) -> StoreResult<Option<ApiKey>> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE hash = $1");
        let row = sqlx::query(&sql)
            .bind(hash.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(key_from_row).transpose()
    }

    #[tracing::instrument(skip_all, fields(org_id = %org, key_id = %key))]
    async fn revoke_api_key(
        &self,
        org: &OrgId,
        key: &ApiKeyId,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> StoreResult<Revoked> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let changed = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 \
             WHERE org_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(millis(at))
        .bind(org.as_str())
        .bind(key.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if changed == 1 {
            // A team key no longer blocks its team's deletion.
            sqlx::query(
                "UPDATE teams SET key_count = key_count - 1 WHERE org_id = $1 AND id = \
                     (SELECT team_id FROM api_keys WHERE org_id = $1 AND id = $2)",
            )
            .bind(org.as_str())
            .bind(key.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            commit_with_audit(tx, audit).await?;
            return Ok(Revoked::Now);
        }
        tx.rollback().await.map_err(db_error)?;
        let exists = sqlx::query("SELECT id FROM api_keys WHERE org_id = $1 AND id = $2")
            .bind(org.as_str())
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(if exists.is_some() {
            Revoked::Already
        } else {
            Revoked::NotFound
        })
    }

    async fn touch_api_key(
        &self,
        org: &OrgId,
        key: &ApiKeyId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE org_id = $2 AND id = $3")
            .bind(millis(at))
            .bind(org.as_str())
            .bind(key.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
