//! The store conformance suite: every case runs against every backend, each on a real server
//! (SQLite file, Postgres, DynamoDB endpoint) in a namespace of its own, so cases run in
//! parallel. A backend that cannot be reached fails its cases; nothing is skipped.
//! Stores come from [`super::testing`].

use super::*;
use crate::auth::RefreshSecret;
use chrono::{Duration, TimeZone};

use super::testing as open;

fn user(email: &str) -> UserRecord {
    UserRecord {
        user: User {
            id: UserId::generate(),
            email: Email::parse(email).expect("valid email"),
            name: Some("Ann".into()),
            email_verified: false,
            created_at: Utc
                .timestamp_millis_opt(1_700_000_000_123)
                .single()
                .expect("time"),
        },
        password_hash: PasswordHash::from_stored(
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA".into(),
        ),
    }
}

fn unique_email() -> String {
    format!(
        "{}@example.com",
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

fn now() -> DateTime<Utc> {
    // Millisecond precision: what every backend stores.
    Utc.timestamp_millis_opt(Utc::now().timestamp_millis())
        .single()
        .expect("time")
}

fn token_for(user: &UserId, session: &SessionId, now: DateTime<Utc>) -> RefreshTokenRecord {
    RefreshTokenRecord {
        hash: RefreshSecret::generate().hash(),
        session_id: session.clone(),
        user_id: user.clone(),
        created_at: now,
        expires_at: now + Duration::days(30),
        used_at: None,
        session_revoked: false,
    }
}

async fn signed_up(store: &dyn Store) -> UserRecord {
    let record = user(&unique_email());
    store.create_user(&record).await.expect("create user");
    record
}

async fn logged_in(store: &dyn Store, user: &UserId) -> (Session, RefreshTokenRecord) {
    let now = now();
    let session = Session {
        id: SessionId::generate(),
        user_id: user.clone(),
        created_at: now,
        expires_at: now + Duration::days(30),
    };
    let token = token_for(user, &session.id, now);
    store
        .create_session(&session, &token)
        .await
        .expect("create session");
    (session, token)
}

/// The cases, each taking a fresh store.
mod cases {
    pub use super::billing_cases::*;
    pub use super::key_cases::*;
    pub use super::org_cases::*;
    pub use super::usage_cases::*;
    use super::*;

    pub async fn users_are_found_by_id_and_email(store: Arc<dyn Store>) {
        let record = signed_up(&*store).await;
        let by_id = store.user_by_id(&record.user.id).await.expect("read");
        assert_eq!(by_id.as_ref(), Some(&record));
        let by_email = store.user_by_email(&record.user.email).await.expect("read");
        assert_eq!(by_email.as_ref(), Some(&record));
        let missing = Email::parse(&unique_email()).expect("valid");
        assert!(store.user_by_email(&missing).await.expect("read").is_none());
        assert!(
            store
                .user_by_id(&UserId::generate())
                .await
                .expect("read")
                .is_none()
        );
    }

    pub async fn a_taken_email_is_refused_and_nothing_is_written(store: Arc<dyn Store>) {
        let first = signed_up(&*store).await;
        let mut second = user(first.user.email.as_str());
        second.user.name = None;
        let err = store.create_user(&second).await.expect_err("duplicate");
        assert!(matches!(err, StoreError::EmailTaken), "got {err:?}");
        assert!(
            store
                .user_by_id(&second.user.id)
                .await
                .expect("read")
                .is_none()
        );
        let owner = store.user_by_email(&first.user.email).await.expect("read");
        assert_eq!(owner.map(|r| r.user.id), Some(first.user.id));
    }

    pub async fn concurrent_signups_for_one_email_create_one_account(store: Arc<dyn Store>) {
        let email = unique_email();
        let attempts = (0..8).map(|_| {
            let store = Arc::clone(&store);
            let record = user(&email);
            tokio::spawn(async move { store.create_user(&record).await })
        });
        let mut created = 0;
        for attempt in attempts {
            match attempt.await.expect("task") {
                Ok(()) => created += 1,
                Err(StoreError::EmailTaken) => {}
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        assert_eq!(created, 1);
    }

    pub async fn password_hashes_are_replaced(store: Arc<dyn Store>) {
        let record = signed_up(&*store).await;
        let new_hash = PasswordHash::from_stored("$argon2id$v=19$m=64,t=1,p=1$bmV3$bmV3".into());
        store
            .set_password_hash(&record.user.id, &new_hash)
            .await
            .expect("update");
        let read = store
            .user_by_id(&record.user.id)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(read.password_hash, new_hash);
    }

    pub async fn refresh_tokens_rotate_exactly_once(store: Arc<dyn Store>) {
        let account = signed_up(&*store).await;
        let (session, first) = logged_in(&*store, &account.user.id).await;
        let read = store
            .refresh_token(&first.hash)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(read, first);

        let second = token_for(&account.user.id, &session.id, now());
        let at = now();
        assert_eq!(
            store
                .consume_refresh_token(&first.hash, &second, at)
                .await
                .expect("consume"),
            Consumed::Rotated
        );
        let used = store
            .refresh_token(&first.hash)
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(used.used_at, Some(at));
        assert_eq!(
            store.refresh_token(&second.hash).await.expect("read"),
            Some(second.clone())
        );

        let third = token_for(&account.user.id, &session.id, now());
        assert_eq!(
            store
                .consume_refresh_token(&first.hash, &third, now())
                .await
                .expect("consume"),
            Consumed::AlreadyUsed
        );
        assert!(
            store
                .refresh_token(&third.hash)
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            store
                .refresh_token(&RefreshSecret::generate().hash())
                .await
                .expect("read")
                .is_none()
        );
    }

    pub async fn concurrent_exchanges_of_one_token_rotate_once(store: Arc<dyn Store>) {
        let account = signed_up(&*store).await;
        let (session, first) = logged_in(&*store, &account.user.id).await;
        let racers = (0..6).map(|_| {
            let store = Arc::clone(&store);
            let presented = first.hash.clone();
            let next = token_for(&account.user.id, &session.id, now());
            tokio::spawn(async move { store.consume_refresh_token(&presented, &next, now()).await })
        });
        let mut rotated = 0;
        for racer in racers {
            match racer.await.expect("task").expect("consume") {
                Consumed::Rotated => rotated += 1,
                Consumed::AlreadyUsed => {}
                Consumed::SessionRevoked => panic!("session was never revoked"),
            }
        }
        assert_eq!(rotated, 1);
    }

    pub async fn a_revoked_session_stops_its_tokens(store: Arc<dyn Store>) {
        let account = signed_up(&*store).await;
        let (session, first) = logged_in(&*store, &account.user.id).await;
        let jti = TokenId::generate();
        assert!(
            !store
                .access_token_revoked(&account.user.id, &session.id, &jti)
                .await
                .expect("check")
        );

        store
            .revoke_session(&account.user.id, &session.id)
            .await
            .expect("revoke");
        store
            .revoke_session(&account.user.id, &session.id)
            .await
            .expect("idempotent");
        let read = store
            .refresh_token(&first.hash)
            .await
            .expect("read")
            .expect("kept");
        assert!(read.session_revoked);
        let next = token_for(&account.user.id, &session.id, now());
        assert_eq!(
            store
                .consume_refresh_token(&first.hash, &next, now())
                .await
                .expect("consume"),
            Consumed::SessionRevoked
        );
        assert!(
            store
                .access_token_revoked(&account.user.id, &session.id, &jti)
                .await
                .expect("check")
        );
    }

    pub async fn revoking_other_sessions_keeps_the_current_one(store: Arc<dyn Store>) {
        let account = signed_up(&*store).await;
        let other_account = signed_up(&*store).await;
        let (keep, _) = logged_in(&*store, &account.user.id).await;
        let (gone_a, _) = logged_in(&*store, &account.user.id).await;
        let (gone_b, _) = logged_in(&*store, &account.user.id).await;
        let (foreign, _) = logged_in(&*store, &other_account.user.id).await;
        let revoked = store
            .revoke_other_sessions(&account.user.id, &keep.id)
            .await
            .expect("revoke");
        assert_eq!(revoked, 2);
        let jti = TokenId::generate();
        let check = |user: UserId, session: SessionId| {
            let store = Arc::clone(&store);
            let jti = jti.clone();
            async move {
                store
                    .access_token_revoked(&user, &session, &jti)
                    .await
                    .expect("check")
            }
        };
        assert!(!check(account.user.id.clone(), keep.id).await);
        assert!(check(account.user.id.clone(), gone_a.id).await);
        assert!(check(account.user.id.clone(), gone_b.id).await);
        assert!(!check(other_account.user.id.clone(), foreign.id.clone()).await);
        // A session is only valid for its own user.
        assert!(check(account.user.id.clone(), foreign.id).await);
    }

    pub async fn a_revoked_access_token_stays_revoked(store: Arc<dyn Store>) {
        let account = signed_up(&*store).await;
        let (session, _) = logged_in(&*store, &account.user.id).await;
        let jti = TokenId::generate();
        let other = TokenId::generate();
        store
            .revoke_access_token(&jti, now() + Duration::minutes(15))
            .await
            .expect("revoke");
        store
            .revoke_access_token(&jti, now() + Duration::minutes(15))
            .await
            .expect("idempotent");
        assert!(
            store
                .access_token_revoked(&account.user.id, &session.id, &jti)
                .await
                .expect("check")
        );
        assert!(
            !store
                .access_token_revoked(&account.user.id, &session.id, &other)
                .await
                .expect("check")
        );
        let unknown = SessionId::generate();
        assert!(
            store
                .access_token_revoked(&account.user.id, &unknown, &other)
                .await
                .expect("check")
        );
    }

    pub async fn login_failures_count_within_a_window(store: Arc<dyn Store>) {
        let email = FailureKey::address(&Email::parse(&unique_email()).expect("valid"));
        assert!(store.login_failures(&email).await.expect("read").is_none());
        let start = now();
        let floor = |at: DateTime<Utc>| at - Duration::minutes(15);
        for expected in 1..=3 {
            let at = start + Duration::seconds(expected);
            let failures = store
                .record_login_failure(&email, at, floor(at))
                .await
                .expect("record");
            assert_eq!(
                failures,
                LoginFailures {
                    count: expected as u32,
                    window_start: start + Duration::seconds(1)
                }
            );
        }
        assert_eq!(
            store
                .login_failures(&email)
                .await
                .expect("read")
                .map(|f| f.count),
            Some(3)
        );

        // After the window, counting starts again.
        let later = start + Duration::minutes(16);
        let failures = store
            .record_login_failure(&email, later, floor(later))
            .await
            .expect("record");
        assert_eq!(
            failures,
            LoginFailures {
                count: 1,
                window_start: later
            }
        );

        store.clear_login_failures(&email).await.expect("clear");
        assert!(store.login_failures(&email).await.expect("read").is_none());
        store
            .clear_login_failures(&email)
            .await
            .expect("idempotent");
    }

    pub async fn concurrent_login_failures_are_all_counted(store: Arc<dyn Store>) {
        let email = FailureKey::address(&Email::parse(&unique_email()).expect("valid"));
        let at = now();
        let racers = (0..10).map(|_| {
            let store = Arc::clone(&store);
            let email = email.clone();
            tokio::spawn(async move {
                store
                    .record_login_failure(&email, at, at - Duration::minutes(15))
                    .await
            })
        });
        // Each racer gets its own count: a reservation before the password check is exact.
        let mut counts = Vec::new();
        for racer in racers {
            counts.push(racer.await.expect("task").expect("record").count);
        }
        counts.sort_unstable();
        assert_eq!(counts, (1..=10).collect::<Vec<u32>>());
        assert_eq!(
            store
                .login_failures(&email)
                .await
                .expect("read")
                .map(|f| f.count),
            Some(10)
        );
    }

    /// The kinds of failure counter (address, address from one IP, an account's codes) are
    /// separate counters.
    pub async fn failure_counters_of_different_kinds_are_separate(store: Arc<dyn Store>) {
        let email = Email::parse(&unique_email()).expect("valid");
        let at = now();
        let floor = at - Duration::minutes(15);
        let keys = [
            FailureKey::address(&email),
            FailureKey::address_from(&email, Some([127, 0, 0, 1].into())),
            FailureKey::address_from(&email, Some([127, 0, 0, 2].into())),
            FailureKey::address_from(&email, None),
            FailureKey::login_codes(&email),
        ];
        for (i, key) in keys.iter().enumerate() {
            for _ in 0..=i {
                store
                    .record_login_failure(key, at, floor)
                    .await
                    .expect("record");
            }
        }
        for (i, key) in keys.iter().enumerate() {
            let count = store
                .login_failures(key)
                .await
                .expect("read")
                .map(|f| f.count);
            assert_eq!(count, Some(i as u32 + 1), "{key:?}");
        }
        store.clear_login_failures(&keys[1]).await.expect("clear");
        assert!(
            store
                .login_failures(&keys[1])
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            store
                .login_failures(&keys[2])
                .await
                .expect("read")
                .is_some()
        );
    }

    pub async fn ping_answers(store: Arc<dyn Store>) {
        store.ping().await.expect("ping");
        assert!(["sqlite", "postgres", "dynamodb"].contains(&store.backend()));
    }
}

/// Org fixtures.
mod orgs {
    use super::*;
    use crate::domain::{AuditEntry, AuditOrigin, Membership, Org, OrgId, PageRequest, Role};

    pub fn audit(org: &OrgId, actor: &UserId, action: &str) -> AuditEntry {
        AuditEntry::new(
            org,
            actor,
            action,
            org.as_str(),
            &AuditOrigin::default(),
            now(),
        )
        .change(None, Some(serde_json::json!({"action": action})))
    }

    pub fn membership(org: &OrgId, user: &UserRecord, role: Role) -> Membership {
        Membership {
            org_id: org.clone(),
            user_id: user.user.id.clone(),
            email: user.user.email.clone(),
            role,
            joined_at: now(),
        }
    }

    pub async fn created(store: &dyn Store, owner: &UserRecord, name: &str) -> Org {
        let org = Org {
            id: OrgId::generate(),
            name: name.into(),
            rate_limit_rpm: None,
            created_at: now(),
        };
        let first = membership(&org.id, owner, Role::Owner);
        store
            .create_org(&org, &first, &audit(&org.id, &owner.user.id, "org.created"))
            .await
            .expect("create org");
        org
    }

    pub async fn add(store: &dyn Store, org: &Org, user: &UserRecord, role: Role, actor: &UserId) {
        store
            .set_member_role(
                &membership(&org.id, user, role),
                None,
                &audit(&org.id, actor, "member.added"),
            )
            .await
            .expect("add member");
    }

    pub async fn owners(store: &dyn Store, org: &OrgId) -> usize {
        let page = store
            .members(org, &PageRequest::first(100))
            .await
            .expect("members");
        page.items.iter().filter(|m| m.role == Role::Owner).count()
    }
}

/// The tenancy cases.
mod org_cases {
    use super::orgs::*;
    use super::*;
    use crate::domain::{OrgId, PageRequest, Role};

    pub async fn an_org_is_visible_to_its_members_only(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let stranger = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        let (read, role) = store
            .org_for_member(&org.id, &owner.user.id)
            .await
            .expect("read")
            .expect("member");
        assert_eq!((read, role), (org.clone(), Role::Owner));
        assert!(
            store
                .org_for_member(&org.id, &stranger.user.id)
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            store
                .org_for_member(&OrgId::generate(), &owner.user.id)
                .await
                .expect("read")
                .is_none()
        );
        assert_eq!(store.org(&org.id).await.expect("read"), Some(org.clone()));
        assert!(store.org(&OrgId::generate()).await.expect("read").is_none());
        let log = store
            .audit_log(&org.id, &PageRequest::first(10))
            .await
            .expect("log");
        assert_eq!(log.items.len(), 1);
        assert_eq!(log.items[0].action, "org.created");
        assert_eq!(log.items[0].actor_user_id, owner.user.id);
    }

    pub async fn a_users_orgs_page_newest_first_exactly_once(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let mut made = Vec::new();
        for i in 0..7 {
            made.push(created(&*store, &owner, &format!("Org {i}")).await.id);
        }
        let other = signed_up(&*store).await;
        created(&*store, &other, "Not mine").await;
        made.reverse();
        let mut seen = Vec::new();
        let mut page = PageRequest::first(3);
        loop {
            let got = store
                .orgs_of_user(&owner.user.id, &page)
                .await
                .expect("page");
            assert!(got.items.len() <= 3);
            assert!(got.items.iter().all(|(_, role)| *role == Role::Owner));
            seen.extend(got.items.into_iter().map(|(org, _)| org.id));
            match got.next_cursor {
                Some(cursor) => page = PageRequest::parse(Some(3), Some(&cursor)).expect("cursor"),
                None => break,
            }
        }
        assert_eq!(seen, made);
    }

    pub async fn members_are_added_re_roled_and_removed(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let ann = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        add(&*store, &org, &ann, Role::Member, &owner.user.id).await;
        let again = store
            .set_member_role(
                &membership(&org.id, &ann, Role::Admin),
                None,
                &audit(&org.id, &owner.user.id, "member.added"),
            )
            .await;
        assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
        let read = store
            .member(&org.id, &ann.user.id)
            .await
            .expect("read")
            .expect("member");
        assert_eq!(
            (read.role, read.email.clone()),
            (Role::Member, ann.user.email.clone())
        );
        assert_eq!(
            store
                .org_for_member(&org.id, &ann.user.id)
                .await
                .expect("read")
                .map(|(_, r)| r),
            Some(Role::Member)
        );

        store
            .set_member_role(
                &membership(&org.id, &ann, Role::Admin),
                Some(Role::Member),
                &audit(&org.id, &owner.user.id, "member.role_changed"),
            )
            .await
            .expect("promote");
        let stale = store
            .set_member_role(
                &membership(&org.id, &ann, Role::Owner),
                Some(Role::Member),
                &audit(&org.id, &owner.user.id, "member.role_changed"),
            )
            .await;
        assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
        let mine = store
            .orgs_of_user(&ann.user.id, &PageRequest::first(10))
            .await
            .expect("orgs");
        assert_eq!(
            mine.items
                .iter()
                .map(|(o, r)| (o.id.clone(), *r))
                .collect::<Vec<_>>(),
            vec![(org.id.clone(), Role::Admin)]
        );

        let listed = store
            .members(&org.id, &PageRequest::first(10))
            .await
            .expect("members");
        assert_eq!(listed.items.len(), 2);
        store
            .remove_member(
                &org.id,
                &ann.user.id,
                Role::Admin,
                &audit(&org.id, &owner.user.id, "member.removed"),
            )
            .await
            .expect("remove");
        assert!(
            store
                .member(&org.id, &ann.user.id)
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            store
                .orgs_of_user(&ann.user.id, &PageRequest::first(10))
                .await
                .expect("orgs")
                .items
                .is_empty()
        );
        let log = store
            .audit_log(&org.id, &PageRequest::first(10))
            .await
            .expect("log");
        let actions: Vec<_> = log.items.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "member.removed",
                "member.role_changed",
                "member.added",
                "org.created"
            ]
        );
    }

    pub async fn the_last_owner_cannot_go(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let second = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        let demote = store
            .set_member_role(
                &membership(&org.id, &owner, Role::Admin),
                Some(Role::Owner),
                &audit(&org.id, &owner.user.id, "member.role_changed"),
            )
            .await;
        assert!(matches!(demote, Err(StoreError::LastOwner)), "{demote:?}");
        let remove = store
            .remove_member(
                &org.id,
                &owner.user.id,
                Role::Owner,
                &audit(&org.id, &owner.user.id, "member.removed"),
            )
            .await;
        assert!(matches!(remove, Err(StoreError::LastOwner)), "{remove:?}");
        assert_eq!(owners(&*store, &org.id).await, 1);
        // Nothing of a refused change was written, not even its audit entry.
        assert_eq!(
            store
                .audit_log(&org.id, &PageRequest::first(10))
                .await
                .expect("log")
                .items
                .len(),
            1
        );

        add(&*store, &org, &second, Role::Owner, &owner.user.id).await;
        store
            .set_member_role(
                &membership(&org.id, &owner, Role::Member),
                Some(Role::Owner),
                &audit(&org.id, &owner.user.id, "member.role_changed"),
            )
            .await
            .expect("one of two owners steps down");
        let last = store
            .remove_member(
                &org.id,
                &second.user.id,
                Role::Owner,
                &audit(&org.id, &second.user.id, "member.removed"),
            )
            .await;
        assert!(matches!(last, Err(StoreError::LastOwner)), "{last:?}");
        assert_eq!(owners(&*store, &org.id).await, 1);
    }

    pub async fn owners_demoting_each_other_at_once_leave_one(store: Arc<dyn Store>) {
        for _ in 0..5 {
            let a = signed_up(&*store).await;
            let b = signed_up(&*store).await;
            let org = created(&*store, &a, "Race").await;
            add(&*store, &org, &b, Role::Owner, &a.user.id).await;
            let demote = |target: UserRecord, actor: UserId| {
                let store = Arc::clone(&store);
                let org = org.id.clone();
                tokio::spawn(async move {
                    store
                        .set_member_role(
                            &membership(&org, &target, Role::Admin),
                            Some(Role::Owner),
                            &audit(&org, &actor, "member.role_changed"),
                        )
                        .await
                })
            };
            let first = demote(a.clone(), b.user.id.clone());
            let second = demote(b.clone(), a.user.id.clone());
            let results = [first.await.expect("task"), second.await.expect("task")];
            let succeeded = results.iter().filter(|r| r.is_ok()).count();
            for result in &results {
                assert!(
                    matches!(
                        result,
                        Ok(()) | Err(StoreError::LastOwner) | Err(StoreError::Conflict)
                    ),
                    "{result:?}"
                );
            }
            assert_eq!(succeeded, 1, "{results:?}");
            assert_eq!(owners(&*store, &org.id).await, 1);
        }
    }

    pub async fn a_deleted_org_is_gone_but_its_log_stays(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let ann = signed_up(&*store).await;
        let mut org = created(&*store, &owner, "Acme").await;
        add(&*store, &org, &ann, Role::Admin, &owner.user.id).await;
        org.name = "Acme Inc".into();
        org.rate_limit_rpm = Some(600);
        store
            .update_org(&org, &audit(&org.id, &owner.user.id, "org.updated"))
            .await
            .expect("update");
        assert_eq!(
            store
                .org_for_member(&org.id, &ann.user.id)
                .await
                .expect("read")
                .map(|(o, _)| o),
            Some(org.clone())
        );
        org.rate_limit_rpm = None;
        store
            .update_org(&org, &audit(&org.id, &owner.user.id, "org.updated"))
            .await
            .expect("update");
        assert_eq!(
            store
                .org_for_member(&org.id, &ann.user.id)
                .await
                .expect("read")
                .map(|(o, _)| o.rate_limit_rpm),
            Some(None)
        );

        store
            .delete_org(&org.id, &audit(&org.id, &owner.user.id, "org.deleted"))
            .await
            .expect("delete");
        assert!(
            store
                .org_for_member(&org.id, &owner.user.id)
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            store
                .member(&org.id, &ann.user.id)
                .await
                .expect("read")
                .is_none()
        );
        for user in [&owner, &ann] {
            assert!(
                store
                    .orgs_of_user(&user.user.id, &PageRequest::first(10))
                    .await
                    .expect("orgs")
                    .items
                    .is_empty()
            );
        }
        let log = store
            .audit_log(&org.id, &PageRequest::first(10))
            .await
            .expect("log");
        assert_eq!(
            log.items.first().map(|e| e.action.as_str()),
            Some("org.deleted")
        );
        assert_eq!(log.items.len(), 5);
    }

    pub async fn the_audit_log_pages_newest_first(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        for i in 0..6 {
            let mut renamed = org.clone();
            renamed.name = format!("Acme {i}");
            store
                .update_org(
                    &renamed,
                    &audit(&org.id, &owner.user.id, &format!("org.updated.{i}")),
                )
                .await
                .expect("update");
        }
        let mut actions = Vec::new();
        let mut page = PageRequest::first(4);
        loop {
            let got = store.audit_log(&org.id, &page).await.expect("log");
            actions.extend(got.items.iter().map(|e| e.action.clone()));
            match got.next_cursor {
                Some(cursor) => page = PageRequest::parse(Some(4), Some(&cursor)).expect("cursor"),
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..6).rev().map(|i| format!("org.updated.{i}")).collect();
        expected.push("org.created".into());
        assert_eq!(actions, expected);
    }
}

/// The API-key cases.
pub(super) mod key_cases {
    use super::orgs::*;
    use super::*;
    use crate::auth::ApiKeySecret;
    use crate::domain::{ApiKey, ApiKeyId, OrgId, PageRequest};

    pub(in crate::store) fn new_key(org: &OrgId, name: &str) -> (ApiKey, ApiKeySecret) {
        let secret = ApiKeySecret::generate();
        let key = ApiKey {
            id: ApiKeyId::generate(),
            org_id: org.clone(),
            team_id: None,
            name: name.into(),
            prefix: secret.display_prefix(),
            created_at: now(),
            expires_at: Some(now() + Duration::days(7)),
            last_used_at: None,
            rate_limit_rpm: Some(120),
            revoked_at: None,
        };
        (key, secret)
    }

    pub async fn api_keys_are_found_by_hash_listed_and_revoked(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        let other = created(&*store, &owner, "Other").await;
        let (first, first_secret) = new_key(&org.id, "first");
        let (second, _) = new_key(&org.id, "second");
        for (key, secret) in [
            (&first, &first_secret),
            (&second, &ApiKeySecret::generate()),
        ] {
            store
                .create_api_key(
                    key,
                    &secret.hash(),
                    &audit(&org.id, &owner.user.id, "api_key.created"),
                )
                .await
                .expect("create");
        }
        assert_eq!(
            store
                .api_key_by_hash(&first_secret.hash())
                .await
                .expect("read"),
            Some(first.clone())
        );
        assert!(
            store
                .api_key_by_hash(&ApiKeySecret::generate().hash())
                .await
                .expect("read")
                .is_none()
        );
        let listed = store
            .api_keys(&org.id, &PageRequest::first(1))
            .await
            .expect("list");
        assert_eq!(listed.items, vec![second.clone()]);
        let rest = store
            .api_keys(&org.id, &listed.next(1).expect("more"))
            .await
            .expect("list");
        assert_eq!(rest.items, vec![first.clone()]);
        assert!(
            store
                .api_keys(&other.id, &PageRequest::first(10))
                .await
                .expect("list")
                .items
                .is_empty()
        );

        // Another org cannot revoke it; its own org can, once.
        let at = now();
        let foreign = store
            .revoke_api_key(
                &other.id,
                &first.id,
                at,
                &audit(&other.id, &owner.user.id, "api_key.revoked"),
            )
            .await;
        assert_eq!(foreign.expect("revoke"), Revoked::NotFound);
        let revoked = store
            .revoke_api_key(
                &org.id,
                &first.id,
                at,
                &audit(&org.id, &owner.user.id, "api_key.revoked"),
            )
            .await;
        assert_eq!(revoked.expect("revoke"), Revoked::Now);
        let again = store
            .revoke_api_key(
                &org.id,
                &first.id,
                at,
                &audit(&org.id, &owner.user.id, "api_key.revoked"),
            )
            .await;
        assert_eq!(again.expect("revoke"), Revoked::Already);
        let read = store
            .api_key_by_hash(&first_secret.hash())
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(read.revoked_at, Some(at));
        assert!(!read.is_active(now()));
        let actions: Vec<String> = store
            .audit_log(&org.id, &PageRequest::first(10))
            .await
            .expect("log")
            .items
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions,
            [
                "api_key.revoked",
                "api_key.created",
                "api_key.created",
                "org.created"
            ]
        );

        store
            .touch_api_key(&org.id, &second.id, at)
            .await
            .expect("touch");
        let listed = store
            .api_keys(&org.id, &PageRequest::first(10))
            .await
            .expect("list");
        assert_eq!(listed.items[0].last_used_at, Some(at));
    }

    pub async fn a_deleted_orgs_keys_stop_authenticating(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let org = created(&*store, &owner, "Doomed").await;
        let (key, secret) = new_key(&org.id, "k");
        store
            .create_api_key(
                &key,
                &secret.hash(),
                &audit(&org.id, &owner.user.id, "api_key.created"),
            )
            .await
            .expect("create");
        store
            .delete_org(&org.id, &audit(&org.id, &owner.user.id, "org.deleted"))
            .await
            .expect("delete");
        assert!(
            store
                .api_key_by_hash(&secret.hash())
                .await
                .expect("read")
                .is_none()
        );
    }
}

/// The usage cases.
mod usage_cases {
    use super::*;
    use crate::domain::{ApiKeyId, OrgId, UsageEvent};

    fn event(org: &OrgId, id: &str, quantity: u64) -> UsageEvent {
        UsageEvent {
            id: id.into(),
            org_id: org.clone(),
            key_id: ApiKeyId::generate(),
            meter: "requests".into(),
            quantity,
            timestamp: now(),
            properties: serde_json::json!({"path": "/v1/things"})
                .as_object()
                .cloned(),
        }
    }

    pub async fn usage_events_are_recorded_once_per_org_and_id(store: Arc<dyn Store>) {
        let (a, b) = (OrgId::generate(), OrgId::generate());
        let first = vec![event(&a, "e1", 1), event(&a, "e2", 5), event(&b, "e1", 7)];
        assert_eq!(store.apply_usage(&first).await.expect("record"), 3);
        let again = vec![event(&a, "e2", 99), event(&a, "e3", 2)];
        assert_eq!(store.apply_usage(&again).await.expect("record"), 1);
        assert_eq!(
            store.usage_event(&a, "e2").await.expect("read"),
            Some(first[1].clone())
        );
        assert_eq!(
            store
                .usage_event(&b, "e1")
                .await
                .expect("read")
                .map(|e| e.quantity),
            Some(7)
        );
        assert!(store.usage_event(&b, "e2").await.expect("read").is_none());
    }

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, hour, minute, 0)
            .single()
            .expect("time")
    }

    fn timed(org: &OrgId, id: &str, meter: &str, quantity: u64, when: DateTime<Utc>) -> UsageEvent {
        UsageEvent {
            meter: meter.into(),
            timestamp: when,
            properties: None,
            ..event(org, id, quantity)
        }
    }

    pub async fn counters_add_up_per_hour_day_and_month(store: Arc<dyn Store>) {
        use crate::domain::Granularity;
        let org = OrgId::generate();
        let events = vec![
            timed(&org, "a", "requests", 2, at(10, 5)),
            timed(&org, "b", "requests", 3, at(10, 55)),
            timed(&org, "c", "requests", 5, at(11, 0)),
            timed(&org, "d", "tokens", 100, at(11, 30)),
            timed(&org, "a", "requests", 2, at(10, 5)), // repeated within the batch
        ];
        assert_eq!(store.apply_usage(&events).await.expect("apply"), 4);
        // Redelivered out of order, with one new event: only the new one counts.
        let again = vec![
            events[2].clone(),
            timed(&org, "e", "tokens", 1, at(23, 59)),
            events[0].clone(),
        ];
        assert_eq!(store.apply_usage(&again).await.expect("apply"), 1);

        let (from, to) = (at(0, 0), at(23, 59) + Duration::minutes(1));
        let hours = store
            .usage_series(&org, Granularity::Hour, from, to, None)
            .await
            .expect("series");
        let rows: Vec<(u32, &str, u64)> = hours
            .iter()
            .map(|p| {
                (
                    chrono::Timelike::hour(&p.period_start),
                    p.meter.as_str(),
                    p.quantity,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (10, "requests", 5),
                (11, "requests", 5),
                (11, "tokens", 100),
                (23, "tokens", 1)
            ]
        );
        let days = store
            .usage_series(&org, Granularity::Day, from, to, None)
            .await
            .expect("series");
        assert_eq!(
            days.iter()
                .map(|p| (p.meter.as_str(), p.quantity))
                .collect::<Vec<_>>(),
            [("requests", 10), ("tokens", 101)]
        );
        let month_start = Utc
            .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
            .single()
            .expect("t");
        let months = store
            .usage_series(&org, Granularity::Month, month_start, to, Some("tokens"))
            .await
            .expect("series");
        assert_eq!(months.iter().map(|p| p.quantity).collect::<Vec<_>>(), [101]);
        // The window is half-open and other orgs are invisible.
        let morning = store
            .usage_series(&org, Granularity::Hour, from, at(11, 0), None)
            .await
            .expect("series");
        assert_eq!(morning.len(), 1);
        assert!(
            store
                .usage_series(&OrgId::generate(), Granularity::Day, from, to, None)
                .await
                .expect("series")
                .is_empty()
        );
    }

    pub async fn concurrent_redeliveries_count_each_event_once(store: Arc<dyn Store>) {
        use crate::domain::Granularity;
        let org = OrgId::generate();
        let events: Vec<UsageEvent> = (0..60)
            .map(|i| {
                timed(
                    &org,
                    &format!("r{i}"),
                    "requests",
                    1 + i % 3,
                    at(12, (i % 60) as u32),
                )
            })
            .collect();
        let expected: u64 = events.iter().map(|e| e.quantity).sum();
        let appliers = (0..4).map(|round| {
            let store = Arc::clone(&store);
            let mut batch = events.clone();
            batch.rotate_left(round * 15);
            tokio::spawn(async move { store.apply_usage(&batch).await })
        });
        let mut applied = 0;
        for applier in appliers {
            applied += applier.await.expect("task").expect("apply");
        }
        assert_eq!(applied, 60);
        let day = store
            .usage_series(&org, Granularity::Day, at(0, 0), at(23, 0), None)
            .await
            .expect("series");
        assert_eq!(day.iter().map(|p| p.quantity).sum::<u64>(), expected);
    }
}

mod billing_cases {
    use super::orgs::*;
    use super::*;
    use crate::domain::{OrgId, PageRequest, Plan, PlanId, PlanTerms, Subscription};

    fn plan(slug: &str, price_cents: u64) -> Plan {
        let terms: PlanTerms = serde_json::from_value(serde_json::json!({
            "name": slug, "price_cents": price_cents, "rate_limit_rpm": 600,
            "quotas": {"requests": 1000},
            "overage": {"requests": [{"up_to": null, "unit_amount_cents": 1}]}
        }))
        .expect("terms");
        terms.into_plan(
            PlanId::parse(&format!("pln_{slug}")).expect("id"),
            None,
            now(),
        )
    }

    pub async fn plans_are_bootstrapped_once_then_edited(store: Arc<dyn Store>) {
        let (org, admin) = (OrgId::generate(), UserId::generate());
        assert!(
            store
                .insert_plan_if_missing(&plan("pro", 2900))
                .await
                .expect("insert")
        );
        assert!(
            !store
                .insert_plan_if_missing(&plan("pro", 1))
                .await
                .expect("again"),
            "a second bootstrap keeps the first"
        );
        store
            .insert_plan_if_missing(&plan("free", 0))
            .await
            .expect("insert");
        let pro = store
            .plan(&plan("pro", 0).id)
            .await
            .expect("read")
            .expect("pro");
        assert_eq!(pro.price_cents, 2900);
        let mut edited = pro.clone();
        edited.price_cents = 3900;
        edited.archived = true;
        store
            .put_plan(&edited, &audit(&org, &admin, "plan.updated"))
            .await
            .expect("put");
        let all = store.plans().await.expect("list");
        assert_eq!(
            all.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["pln_free", "pln_pro"]
        );
        assert_eq!(all[1], edited);
        assert!(
            store
                .plan(&PlanId::parse("pln_none").expect("id"))
                .await
                .expect("read")
                .is_none()
        );
        let log = store
            .audit_log(&org, &PageRequest::first(10))
            .await
            .expect("log");
        assert_eq!(log.items.len(), 1);
    }

    fn subscription(org: &OrgId, version: u64) -> Subscription {
        let mut sub =
            Subscription::default_for(org, &PlanId::parse("pln_free").expect("id"), now());
        sub.switch_to(
            &PlanId::parse("pln_pro").expect("id"),
            now(),
            std::collections::BTreeMap::from([("requests".to_owned(), 7)]),
        );
        // A scheduled downgrade and the period's change count round-trip on every backend.
        sub.pending = Some(crate::domain::PlanSpan {
            plan_id: PlanId::parse("pln_free").expect("id"),
            from: now() + chrono::Duration::days(3),
            usage_at_start: std::collections::BTreeMap::new(),
        });
        sub.count_change(now());
        sub.version = version;
        sub
    }

    pub async fn subscriptions_are_written_at_their_version(store: Arc<dyn Store>) {
        let (org, user) = (OrgId::generate(), UserId::generate());
        assert!(store.subscription(&org).await.expect("read").is_none());
        let first = subscription(&org, 1);
        assert!(
            store
                .save_subscription(&first, &audit(&org, &user, "subscription.created"), None)
                .await
                .expect("save")
        );
        assert!(matches!(
            store
                .save_subscription(&first, &audit(&org, &user, "subscription.created"), None)
                .await,
            Err(StoreError::Conflict)
        ));
        let mut second = first.clone();
        second.version = 2;
        second.cancel_at = Some(now());
        store
            .save_subscription(&second, &audit(&org, &user, "subscription.updated"), None)
            .await
            .expect("save");
        assert!(matches!(
            store
                .save_subscription(&second, &audit(&org, &user, "subscription.updated"), None)
                .await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(store.subscription(&org).await.expect("read"), Some(second));
        let log = store
            .audit_log(&org, &PageRequest::first(10))
            .await
            .expect("log");
        assert_eq!(log.items.len(), 2, "refused writes leave no audit entry");
    }

    pub async fn a_webhook_event_applies_once(store: Arc<dyn Store>) {
        let (org, user) = (OrgId::generate(), UserId::generate());
        let event = format!("evt_{}", ulid::Ulid::new());
        let first = subscription(&org, 1);
        assert!(
            store
                .save_subscription(
                    &first,
                    &audit(&org, &user, "subscription.created"),
                    Some(&event)
                )
                .await
                .expect("save")
        );
        let mut replay = first.clone();
        replay.version = 2;
        replay.cancel_at = Some(now());
        assert!(
            !store
                .save_subscription(
                    &replay,
                    &audit(&org, &user, "subscription.updated"),
                    Some(&event)
                )
                .await
                .expect("replay"),
            "a replayed event is recognised"
        );
        assert_eq!(store.subscription(&org).await.expect("read"), Some(first));
        let log = store
            .audit_log(&org, &PageRequest::first(10))
            .await
            .expect("log");
        assert_eq!(log.items.len(), 1);
    }

    pub async fn racing_subscription_changes_let_one_win(store: Arc<dyn Store>) {
        let (org, user) = (OrgId::generate(), UserId::generate());
        let writers: Vec<_> = (0..6)
            .map(|_| {
                let store = Arc::clone(&store);
                let (org, user) = (org.clone(), user.clone());
                tokio::spawn(async move {
                    store
                        .save_subscription(
                            &subscription(&org, 1),
                            &audit(&org, &user, "subscription.created"),
                            None,
                        )
                        .await
                })
            })
            .collect();
        let mut won = 0;
        for writer in writers {
            match writer.await.expect("task") {
                Ok(true) => won += 1,
                Err(StoreError::Conflict) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(won, 1);
    }
}

macro_rules! conformance {
    ($backend:ident: $($case:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(super::open::$backend().await).await;
                }
            )+
        }
    };
}

macro_rules! every_backend {
    ($($case:ident),+ $(,)?) => {
        conformance!(sqlite: $($case),+);
        conformance!(postgres: $($case),+);
        conformance!(dynamodb: $($case),+);
    };
}

every_backend!(
    users_are_found_by_id_and_email,
    a_taken_email_is_refused_and_nothing_is_written,
    concurrent_signups_for_one_email_create_one_account,
    password_hashes_are_replaced,
    refresh_tokens_rotate_exactly_once,
    concurrent_exchanges_of_one_token_rotate_once,
    a_revoked_session_stops_its_tokens,
    revoking_other_sessions_keeps_the_current_one,
    a_revoked_access_token_stays_revoked,
    login_failures_count_within_a_window,
    concurrent_login_failures_are_all_counted,
    failure_counters_of_different_kinds_are_separate,
    ping_answers,
    an_org_is_visible_to_its_members_only,
    a_users_orgs_page_newest_first_exactly_once,
    members_are_added_re_roled_and_removed,
    the_last_owner_cannot_go,
    owners_demoting_each_other_at_once_leave_one,
    a_deleted_org_is_gone_but_its_log_stays,
    the_audit_log_pages_newest_first,
    api_keys_are_found_by_hash_listed_and_revoked,
    a_deleted_orgs_keys_stop_authenticating,
    usage_events_are_recorded_once_per_org_and_id,
    counters_add_up_per_hour_day_and_month,
    concurrent_redeliveries_count_each_event_once,
    plans_are_bootstrapped_once_then_edited,
    subscriptions_are_written_at_their_version,
    a_webhook_event_applies_once,
    racing_subscription_changes_let_one_win,
);

// Suites of later parts of the store, on the same macros and backends.
#[path = "conformance_api_keys.rs"]
mod api_keys_suite;
#[path = "conformance_invitations.rs"]
mod invitations_suite;
#[path = "conformance_one_time.rs"]
mod one_time_suite;
#[path = "conformance_teams.rs"]
mod teams_suite;
#[path = "conformance_usage.rs"]
mod usage_suite;
