//! The one SQL implementation of [`Store`], shared by Postgres and SQLite through sqlx's `Any`
//! driver: same statements, same behaviour, times as Unix milliseconds.
//!
//! Statements use `$n` placeholders, which both drivers accept.

mod api_keys;
mod billing;
mod invitations;
mod one_time;
mod teams;
mod usage;

use super::orgs::owner_delta;
use super::{
    Consumed, FailureKey, LoginFailures, OrgStore, RefreshTokenRecord, Session, Store, StoreError,
    StoreResult, UserRecord,
};
use crate::auth::{PasswordHash, TokenHash};
use crate::domain::{
    AuditEntry, AuditEntryId, Email, Membership, Org, OrgId, Page, PageRequest, Role, SessionId,
    TokenId, User, UserId,
};
use anyhow::Context as _;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

/// A store on a SQL database (Postgres or SQLite) reached through a connection pool.
pub struct SqlStore {
    pool: AnyPool,
    backend: &'static str,
}

impl SqlStore {
    pub(super) fn new(pool: AnyPool, backend: &'static str) -> Self {
        Self { pool, backend }
    }
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn time(ms: i64) -> anyhow::Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .with_context(|| format!("stored time {ms} is out of range"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("stored {what} is malformed"))
}

/// Maps a driver error: connection trouble is `Unavailable` (503), the rest `Backend` (500).
fn db_error(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.into()),
        sqlx::Error::Database(ref db)
            if db.code().is_some_and(|code| server_unavailable(&code)) =>
        {
            StoreError::Unavailable(err.into())
        }
        other => StoreError::Backend(other.into()),
    }
}

/// Postgres SQLSTATEs of a server that is going away or not taking work now: connection
/// exceptions (class 08), its sessions ended on shutdown or failover (57P01 admin shutdown,
/// 57P02 crash shutdown), still starting (57P03), or out of connections (53300).
fn server_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

const USER_COLUMNS: &str = "id, email, name, email_verified, password_hash, created_at";

fn user_from_row(row: &AnyRow) -> StoreResult<UserRecord> {
    let get = |err: sqlx::Error| StoreError::Backend(err.into());
    let id: String = row.try_get("id").map_err(get)?;
    let verified: i64 = row.try_get("email_verified").map_err(get)?;
    Ok(UserRecord {
        user: User {
            id: UserId::parse(&id).ok_or_else(|| corrupt("user id"))?,
            email: Email::from_trusted(row.try_get("email").map_err(get)?),
            name: row.try_get("name").map_err(get)?,
            email_verified: verified != 0,
            created_at: time(row.try_get("created_at").map_err(get)?)?,
        },
        password_hash: PasswordHash::from_stored(row.try_get("password_hash").map_err(get)?),
    })
}

fn token_from_row(row: &AnyRow) -> StoreResult<RefreshTokenRecord> {
    let get = |err: sqlx::Error| StoreError::Backend(err.into());
    let session: String = row.try_get("session_id").map_err(get)?;
    let user: String = row.try_get("user_id").map_err(get)?;
    let used_at: Option<i64> = row.try_get("used_at").map_err(get)?;
    let revoked: i64 = row.try_get("session_revoked").map_err(get)?;
    Ok(RefreshTokenRecord {
        hash: TokenHash::from_stored(row.try_get("hash").map_err(get)?),
        session_id: SessionId::parse(&session).ok_or_else(|| corrupt("session id"))?,
        user_id: UserId::parse(&user).ok_or_else(|| corrupt("user id"))?,
        created_at: time(row.try_get("created_at").map_err(get)?)?,
        expires_at: time(row.try_get("expires_at").map_err(get)?)?,
        used_at: used_at.map(time).transpose()?,
        session_revoked: revoked != 0,
    })
}

fn failures_from_row(row: &AnyRow) -> StoreResult<LoginFailures> {
    let get = |err: sqlx::Error| StoreError::Backend(err.into());
    let count: i64 = row.try_get("count").map_err(get)?;
    Ok(LoginFailures {
        count: u32::try_from(count).unwrap_or(u32::MAX),
        window_start: time(row.try_get("window_start").map_err(get)?)?,
    })
}

const INSERT_TOKEN: &str = "INSERT INTO refresh_tokens \
     (hash, session_id, user_id, created_at, expires_at, used_at) \
     VALUES ($1, $2, $3, $4, $5, NULL)";

