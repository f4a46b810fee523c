//! Teams on SQL: tables `teams` (name unique per org through `name_key`, `key_count` of
//! unrevoked team keys) and `team_members`; see `migrations/*/0008_teams.sql`.
//!
//! A team membership counts only while the user has been an org member since before it was
//! added (`memberships.joined_at <= team_members.added_at`): every read joins on that, so a
//! user who leaves the org disappears from its teams without a write here.

use super::api_keys::{COLUMNS as KEY_COLUMNS, key_from_row};
use super::{SqlStore, corrupt, db_error, insert_audit, is_unique_violation, keyset, millis, time};
use crate::domain::{
    ApiKey, ApiKeyId, AuditEntry, Email, OrgId, Page, PageRequest, Team, TeamCreated, TeamDeleted,
    TeamId, TeamMember, TeamMemberAdded, UserId,
};
use crate::store::{StoreError, StoreResult, TeamStore};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

const TEAM_COLUMNS: &str = "id, org_id, name, created_at";

/// The current members of a team: joined with an org membership older than the team one.
const MEMBER_SELECT: &str = "SELECT tm.org_id, tm.team_id, tm.user_id, m.email, tm.added_at \
     FROM team_members tm JOIN memberships m \
         ON m.org_id = tm.org_id AND m.user_id = tm.user_id AND m.joined_at <= tm.added_at \
     WHERE tm.org_id = $1 AND tm.team_id = $2";

fn team_from_row(row: &AnyRow) -> StoreResult<Team> {
    let get = |err: sqlx::Error| StoreError::Backend(err.into());
    let id: String = row.try_get("id").map_err(get)?;
    let org: String = row.try_get("org_id").map_err(get)?;
    Ok(Team {
        id: TeamId::parse(&id).ok_or_else(|| corrupt("team id"))?,
        org_id: OrgId::parse(&org).ok_or_else(|| corrupt("org id"))?,
        name: row.try_get("name").map_err(get)?,
        created_at: time(row.try_get("created_at").map_err(get)?)?,
    })
}

fn member_from_row(row: &AnyRow) -> StoreResult<TeamMember> {
    let get = |err: sqlx::Error| StoreError::Backend(err.into());
    let org: String = row.try_get("org_id").map_err(get)?;
    let team: String = row.try_get("team_id").map_err(get)?;
    let user: String = row.try_get("user_id").map_err(get)?;
    Ok(TeamMember {
        org_id: OrgId::parse(&org).ok_or_else(|| corrupt("org id"))?,
        team_id: TeamId::parse(&team).ok_or_else(|| corrupt("team id"))?,
        user_id: UserId::parse(&user).ok_or_else(|| corrupt("user id"))?,
        email: Email::from_trusted(row.try_get("email").map_err(get)?),
        added_at: time(row.try_get("added_at").map_err(get)?)?,
    })
}

fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

