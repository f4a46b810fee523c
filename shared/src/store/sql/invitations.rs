//! Invitations and the security log on SQL. Accepting is one transaction: the invitation is
//! deleted (exactly one racing accept deletes it), the membership inserted, the owner count
//! moved and the audit entry written.

use super::{
    AnyTx, SqlStore, corrupt, db_error, insert_audit, insert_member, is_unique_violation, keyset,
    millis, shift_owner_count, time,
};
use crate::domain::{
    AuditEntry, Email, Invitation, InvitationId, Membership, OrgId, Page, PageRequest, Role,
    SecurityEvent, SecurityEventId, UserId,
};
use crate::store::{InvitationStore, SecurityLogStore, StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

const COLUMNS: &str = "id, org_id, org_name, email, role, invited_by, created_at, expires_at";

fn invitation_from_row(row: &AnyRow) -> StoreResult<Invitation> {
    let get = |err: sqlx::Error| StoreError::Backend(err.into());
    let id: String = row.try_get("id").map_err(get)?;
    let org: String = row.try_get("org_id").map_err(get)?;
    let role: String = row.try_get("role").map_err(get)?;
    let by: String = row.try_get("invited_by").map_err(get)?;
    Ok(Invitation {
        id: InvitationId::parse(&id).ok_or_else(|| corrupt("invitation id"))?,
        org_id: OrgId::parse(&org).ok_or_else(|| corrupt("org id"))?,
        org_name: row.try_get("org_name").map_err(get)?,
        email: Email::from_trusted(row.try_get("email").map_err(get)?),
        role: role.parse::<Role>().map_err(|_| corrupt("role"))?,
        invited_by: UserId::parse(&by).ok_or_else(|| corrupt("user id"))?,
        created_at: time(row.try_get("created_at").map_err(get)?)?,
        expires_at: time(row.try_get("expires_at").map_err(get)?)?,
    })
}

async fn delete_by_id(tx: &mut AnyTx, id: &InvitationId) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM invitations WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(done.rows_affected() == 1)
}

impl SqlStore {
    async fn one_invitation(
        &self,
        column: &str,
        value: &str,
        id: &InvitationId,
    ) -> StoreResult<Option<Invitation>> {
        let sql = format!("SELECT {COLUMNS} FROM invitations WHERE {column} = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(value)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(invitation_from_row).transpose()
    }

    async fn invitation_page(
        &self,
        column: &str,
        value: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<Invitation>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM invitations WHERE {column} = $1 {}",
            keyset("id", "<", 2, page, "DESC")
        );
        self.page(&sql, &[value], page, invitation_from_row, |i| {
            i.id.to_string()
        })
        .await
    }
}

#[async_trait]
impl InvitationStore for SqlStore {
    #[tracing::instrument(skip_all, fields(org_id = %invitation.org_id))]
    async fn create_invitation(
        &self,
        invitation: &Invitation,
        replaces: Option<&Invitation>,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        if let Some(old) = replaces
            && !delete_by_id(&mut tx, &old.id).await?
        {
            return Err(StoreError::Conflict);
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO invitations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(invitation.id.as_str())
        .bind(invitation.org_id.as_str())
        .bind(invitation.org_name.as_str())
        .bind(invitation.email.as_str())
        .bind(invitation.role.as_str())
        .bind(invitation.invited_by.as_str())
        .bind(millis(invitation.created_at))
        .bind(millis(invitation.expires_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(err) if is_unique_violation(&err) => return Err(StoreError::Conflict),
            Err(err) => return Err(db_error(err)),
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn org_invitation(
        &self,
        org: &OrgId,
        id: &InvitationId,
    ) -> StoreResult<Option<Invitation>> {
        self.one_invitation("org_id", org.as_str(), id).await
    }

    async fn invitation_to(
        &self,
        email: &Email,
        id: &InvitationId,
    ) -> StoreResult<Option<Invitation>> {
        self.one_invitation("email", email.as_str(), id).await
    }

    async fn invitation_of_org_to(
        &self,
        org: &OrgId,
        email: &Email,
    ) -> StoreResult<Option<Invitation>> {
        let sql = format!("SELECT {COLUMNS} FROM invitations WHERE org_id = $1 AND email = $2");
        let row = sqlx::query(&sql)
            .bind(org.as_str())
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(invitation_from_row).transpose()
    }

    async fn org_invitations(
        &self,
        org: &OrgId,
        page: &PageRequest,
    ) -> StoreResult<Page<Invitation>> {
        self.invitation_page("org_id", org.as_str(), page).await
    }

    async fn invitations_to(
        &self,
        email: &Email,
        page: &PageRequest,
    ) -> StoreResult<Page<Invitation>> {
        self.invitation_page("email", email.as_str(), page).await
    }

    #[tracing::instrument(skip_all, fields(org_id = %invitation.org_id))]
    async fn delete_invitation(
        &self,
        invitation: &Invitation,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        if !delete_by_id(&mut tx, &invitation.id).await? {
            tx.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    #[tracing::instrument(skip_all, fields(org_id = %invitation.org_id))]
    async fn accept_invitation(
        &self,
        invitation: &Invitation,
        membership: &Membership,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        if !delete_by_id(&mut tx, &invitation.id).await? {
            return Err(StoreError::Conflict);
        }
        insert_member(&mut tx, membership).await?;
        if membership.role == Role::Owner {
            shift_owner_count(&mut tx, &membership.org_id, 1).await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }
}

fn event_from_row(row: &AnyRow) -> StoreResult<SecurityEvent> {
    let get = |err: sqlx::Error| StoreError::Backend(err.into());
    let id: String = row.try_get("id").map_err(get)?;
    let user: String = row.try_get("user_id").map_err(get)?;
    Ok(SecurityEvent {
        id: SecurityEventId::parse(&id).ok_or_else(|| corrupt("security event id"))?,
        user_id: UserId::parse(&user).ok_or_else(|| corrupt("user id"))?,
        action: row.try_get("action").map_err(get)?,
        ip: row.try_get("ip").map_err(get)?,
        user_agent: row.try_get("user_agent").map_err(get)?,
        request_id: row.try_get("request_id").map_err(get)?,
        at: time(row.try_get("at").map_err(get)?)?,
    })
}

#[async_trait]
impl SecurityLogStore for SqlStore {
    #[tracing::instrument(skip_all, fields(user_id = %event.user_id))]
    async fn append_security_event(&self, event: &SecurityEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO security_log (id, user_id, action, ip, user_agent, request_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(event.id.as_str())
        .bind(event.user_id.as_str())
        .bind(event.action.as_str())
        .bind(event.ip.as_deref())
        .bind(event.user_agent.as_deref())
        .bind(event.request_id.as_deref())
        .bind(millis(event.at))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn security_log(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> StoreResult<Page<SecurityEvent>> {
        let sql = format!(
            "SELECT id, user_id, action, ip, user_agent, request_id, at \
             FROM security_log WHERE user_id = $1 {}",
            keyset("id", "<", 2, page, "DESC")
        );
        self.page(&sql, &[user.as_str()], page, event_from_row, |e| {
            e.id.to_string()
        })
        .await
    }
}
