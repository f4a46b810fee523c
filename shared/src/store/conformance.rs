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
        let email = Email::parse(&unique_email()).expect("valid");
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
        let email = Email::parse(&unique_email()).expect("valid");
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
        for racer in racers {
            racer.await.expect("task").expect("record");
        }
        assert_eq!(
            store
                .login_failures(&email)
                .await
                .expect("read")
                .map(|f| f.count),
            Some(10)
        );
    }

    pub async fn ping_answers(store: Arc<dyn Store>) {
        store.ping().await.expect("ping");
        assert!(["sqlite", "postgres", "dynamodb"].contains(&store.backend()));
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
    ping_answers,
);
