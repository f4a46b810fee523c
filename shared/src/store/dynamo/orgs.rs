//! Orgs, memberships and the audit log on the single table.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | org (with `owner_count`) | `ORG#<org_id>` | `ORG` |
//! | membership | `ORG#<org_id>` | `MEMBER#<user_id>` |
//! | membership, the user's side | `USER#<user_id>` | `ORG#<org_id>` |
//! | audit entry | `ORG#<org_id>` | `AUDIT#<entry_id>` |
//!
//! A role change writes both membership items, the org's `owner_count` (conditionally, so it
//! never reaches zero) and the audit entry in one transaction.

use super::{
    DynamoStore, Item, get_n, get_s, get_time, key, malformed, ms, n, s, sdk_error, user_pk,
};
use crate::domain::{
    AuditEntry, AuditEntryId, Email, Membership, Org, OrgId, Page, PageRequest, Role, UserId,
};
use crate::store::orgs::owner_delta;
use crate::store::{OrgStore, StoreError, StoreResult};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    ConditionCheck, Delete, DeleteRequest, KeysAndAttributes, PutRequest, TransactWriteItem,
    Update, WriteRequest,
};
use std::collections::HashMap;

pub(super) fn org_pk(org: &OrgId) -> String {
    format!("ORG#{org}")
}

fn member_sk(user: &UserId) -> String {
    format!("MEMBER#{user}")
}

fn user_org_sk(org: &OrgId) -> String {
    format!("ORG#{org}")
}

pub(super) fn build_error(err: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend(err.into())
}

fn org_from_item(item: &Item) -> StoreResult<Org> {
    Ok(Org {
        id: OrgId::parse(get_s(item, "org_id")?).ok_or_else(|| malformed("org_id"))?,
        name: get_s(item, "name")?.to_owned(),
        rate_limit_rpm: match item.get("rate_limit_rpm") {
            Some(_) => Some(
                u32::try_from(get_n(item, "rate_limit_rpm")?)
                    .map_err(|_| malformed("rate_limit_rpm"))?,
            ),
            None => None,
        },
        created_at: get_time(item, "created_at")?,
    })
}

fn role_of(item: &Item) -> StoreResult<Role> {
    get_s(item, "role")?.parse().map_err(|_| malformed("role"))
}

fn member_from_item(item: &Item) -> StoreResult<Membership> {
    Ok(Membership {
        org_id: OrgId::parse(get_s(item, "org_id")?).ok_or_else(|| malformed("org_id"))?,
        user_id: UserId::parse(get_s(item, "user_id")?).ok_or_else(|| malformed("user_id"))?,
        email: Email::from_trusted(get_s(item, "email")?.to_owned()),
        role: role_of(item)?,
        joined_at: get_time(item, "joined_at")?,
    })
}

pub(super) fn member_item(m: &Membership) -> Item {
    let mut item = key(org_pk(&m.org_id), &member_sk(&m.user_id));
    item.insert("org_id".into(), s(m.org_id.as_str()));
    item.insert("user_id".into(), s(m.user_id.as_str()));
    item.insert("email".into(), s(m.email.as_str()));
    item.insert("role".into(), s(m.role.as_str()));
    item.insert("joined_at".into(), ms(m.joined_at));
    item
}

pub(super) fn user_side_item(m: &Membership) -> Item {
    let mut item = key(user_pk(&m.user_id), &user_org_sk(&m.org_id));
    item.insert("org_id".into(), s(m.org_id.as_str()));
    item.insert("role".into(), s(m.role.as_str()));
    item
}

pub(super) fn audit_item(entry: &AuditEntry) -> Item {
    let mut item = key(org_pk(&entry.org_id), &format!("AUDIT#{}", entry.id));
    item.insert("entry_id".into(), s(entry.id.as_str()));
    item.insert("org_id".into(), s(entry.org_id.as_str()));
    item.insert("actor_user_id".into(), s(entry.actor_user_id.as_str()));
    item.insert("action".into(), s(entry.action.as_str()));
    item.insert("target".into(), s(entry.target.as_str()));
    let optional = [
        ("before", entry.before.as_ref().map(ToString::to_string)),
        ("after", entry.after.as_ref().map(ToString::to_string)),
        ("ip", entry.ip.clone()),
        ("user_agent", entry.user_agent.clone()),
        ("request_id", entry.request_id.clone()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.into(), s(value));
        }
    }
    item.insert("at".into(), ms(entry.at));
    item
}

