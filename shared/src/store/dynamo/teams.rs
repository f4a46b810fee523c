//! Teams on the single table, all in their org's partition.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | team (with `key_count`) | `ORG#<org_id>` | `TEAM#<team_id>` |
//! | team name claim (uniqueness) | `ORG#<org_id>` | `TEAMNAME#<lower-cased name>` |
//! | team member | `ORG#<org_id>` | `TEAMMEMBER#<team_id>#<user_id>` |
//!
//! Creating a team puts the team and its name claim (both only if absent) with the audit entry
//! in one transaction, so of two creations of one name exactly one wins. `key_count` counts the
//! team's unrevoked API keys: a key's creation adds one in the key's transaction (only if the
//! team item exists) and its revocation takes one; deleting the team requires it at zero in
//! the deleting transaction. Adding a member checks, in its transaction, that the team exists
//! and that the org membership read is still the same (`joined_at`).
//!
//! A team member counts only while its org membership (`MEMBER#<user_id>`) is older than the
//! team membership (`joined_at <= added_at`): reads filter on that, so someone who leaves the
//! org disappears from its teams without a write here. Member items of a deleted team are swept
//! after the deleting transaction; until then they are unreachable (the team item is gone).

use super::api_keys::{key_from_item, key_sk};
use super::orgs::{audit_item, cancellation_codes, is_cancellation, org_pk};
use super::{DynamoStore, Item, get_n, get_s, get_time, key, malformed, ms, n, s, sdk_error};
use crate::domain::{
    ApiKey, ApiKeyId, AuditEntry, Email, OrgId, Page, PageRequest, Team, TeamCreated, TeamDeleted,
    TeamId, TeamMember, TeamMemberAdded, UserId,
};
use crate::store::{StoreError, StoreResult, TeamStore};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, KeysAndAttributes, TransactWriteItem, Update,
};
use std::collections::HashMap;

fn team_sk(team: &TeamId) -> String {
    format!("TEAM#{team}")
}

fn name_sk(name: &str) -> String {
    format!("TEAMNAME#{}", name.to_lowercase())
}

fn team_member_prefix(team: &TeamId) -> String {
    format!("TEAMMEMBER#{team}#")
}

fn team_member_sk(team: &TeamId, user: &UserId) -> String {
    format!("{}{user}", team_member_prefix(team))
}

/// The org membership item (written by `orgs.rs`).
fn org_member_sk(user: &UserId) -> String {
    format!("MEMBER#{user}")
}

fn build_error(err: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend(err.into())
}

fn team_from_item(item: &Item) -> StoreResult<Team> {
    Ok(Team {
        id: TeamId::parse(get_s(item, "team_id")?).ok_or_else(|| malformed("team_id"))?,
        org_id: OrgId::parse(get_s(item, "org_id")?).ok_or_else(|| malformed("org_id"))?,
        name: get_s(item, "name")?.to_owned(),
        created_at: get_time(item, "created_at")?,
    })
}

/// The team member, if `org_member` (its org membership item) makes it current.
fn current_member(
    team_member: &Item,
    org_member: Option<&Item>,
) -> StoreResult<Option<TeamMember>> {
    let Some(org_member) = org_member else {
        return Ok(None);
    };
    let added_at = get_time(team_member, "added_at")?;
    if get_time(org_member, "joined_at")? > added_at {
        return Ok(None);
    }
    Ok(Some(TeamMember {
        org_id: OrgId::parse(get_s(team_member, "org_id")?).ok_or_else(|| malformed("org_id"))?,
        team_id: TeamId::parse(get_s(team_member, "team_id")?)
            .ok_or_else(|| malformed("team_id"))?,
        user_id: UserId::parse(get_s(team_member, "user_id")?)
            .ok_or_else(|| malformed("user_id"))?,
        email: Email::from_trusted(get_s(org_member, "email")?.to_owned()),
        added_at,
    }))
}

