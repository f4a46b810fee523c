//! Invitations and the security log on the single table. An invitation is written twice, on
//! its org's side and on its invitee's (see the table in `mod.rs`), both in every transaction
//! that touches it; accepting deletes both, puts the membership items, moves the owner count
//! and writes the audit entry in one transaction.

use super::orgs::{audit_item, build_error, is_cancellation, member_item, org_pk, user_side_item};
use super::{DynamoStore, Item, get_s, get_time, key, malformed, ms, s, sdk_error, ttl, user_pk};
use crate::domain::{
    AuditEntry, Email, Invitation, InvitationId, Membership, OrgId, Page, PageRequest, Role,
    SecurityEvent, SecurityEventId, UserId,
};
use crate::store::orgs::owner_delta;
use crate::store::{InvitationStore, SecurityLogStore, StoreError, StoreResult};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, TransactWriteItem};
use chrono::Duration;

/// Expired invitations are kept this long (so an invitee is told "expired", not "unknown"),
/// then DynamoDB's TTL removes them.
const KEEP_EXPIRED: Duration = Duration::days(30);

const PREFIX: &str = "INVITATION#";

fn invitee_pk(email: &Email) -> String {
    format!("INVITEE#{}", email.as_str())
}

fn invitation_sk(id: &InvitationId) -> String {
    format!("{PREFIX}{id}")
}

fn invitation_items(invitation: &Invitation) -> [Item; 2] {
    let sk = invitation_sk(&invitation.id);
    [org_pk(&invitation.org_id), invitee_pk(&invitation.email)].map(|pk| {
        let mut item = key(pk, &sk);
        item.insert("invitation_id".into(), s(invitation.id.as_str()));
        item.insert("org_id".into(), s(invitation.org_id.as_str()));
        item.insert("org_name".into(), s(invitation.org_name.as_str()));
        item.insert("email".into(), s(invitation.email.as_str()));
        item.insert("role".into(), s(invitation.role.as_str()));
        item.insert("invited_by".into(), s(invitation.invited_by.as_str()));
        item.insert("created_at".into(), ms(invitation.created_at));
        item.insert("expires_at".into(), ms(invitation.expires_at));
        item.insert("ttl".into(), ttl(invitation.expires_at + KEEP_EXPIRED));
        item
    })
}

fn invitation_from_item(item: &Item) -> StoreResult<Invitation> {
    Ok(Invitation {
        id: InvitationId::parse(get_s(item, "invitation_id")?)
            .ok_or_else(|| malformed("invitation_id"))?,
        org_id: OrgId::parse(get_s(item, "org_id")?).ok_or_else(|| malformed("org_id"))?,
        org_name: get_s(item, "org_name")?.to_owned(),
        email: Email::from_trusted(get_s(item, "email")?.to_owned()),
        role: get_s(item, "role")?
            .parse::<Role>()
            .map_err(|_| malformed("role"))?,
        invited_by: UserId::parse(get_s(item, "invited_by")?)
            .ok_or_else(|| malformed("invited_by"))?,
        created_at: get_time(item, "created_at")?,
        expires_at: get_time(item, "expires_at")?,
    })
}

fn items_page(items: &[Item], limit: u32) -> StoreResult<Page<Invitation>> {
    let invitations = items
        .iter()
        .map(invitation_from_item)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(invitations, limit, |i| {
        i.id.to_string()
    }))
}

impl DynamoStore {
    /// The two deletes of an invitation; the org's side must exist, so of racing spenders one
    /// wins.
    fn delete_invitation_steps(
        &self,
        invitation: &Invitation,
    ) -> StoreResult<[TransactWriteItem; 2]> {
        let sk = invitation_sk(&invitation.id);
        let org_side = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(org_pk(&invitation.org_id), &sk)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(build_error)?;
        let invitee_side = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(invitee_pk(&invitation.email), &sk)))
            .build()
            .map_err(build_error)?;
        Ok([
            TransactWriteItem::builder().delete(org_side).build(),
            TransactWriteItem::builder().delete(invitee_side).build(),
        ])
    }

    /// Runs a transaction; any cancellation (a condition failed, or a concurrent transaction
    /// on the same items) is a [`StoreError::Conflict`].
    async fn invitation_transaction(&self, steps: Vec<TransactWriteItem>) -> StoreResult<()> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(steps))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_cancellation(&err) => Err(StoreError::Conflict),
            Err(err) => Err(sdk_error(err)),
        }
    }

    /// Deletes both sides of every invitation of a deleted org.
    pub(super) async fn delete_org_invitations(&self, org: &OrgId) -> StoreResult<()> {
        let mut page = PageRequest::first(50);
        loop {
            let items = self.query_page(org_pk(org), PREFIX, &page, false).await?;
            let listed = items_page(&items, page.limit)?;
            let mut keys = Vec::with_capacity(listed.items.len() * 2);
            for invitation in &listed.items {
                let sk = invitation_sk(&invitation.id);
                keys.push(key(org_pk(org), &sk));
                keys.push(key(invitee_pk(&invitation.email), &sk));
            }
            self.batch_delete(keys).await?;
            match listed.next(page.limit) {
                Some(next) => page = next,
                None => return Ok(()),
            }
        }
    }
}

