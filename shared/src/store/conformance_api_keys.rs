//! Conformance cases for revoking API keys under concurrent writes, run on every backend; and
//! the DynamoDB case of a revocation cancelled by a conflicting write.

use super::open;

mod cases {
    use super::super::key_cases::new_key;
    use super::super::orgs::{audit, created};
    use super::super::{now, signed_up};
    use crate::auth::ApiKeySecret;
    use crate::domain::{ApiKey, Org, PageRequest, UserId};
    use crate::store::{Revoked, Store};
    use std::sync::Arc;

    /// An org with one live key.
    pub(super) async fn keyed(store: &dyn Store) -> (Org, ApiKey, ApiKeySecret) {
        let owner = signed_up(store).await;
        let org = created(store, &owner, "Acme").await;
        let (key, secret) = new_key(&org.id, "hot");
        store
            .create_api_key(
                &key,
                &secret.hash(),
                &audit(&org.id, &owner.user.id, "api_key.created"),
            )
            .await
            .expect("create");
        (org, key, secret)
    }

    /// The key as both lookups see it: revoked in each.
    pub(super) async fn assert_revoked(store: &dyn Store, org: &Org, secret: &ApiKeySecret) {
        let by_hash = store
            .api_key_by_hash(&secret.hash())
            .await
            .expect("read")
            .expect("kept");
        assert!(by_hash.revoked_at.is_some(), "hot-path item still live");
        let listed = store
            .api_keys(&org.id, &PageRequest::first(10))
            .await
            .expect("list");
        assert!(
            listed.items.iter().all(|k| k.revoked_at.is_some()),
            "listing item still live"
        );
    }

    /// A revocation racing a stream of `last_used_at` touches (the metering path writes one
    /// per key a minute) still revokes: a 204 means revoked in the store.
    pub async fn a_revoke_racing_touches_still_revokes(store: Arc<dyn Store>) {
        let (org, key, secret) = keyed(&*store).await;
        let mut touches = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (store, org, key) = (Arc::clone(&store), org.id.clone(), key.id.clone());
            touches.spawn(async move {
                for _ in 0..10 {
                    store.touch_api_key(&org, &key, now()).await.expect("touch");
                }
            });
        }
        let revoked = store
            .revoke_api_key(
                &org.id,
                &key.id,
                now(),
                &audit(&org.id, &UserId::generate(), "api_key.revoked"),
            )
            .await
            .expect("revoke");
        touches.join_all().await;
        assert_eq!(revoked, Revoked::Now);
        assert_revoked(&*store, &org, &secret).await;
    }
}

every_backend!(a_revoke_racing_touches_still_revokes);

/// Real DynamoDB cancels a transaction with `TransactionConflict` when a concurrent write (the
/// `last_used_at` touch) hits one of its items; that is not "already revoked". The test
/// endpoint cancels the first two attempts that way: the revocation retries and lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_a_revoke_cancelled_by_a_conflict_is_retried_not_taken_for_done() {
    let (store, table) = open::dynamodb_table().await;
    let (org, key, secret) = cases::keyed(&*store).await;
    open::arm_transaction_conflicts(&table, 2).await;
    let revoked = store
        .revoke_api_key(
            &org.id,
            &key.id,
            super::now(),
            &super::orgs::audit(
                &org.id,
                &crate::domain::UserId::generate(),
                "api_key.revoked",
            ),
        )
        .await
        .expect("revoke");
    assert_eq!(revoked, crate::store::Revoked::Now);
    cases::assert_revoked(&*store, &org, &secret).await;
}

/// A revocation that keeps being cancelled is an error (the caller answers 503), never a
/// 204 over a live key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_a_revoke_that_cannot_land_is_an_error_not_a_success() {
    let (store, table) = open::dynamodb_table().await;
    let (org, key, secret) = cases::keyed(&*store).await;
    open::arm_transaction_conflicts(&table, 100).await;
    let result = store
        .revoke_api_key(
            &org.id,
            &key.id,
            super::now(),
            &super::orgs::audit(
                &org.id,
                &crate::domain::UserId::generate(),
                "api_key.revoked",
            ),
        )
        .await;
    open::arm_transaction_conflicts(&table, 0).await;
    assert!(
        matches!(result, Err(crate::store::StoreError::Unavailable(_))),
        "{result:?}"
    );
    let live = store
        .api_key_by_hash(&secret.hash())
        .await
        .expect("read")
        .expect("kept");
    assert!(live.revoked_at.is_none());
}
