//! DynamoDB: the production store, one table for everything (single-table design).
//!
//! | item | pk | sk |
//! |---|---|---|
//! | user | `USER#<user_id>` | `PROFILE` |
//! | email claim (uniqueness) | `EMAIL#<email>` | `EMAIL` |
//! | session | `USER#<user_id>` | `SESSION#<session_id>` |
//! | refresh token | `REFRESH#<sha256>` | `REFRESH` |
//! | revoked access token | `JTI#<jti>` | `JTI` |
//! | failed logins | `LOGINFAIL#<email>` | `LOGINFAIL` |
//! | one-time secret | `ONETIME#<purpose>#<subject>` | `ONETIME` |
//! | team (with `key_count`, see `teams.rs`) | `ORG#<org_id>` | `TEAM#<team_id>` |
//! | team name claim (uniqueness) | `ORG#<org_id>` | `TEAMNAME#<lower-cased name>` |
//! | team member | `ORG#<org_id>` | `TEAMMEMBER#<team_id>#<user_id>` |
//! | invitation, the org's side | `ORG#<org_id>` | `INVITATION#<invitation_id>` |
//! | invitation, the invitee's side | `INVITEE#<email>` | `INVITATION#<invitation_id>` |
//! | security-log event | `USER#<user_id>` | `SECURITY#<event_id>` |
//!
//! Times are Unix milliseconds (`N`); items that only matter until a moment carry `ttl` (Unix
//! seconds) so DynamoDB deletes them afterwards. Uniqueness and one-time use are conditional
//! writes inside transactions, never read-then-write.

use super::{
    Consumed, FailureKey, LoginFailures, RefreshTokenRecord, Session, Store, StoreError,
    StoreResult, UserRecord,
};
use crate::auth::{PasswordHash, TokenHash};
use crate::domain::{Email, SessionId, TokenId, User, UserId};
use anyhow::{Context as _, anyhow};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, KeySchemaElement, KeyType,
    Put, ReturnValue, ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update,
};
use chrono::{DateTime, TimeZone, Utc};
use std::collections::HashMap;
use std::time::Duration;

mod api_keys;
mod billing;
mod invitations;
mod one_time;
mod orgs;
mod teams;
mod usage;

type Item = HashMap<String, AttributeValue>;

/// Bounds on every DynamoDB call of a connected store: 2 s to connect, 3 s per attempt, 6 s
/// per call with its retries, so an unreachable or silent endpoint becomes a 503
/// (`StoreError::Unavailable`) well within a Lambda's 10 s.
fn call_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(6))
        .build()
}

/// DynamoDB-backed store on one table with string keys `pk` and `sk`.
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// Connects with the standard AWS configuration chain (region, credentials and
    /// `AWS_ENDPOINT_URL` from the environment). With `create`, a missing table is created,
    /// which is for local endpoints; in AWS the SAM template owns the table.
    pub async fn connect(table: &str, create: bool) -> anyhow::Result<Self> {
        let config = aws_config::load_from_env().await;
        Self::connect_with(&config, table, create).await
    }

    /// Like [`DynamoStore::connect`], on a given AWS configuration (e.g. another endpoint).
    ///
    /// Every call is bounded (2 s to connect, 3 s per attempt, 6 s in all): the SDK's defaults
    /// bound only the connect, so an endpoint that accepts and never answers would hold a
    /// request forever.
    pub async fn connect_with(
        config: &aws_config::SdkConfig,
        table: &str,
        create: bool,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(!table.is_empty(), "STORE_URL names no DynamoDB table");
        let dynamo = aws_sdk_dynamodb::config::Builder::from(config)
            .timeout_config(call_timeouts())
            .build();
        let store = Self::new(Client::from_conf(dynamo), table);
        if create {
            store.create_table_if_missing().await?;
        }
        Ok(store)
    }

    /// Wraps an existing client.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table (on-demand capacity, TTL on `ttl`) unless it exists.
    pub async fn create_table_if_missing(&self) -> anyhow::Result<()> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(err) => return Err(anyhow!(err).context("cannot describe DynamoDB table")),
        }
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk")?)
            .attribute_definitions(attribute("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            // Another process created it between our describe and create: fine.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(err) => return Err(anyhow!(err).context("cannot create DynamoDB table")),
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("ttl")
                    .build()?,
            )
            .send()
            .await
            .context("cannot enable TTL on the DynamoDB table")?;
        Ok(())
    }

    async fn get(&self, pk: String, sk: &str) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.item)
    }

    /// Writes an item whole, replacing any item with its key.
    async fn put(&self, item: Item) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Applies `expression` (with `:value`) to an account's profile; an account deleted in the
    /// meantime is left alone.
    async fn update_profile(
        &self,
        id: &UserId,
        expression: &str,
        value: AttributeValue,
    ) -> StoreResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(id), "PROFILE")))
            .update_expression(expression)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":value", value)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_conditional_failure(&err) => Ok(()),
            Err(err) => Err(sdk_error(err)),
        }
    }

    async fn session_item(&self, user: &UserId, session: &SessionId) -> StoreResult<Option<Item>> {
        self.get(user_pk(user), &session_sk(session)).await
    }

    /// A transaction step writing `item`, only if `condition` holds (when given).
    fn put_step(&self, item: Item, condition: Option<&str>) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(|err| StoreError::Backend(err.into()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn ms(at: DateTime<Utc>) -> AttributeValue {
    n(at.timestamp_millis())
}

/// DynamoDB's TTL wants Unix seconds.
fn ttl(at: DateTime<Utc>) -> AttributeValue {
    n(at.timestamp())
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn user_pk(user: &UserId) -> String {
    format!("USER#{user}")
}

fn session_sk(session: &SessionId) -> String {
    format!("SESSION#{session}")
}

fn email_pk(email: &Email) -> String {
    format!("EMAIL#{email}")
}

fn refresh_pk(hash: &TokenHash) -> String {
    format!("REFRESH#{}", hash.as_str())
}

fn login_fail_pk(key: &FailureKey) -> String {
    format!("LOGINFAIL#{}", key.as_str())
}

fn malformed(what: &str) -> StoreError {
    StoreError::Backend(anyhow!("DynamoDB item has a missing or malformed {what}"))
}

fn get_s<'a>(item: &'a Item, name: &str) -> StoreResult<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| malformed(name))
}