#[async_trait]
impl TeamStore for SqlStore {
    #[tracing::instrument(skip_all, fields(org_id = %team.org_id, team_id = %team.id))]
    async fn create_team(&self, team: &Team, audit: &AuditEntry) -> StoreResult<TeamCreated> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let inserted = sqlx::query(
            "INSERT INTO teams (id, org_id, name, name_key, created_at, key_count) \
             VALUES ($1, $2, $3, $4, $5, 0)",
        )
        .bind(team.id.as_str())
        .bind(team.org_id.as_str())
        .bind(team.name.as_str())
        .bind(team.name.to_lowercase())
        .bind(millis(team.created_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(err) if is_unique_violation(&err) => return Ok(TeamCreated::NameTaken),
            Err(err) => return Err(db_error(err)),
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(TeamCreated::Created)
    }

    async fn team(&self, org: &OrgId, team: &TeamId) -> StoreResult<Option<Team>> {
        let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(org.as_str())
            .bind(team.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(team_from_row).transpose()
    }

    async fn teams(&self, org: &OrgId, page: &PageRequest) -> StoreResult<Page<Team>> {
        let sql = format!(
            "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = $1 {}",
            keyset("id", ">", 2, page, "ASC")
        );
        self.page(&sql, &[org.as_str()], page, team_from_row, |t| {
            t.id.to_string()
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(org_id = %org, team_id = %team))]
    async fn delete_team(
        &self,
        org: &OrgId,
        team: &TeamId,
        audit: &AuditEntry,
    ) -> StoreResult<TeamDeleted> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        // One conditional delete decides the race with a key being created for the team: the
        // key's transaction bumps key_count on this very row.
        let deleted =
            sqlx::query("DELETE FROM teams WHERE org_id = $1 AND id = $2 AND key_count = 0")
                .bind(org.as_str())
                .bind(team.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
        if deleted != 1 {
            tx.rollback().await.map_err(db_error)?;
            return Ok(match self.team(org, team).await? {
                Some(_) => TeamDeleted::HasActiveKeys,
                None => TeamDeleted::NotFound,
            });
        }
        sqlx::query("DELETE FROM team_members WHERE org_id = $1 AND team_id = $2")
            .bind(org.as_str())
            .bind(team.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(TeamDeleted::Deleted)
    }

    async fn team_member(
        &self,
        org: &OrgId,
        team: &TeamId,
        user: &UserId,
    ) -> StoreResult<Option<TeamMember>> {
        let sql = format!("{MEMBER_SELECT} AND tm.user_id = $3");
        let row = sqlx::query(&sql)
            .bind(org.as_str())
            .bind(team.as_str())
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(member_from_row).transpose()
    }

    async fn team_members(
        &self,
        org: &OrgId,
        team: &TeamId,
        page: &PageRequest,
    ) -> StoreResult<Page<TeamMember>> {
        let sql = format!(
            "{MEMBER_SELECT} {}",
            keyset("tm.user_id", ">", 3, page, "ASC")
        );
        self.page(
            &sql,
            &[org.as_str(), team.as_str()],
            page,
            member_from_row,
            |m| m.user_id.to_string(),
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(org_id = %member.org_id, team_id = %member.team_id))]
    async fn add_team_member(
        &self,
        member: &TeamMember,
        audit: &AuditEntry,
    ) -> StoreResult<TeamMemberAdded> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        // Writing first (a no-op on the team's row) takes the write lock at once: SQLite then
        // serialises concurrent adds instead of failing one with a stale read snapshot, and
        // Postgres holds the team's row against a concurrent deletion.
        let team =
            sqlx::query("UPDATE teams SET key_count = key_count WHERE org_id = $1 AND id = $2")
                .bind(member.org_id.as_str())
                .bind(member.team_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
        if team != 1 {
            tx.rollback().await.map_err(db_error)?;
            return Ok(TeamMemberAdded::TeamNotFound);
        }
        let joined =
            sqlx::query("SELECT joined_at FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(member.org_id.as_str())
                .bind(member.user_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        let Some(joined) = joined else {
            tx.rollback().await.map_err(db_error)?;
            return Ok(TeamMemberAdded::NotOrgMember);
        };
        let joined_at: i64 = joined
            .try_get("joined_at")
            .map_err(|err| StoreError::Backend(err.into()))?;
        // A row older than the org membership is void (the user left and came back): it is
        // replaced; a current one stays, and nothing is written.
        let inserted = sqlx::query(
            "INSERT INTO team_members (team_id, org_id, user_id, added_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (team_id, user_id) DO UPDATE SET added_at = excluded.added_at \
             WHERE team_members.added_at < $5",
        )
        .bind(member.team_id.as_str())
        .bind(member.org_id.as_str())
        .bind(member.user_id.as_str())
        .bind(millis(member.added_at).max(joined_at))
        .bind(joined_at)
        .execute(&mut *tx)
        .await;
        let changed = match inserted {
            Ok(done) => done.rows_affected(),
            // The team was deleted while this ran.
            Err(err) if is_foreign_key_violation(&err) => {
                return Ok(TeamMemberAdded::TeamNotFound);
            }
            Err(err) => return Err(db_error(err)),
        };
        if changed == 0 {
            tx.rollback().await.map_err(db_error)?;
            return Ok(TeamMemberAdded::Already);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(TeamMemberAdded::Added)
    }

    #[tracing::instrument(skip_all, fields(org_id = %org, team_id = %team, user_id = %user))]
    async fn remove_team_member(
        &self,
        org: &OrgId,
        team: &TeamId,
        user: &UserId,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let removed = sqlx::query(
            "DELETE FROM team_members WHERE org_id = $1 AND team_id = $2 AND user_id = $3",
        )
        .bind(org.as_str())
        .bind(team.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if removed != 1 {
            tx.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn api_key(&self, org: &OrgId, key: &ApiKeyId) -> StoreResult<Option<ApiKey>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(org.as_str())
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn team_api_keys(
        &self,
        org: &OrgId,
        team: &TeamId,
        page: &PageRequest,
    ) -> StoreResult<Page<ApiKey>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND team_id = $2 {}",
            keyset("id", "<", 3, page, "DESC")
        );
        self.page(
            &sql,
            &[org.as_str(), team.as_str()],
            page,
            key_from_row,
            |k| k.id.to_string(),
        )
        .await
    }
}