fn failed(codes: Option<&Vec<Option<String>>>, index: usize) -> bool {
    codes
        .and_then(|codes| codes.get(index).cloned().flatten())
        .is_some_and(|code| code == "ConditionalCheckFailed")
}

impl DynamoStore {
    /// The transaction step that moves a team's count of unrevoked keys by `delta`; it fails
    /// (cancelling the transaction) when the team does not exist.
    pub(super) fn team_key_count_step(
        &self,
        org: &OrgId,
        team: &TeamId,
        delta: i64,
    ) -> StoreResult<TransactWriteItem> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(org_pk(org), &team_sk(team))))
            .update_expression("SET key_count = key_count + :delta")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":delta", n(delta))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn check_step(&self, sk: &str, org: &OrgId, condition: &str) -> StoreResult<ConditionCheck> {
        ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(org_pk(org), sk)))
            .condition_expression(condition)
            .build()
            .map_err(build_error)
    }

    /// The org membership items of `users`, by user id (one batch read per 100).
    async fn org_members(
        &self,
        org: &OrgId,
        users: &[UserId],
    ) -> StoreResult<HashMap<String, Item>> {
        let mut found = HashMap::new();
        for chunk in users.chunks(100) {
            let keys = chunk
                .iter()
                .map(|user| key(org_pk(org), &org_member_sk(user)))
                .collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
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
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    found.insert(get_s(&item, "user_id")?.to_owned(), item);
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut rest| rest.remove(&self.table))
                    .filter(|rest| !rest.keys().is_empty());
            }
        }
        Ok(found)
    }

    /// Deletes the member items of a deleted team.
    async fn sweep_team_members(&self, org: &OrgId, team: &TeamId) -> StoreResult<()> {
        let prefix = team_member_prefix(team);
        let mut page = PageRequest::first(99);
        loop {
            let items = self.query_page(org_pk(org), &prefix, &page, false).await?;
            let more = items.len() > page.limit as usize;
            let mut doomed = Vec::new();
            let mut last = None;
            for item in items.iter().take(page.limit as usize) {
                let user = get_s(item, "user_id")?.to_owned();
                doomed.push(key(org_pk(org), &format!("{prefix}{user}")));
                last = Some(user);
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
impl TeamStore for DynamoStore {
    #[tracing::instrument(skip_all, fields(org_id = %team.org_id, team_id = %team.id))]
    async fn create_team(&self, team: &Team, audit: &AuditEntry) -> StoreResult<TeamCreated> {
        let mut item = key(org_pk(&team.org_id), &team_sk(&team.id));
        item.insert("team_id".into(), s(team.id.as_str()));
        item.insert("org_id".into(), s(team.org_id.as_str()));
        item.insert("name".into(), s(team.name.as_str()));
        item.insert("created_at".into(), ms(team.created_at));
        item.insert("key_count".into(), n(0));
        let mut claim = key(org_pk(&team.org_id), &name_sk(&team.name));
        claim.insert("team_id".into(), s(team.id.as_str()));
        let fresh = Some("attribute_not_exists(pk)");
        let result = self
            .client
            .transact_write_items()
            .transact_items(self.put_step(item, fresh)?)
            .transact_items(self.put_step(claim, fresh)?)
            .transact_items(self.put_step(audit_item(audit), None)?)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(TeamCreated::Created),
            Err(err) if is_cancellation(&err) => err,
            Err(err) => return Err(sdk_error(err)),
        };
        let codes = cancellation_codes(&err);
        if failed(codes.as_ref(), 1) {
            return Ok(TeamCreated::NameTaken);
        }
        // Without per-step reasons: the claim tells whether the name was taken.
        let claimed = self.get(org_pk(&team.org_id), &name_sk(&team.name)).await?;
        match claimed {
            Some(claim) if get_s(&claim, "team_id")? != team.id.as_str() => {
                Ok(TeamCreated::NameTaken)
            }
            _ => Err(StoreError::Conflict),
        }
    }

    async fn team(&self, org: &OrgId, team: &TeamId) -> StoreResult<Option<Team>> {
        self.get(org_pk(org), &team_sk(team))
            .await?
            .as_ref()
            .map(team_from_item)
            .transpose()
    }

    async fn teams(&self, org: &OrgId, page: &PageRequest) -> StoreResult<Page<Team>> {
        let items = self.query_page(org_pk(org), "TEAM#", page, false).await?;
        let teams = items
            .iter()
            .map(team_from_item)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(teams, page.limit, |t| {
            t.id.to_string()
        }))
    }

    #[tracing::instrument(skip_all, fields(org_id = %org, team_id = %team))]
    async fn delete_team(
        &self,
        org: &OrgId,
        team: &TeamId,
        audit: &AuditEntry,
    ) -> StoreResult<TeamDeleted> {
        let Some(current) = self.team(org, team).await? else {
            return Ok(TeamDeleted::NotFound);
        };
        let delete_team = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(org_pk(org), &team_sk(team))))
            .condition_expression("attribute_exists(pk) AND key_count = :zero")
            .expression_attribute_values(":zero", n(0))
            .build()
            .map_err(build_error)?;
        let delete_claim = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(org_pk(org), &name_sk(&current.name))))
            .condition_expression("team_id = :team")
            .expression_attribute_values(":team", s(team.as_str()))
            .build()
            .map_err(build_error)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete_team).build())
            .transact_items(TransactWriteItem::builder().delete(delete_claim).build())
            .transact_items(self.put_step(audit_item(audit), None)?)
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(err) if is_cancellation(&err) => {
                return Ok(match self.team(org, team).await? {
                    Some(_) => TeamDeleted::HasActiveKeys,
                    None => TeamDeleted::NotFound,
                });
            }
            Err(err) => return Err(sdk_error(err)),
        }
        self.sweep_team_members(org, team).await?;
        Ok(TeamDeleted::Deleted)
    }

    async fn team_member(
        &self,
        org: &OrgId,
        team: &TeamId,
        user: &UserId,
    ) -> StoreResult<Option<TeamMember>> {
        let (team_key, member_key, org_member_key) = (
            team_sk(team),
            team_member_sk(team, user),
            org_member_sk(user),
        );
        let (team_item, team_member, org_member) = tokio::try_join!(
            self.get(org_pk(org), &team_key),
            self.get(org_pk(org), &member_key),
            self.get(org_pk(org), &org_member_key),
        )?;
        match (team_item, team_member) {
            (Some(_), Some(team_member)) => current_member(&team_member, org_member.as_ref()),
            _ => Ok(None),
        }
    }

    async fn team_members(
        &self,
        org: &OrgId,
        team: &TeamId,
        page: &PageRequest,
    ) -> StoreResult<Page<TeamMember>> {
        let mut items = self
            .query_page(org_pk(org), &team_member_prefix(team), page, false)
            .await?;
        let more = items.len() > page.limit as usize;
        items.truncate(page.limit as usize);
        let users = items
            .iter()
            .map(|item| UserId::parse(get_s(item, "user_id")?).ok_or_else(|| malformed("user_id")))
            .collect::<StoreResult<Vec<_>>>()?;
        let next_after = users.last().filter(|_| more).map(ToString::to_string);
        let org_members = self.org_members(org, &users).await?;
        let mut members = Vec::with_capacity(items.len());
        for (item, user) in items.iter().zip(&users) {
            if let Some(member) = current_member(item, org_members.get(user.as_str()))? {
                members.push(member);
            }
        }
        Ok(Page::new(members, next_after))
    }

    #[tracing::instrument(skip_all, fields(org_id = %member.org_id, team_id = %member.team_id))]
    async fn add_team_member(
        &self,
        member: &TeamMember,
        audit: &AuditEntry,
    ) -> StoreResult<TeamMemberAdded> {
        let org = &member.org_id;
        let Some(org_member) = self
            .get(org_pk(org), &org_member_sk(&member.user_id))
            .await?
        else {
            return Ok(TeamMemberAdded::NotOrgMember);
        };
        let joined_at = get_n(&org_member, "joined_at")?;
        let added_at = member.added_at.timestamp_millis().max(joined_at);
        let team_exists =
            self.check_step(&team_sk(&member.team_id), org, "attribute_exists(pk)")?;
        let same_membership = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(org_pk(org), &org_member_sk(&member.user_id))))
            .condition_expression("joined_at = :joined")
            .expression_attribute_values(":joined", n(joined_at))
            .build()
            .map_err(build_error)?;
        let mut item = key(
            org_pk(org),
            &team_member_sk(&member.team_id, &member.user_id),
        );
        item.insert("org_id".into(), s(org.as_str()));
        item.insert("team_id".into(), s(member.team_id.as_str()));
        item.insert("user_id".into(), s(member.user_id.as_str()));
        item.insert("added_at".into(), n(added_at));
        // A member item older than the org membership is void (the user left and came back):
        // it is replaced; a current one stays.
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR added_at < :joined")
            .expression_attribute_values(":joined", n(joined_at))
            .build()
            .map_err(build_error)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(team_exists)
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(same_membership)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(self.put_step(audit_item(audit), None)?)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(TeamMemberAdded::Added),
            Err(err) if is_cancellation(&err) => err,
            Err(err) => return Err(sdk_error(err)),
        };
        let codes = cancellation_codes(&err);
        if failed(codes.as_ref(), 0) {
            return Ok(TeamMemberAdded::TeamNotFound);
        }
        if failed(codes.as_ref(), 1) {
            return Ok(TeamMemberAdded::NotOrgMember);
        }
        if failed(codes.as_ref(), 2) {
            return Ok(TeamMemberAdded::Already);
        }
        // Without per-step reasons, look again.
        if self.team(org, &member.team_id).await?.is_none() {
            return Ok(TeamMemberAdded::TeamNotFound);
        }
        match self
            .team_member(org, &member.team_id, &member.user_id)
            .await?
        {
            Some(_) => Ok(TeamMemberAdded::Already),
            None => Err(StoreError::Conflict),
        }
    }

    #[tracing::instrument(skip_all, fields(org_id = %org, team_id = %team, user_id = %user))]
    async fn remove_team_member(
        &self,
        org: &OrgId,
        team: &TeamId,
        user: &UserId,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(org_pk(org), &team_member_sk(team, user))))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(build_error)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(self.put_step(audit_item(audit), None)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_cancellation(&err) => Ok(false),
            Err(err) => Err(sdk_error(err)),
        }
    }

    async fn api_key(&self, org: &OrgId, api_key: &ApiKeyId) -> StoreResult<Option<ApiKey>> {
        self.get(org_pk(org), &key_sk(api_key))
            .await?
            .as_ref()
            .map(key_from_item)
            .transpose()
    }

    async fn team_api_keys(
        &self,
        org: &OrgId,
        team: &TeamId,
        page: &PageRequest,
    ) -> StoreResult<Page<ApiKey>> {
        // The org's key listing, newest first, filtered to the team: read on until a page and
        // one more are found, or the listing ends.
        let mut start = page
            .after
            .as_ref()
            .map(|after| key(org_pk(org), &format!("KEY#{after}")));
        let mut found = Vec::new();
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .filter_expression("team_id = :team")
                .expression_attribute_values(":pk", s(org_pk(org)))
                .expression_attribute_values(":prefix", s("KEY#"))
                .expression_attribute_values(":team", AttributeValue::S(team.to_string()))
                .scan_index_forward(false)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items() {
                found.push(key_from_item(item)?);
            }
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() && found.len() <= page.limit as usize => {
                    start = Some(last);
                }
                _ => break,
            }
        }
        Ok(Page::from_overfetch(found, page.limit, |k| {
            k.id.to_string()
        }))
    }
}