fn get_n(item: &Item, name: &str) -> StoreResult<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| malformed(name))
}

fn get_time(item: &Item, name: &str) -> StoreResult<DateTime<Utc>> {
    let value = get_n(item, name)?;
    Utc.timestamp_millis_opt(value)
        .single()
        .ok_or_else(|| malformed(name))
}

fn get_opt_time(item: &Item, name: &str) -> StoreResult<Option<DateTime<Utc>>> {
    if item.contains_key(name) {
        get_time(item, name).map(Some)
    } else {
        Ok(None)
    }
}

/// Service answers that mean "not now" (throttled after the SDK's retries, or the service
/// itself failing): a client may retry, so they are `Unavailable` like transport trouble.
const TRANSIENT_CODES: [&str; 5] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
];

/// Transport trouble and transient service answers are `Unavailable` (503); any other answer
/// of the service is `Backend` (500).
fn sdk_error<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let transient = err
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| TRANSIENT_CODES.contains(&code));
    match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            StoreError::Unavailable(anyhow!(err))
        }
        other if transient => StoreError::Unavailable(anyhow!(other)),
        other => StoreError::Backend(anyhow!(other)),
    }
}

fn is_conditional_failure<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// For a cancelled transaction: did the item at `index` fail its condition?
fn transaction_condition_failed<R>(
    err: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>,
    index: usize,
) -> Option<bool> {
    let aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(
        cancelled,
    ) = err.as_service_error()?
    else {
        return None;
    };
    let reasons = cancelled.cancellation_reasons();
    if reasons.is_empty() {
        // Some endpoints omit the reasons; the caller then treats it as a condition failure.
        return Some(true);
    }
    Some(
        reasons
            .get(index)
            .and_then(|reason| reason.code())
            .is_some_and(|code| code == "ConditionalCheckFailed"),
    )
}

fn user_from_item(item: &Item) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        user: User {
            id: UserId::parse(get_s(item, "user_id")?).ok_or_else(|| malformed("user_id"))?,
            email: Email::from_trusted(get_s(item, "email")?.to_owned()),
            name: item
                .get("name")
                .and_then(|v| v.as_s().ok())
                .map(ToOwned::to_owned),
            email_verified: item
                .get("email_verified")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
            created_at: get_time(item, "created_at")?,
        },
        password_hash: PasswordHash::from_stored(get_s(item, "password_hash")?.to_owned()),
    })
}

fn token_item(token: &RefreshTokenRecord) -> Item {
    let mut item = key(refresh_pk(&token.hash), "REFRESH");
    item.insert("session_id".into(), s(token.session_id.as_str()));
    item.insert("user_id".into(), s(token.user_id.as_str()));
    item.insert("created_at".into(), ms(token.created_at));
    item.insert("expires_at".into(), ms(token.expires_at));
    item.insert("ttl".into(), ttl(token.expires_at));
    item
}

