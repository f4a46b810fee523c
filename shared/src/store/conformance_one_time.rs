//! Conformance cases for one-time secrets and email verification, run on every backend.

use super::open;

mod cases {
    use super::super::{now, signed_up};
    use crate::auth::TokenHash;
    use crate::store::{OneTimeRecord, Purpose, Store};
    use chrono::Duration;
    use std::sync::Arc;

    fn hash(text: &str) -> TokenHash {
        use sha2::{Digest, Sha256};
        TokenHash::from_stored(hex::encode(Sha256::digest(text.as_bytes())))
    }

    fn record(purpose: Purpose, subject: &str, secret: &str) -> OneTimeRecord {
        let now = now();
        OneTimeRecord {
            purpose,
            subject: subject.to_owned(),
            secret_hash: hash(secret),
            created_at: now,
            expires_at: now + Duration::minutes(30),
            attempts: 0,
            payload: Some(r#"{"verifier":"v"}"#.to_owned()),
        }
    }

    fn subject() -> String {
        ulid::Ulid::new().to_string()
    }

    pub async fn a_one_time_secret_is_stored_and_replaced(store: Arc<dyn Store>) {
        let subject = subject();
        let first = record(Purpose::PasswordReset, &subject, "first");
        store.put_one_time(&first).await.expect("put");
        assert_eq!(
            store
                .one_time(Purpose::PasswordReset, &subject)
                .await
                .expect("get"),
            Some(first.clone())
        );
        store
            .spend_one_time_attempt(Purpose::PasswordReset, &subject, 5)
            .await
            .expect("spend")
            .expect("counted");
        let second = OneTimeRecord {
            payload: None,
            ..record(Purpose::PasswordReset, &subject, "second")
        };
        store.put_one_time(&second).await.expect("replace");
        let stored = store
            .one_time(Purpose::PasswordReset, &subject)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(
            stored, second,
            "a new secret replaces the last, attempts and all"
        );
        assert!(
            !store
                .take_one_time(Purpose::PasswordReset, &subject, &first.secret_hash)
                .await
                .expect("take"),
            "the replaced secret no longer works"
        );
    }

    pub async fn purposes_do_not_share_secrets(store: Arc<dyn Store>) {
        let subject = subject();
        let reset = record(Purpose::PasswordReset, &subject, "s");
        store.put_one_time(&reset).await.expect("put");
        assert_eq!(
            store
                .one_time(Purpose::VerifyEmail, &subject)
                .await
                .expect("get"),
            None
        );
        assert!(
            !store
                .take_one_time(Purpose::VerifyEmail, &subject, &reset.secret_hash)
                .await
                .expect("take")
        );
        assert!(
            store
                .take_one_time(Purpose::PasswordReset, &subject, &reset.secret_hash)
                .await
                .expect("take")
        );
    }

    pub async fn a_secret_is_taken_once_and_only_with_its_hash(store: Arc<dyn Store>) {
        let subject = subject();
        let secret = record(Purpose::VerifyEmail, &subject, "s");
        store.put_one_time(&secret).await.expect("put");
        assert!(
            !store
                .take_one_time(Purpose::VerifyEmail, &subject, &hash("other"))
                .await
                .expect("take"),
            "a wrong hash takes nothing"
        );
        assert!(
            store
                .take_one_time(Purpose::VerifyEmail, &subject, &secret.secret_hash)
                .await
                .expect("take")
        );
        assert!(
            !store
                .take_one_time(Purpose::VerifyEmail, &subject, &secret.secret_hash)
                .await
                .expect("take again")
        );
        assert_eq!(
            store
                .one_time(Purpose::VerifyEmail, &subject)
                .await
                .expect("get"),
            None
        );
    }

    pub async fn racing_takes_let_exactly_one_win(store: Arc<dyn Store>) {
        let subject = subject();
        let secret = record(Purpose::OAuthState, &subject, "state");
        store.put_one_time(&secret).await.expect("put");
        let mut racers = Vec::new();
        for _ in 0..8 {
            let store = Arc::clone(&store);
            let subject = subject.clone();
            let hash = secret.secret_hash.clone();
            racers.push(tokio::spawn(async move {
                store
                    .take_one_time(Purpose::OAuthState, &subject, &hash)
                    .await
            }));
        }
        let mut won = 0;
        for racer in racers {
            if racer.await.expect("joined").expect("take") {
                won += 1;
            }
        }
        assert_eq!(won, 1);
    }

    pub async fn attempts_stop_at_the_limit_even_when_racing(store: Arc<dyn Store>) {
        let subject = subject();
        store
            .put_one_time(&record(Purpose::LoginCode, &subject, "123456"))
            .await
            .expect("put");
        let first = store
            .spend_one_time_attempt(Purpose::LoginCode, &subject, 5)
            .await
            .expect("spend")
            .expect("counted");
        assert_eq!(first.attempts, 1);
        let mut racers = Vec::new();
        for _ in 0..12 {
            let store = Arc::clone(&store);
            let subject = subject.clone();
            racers.push(tokio::spawn(async move {
                store
                    .spend_one_time_attempt(Purpose::LoginCode, &subject, 5)
                    .await
            }));
        }
        let mut counts = Vec::new();
        for racer in racers {
            if let Some(spent) = racer.await.expect("joined").expect("spend") {
                counts.push(spent.attempts);
            }
        }
        counts.sort_unstable();
        assert_eq!(
            counts,
            vec![2, 3, 4, 5],
            "exactly the four attempts left are counted"
        );
        assert_eq!(
            store
                .spend_one_time_attempt(Purpose::LoginCode, &subject, 5)
                .await
                .expect("spend"),
            None
        );
        assert_eq!(
            store
                .spend_one_time_attempt(Purpose::LoginCode, "nobody", 5)
                .await
                .expect("spend"),
            None,
            "no secret, no attempt"
        );
    }

    pub async fn an_email_is_marked_verified(store: Arc<dyn Store>) {
        let record = signed_up(store.as_ref()).await;
        assert!(!record.user.email_verified);
        store
            .set_email_verified(&record.user.id)
            .await
            .expect("verify");
        let stored = store
            .user_by_email(&record.user.email)
            .await
            .expect("read")
            .expect("exists");
        assert!(stored.user.email_verified);
        assert_eq!(
            stored.password_hash, record.password_hash,
            "nothing else changed"
        );
    }
}

every_backend!(
    a_one_time_secret_is_stored_and_replaced,
    purposes_do_not_share_secrets,
    a_secret_is_taken_once_and_only_with_its_hash,
    racing_takes_let_exactly_one_win,
    attempts_stop_at_the_limit_even_when_racing,
    an_email_is_marked_verified,
);