fn insert_token(
    token: &RefreshTokenRecord,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    sqlx::query(INSERT_TOKEN)
        .bind(token.hash.as_str())
        .bind(token.session_id.as_str())
        .bind(token.user_id.as_str())
        .bind(millis(token.created_at))
        .bind(millis(token.expires_at))
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.backend
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(user_id = %record.user.id))]
    async fn create_user(&self, record: &UserRecord) -> StoreResult<()> {
        let user = &record.user;
        let result = sqlx::query(
            "INSERT INTO users (id, email, name, email_verified, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.id.as_str())
        .bind(user.email.as_str())
        .bind(user.name.as_deref())
        .bind(i64::from(user.email_verified))
        .bind(record.password_hash.as_str())
        .bind(millis(user.created_at))
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_unique_violation(&err) => Err(StoreError::EmailTaken),
            Err(err) => Err(db_error(err)),
        }
    }

    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_email(&self, email: &Email) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        let row = sqlx::query(&sql)
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(user_from_row).transpose()
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    async fn set_password_hash(&self, id: &UserId, hash: &PasswordHash) -> StoreResult<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash.as_str())
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    async fn set_email_verified(&self, id: &UserId) -> StoreResult<()> {
        sqlx::query("UPDATE users SET email_verified = 1 WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(user_id = %session.user_id, session_id = %session.id))]
    async fn create_session(
        &self,
        session: &Session,
        first_token: &RefreshTokenRecord,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(session.id.as_str())
        .bind(session.user_id.as_str())
        .bind(millis(session.created_at))
        .bind(millis(session.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_token(first_token)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn refresh_token(&self, hash: &TokenHash) -> StoreResult<Option<RefreshTokenRecord>> {
        let row = sqlx::query(
            "SELECT t.hash, t.session_id, t.user_id, t.created_at, t.expires_at, t.used_at, \
                    CAST(CASE WHEN s.revoked_at IS NULL THEN 0 ELSE 1 END AS BIGINT) \
                        AS session_revoked \
             FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id \
             WHERE t.hash = $1",
        )
        .bind(hash.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(token_from_row).transpose()
    }

    #[tracing::instrument(skip_all, fields(session_id = %next.session_id))]
    async fn consume_refresh_token(
        &self,
        presented: &TokenHash,
        next: &RefreshTokenRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<Consumed> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        // One conditional UPDATE decides the race: under concurrent exchanges of one token,
        // exactly one sees `used_at IS NULL`.
        let marked = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 \
             WHERE hash = $2 AND used_at IS NULL AND EXISTS ( \
                 SELECT 1 FROM sessions s \
                 WHERE s.id = refresh_tokens.session_id AND s.revoked_at IS NULL)",
        )
        .bind(millis(now))
        .bind(presented.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if marked == 1 {
            insert_token(next)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            return Ok(Consumed::Rotated);
        }
        tx.rollback().await.map_err(db_error)?;
        match self.refresh_token(presented).await? {
            Some(token) if token.used_at.is_some() => Ok(Consumed::AlreadyUsed),
            _ => Ok(Consumed::SessionRevoked),
        }
    }

    #[tracing::instrument(skip_all, fields(user_id = %user, session_id = %session))]
    async fn revoke_session(&self, user: &UserId, session: &SessionId) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 \
             WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(millis(Utc::now()))
        .bind(session.as_str())
        .bind(user.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn revoke_other_sessions(&self, user: &UserId, keep: &SessionId) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 \
             WHERE user_id = $2 AND id <> $3 AND revoked_at IS NULL",
        )
        .bind(millis(Utc::now()))
        .bind(user.as_str())
        .bind(keep.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn revoke_access_token(
        &self,
        jti: &TokenId,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        // Entries past their token's expiry guard nothing; sweep them as we go.
        sqlx::query("DELETE FROM revoked_access_tokens WHERE expires_at < $1")
            .bind(millis(Utc::now()))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti.as_str())
        .bind(millis(expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn access_token_revoked(
        &self,
        user: &UserId,
        session: &SessionId,
        jti: &TokenId,
    ) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT CAST(CASE WHEN \
                 EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $1) \
                 OR NOT EXISTS (SELECT 1 FROM sessions \
                     WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL) \
             THEN 1 ELSE 0 END AS BIGINT) AS revoked",
        )
        .bind(jti.as_str())
        .bind(session.as_str())
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        let revoked: i64 = row
            .try_get("revoked")
            .map_err(|err| StoreError::Backend(err.into()))?;
        Ok(revoked != 0)
    }

    async fn record_login_failure(
        &self,
        key: &FailureKey,
        now: DateTime<Utc>,
        window_floor: DateTime<Utc>,
    ) -> StoreResult<LoginFailures> {
        let row = sqlx::query(
            "INSERT INTO login_failures (email, count, window_start) VALUES ($1, 1, $2) \
             ON CONFLICT (email) DO UPDATE SET \
                 count = CASE WHEN login_failures.window_start <= $3 THEN 1 \
                              ELSE login_failures.count + 1 END, \
                 window_start = CASE WHEN login_failures.window_start <= $3 \
                                     THEN excluded.window_start \
                                     ELSE login_failures.window_start END \
             RETURNING count, window_start",
        )
        .bind(key.as_str())
        .bind(millis(now))
        .bind(millis(window_floor))
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        failures_from_row(&row)
    }

    async fn login_failures(&self, key: &FailureKey) -> StoreResult<Option<LoginFailures>> {
        let row = sqlx::query("SELECT count, window_start FROM login_failures WHERE email = $1")
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(failures_from_row).transpose()
    }

    async fn clear_login_failures(&self, key: &FailureKey) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE email = $1")
            .bind(key.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

const ORG_COLUMNS: &str = "o.id, o.name, o.rate_limit_rpm, o.created_at";

fn org_from_row(row: &AnyRow) -> StoreResult<Org> {
    let get = |err: sqlx::Error| StoreError::Backend(err.into());
    let id: String = row.try_get("id").map_err(get)?;
    let rpm: Option<i64> = row.try_get("rate_limit_rpm").map_err(get)?;
    Ok(Org {
        id: OrgId::parse(&id).ok_or_else(|| corrupt("org id"))?,
        name: row.try_get("name").map_err(get)?,
        rate_limit_rpm: rpm.and_then(|rpm| u32::try_from(rpm).ok()),
        created_at: time(row.try_get("created_at").map_err(get)?)?,
    })
}

fn role_from_row(row: &AnyRow) -> StoreResult<Role> {
    let role: String = row
        .try_get("role")
        .map_err(|err| StoreError::Backend(err.into()))?;
    role.parse().map_err(|_| corrupt("role"))
}

fn member_from_row(row: &AnyRow) -> StoreResult<Membership> {
    let get = |err: sqlx::Error| StoreError::Backend(err.into());
    let org: String = row.try_get("org_id").map_err(get)?;
    let user: String = row.try_get("user_id").map_err(get)?;
    Ok(Membership {
        org_id: OrgId::parse(&org).ok_or_else(|| corrupt("org id"))?,
        user_id: UserId::parse(&user).ok_or_else(|| corrupt("user id"))?,
        email: Email::from_trusted(row.try_get("email").map_err(get)?),
        role: role_from_row(row)?,
        joined_at: time(row.try_get("joined_at").map_err(get)?)?,
    })
}

fn json_column(row: &AnyRow, column: &str) -> StoreResult<Option<serde_json::Value>> {
    let raw: Option<String> = row
        .try_get(column)
        .map_err(|err| StoreError::Backend(err.into()))?;
    raw.map(|raw| serde_json::from_str(&raw).map_err(|_| corrupt(column)))
        .transpose()
}

fn audit_from_row(row: &AnyRow) -> StoreResult<AuditEntry> {
    let get = |err: sqlx::Error| StoreError::Backend(err.into());
    let id: String = row.try_get("id").map_err(get)?;
    let org: String = row.try_get("org_id").map_err(get)?;
    let actor: String = row.try_get("actor_user_id").map_err(get)?;
    Ok(AuditEntry {
        id: AuditEntryId::parse(&id).ok_or_else(|| corrupt("audit id"))?,
        org_id: OrgId::parse(&org).ok_or_else(|| corrupt("org id"))?,
        actor_user_id: UserId::parse(&actor).ok_or_else(|| corrupt("user id"))?,
        action: row.try_get("action").map_err(get)?,
        target: row.try_get("target").map_err(get)?,
        before: json_column(row, "before_json")?,
        after: json_column(row, "after_json")?,
        ip: row.try_get("ip").map_err(get)?,
        user_agent: row.try_get("user_agent").map_err(get)?,
        request_id: row.try_get("request_id").map_err(get)?,
        at: time(row.try_get("at").map_err(get)?)?,
    })
}

type AnyTx = sqlx::Transaction<'static, sqlx::Any>;

async fn insert_audit(tx: &mut AnyTx, entry: &AuditEntry) -> StoreResult<()> {
    let json = |value: &Option<serde_json::Value>| value.as_ref().map(ToString::to_string);
    sqlx::query(
        "INSERT INTO audit_log (id, org_id, actor_user_id, action, target, before_json, \
             after_json, ip, user_agent, request_id, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(entry.id.as_str())
    .bind(entry.org_id.as_str())
    .bind(entry.actor_user_id.as_str())
    .bind(entry.action.as_str())
    .bind(entry.target.as_str())
    .bind(json(&entry.before))
    .bind(json(&entry.after))
    .bind(entry.ip.as_deref())
    .bind(entry.user_agent.as_deref())
    .bind(entry.request_id.as_deref())
    .bind(millis(entry.at))
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Moves an org's owner count by `delta`; a decrement only while another owner remains.
async fn shift_owner_count(tx: &mut AnyTx, org: &OrgId, delta: i64) -> StoreResult<()> {
    let sql = if delta < 0 {
        "UPDATE orgs SET owner_count = owner_count - 1 WHERE id = $1 AND owner_count > 1"
    } else {
        "UPDATE orgs SET owner_count = owner_count + 1 WHERE id = $1"
    };
    let changed = sqlx::query(sql)
        .bind(org.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?
        .rows_affected();
    match (changed, delta < 0) {
        (1, _) => Ok(()),
        (_, true) => Err(StoreError::LastOwner),
        (_, false) => Err(StoreError::Conflict),
    }
}

impl SqlStore {
    async fn page<T>(
        &self,
        sql: &str,
        binds: &[&str],
        page: &PageRequest,
        decode: impl Fn(&AnyRow) -> StoreResult<T>,
        sort_key: impl Fn(&T) -> String,
    ) -> StoreResult<Page<T>> {
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        if let Some(after) = &page.after {
            query = query.bind(after.as_str());
        }
        let rows = query
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let items = rows.iter().map(decode).collect::<StoreResult<Vec<T>>>()?;
        Ok(Page::from_overfetch(items, page.limit, sort_key))
    }
}

/// `WHERE` continuation and `LIMIT` for a keyset page: `$n` is the cursor key (when there is
/// one), `$n+1` the limit.
fn keyset(column: &str, op: &str, first_free: usize, page: &PageRequest, order: &str) -> String {
    match page.after {
        Some(_) => format!(
            "AND {column} {op} ${first_free} ORDER BY {column} {order} LIMIT ${}",
            first_free + 1
        ),
        None => format!("ORDER BY {column} {order} LIMIT ${first_free}"),
    }
}

#[async_trait]
impl OrgStore for SqlStore {
    #[tracing::instrument(skip_all, fields(org_id = %org.id))]
    async fn create_org(
        &self,
        org: &Org,
        owner: &Membership,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO orgs (id, name, rate_limit_rpm, created_at, owner_count) \
             VALUES ($1, $2, $3, $4, 1)",
        )
        .bind(org.id.as_str())
        .bind(org.name.as_str())
        .bind(org.rate_limit_rpm.map(i64::from))
        .bind(millis(org.created_at))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_member(&mut tx, owner).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn org(&self, org: &OrgId) -> StoreResult<Option<Org>> {
        let sql = format!("SELECT {ORG_COLUMNS} FROM orgs o WHERE o.id = $1");
        let row = sqlx::query(&sql)
            .bind(org.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(org_from_row).transpose()
    }

    async fn org_for_member(&self, org: &OrgId, user: &UserId) -> StoreResult<Option<(Org, Role)>> {
        let sql = format!(
            "SELECT {ORG_COLUMNS}, m.role FROM memberships m JOIN orgs o ON o.id = m.org_id \
             WHERE m.org_id = $1 AND m.user_id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(org.as_str())
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.map(|row| Ok((org_from_row(&row)?, role_from_row(&row)?)))
            .transpose()
    }

    #[tracing::instrument(skip_all, fields(org_id = %org.id))]
    async fn update_org(&self, org: &Org, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("UPDATE orgs SET name = $1, rate_limit_rpm = $2 WHERE id = $3")
            .bind(org.name.as_str())
            .bind(org.rate_limit_rpm.map(i64::from))
            .bind(org.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    #[tracing::instrument(skip_all, fields(org_id = %org))]
    async fn delete_org(&self, org: &OrgId, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        // Memberships go with the org (ON DELETE CASCADE); the audit log stays.
        sqlx::query("DELETE FROM memberships WHERE org_id = $1")
            .bind(org.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("DELETE FROM orgs WHERE id = $1")
            .bind(org.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn orgs_of_user(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> StoreResult<Page<(Org, Role)>> {
        let sql = format!(
            "SELECT {ORG_COLUMNS}, m.role FROM memberships m JOIN orgs o ON o.id = m.org_id \
             WHERE m.user_id = $1 {}",
            keyset("o.id", "<", 2, page, "DESC")
        );
        self.page(
            &sql,
            &[user.as_str()],
            page,
            |row| Ok((org_from_row(row)?, role_from_row(row)?)),
            |(org, _)| org.id.to_string(),
        )
        .await
    }

    async fn member(&self, org: &OrgId, user: &UserId) -> StoreResult<Option<Membership>> {
        let row = sqlx::query(
            "SELECT org_id, user_id, email, role, joined_at FROM memberships \
             WHERE org_id = $1 AND user_id = $2",
        )
        .bind(org.as_str())
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(member_from_row).transpose()
    }

    async fn members(&self, org: &OrgId, page: &PageRequest) -> StoreResult<Page<Membership>> {
        let sql = format!(
            "SELECT org_id, user_id, email, role, joined_at FROM memberships \
             WHERE org_id = $1 {}",
            keyset("user_id", ">", 2, page, "ASC")
        );
        self.page(&sql, &[org.as_str()], page, member_from_row, |m| {
            m.user_id.to_string()
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(org_id = %membership.org_id, user_id = %membership.user_id))]
    async fn set_member_role(
        &self,
        membership: &Membership,
        previous: Option<Role>,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        match previous {
            None => insert_member(&mut tx, membership).await?,
            Some(previous) => {
                let changed = sqlx::query(
                    "UPDATE memberships SET role = $1 \
                     WHERE org_id = $2 AND user_id = $3 AND role = $4",
                )
                .bind(membership.role.as_str())
                .bind(membership.org_id.as_str())
                .bind(membership.user_id.as_str())
                .bind(previous.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
                if changed != 1 {
                    return Err(StoreError::Conflict);
                }
            }
        }
        let delta = owner_delta(previous, Some(membership.role));
        if delta != 0 {
            shift_owner_count(&mut tx, &membership.org_id, delta).await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    #[tracing::instrument(skip_all, fields(org_id = %org, user_id = %user))]
    async fn remove_member(
        &self,
        org: &OrgId,
        user: &UserId,
        previous: Role,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let removed =
            sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2 AND role = $3")
                .bind(org.as_str())
                .bind(user.as_str())
                .bind(previous.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
        if removed != 1 {
            return Err(StoreError::Conflict);
        }
        if previous == Role::Owner {
            shift_owner_count(&mut tx, org, -1).await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn audit_log(&self, org: &OrgId, page: &PageRequest) -> StoreResult<Page<AuditEntry>> {
        let sql = format!(
            "SELECT id, org_id, actor_user_id, action, target, before_json, after_json, ip, \
                    user_agent, request_id, at \
             FROM audit_log WHERE org_id = $1 {}",
            keyset("id", "<", 2, page, "DESC")
        );
        self.page(&sql, &[org.as_str()], page, audit_from_row, |e| {
            e.id.to_string()
        })
        .await
    }

    async fn append_audit(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        self.append_audit_entries(entries).await
    }
}

impl SqlStore {
    async fn append_audit_entries(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        for entry in entries {
            insert_audit(&mut tx, entry).await?;
        }
        tx.commit().await.map_err(db_error)
    }
}

async fn insert_member(tx: &mut AnyTx, membership: &Membership) -> StoreResult<()> {
    let inserted = sqlx::query(
        "INSERT INTO memberships (org_id, user_id, email, role, joined_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(membership.org_id.as_str())
    .bind(membership.user_id.as_str())
    .bind(membership.email.as_str())
    .bind(membership.role.as_str())
    .bind(millis(membership.joined_at))
    .execute(&mut **tx)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict),
        Err(err) => Err(db_error(err)),
    }
}
