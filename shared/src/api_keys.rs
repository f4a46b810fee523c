//! API-key management: create (the plaintext shown once), list (metadata only), revoke, each
//! authorized through the org's roles and audited.
//!
//! Keys may be scoped to a team of the org. Owners and admins manage every key; a plain member
//! who is a member of a team manages that team's keys (and only those). A `team_id` that is not
//! a team of the org is a 422 on the `team_id` field, when creating and when filtering.

use crate::auth::ApiKeySecret;
use crate::clock::Clock;
use crate::domain::{
    ApiKey, ApiKeyId, AuditEntry, AuditOrigin, Denied, Org, OrgAction, Page, PageRequest, Role,
    TeamId, UserId, ValidationError,
};
use crate::orgs::{OrgError, Orgs};
use crate::ratelimit::Limiter;
use crate::store::{Revoked, Store};
use crate::teams::TeamError;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::sync::Arc;

/// What a new key is made of, validated.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Its label.
    pub name: String,
    /// When it stops working by itself.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its own requests-per-minute limit.
    pub rate_limit_rpm: Option<u32>,
    /// The team it is scoped to; `None` for an org-wide key.
    pub team_id: Option<TeamId>,
}

/// The API-key service. Cheap to clone.
#[derive(Clone)]
pub struct ApiKeys {
    store: Arc<dyn Store>,
    orgs: Orgs,
    limiter: Arc<dyn Limiter>,
    clock: Arc<dyn Clock>,
}

/// How long a revocation mark lives in the limiter: far longer than any function keeps a key
/// in its cache (30 s), so a cached key is refused from the next request on, and long enough
/// that the limiter keeps refusing a revoked key for over a year whatever any cache or replica
/// says (a mark costs ~100 bytes of Redis; revocations are rare).
pub const REVOCATION_MARK_MS: u64 = 400 * 24 * 3600 * 1000;

fn key_state(key: &ApiKey) -> Value {
    json!({
        "id": key.id, "name": key.name, "prefix": key.prefix, "team_id": key.team_id,
        "expires_at": key.expires_at, "rate_limit_rpm": key.rate_limit_rpm,
        "revoked_at": key.revoked_at,
    })
}

