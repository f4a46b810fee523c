//! API keys on the single table.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | key, the org's listing | `ORG#<org_id>` | `KEY#<key_id>` (with `hash`) |
//! | key, the hot-path lookup | `APIKEY#<sha256>` | `APIKEY` |
//!
//! Both are written, and revoked, together in one transaction with the audit entry. A key
//! scoped to a team carries `team_id`, and its creation (revocation) also adds one to (takes
//! one from) the team item's `key_count` in the same transaction; see `teams.rs`.

use super::orgs::org_pk;
use super::{DynamoStore, Item, get_n, get_s, get_time, key, malformed, ms, n, s, sdk_error};
use crate::auth::ApiKeyHash;
use crate::domain::{ApiKey, ApiKeyId, AuditEntry, OrgId, Page, PageRequest, TeamId};
use crate::store::{ApiKeyStore, Revoked, StoreError, StoreResult};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use chrono::{DateTime, Utc};

/// How many times a revocation cancelled by a concurrent write is tried (10 ms, 20 ms, ...
/// apart): a touch holds its item for milliseconds, so more means the store is in trouble.
const REVOKE_ATTEMPTS: u32 = 5;

pub(super) fn key_sk(key: &ApiKeyId) -> String {
    format!("KEY#{key}")
}

fn lookup_pk(hash: &ApiKeyHash) -> String {
    format!("APIKEY#{}", hash.as_str())
}

fn key_attributes(mut item: Item, key: &ApiKey, hash: &ApiKeyHash) -> Item {
    item.insert("key_id".into(), s(key.id.as_str()));
    item.insert("org_id".into(), s(key.org_id.as_str()));
    if let Some(team) = &key.team_id {
        item.insert("team_id".into(), s(team.as_str()));
    }
    item.insert("hash".into(), s(hash.as_str()));
    item.insert("name".into(), s(key.name.as_str()));
    item.insert("prefix".into(), s(key.prefix.as_str()));
    item.insert("created_at".into(), ms(key.created_at));
    if let Some(at) = key.expires_at {
        item.insert("expires_at".into(), ms(at));
    }
    if let Some(rpm) = key.rate_limit_rpm {
        item.insert("rate_limit_rpm".into(), n(i64::from(rpm)));
    }
    item
}

fn optional_time(item: &Item, name: &str) -> StoreResult<Option<DateTime<Utc>>> {
    item.contains_key(name)
        .then(|| get_time(item, name))
        .transpose()
}

pub(super) fn key_from_item(item: &Item) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: ApiKeyId::parse(get_s(item, "key_id")?).ok_or_else(|| malformed("key_id"))?,
        org_id: OrgId::parse(get_s(item, "org_id")?).ok_or_else(|| malformed("org_id"))?,
        team_id: match item.get("team_id") {
            Some(_) => {
                Some(TeamId::parse(get_s(item, "team_id")?).ok_or_else(|| malformed("team_id"))?)
            }
            None => None,
        },
        name: get_s(item, "name")?.to_owned(),
        prefix: get_s(item, "prefix")?.to_owned(),
        created_at: get_time(item, "created_at")?,
        expires_at: optional_time(item, "expires_at")?,
        last_used_at: optional_time(item, "last_used_at")?,
        rate_limit_rpm: match item.get("rate_limit_rpm") {
            Some(_) => Some(
                u32::try_from(get_n(item, "rate_limit_rpm")?)
                    .map_err(|_| malformed("rate_limit_rpm"))?,
            ),
            None => None,
        },
        revoked_at: optional_time(item, "revoked_at")?,
    })
}