fn failures_from_item(item: &Item) -> StoreResult<LoginFailures> {
    Ok(LoginFailures {
        count: u32::try_from(get_n(item, "failures")?).unwrap_or(u32::MAX),
        window_start: get_time(item, "window_start")?,
    })
}

#[async_trait]
impl Store for DynamoStore {
    fn backend(&self) -> &'static str {
        "dynamodb"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(user_id = %record.user.id))]
    async fn create_user(&self, record: &UserRecord) -> StoreResult<()> {
        let user = &record.user;
        let mut claim = key(email_pk(&user.email), "EMAIL");
        claim.insert("user_id".into(), s(user.id.as_str()));
        let mut profile = key(user_pk(&user.id), "PROFILE");
        profile.insert("user_id".into(), s(user.id.as_str()));
        profile.insert("email".into(), s(user.email.as_str()));
        if let Some(name) = &user.name {
            profile.insert("name".into(), s(name.as_str()));
        }
        profile.insert(
            "email_verified".into(),
            AttributeValue::Bool(user.email_verified),
        );
        profile.insert("password_hash".into(), s(record.password_hash.as_str()));
        profile.insert("created_at".into(), ms(user.created_at));
        let unclaimed = Some("attribute_not_exists(pk)");
        let result = self
            .client
            .transact_write_items()
            .transact_items(self.put_step(claim, unclaimed)?)
            .transact_items(self.put_step(profile, unclaimed)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if transaction_condition_failed(&err, 0) == Some(true) => {
                Err(StoreError::EmailTaken)
            }
            Err(err) => Err(sdk_error(err)),
        }
    }

    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<UserRecord>> {
        self.get(user_pk(id), "PROFILE")
            .await?
            .as_ref()
            .map(user_from_item)
            .transpose()
    }

    async fn user_by_email(&self, email: &Email) -> StoreResult<Option<UserRecord>> {
        let Some(claim) = self.get(email_pk(email), "EMAIL").await? else {
            return Ok(None);
        };
        let id = UserId::parse(get_s(&claim, "user_id")?).ok_or_else(|| malformed("user_id"))?;
        self.user_by_id(&id).await
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    async fn set_password_hash(&self, id: &UserId, hash: &PasswordHash) -> StoreResult<()> {
        self.update_profile(id, "SET password_hash = :value", s(hash.as_str()))
            .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    async fn set_email_verified(&self, id: &UserId) -> StoreResult<()> {
        self.update_profile(
            id,
            "SET email_verified = :value",
            AttributeValue::Bool(true),
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %session.user_id, session_id = %session.id))]
    async fn create_session(
        &self,
        session: &Session,
        first_token: &RefreshTokenRecord,
    ) -> StoreResult<()> {
        let mut item = key(user_pk(&session.user_id), &session_sk(&session.id));
        item.insert("created_at".into(), ms(session.created_at));
        item.insert("expires_at".into(), ms(session.expires_at));
        item.insert("ttl".into(), ttl(session.expires_at));
        self.client
            .transact_write_items()
            .transact_items(self.put_step(item, None)?)
            .transact_items(self.put_step(token_item(first_token), None)?)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn refresh_token(&self, hash: &TokenHash) -> StoreResult<Option<RefreshTokenRecord>> {
        let Some(item) = self.get(refresh_pk(hash), "REFRESH").await? else {
            return Ok(None);
        };
        let session_id =
            SessionId::parse(get_s(&item, "session_id")?).ok_or_else(|| malformed("session_id"))?;
        let user_id =
            UserId::parse(get_s(&item, "user_id")?).ok_or_else(|| malformed("user_id"))?;
        let session = self.session_item(&user_id, &session_id).await?;
        let session_revoked = session.is_none_or(|s| s.contains_key("revoked_at"));
        Ok(Some(RefreshTokenRecord {
            hash: hash.clone(),
            created_at: get_time(&item, "created_at")?,
            expires_at: get_time(&item, "expires_at")?,
            used_at: get_opt_time(&item, "used_at")?,
            session_id,
            user_id,
            session_revoked,
        }))
    }

    #[tracing::instrument(skip_all, fields(session_id = %next.session_id))]
    async fn consume_refresh_token(
        &self,
        presented: &TokenHash,
        next: &RefreshTokenRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<Consumed> {
        let mark_used = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(refresh_pk(presented), "REFRESH")))
            .update_expression("SET used_at = :now")
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(used_at) AND session_id = :session",
            )
            .expression_attribute_values(":now", ms(now))
            .expression_attribute_values(":session", s(next.session_id.as_str()))
            .build()
            .map_err(|err| StoreError::Backend(err.into()))?;
        let session_live = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(
                user_pk(&next.user_id),
                &session_sk(&next.session_id),
            )))
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(revoked_at)")
            .build()
            .map_err(|err| StoreError::Backend(err.into()))?;
        let insert_next = self.put_step(token_item(next), Some("attribute_not_exists(pk)"))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(mark_used).build())
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(session_live)
                    .build(),
            )
            .transact_items(insert_next)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Consumed::Rotated),
            Err(err) if transaction_condition_failed(&err, 0).is_some() => {
                match self.refresh_token(presented).await? {
                    Some(token) if token.used_at.is_some() => Ok(Consumed::AlreadyUsed),
                    _ => Ok(Consumed::SessionRevoked),
                }
            }
            Err(err) => Err(sdk_error(err)),
        }
    }

    #[tracing::instrument(skip_all, fields(user_id = %user, session_id = %session))]
    async fn revoke_session(&self, user: &UserId, session: &SessionId) -> StoreResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user), &session_sk(session))))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :now)")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", ms(Utc::now()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_conditional_failure(&err) => Ok(()),
            Err(err) => Err(sdk_error(err)),
        }
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn revoke_other_sessions(&self, user: &UserId, keep: &SessionId) -> StoreResult<u64> {
        let keep_sk = session_sk(keep);
        let mut revoked = 0;
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .filter_expression("attribute_not_exists(revoked_at)")
                .expression_attribute_values(":pk", s(user_pk(user)))
                .expression_attribute_values(":prefix", s("SESSION#"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in page.items() {
                let sk = get_s(item, "sk")?;
                if sk == keep_sk {
                    continue;
                }
                let session = sk
                    .strip_prefix("SESSION#")
                    .and_then(SessionId::parse)
                    .ok_or_else(|| malformed("sk"))?;
                self.revoke_session(user, &session).await?;
                revoked += 1;
            }
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(revoked),
            }
        }
    }

    async fn revoke_access_token(
        &self,
        jti: &TokenId,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut item = key(format!("JTI#{jti}"), "JTI");
        item.insert("expires_at".into(), ms(expires_at));
        item.insert("ttl".into(), ttl(expires_at));
        self.put(item).await
    }

    async fn access_token_revoked(
        &self,
        user: &UserId,
        session: &SessionId,
        jti: &TokenId,
    ) -> StoreResult<bool> {
        // Two point reads in parallel: one round trip of latency.
        let (revoked_token, session) = tokio::try_join!(
            self.get(format!("JTI#{jti}"), "JTI"),
            self.session_item(user, session)
        )?;
        let session_dead = session.is_none_or(|s| s.contains_key("revoked_at"));
        Ok(revoked_token.is_some() || session_dead)
    }

    async fn record_login_failure(
        &self,
        counter: &FailureKey,
        now: DateTime<Utc>,
        window_floor: DateTime<Utc>,
    ) -> StoreResult<LoginFailures> {
        // Either bump the count inside the current window, or (no item, or its window is over)
        // start a new window. Each step is conditional, so concurrent failures never lose a
        // count; a lost race simply goes round again.
        for _ in 0..8 {
            let bumped = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(login_fail_pk(counter), "LOGINFAIL")))
                .update_expression("SET failures = failures + :one")
                .condition_expression("window_start > :floor")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":floor", ms(window_floor))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match bumped {
                Ok(out) => {
                    return out
                        .attributes
                        .as_ref()
                        .ok_or_else(|| malformed("attributes"))
                        .and_then(failures_from_item);
                }
                Err(err) if is_conditional_failure(&err) => {}
                Err(err) => return Err(sdk_error(err)),
            }
            let mut item = key(login_fail_pk(counter), "LOGINFAIL");
            item.insert("failures".into(), n(1));
            item.insert("window_start".into(), ms(now));
            item.insert("ttl".into(), ttl(now + (now - window_floor)));
            let started = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR window_start <= :floor")
                .expression_attribute_values(":floor", ms(window_floor))
                .send()
                .await;
            match started {
                Ok(_) => {
                    return Ok(LoginFailures {
                        count: 1,
                        window_start: now,
                    });
                }
                Err(err) if is_conditional_failure(&err) => {}
                Err(err) => return Err(sdk_error(err)),
            }
        }
        Err(StoreError::Backend(anyhow!(
            "failed-login counter kept changing under contention"
        )))
    }

    async fn login_failures(&self, counter: &FailureKey) -> StoreResult<Option<LoginFailures>> {
        self.get(login_fail_pk(counter), "LOGINFAIL")
            .await?
            .as_ref()
            .map(failures_from_item)
            .transpose()
    }

    async fn clear_login_failures(&self, counter: &FailureKey) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(login_fail_pk(counter), "LOGINFAIL")))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}