impl ApiKeys {
    /// The service over `store`, authorizing through `orgs`, marking revocations in `limiter`.
    pub fn new(
        store: Arc<dyn Store>,
        orgs: Orgs,
        limiter: Arc<dyn Limiter>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            orgs,
            limiter,
            clock,
        }
    }

    /// Now, at the millisecond precision every store keeps.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now_millis()
    }

    /// Checks that `team` is a team of `org`: a 422 on `team_id` otherwise (the path's org
    /// exists; the body names something that does not).
    async fn check_team(&self, org: &Org, team: &TeamId) -> Result<(), TeamError> {
        match self.store.team(&org.id, team).await? {
            Some(_) => Ok(()),
            None => {
                Err(ValidationError::new("team_id", "no such team in this organization").into())
            }
        }
    }

    /// Whether `caller`, an org member with `role`, may manage keys scoped to `team` (`None`:
    /// org-wide keys): owners and admins always, others only for a team they are in.
    async fn authorize(
        &self,
        caller: &UserId,
        org: &Org,
        role: Role,
        team: Option<&TeamId>,
    ) -> Result<(), TeamError> {
        if crate::domain::authorize(role, OrgAction::ManageApiKeys).is_ok() {
            return Ok(());
        }
        let denied = || {
            TeamError::from(Denied(
                "this needs the admin or owner role, or membership of the key's team",
            ))
        };
        let team = team.ok_or_else(denied)?;
        match self.store.team_member(&org.id, team, caller).await? {
            Some(_) => Ok(()),
            None => Err(denied()),
        }
    }

    /// Creates a key; the secret is returned here and never again.
    #[tracing::instrument(skip_all, fields(user_id = %caller, org_id = %org))]
    pub async fn create(
        &self,
        caller: &UserId,
        org: &str,
        new: NewApiKey,
        origin: &AuditOrigin,
    ) -> Result<(ApiKey, ApiKeySecret), TeamError> {
        let (org, role) = self.orgs.load(caller, org, OrgAction::ViewApiKeys).await?;
        if let Some(team) = &new.team_id {
            self.check_team(&org, team).await?;
        }
        self.authorize(caller, &org, role, new.team_id.as_ref())
            .await?;
        let secret = ApiKeySecret::generate();
        let now = self.now();
        let key = ApiKey {
            id: ApiKeyId::generate(),
            org_id: org.id.clone(),
            team_id: new.team_id,
            name: new.name,
            prefix: secret.display_prefix(),
            created_at: now,
            expires_at: new.expires_at,
            last_used_at: None,
            rate_limit_rpm: new.rate_limit_rpm,
            revoked_at: None,
        };
        let audit = AuditEntry::new(
            &org.id,
            caller,
            "api_key.created",
            key.id.as_str(),
            origin,
            now,
        )
        .change(None, Some(key_state(&key)));
        self.store
            .create_api_key(&key, &secret.hash(), &audit)
            .await?;
        tracing::info!(key_id = %key.id, "API key created");
        Ok((key, secret))
    }

    /// The org's keys, newest first, for any member; only `team`'s when given.
    pub async fn list(
        &self,
        caller: &UserId,
        org: &str,
        team: Option<&TeamId>,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>, TeamError> {
        let (org, _) = self.orgs.load(caller, org, OrgAction::ViewApiKeys).await?;
        match team {
            Some(team) => {
                self.check_team(&org, team).await?;
                Ok(self.store.team_api_keys(&org.id, team, page).await?)
            }
            None => Ok(self.store.api_keys(&org.id, page).await?),
        }
    }

    /// Revokes a key of the org; revoking it again changes nothing.
    #[tracing::instrument(skip_all, fields(user_id = %caller, org_id = %org))]
    pub async fn revoke(
        &self,
        caller: &UserId,
        org: &str,
        key: &str,
        origin: &AuditOrigin,
    ) -> Result<(), TeamError> {
        let (org, role) = self.orgs.load(caller, org, OrgAction::ViewApiKeys).await?;
        let key = ApiKeyId::parse(key).ok_or(OrgError::ApiKeyNotFound)?;
        if crate::domain::authorize(role, OrgAction::ManageApiKeys).is_err() {
            // A plain member: only a key of a team they are in.
            let found = self
                .store
                .api_key(&org.id, &key)
                .await?
                .ok_or(OrgError::ApiKeyNotFound)?;
            self.authorize(caller, &org, role, found.team_id.as_ref())
                .await?;
        }
        let now = self.now();
        let audit = AuditEntry::new(
            &org.id,
            caller,
            "api_key.revoked",
            key.as_str(),
            origin,
            now,
        )
        .change(None, Some(json!({ "revoked_at": now })));
        match self
            .store
            .revoke_api_key(&org.id, &key, now, &audit)
            .await?
        {
            Revoked::Now | Revoked::Already => {}
            Revoked::NotFound => return Err(OrgError::ApiKeyNotFound.into()),
        }
        // The store is the truth; the mark makes warm caches drop the key at once. If the
        // limiter is down the key still stops when the caches expire.
        let now_ms = now.timestamp_millis();
        let marked = self
            .limiter
            .mark_revoked(org.id.as_str(), key.as_str(), now_ms, REVOCATION_MARK_MS)
            .await;
        if let Err(err) = marked {
            tracing::error!(error = ?err, key_id = %key, "could not set the revocation mark");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::domain::{Email, OrgName, User};
    use crate::ratelimit::{Decision, LimitRequest, LocalLimiter};
    use crate::store::{UserRecord, testing};

    #[tokio::test]
    async fn revoking_marks_the_key_in_the_limiter_at_once() {
        let store = testing::sqlite().await;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let limiter: Arc<dyn Limiter> = Arc::new(LocalLimiter::new());
        let orgs = Orgs::new(Arc::clone(&store), Arc::clone(&limiter), Arc::clone(&clock));
        let keys = ApiKeys::new(
            Arc::clone(&store),
            orgs.clone(),
            Arc::clone(&limiter),
            clock,
        );
        let owner = UserRecord {
            user: User {
                id: UserId::generate(),
                email: Email::parse("owner@example.com").expect("email"),
                name: None,
                email_verified: false,
                created_at: Utc::now(),
            },
            password_hash: crate::auth::PasswordHash::from_stored("x".into()),
        };
        store.create_user(&owner).await.expect("user");
        let origin = AuditOrigin::default();
        let name = OrgName::parse("Acme").expect("name");
        let org = orgs
            .create(&owner.user.id, name, None, &origin)
            .await
            .expect("org");
        let new = NewApiKey {
            name: "k".into(),
            expires_at: None,
            rate_limit_rpm: None,
            team_id: None,
        };
        let (key, _) = keys
            .create(&owner.user.id, org.id.as_str(), new, &origin)
            .await
            .expect("key");
        let request = LimitRequest {
            key_id: key.id.to_string(),
            org_id: org.id.to_string(),
            key_rpm: None,
            org_rpm: 100,
            quotas: Vec::new(),
            now_ms: Utc::now().timestamp_millis(),
        };
        assert!(matches!(
            limiter.check(&request).await.expect("check"),
            Decision::Allowed { .. }
        ));
        keys.revoke(&owner.user.id, org.id.as_str(), key.id.as_str(), &origin)
            .await
            .expect("revoke");
        assert_eq!(
            limiter.check(&request).await.expect("check"),
            Decision::Revoked
        );
    }
}