impl DynamoStore {
    fn revoke_step(
        &self,
        pk: String,
        sk: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<TransactWriteItem> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .update_expression("SET revoked_at = :at")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(revoked_at)")
            .expression_attribute_values(":at", ms(at))
            .build()
            .map_err(|err| StoreError::Backend(err.into()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Removes every key of a deleted org, both items of each, so none authenticates again.
    pub(super) async fn delete_org_keys(&self, org: &OrgId) -> StoreResult<()> {
        let mut page = PageRequest::first(99);
        loop {
            let items = self.query_page(org_pk(org), "KEY#", &page, false).await?;
            let more = items.len() > page.limit as usize;
            let mut doomed = Vec::new();
            let mut last = None;
            for item in items.iter().take(page.limit as usize) {
                let key_id = get_s(item, "key_id")?.to_owned();
                doomed.push(key(org_pk(org), &format!("KEY#{key_id}")));
                doomed.push(key(format!("APIKEY#{}", get_s(item, "hash")?), "APIKEY"));
                last = Some(key_id);
            }
            self.batch_delete(doomed).await?;
            match last {
                Some(last) if more => page.after = Some(last),
                _ => return Ok(()),
            }
        }
    }
}

#[async_trait]
impl ApiKeyStore for DynamoStore {
    #[tracing::instrument(skip_all, fields(org_id = %api_key.org_id, key_id = %api_key.id))]
    async fn create_api_key(
        &self,
        api_key: &ApiKey,
        hash: &ApiKeyHash,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let listing = key_attributes(
            key(org_pk(&api_key.org_id), &key_sk(&api_key.id)),
            api_key,
            hash,
        );
        let lookup = key_attributes(key(lookup_pk(hash), "APIKEY"), api_key, hash);
        let fresh = Some("attribute_not_exists(pk)");
        let mut steps = vec![
            self.put_step(listing, fresh)?,
            self.put_step(lookup, fresh)?,
            self.put_step(super::orgs::audit_item(audit), None)?,
        ];
        if let Some(team) = &api_key.team_id {
            steps.push(self.team_key_count_step(&api_key.org_id, team, 1)?);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(steps))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // The team was deleted meanwhile (or, impossibly, the key id was taken).
            Err(err) if super::orgs::is_cancellation(&err) => Err(StoreError::Conflict),
            Err(err) => Err(sdk_error(err)),
        }
    }

    async fn api_keys(&self, org: &OrgId, page: &PageRequest) -> StoreResult<Page<ApiKey>> {
        let items = self.query_page(org_pk(org), "KEY#", page, true).await?;
        let keys = items
            .iter()
            .map(key_from_item)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(keys, page.limit, |k| k.id.to_string()))
    }

    async fn api_key_by_hash(&self, hash: &ApiKeyHash) -> StoreResult<Option<ApiKey>> {
        self.get(lookup_pk(hash), "APIKEY")
            .await?
            .as_ref()
            .map(key_from_item)
            .transpose()
    }

    /// A cancelled transaction is re-read, never taken for "already revoked": it may have
    /// lost to a concurrent `last_used_at` touch (`TransactionConflict`), and then the key is
    /// still live. The item as read decides; the write is retried a few times, and a key that
    /// still cannot be revoked is an error (503), never a 204.
    #[tracing::instrument(skip_all, fields(org_id = %org, key_id = %api_key))]
    async fn revoke_api_key(
        &self,
        org: &OrgId,
        api_key: &ApiKeyId,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> StoreResult<Revoked> {
        for attempt in 0..REVOKE_ATTEMPTS {
            let Some(listing) = self.get(org_pk(org), &key_sk(api_key)).await? else {
                return Ok(Revoked::NotFound);
            };
            if listing.contains_key("revoked_at") {
                return Ok(Revoked::Already);
            }
            let hash = ApiKeyHash::from_stored(get_s(&listing, "hash")?.to_owned());
            let mut steps = vec![
                self.revoke_step(org_pk(org), &key_sk(api_key), at)?,
                self.revoke_step(lookup_pk(&hash), "APIKEY", at)?,
                self.put_step(super::orgs::audit_item(audit), None)?,
            ];
            if let Some(team) = key_from_item(&listing)?.team_id {
                steps.push(self.team_key_count_step(org, &team, -1)?);
            }
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(steps))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Revoked::Now),
                Err(err) if super::orgs::is_cancellation(&err) => {
                    tracing::info!(attempt, "key revocation cancelled; re-reading the key");
                    tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
                }
                Err(err) => return Err(sdk_error(err)),
            }
        }
        Err(StoreError::Unavailable(anyhow::anyhow!(
            "the key's revocation was cancelled {REVOKE_ATTEMPTS} times"
        )))
    }

    async fn touch_api_key(
        &self,
        org: &OrgId,
        api_key: &ApiKeyId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(org_pk(org), &key_sk(api_key))))
            .update_expression("SET last_used_at = :at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":at", ms(at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if super::is_conditional_failure(&err) => Ok(()),
            Err(err) => Err(sdk_error(err)),
        }
    }
}