fn audit_from_item(item: &Item) -> StoreResult<AuditEntry> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let json = |name: &str| -> StoreResult<Option<serde_json::Value>> {
        text(name)
            .map(|raw| serde_json::from_str(&raw).map_err(|_| malformed(name)))
            .transpose()
    };
    Ok(AuditEntry {
        id: AuditEntryId::parse(get_s(item, "entry_id")?).ok_or_else(|| malformed("entry_id"))?,
        org_id: OrgId::parse(get_s(item, "org_id")?).ok_or_else(|| malformed("org_id"))?,
        actor_user_id: UserId::parse(get_s(item, "actor_user_id")?)
            .ok_or_else(|| malformed("actor_user_id"))?,
        action: get_s(item, "action")?.to_owned(),
        target: get_s(item, "target")?.to_owned(),
        before: json("before")?,
        after: json("after")?,
        ip: text("ip"),
        user_agent: text("user_agent"),
        request_id: text("request_id"),
        at: get_time(item, "at")?,
    })
}

/// Per-step cancellation codes of a failed transaction (`None` for a step that did not fail),
/// or `None` when the failure was not a cancellation or the endpoint gave no reasons.
pub(super) fn cancellation_codes<R>(
    err: &SdkError<TransactWriteItemsError, R>,
) -> Option<Vec<Option<String>>> {
    let TransactWriteItemsError::TransactionCanceledException(cancelled) =
        err.as_service_error()?
    else {
        return None;
    };
    let reasons = cancelled.cancellation_reasons();
    (!reasons.is_empty()).then(|| {
        reasons
            .iter()
            .map(|r| r.code().filter(|c| *c != "None").map(str::to_owned))
            .collect()
    })
}

pub(super) fn is_cancellation<R>(err: &SdkError<TransactWriteItemsError, R>) -> bool {
    matches!(
        err.as_service_error(),
        Some(TransactWriteItemsError::TransactionCanceledException(_))
            | Some(TransactWriteItemsError::TransactionInProgressException(_))
    )
}