#[async_trait]
impl InvitationStore for DynamoStore {
    #[tracing::instrument(skip_all, fields(org_id = %invitation.org_id))]
    async fn create_invitation(
        &self,
        invitation: &Invitation,
        replaces: Option<&Invitation>,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let [org_side, invitee_side] = invitation_items(invitation);
        let mut steps = vec![
            self.put_step(org_side, Some("attribute_not_exists(pk)"))?,
            self.put_step(invitee_side, None)?,
            // The org must still exist.
            self.owner_count_step(&invitation.org_id, 0)?,
            self.put_step(audit_item(audit), None)?,
        ];
        if let Some(old) = replaces {
            steps.extend(self.delete_invitation_steps(old)?);
        }
        self.invitation_transaction(steps).await
    }

    async fn org_invitation(
        &self,
        org: &OrgId,
        id: &InvitationId,
    ) -> StoreResult<Option<Invitation>> {
        self.get(org_pk(org), &invitation_sk(id))
            .await?
            .as_ref()
            .map(invitation_from_item)
            .transpose()
    }

    async fn invitation_to(
        &self,
        email: &Email,
        id: &InvitationId,
    ) -> StoreResult<Option<Invitation>> {
        self.get(invitee_pk(email), &invitation_sk(id))
            .await?
            .as_ref()
            .map(invitation_from_item)
            .transpose()
    }

    async fn invitation_of_org_to(
        &self,
        org: &OrgId,
        email: &Email,
    ) -> StoreResult<Option<Invitation>> {
        let mut page = PageRequest::first(100);
        loop {
            let items = self
                .query_page(invitee_pk(email), PREFIX, &page, true)
                .await?;
            let listed = items_page(&items, page.limit)?;
            let next = listed.next(page.limit);
            if let Some(found) = listed.items.into_iter().find(|i| &i.org_id == org) {
                return Ok(Some(found));
            }
            match next {
                Some(next) => page = next,
                None => return Ok(None),
            }
        }
    }

    async fn org_invitations(
        &self,
        org: &OrgId,
        page: &PageRequest,
    ) -> StoreResult<Page<Invitation>> {
        let items = self.query_page(org_pk(org), PREFIX, page, true).await?;
        items_page(&items, page.limit)
    }

    async fn invitations_to(
        &self,
        email: &Email,
        page: &PageRequest,
    ) -> StoreResult<Page<Invitation>> {
        let items = self
            .query_page(invitee_pk(email), PREFIX, page, true)
            .await?;
        items_page(&items, page.limit)
    }

    #[tracing::instrument(skip_all, fields(org_id = %invitation.org_id))]
    async fn delete_invitation(
        &self,
        invitation: &Invitation,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let mut steps = self.delete_invitation_steps(invitation)?.to_vec();
        steps.push(self.put_step(audit_item(audit), None)?);
        match self.invitation_transaction(steps).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict) => {
                // Gone (false), or a concurrent write to it (retryable).
                match self
                    .org_invitation(&invitation.org_id, &invitation.id)
                    .await?
                {
                    None => Ok(false),
                    Some(_) => Err(StoreError::Conflict),
                }
            }
            Err(err) => Err(err),
        }
    }

    #[tracing::instrument(skip_all, fields(org_id = %invitation.org_id))]
    async fn accept_invitation(
        &self,
        invitation: &Invitation,
        membership: &Membership,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut steps = self.delete_invitation_steps(invitation)?.to_vec();
        steps.push(self.put_step(member_item(membership), Some("attribute_not_exists(pk)"))?);
        steps.push(self.put_step(user_side_item(membership), None)?);
        steps.push(
            self.owner_count_step(&membership.org_id, owner_delta(None, Some(membership.role)))?,
        );
        steps.push(self.put_step(audit_item(audit), None)?);
        self.invitation_transaction(steps).await
    }
}

fn event_sk(id: &SecurityEventId) -> String {
    format!("SECURITY#{id}")
}

fn event_from_item(item: &Item) -> StoreResult<SecurityEvent> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    Ok(SecurityEvent {
        id: SecurityEventId::parse(get_s(item, "event_id")?)
            .ok_or_else(|| malformed("event_id"))?,
        user_id: UserId::parse(get_s(item, "user_id")?).ok_or_else(|| malformed("user_id"))?,
        action: get_s(item, "action")?.to_owned(),
        ip: text("ip"),
        user_agent: text("user_agent"),
        request_id: text("request_id"),
        at: get_time(item, "at")?,
    })
}

#[async_trait]
impl SecurityLogStore for DynamoStore {
    #[tracing::instrument(skip_all, fields(user_id = %event.user_id))]
    async fn append_security_event(&self, event: &SecurityEvent) -> StoreResult<()> {
        let mut item = key(user_pk(&event.user_id), &event_sk(&event.id));
        item.insert("event_id".into(), s(event.id.as_str()));
        item.insert("user_id".into(), s(event.user_id.as_str()));
        item.insert("action".into(), s(event.action.as_str()));
        let optional = [
            ("ip", &event.ip),
            ("user_agent", &event.user_agent),
            ("request_id", &event.request_id),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                item.insert(name.into(), s(value.as_str()));
            }
        }
        item.insert("at".into(), ms(event.at));
        self.put(item).await
    }

    async fn security_log(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> StoreResult<Page<SecurityEvent>> {
        let items = self
            .query_page(user_pk(user), "SECURITY#", page, true)
            .await?;
        let events = items
            .iter()
            .map(event_from_item)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(events, page.limit, |e| {
            e.id.to_string()
        }))
    }
}
