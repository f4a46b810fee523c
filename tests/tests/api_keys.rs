//! API-key management end to end over HTTP on every backend: created and shown once, listed
//! as metadata only, revoked, refused to the wrong roles and invisible to other orgs.

use meterline_e2e::{Server, call};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn keys_are_created_listed_and_revoked(backend: meterline_e2e::Backend) {
    let server = Server::start_with(backend, &[("AUTH_IP_LIMIT_PER_MIN", "0")]).await;
    let (owner, admin, member, outsider) = (
        server.account().await,
        server.account().await,
        server.account().await,
        server.account().await,
    );
    let org = server.org(&owner, "Keyed").await;
    let other = server.org(&outsider, "Other").await;
    for (who, role) in [(&admin, "admin"), (&member, "member")] {
        server.add_member(&owner, &org, who, role).await;
    }
    let keys = format!("/v1/orgs/{org}/api-keys");

    let created = call(
        &server,
        Method::POST,
        &keys,
        &owner.token,
        json!({"name": "production", "rate_limit_rpm": 120, "expires_at": "2099-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let secret = created.body["key"]
        .as_str()
        .expect("plaintext once")
        .to_owned();
    assert!(
        secret.starts_with("ml_live_") && secret.len() == 57,
        "{secret}"
    );
    assert_eq!(created.body["prefix"], &secret[..12]);
    assert_eq!(created.body["active"], true);
    // Org-wide unless scoped to a team (see tests/teams.rs for team keys).
    assert_eq!(created.body["team_id"], Value::Null);
    assert_eq!(created.body["rate_limit_rpm"], 120);
    assert_eq!(created.body["expires_at"], "2099-01-01T00:00:00.000Z");
    assert!(created.body.get("hash").is_none());
    let id = created.body["id"].as_str().expect("id").to_owned();

    let by_admin = call(
        &server,
        Method::POST,
        &keys,
        &admin.token,
        json!({"name": "staging"}),
    )
    .await;
    assert_eq!(by_admin.status, StatusCode::CREATED);
    call(
        &server,
        Method::POST,
        &keys,
        &member.token,
        json!({"name": "mine"}),
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    let invalid = call(
        &server,
        Method::POST,
        &keys,
        &owner.token,
        json!({"name": " ", "expires_at": "2001-01-01T00:00:00Z", "rate_limit_rpm": 0}),
    )
    .await;
    invalid.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(invalid.body["errors"].as_array().map(Vec::len), Some(3));

    // Listing: any member, metadata only, newest first; the key is never shown again.
    let listed = call(&server, Method::GET, &keys, &member.token, Value::Null).await;
    assert_eq!(listed.status, StatusCode::OK);
    let data = listed.body["data"].as_array().expect("data");
    assert_eq!(
        data.iter()
            .map(|k| k["name"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["staging", "production"]
    );
    assert!(!listed.body.to_string().contains(&secret[12..]));
    assert!(
        data.iter()
            .all(|k| k.get("key").is_none() && k.get("hash").is_none())
    );

    // Other orgs see nothing and touch nothing.
    for (method, path) in [
        (Method::GET, keys.clone()),
        (Method::POST, keys.clone()),
        (Method::DELETE, format!("{keys}/{id}")),
    ] {
        call(
            &server,
            method,
            &path,
            &outsider.token,
            json!({"name": "x"}),
        )
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
    }
    call(
        &server,
        Method::DELETE,
        &format!("/v1/orgs/{other}/api-keys/{id}"),
        &outsider.token,
        Value::Null,
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "api_key_not_found");

    // Revoking: owner or admin; again is harmless; unknown keys are 404.
    call(
        &server,
        Method::DELETE,
        &format!("{keys}/{id}"),
        &member.token,
        Value::Null,
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    for _ in 0..2 {
        let revoked = call(
            &server,
            Method::DELETE,
            &format!("{keys}/{id}"),
            &admin.token,
            Value::Null,
        )
        .await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    }
    call(
        &server,
        Method::DELETE,
        &format!("{keys}/key_01jzzzzzzzzzzzzzzzzzzzzzzz"),
        &owner.token,
        Value::Null,
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "api_key_not_found");
    let listed = call(&server, Method::GET, &keys, &owner.token, Value::Null).await;
    let states: Vec<(String, bool)> = listed.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap_or_default().to_owned(),
                k["active"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("staging".to_owned(), true),
            ("production".to_owned(), false)
        ]
    );

    // Creation and revocation are audited (once), with the key id as target.
    let log = call(
        &server,
        Method::GET,
        &format!("/v1/orgs/{org}/audit-log"),
        &owner.token,
        Value::Null,
    )
    .await;
    let keyed: Vec<(String, String)> = log.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("api_key."))
        })
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["actor_user_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keyed,
        [
            ("api_key.revoked".to_owned(), admin.id.clone()),
            ("api_key.created".to_owned(), admin.id.clone()),
            ("api_key.created".to_owned(), owner.id.clone())
        ]
    );
    assert!(
        !log.body.to_string().contains(&secret[12..]),
        "the secret never reaches the log"
    );
}

meterline_e2e::on_every_backend!(keys_are_created_listed_and_revoked);

/// A 204 means the key is revoked in the store. DynamoDB cancels a revocation that collides
/// with a concurrent write (the key's `last_used_at` touch); the test endpoint cancels the
/// first two attempts that way, then every attempt: the first revoke retries and lands (the
/// key is refused at once), and a revoke that cannot land answers 503 over a key that still
/// works, never 204.
#[tokio::test]
async fn dynamodb_a_revoke_answers_204_only_when_the_key_is_revoked() {
    use meterline::store::testing;
    let (store, table) = testing::dynamodb_table().await;
    let server = Server::start_over(
        store,
        &[],
        std::sync::Arc::new(meterline::ratelimit::LocalLimiter::new()),
        None,
    )
    .await;
    let verify = |key: String| {
        let server = &server;
        async move {
            server
                .metered("/v1/verify", Some(&key), json!({"meter": "tokens"}))
                .await
                .status
        }
    };
    let doomed = server.keyed(json!({"name": "doomed"})).await;
    let stubborn = server.keyed(json!({"name": "stubborn"})).await;
    assert_eq!(verify(doomed.key.clone()).await, StatusCode::OK);
    assert_eq!(verify(stubborn.key.clone()).await, StatusCode::OK);

    testing::arm_transaction_conflicts(&table, 2).await;
    let path = format!("/v1/orgs/{}/api-keys/{}", doomed.org, doomed.key_id);
    let revoked = call(
        &server,
        Method::DELETE,
        &path,
        &doomed.owner.token,
        json!(null),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    assert_eq!(verify(doomed.key.clone()).await, StatusCode::UNAUTHORIZED);

    testing::arm_transaction_conflicts(&table, 100).await;
    let path = format!("/v1/orgs/{}/api-keys/{}", stubborn.org, stubborn.key_id);
    let refused = call(
        &server,
        Method::DELETE,
        &path,
        &stubborn.owner.token,
        json!(null),
    )
    .await;
    testing::arm_transaction_conflicts(&table, 0).await;
    refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    assert_eq!(verify(stubborn.key.clone()).await, StatusCode::OK);
    let revoked = call(
        &server,
        Method::DELETE,
        &path,
        &stubborn.owner.token,
        json!(null),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    assert_eq!(verify(stubborn.key).await, StatusCode::UNAUTHORIZED);
}