impl DynamoStore {
    /// The step that moves the org's owner count: down only while another owner remains.
    pub(super) fn owner_count_step(
        &self,
        org: &OrgId,
        delta: i64,
    ) -> StoreResult<TransactWriteItem> {
        let org_key = Some(key(org_pk(org), "ORG"));
        if delta == 0 {
            let check = ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(org_key)
                .condition_expression("attribute_exists(pk)")
                .build()
                .map_err(build_error)?;
            return Ok(TransactWriteItem::builder().condition_check(check).build());
        }
        let (expression, condition) = if delta < 0 {
            ("SET owner_count = owner_count - :one", "owner_count > :one")
        } else {
            (
                "SET owner_count = owner_count + :one",
                "attribute_exists(pk)",
            )
        };
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(org_key)
            .update_expression(expression)
            .condition_expression(condition)
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Runs a membership transaction whose steps are [member, user side, owner count, audit]
    /// and names why it was refused.
    async fn membership_transaction(
        &self,
        org: &OrgId,
        steps: Vec<TransactWriteItem>,
        demotes_owner: bool,
    ) -> StoreResult<()> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(steps))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(()),
            Err(err) if is_cancellation(&err) => err,
            Err(err) => return Err(sdk_error(err)),
        };
        let codes = cancellation_codes(&err);
        let failed = |index: usize| {
            codes
                .as_ref()
                .and_then(|codes| codes.get(index).cloned().flatten())
                == Some("ConditionalCheckFailed".to_owned())
        };
        if failed(0) {
            return Err(StoreError::Conflict);
        }
        if demotes_owner && (failed(2) || codes.is_none()) {
            // Without per-step reasons, read the count: one owner left means this was the last.
            let owners = self
                .get(org_pk(org), "ORG")
                .await?
                .map(|item| get_n(&item, "owner_count"))
                .transpose()?;
            if failed(2) || owners.is_some_and(|count| count <= 1) {
                return Err(StoreError::LastOwner);
            }
        }
        Err(StoreError::Conflict)
    }

    pub(super) async fn query_page(
        &self,
        pk: String,
        sk_prefix: &str,
        page: &PageRequest,
        newest_first: bool,
    ) -> StoreResult<Vec<Item>> {
        let start = page
            .after
            .as_ref()
            .map(|after| key(pk.clone(), &format!("{sk_prefix}{after}")));
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(sk_prefix))
            .scan_index_forward(!newest_first)
            .consistent_read(true)
            .limit(i32::try_from(page.limit + 1).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.items.unwrap_or_default())
    }

    /// Reads many items by key, following DynamoDB's unprocessed keys until all are read.
    async fn batch_get(&self, keys: Vec<Item>) -> StoreResult<Vec<Item>> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .build()
                    .map_err(build_error)?,
            );
            while let Some(request) = pending.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                if let Some(mut responses) = out.responses {
                    found.extend(responses.remove(&self.table).unwrap_or_default());
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut unprocessed| unprocessed.remove(&self.table))
                    .filter(|rest| !rest.keys().is_empty());
            }
        }
        Ok(found)
    }

    /// Deletes many items.
    pub(super) async fn batch_delete(&self, keys: Vec<Item>) -> StoreResult<()> {
        let requests = keys
            .into_iter()
            .map(|k| {
                let delete = DeleteRequest::builder().set_key(Some(k)).build()?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<_, aws_sdk_dynamodb::error::BuildError>>()
            .map_err(build_error)?;
        self.batch_write(requests).await
    }

    /// Runs writes in batches of 25, following DynamoDB's unprocessed items until all are done.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> StoreResult<()> {
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut rest| rest.remove(&self.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
    }
}

#[async_trait]
impl OrgStore for DynamoStore {
    #[tracing::instrument(skip_all, fields(org_id = %org.id))]
    async fn create_org(
        &self,
        org: &Org,
        owner: &Membership,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut item = key(org_pk(&org.id), "ORG");
        item.insert("org_id".into(), s(org.id.as_str()));
        item.insert("name".into(), s(org.name.as_str()));
        if let Some(rpm) = org.rate_limit_rpm {
            item.insert("rate_limit_rpm".into(), n(i64::from(rpm)));
        }
        item.insert("created_at".into(), ms(org.created_at));
        item.insert("owner_count".into(), n(1));
        let fresh = Some("attribute_not_exists(pk)");
        self.client
            .transact_write_items()
            .transact_items(self.put_step(item, fresh)?)
            .transact_items(self.put_step(member_item(owner), fresh)?)
            .transact_items(self.put_step(user_side_item(owner), None)?)
            .transact_items(self.put_step(audit_item(audit), None)?)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn org(&self, org: &OrgId) -> StoreResult<Option<Org>> {
        self.get(org_pk(org), "ORG")
            .await?
            .as_ref()
            .map(org_from_item)
            .transpose()
    }

    async fn org_for_member(&self, org: &OrgId, user: &UserId) -> StoreResult<Option<(Org, Role)>> {
        let member_key = member_sk(user);
        let (org_item, member) = tokio::try_join!(
            self.get(org_pk(org), "ORG"),
            self.get(org_pk(org), &member_key)
        )?;
        match (org_item, member) {
            (Some(org), Some(member)) => Ok(Some((org_from_item(&org)?, role_of(&member)?))),
            _ => Ok(None),
        }
    }

    #[tracing::instrument(skip_all, fields(org_id = %org.id))]
    async fn update_org(&self, org: &Org, audit: &AuditEntry) -> StoreResult<()> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(org_pk(&org.id), "ORG")))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":name", s(org.name.as_str()));
        update = match org.rate_limit_rpm {
            Some(rpm) => update
                .update_expression("SET #name = :name, rate_limit_rpm = :rpm")
                .expression_attribute_values(":rpm", n(i64::from(rpm))),
            None => update.update_expression("SET #name = :name REMOVE rate_limit_rpm"),
        };
        let update = update
            .expression_attribute_names("#name", "name")
            .build()
            .map_err(build_error)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(self.put_step(audit_item(audit), None)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_cancellation(&err) => Err(StoreError::Conflict),
            Err(err) => Err(sdk_error(err)),
        }
    }

    #[tracing::instrument(skip_all, fields(org_id = %org))]
    async fn delete_org(&self, org: &OrgId, audit: &AuditEntry) -> StoreResult<()> {
        // The org item goes first, with the audit entry: from then on no membership check
        // passes. The membership items are swept after it.
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(org_pk(org), "ORG")))
            .build()
            .map_err(build_error)?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(self.put_step(audit_item(audit), None)?)
            .send()
            .await
            .map_err(sdk_error)?;
        self.delete_org_keys(org).await?;
        self.delete_org_invitations(org).await?;
        let mut page = PageRequest::first(99);
        loop {
            let items = self
                .query_page(org_pk(org), "MEMBER#", &page, false)
                .await?;
            let more = items.len() > page.limit as usize;
            let members = items
                .iter()
                .take(page.limit as usize)
                .map(member_from_item)
                .collect::<StoreResult<Vec<_>>>()?;
            let mut keys = Vec::with_capacity(members.len() * 2);
            for member in &members {
                keys.push(key(org_pk(org), &member_sk(&member.user_id)));
                keys.push(key(user_pk(&member.user_id), &user_org_sk(org)));
            }
            self.batch_delete(keys).await?;
            match members.last() {
                Some(last) if more => page.after = Some(last.user_id.to_string()),
                _ => return Ok(()),
            }
        }
    }

    async fn orgs_of_user(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> StoreResult<Page<(Org, Role)>> {
        let sides = self.query_page(user_pk(user), "ORG#", page, true).await?;
        let mut roles = Vec::with_capacity(sides.len());
        for side in &sides {
            let org = OrgId::parse(get_s(side, "org_id")?).ok_or_else(|| malformed("org_id"))?;
            roles.push((org, role_of(side)?));
        }
        let wanted = roles
            .iter()
            .take(page.limit as usize)
            .map(|(org, _)| key(org_pk(org), "ORG"))
            .collect();
        let mut orgs: HashMap<OrgId, Org> = HashMap::new();
        for item in self.batch_get(wanted).await? {
            let org = org_from_item(&item)?;
            orgs.insert(org.id.clone(), org);
        }
        let more = roles.len() > page.limit as usize;
        roles.truncate(page.limit as usize);
        let next_after = roles
            .last()
            .filter(|_| more)
            .map(|(org, _)| org.to_string());
        // An org deleted a moment ago may still have its user-side item: it is skipped.
        let items = roles
            .into_iter()
            .filter_map(|(id, role)| orgs.remove(&id).map(|org| (org, role)))
            .collect();
        Ok(Page::new(items, next_after))
    }

    async fn member(&self, org: &OrgId, user: &UserId) -> StoreResult<Option<Membership>> {
        self.get(org_pk(org), &member_sk(user))
            .await?
            .as_ref()
            .map(member_from_item)
            .transpose()
    }

    async fn members(&self, org: &OrgId, page: &PageRequest) -> StoreResult<Page<Membership>> {
        let items = self.query_page(org_pk(org), "MEMBER#", page, false).await?;
        let members = items
            .iter()
            .map(member_from_item)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(members, page.limit, |m| {
            m.user_id.to_string()
        }))
    }

    #[tracing::instrument(skip_all, fields(org_id = %membership.org_id, user_id = %membership.user_id))]
    async fn set_member_role(
        &self,
        membership: &Membership,
        previous: Option<Role>,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let member_step = match previous {
            None => self.put_step(member_item(membership), Some("attribute_not_exists(pk)"))?,
            Some(previous) => {
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(
                        org_pk(&membership.org_id),
                        &member_sk(&membership.user_id),
                    )))
                    .update_expression("SET #role = :role")
                    .condition_expression("#role = :previous")
                    .expression_attribute_names("#role", "role")
                    .expression_attribute_values(":role", s(membership.role.as_str()))
                    .expression_attribute_values(":previous", s(previous.as_str()))
                    .build()
                    .map_err(build_error)?;
                TransactWriteItem::builder().update(update).build()
            }
        };
        let delta = owner_delta(previous, Some(membership.role));
        let steps = vec![
            member_step,
            self.put_step(user_side_item(membership), None)?,
            self.owner_count_step(&membership.org_id, delta)?,
            self.put_step(audit_item(audit), None)?,
        ];
        self.membership_transaction(&membership.org_id, steps, delta < 0)
            .await
    }

    #[tracing::instrument(skip_all, fields(org_id = %org, user_id = %user))]
    async fn remove_member(
        &self,
        org: &OrgId,
        user: &UserId,
        previous: Role,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let delete_member = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(org_pk(org), &member_sk(user))))
            .condition_expression("#role = :previous")
            .expression_attribute_names("#role", "role")
            .expression_attribute_values(":previous", s(previous.as_str()))
            .build()
            .map_err(build_error)?;
        let delete_side = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user), &user_org_sk(org))))
            .build()
            .map_err(build_error)?;
        let delta = owner_delta(Some(previous), None);
        let steps = vec![
            TransactWriteItem::builder().delete(delete_member).build(),
            TransactWriteItem::builder().delete(delete_side).build(),
            self.owner_count_step(org, delta)?,
            self.put_step(audit_item(audit), None)?,
        ];
        self.membership_transaction(org, steps, delta < 0).await
    }

    async fn audit_log(&self, org: &OrgId, page: &PageRequest) -> StoreResult<Page<AuditEntry>> {
        let items = self.query_page(org_pk(org), "AUDIT#", page, true).await?;
        let entries = items
            .iter()
            .map(audit_from_item)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(entries, page.limit, |e| {
            e.id.to_string()
        }))
    }

    async fn append_audit(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        let requests = entries
            .iter()
            .map(|entry| {
                let put = PutRequest::builder()
                    .set_item(Some(audit_item(entry)))
                    .build()?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<_, aws_sdk_dynamodb::error::BuildError>>()
            .map_err(build_error)?;
        self.batch_write(requests).await
    }
}
