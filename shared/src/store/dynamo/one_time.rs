//! One-time secrets on DynamoDB: item `ONETIME#<purpose>#<subject>` / `ONETIME`, overwritten
//! by a new secret, guesses counted by a conditional update, spent by a conditional delete.
//! `ttl` removes an item a day after it expires.

use super::{
    DynamoStore, Item, get_n, get_s, get_time, is_conditional_failure, key, malformed, ms, n, s,
    sdk_error, ttl,
};
use crate::auth::TokenHash;
use crate::store::{OneTimeRecord, OneTimeStore, Purpose, StoreResult};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use chrono::Duration;

/// A late click within this long is told "expired" rather than "unknown".
const KEEP_EXPIRED: Duration = Duration::days(1);

fn one_time_pk(purpose: Purpose, subject: &str) -> String {
    format!("ONETIME#{}#{subject}", purpose.as_str())
}

const SK: &str = "ONETIME";

fn record_from_item(item: &Item) -> StoreResult<OneTimeRecord> {
    let purpose = get_s(item, "purpose")?;
    Ok(OneTimeRecord {
        purpose: Purpose::parse(purpose).ok_or_else(|| malformed("purpose"))?,
        subject: get_s(item, "subject")?.to_owned(),
        secret_hash: TokenHash::from_stored(get_s(item, "secret_hash")?.to_owned()),
        created_at: get_time(item, "created_at")?,
        expires_at: get_time(item, "expires_at")?,
        attempts: u32::try_from(get_n(item, "attempts")?).unwrap_or(u32::MAX),
        payload: item
            .get("payload")
            .and_then(|value| value.as_s().ok())
            .cloned(),
    })
}

#[async_trait]
impl OneTimeStore for DynamoStore {
    #[tracing::instrument(skip_all, fields(purpose = record.purpose.as_str()))]
    async fn put_one_time(&self, record: &OneTimeRecord) -> StoreResult<()> {
        let mut item = key(one_time_pk(record.purpose, &record.subject), SK);
        item.insert("purpose".into(), s(record.purpose.as_str()));
        item.insert("subject".into(), s(record.subject.as_str()));
        item.insert("secret_hash".into(), s(record.secret_hash.as_str()));
        item.insert("created_at".into(), ms(record.created_at));
        item.insert("expires_at".into(), ms(record.expires_at));
        item.insert("attempts".into(), n(i64::from(record.attempts)));
        item.insert("ttl".into(), ttl(record.expires_at + KEEP_EXPIRED));
        if let Some(payload) = &record.payload {
            item.insert("payload".into(), s(payload.as_str()));
        }
        self.put(item).await
    }

    async fn one_time(
        &self,
        purpose: Purpose,
        subject: &str,
    ) -> StoreResult<Option<OneTimeRecord>> {
        self.get(one_time_pk(purpose, subject), SK)
            .await?
            .as_ref()
            .map(record_from_item)
            .transpose()
    }

    #[tracing::instrument(skip_all, fields(purpose = purpose.as_str()))]
    async fn spend_one_time_attempt(
        &self,
        purpose: Purpose,
        subject: &str,
        max_attempts: u32,
    ) -> StoreResult<Option<OneTimeRecord>> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(one_time_pk(purpose, subject), SK)))
            .update_expression("SET attempts = attempts + :one")
            .condition_expression("attribute_exists(pk) AND attempts < :max")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(i64::from(max_attempts)))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => output.attributes.as_ref().map(record_from_item).transpose(),
            Err(err) if is_conditional_failure(&err) => Ok(None),
            Err(err) => Err(sdk_error(err)),
        }
    }

    #[tracing::instrument(skip_all, fields(purpose = purpose.as_str()))]
    async fn take_one_time(
        &self,
        purpose: Purpose,
        subject: &str,
        secret_hash: &TokenHash,
    ) -> StoreResult<bool> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(one_time_pk(purpose, subject), SK)))
            .condition_expression("secret_hash = :hash")
            .expression_attribute_values(":hash", s(secret_hash.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_failure(&err) => Ok(false),
            Err(err) => Err(sdk_error(err)),
        }
    }
}
