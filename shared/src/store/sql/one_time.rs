//! One-time secrets on SQL: an upsert per (purpose, subject), a guarded `UPDATE ... RETURNING`
//! per guess and a guarded `DELETE` to spend, so each rule is one atomic statement.

use super::{SqlStore, corrupt, db_error, millis, time};
use crate::auth::TokenHash;
use crate::store::{OneTimeRecord, OneTimeStore, Purpose, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::Duration;
use sqlx::Row;
use sqlx::any::AnyRow;

/// Expired secrets are kept this long, so a late click is told "expired" rather than
/// "unknown", then swept.
const KEEP_EXPIRED: Duration = Duration::days(1);

const COLUMNS: &str = "purpose, subject, secret_hash, created_at, expires_at, attempts, payload";

fn record_from_row(row: &AnyRow) -> StoreResult<OneTimeRecord> {
    let get = |err: sqlx::Error| StoreError::Backend(err.into());
    let purpose: String = row.try_get("purpose").map_err(get)?;
    let attempts: i64 = row.try_get("attempts").map_err(get)?;
    Ok(OneTimeRecord {
        purpose: Purpose::parse(&purpose).ok_or_else(|| corrupt("one-time purpose"))?,
        subject: row.try_get("subject").map_err(get)?,
        secret_hash: TokenHash::from_stored(row.try_get("secret_hash").map_err(get)?),
        created_at: time(row.try_get("created_at").map_err(get)?)?,
        expires_at: time(row.try_get("expires_at").map_err(get)?)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        payload: row.try_get("payload").map_err(get)?,
    })
}

#[async_trait]
impl OneTimeStore for SqlStore {
    #[tracing::instrument(skip_all, fields(purpose = record.purpose.as_str()))]
    async fn put_one_time(&self, record: &OneTimeRecord) -> StoreResult<()> {
        sqlx::query("DELETE FROM one_time_secrets WHERE expires_at < $1")
            .bind(millis(record.created_at - KEEP_EXPIRED))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        sqlx::query(&format!(
            "INSERT INTO one_time_secrets ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (purpose, subject) DO UPDATE SET secret_hash = excluded.secret_hash, \
             created_at = excluded.created_at, expires_at = excluded.expires_at, \
             attempts = excluded.attempts, payload = excluded.payload"
        ))
        .bind(record.purpose.as_str())
        .bind(record.subject.as_str())
        .bind(record.secret_hash.as_str())
        .bind(millis(record.created_at))
        .bind(millis(record.expires_at))
        .bind(i64::from(record.attempts))
        .bind(record.payload.as_deref())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn one_time(
        &self,
        purpose: Purpose,
        subject: &str,
    ) -> StoreResult<Option<OneTimeRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM one_time_secrets WHERE purpose = $1 AND subject = $2"
        ))
        .bind(purpose.as_str())
        .bind(subject)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(record_from_row).transpose()
    }

    #[tracing::instrument(skip_all, fields(purpose = purpose.as_str()))]
    async fn spend_one_time_attempt(
        &self,
        purpose: Purpose,
        subject: &str,
        max_attempts: u32,
    ) -> StoreResult<Option<OneTimeRecord>> {
        let row = sqlx::query(&format!(
            "UPDATE one_time_secrets SET attempts = attempts + 1 \
             WHERE purpose = $1 AND subject = $2 AND attempts < $3 RETURNING {COLUMNS}"
        ))
        .bind(purpose.as_str())
        .bind(subject)
        .bind(i64::from(max_attempts))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(record_from_row).transpose()
    }

    #[tracing::instrument(skip_all, fields(purpose = purpose.as_str()))]
    async fn take_one_time(
        &self,
        purpose: Purpose,
        subject: &str,
        secret_hash: &TokenHash,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "DELETE FROM one_time_secrets \
             WHERE purpose = $1 AND subject = $2 AND secret_hash = $3",
        )
        .bind(purpose.as_str())
        .bind(subject)
        .bind(secret_hash.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }
}
