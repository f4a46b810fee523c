//! The metering hot path end to end over HTTP: verify and events with their headers and codes,
//! refused keys of every kind, rate limits, quotas, usage through SQS on moto (and a queue that
//! is down), one Redis script call per request, and the tower Layer.

use meterline::auth::ApiKeySecret;
use meterline::domain::OrgId;
use meterline::http::MeteringLayer;
use meterline::ratelimit::{Limiter, LocalLimiter, RedisLimiter};
use meterline::usage::{SqsSink, UsageSink};
use meterline_e2e::{Backend, Reply, Server, call};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

async fn verify_serves_counts_and_refuses(backend: Backend) {
    let server = Server::start_with(backend, &[("AUTH_IP_LIMIT_PER_MIN", "0")]).await;
    let keyed = server
        .keyed(json!({"name": "prod", "rate_limit_rpm": 5}))
        .await;

    let ok = server
        .metered("/v1/verify", Some(&keyed.key), Value::Null)
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(
        (
            ok.body["valid"].as_bool(),
            ok.body["org_id"].as_str(),
            ok.body["key_id"].as_str()
        ),
        (
            Some(true),
            Some(keyed.org.as_str()),
            Some(keyed.key_id.as_str())
        )
    );
    assert_eq!(
        (
            ok.body["ratelimit"]["limit"].as_u64(),
            ok.body["ratelimit"]["remaining"].as_u64()
        ),
        (Some(5), Some(4))
    );
    assert_eq!(
        (
            ok.body["quota"]["used"].as_u64(),
            ok.body["quota"]["limit"].as_u64()
        ),
        (Some(1), Some(1_000_000))
    );
    for header in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "ratelimit-policy",
        "ratelimit",
    ] {
        assert!(ok.headers.contains_key(header), "{header}");
    }
    assert_eq!(ok.headers["x-ratelimit-remaining"], "4");

    // A metered quantity of another meter.
    let tokens = server
        .metered(
            "/v1/verify",
            Some(&keyed.key),
            json!({"meter": "tokens", "quantity": 250}),
        )
        .await;
    assert_eq!(
        tokens.body["quota"]["used"].as_u64(),
        Some(250),
        "{}",
        tokens.body
    );
    let bad = server
        .metered(
            "/v1/verify",
            Some(&keyed.key),
            json!({"meter": "Bad Meter", "quantity": 0}),
        )
        .await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(bad.body["errors"].as_array().map(Vec::len), Some(2));

    // The key's limit of 5 per minute: 3 more pass (the refused 422 counted nothing), then
    // 429 with Retry-After and headers.
    for _ in 0..3 {
        assert_eq!(
            server
                .metered("/v1/verify", Some(&keyed.key), Value::Null)
                .await
                .status,
            StatusCode::OK
        );
    }
    let limited = server
        .metered("/v1/verify", Some(&keyed.key), Value::Null)
        .await;
    limited.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(limited.headers["x-ratelimit-remaining"], "0");

    // Refused keys: missing, malformed, mistyped, unknown.
    server
        .metered("/v1/verify", None, Value::Null)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_api_key");
    server
        .metered("/v1/verify", Some("ml_live_nope"), Value::Null)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_api_key");
    let mut typo = keyed.key.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).expect("ascii");
    server
        .metered("/v1/verify", Some(&typo), Value::Null)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_api_key");
    let unknown = ApiKeySecret::generate();
    server
        .metered("/v1/verify", Some(unknown.expose()), Value::Null)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_api_key");
}

async fn revoked_expired_and_deleted_keys_stop_at_once(backend: Backend) {
    let server = Server::start_with(backend, &[("AUTH_IP_LIMIT_PER_MIN", "0")]).await;
    let keyed = server.keyed(json!({"name": "a"})).await;
    // Warm the cache, then revoke: the very next request is refused.
    assert_eq!(
        server
            .metered("/v1/verify", Some(&keyed.key), Value::Null)
            .await
            .status,
        StatusCode::OK
    );
    let revoke = call(
        &server,
        Method::DELETE,
        &format!("/v1/orgs/{}/api-keys/{}", keyed.org, keyed.key_id),
        &keyed.owner.token,
        Value::Null,
    )
    .await;
    assert_eq!(revoke.status, StatusCode::NO_CONTENT);
    server
        .metered("/v1/verify", Some(&keyed.key), Value::Null)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "api_key_revoked");

    // Expiry.
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let reply = call(
        &server,
        Method::POST,
        &format!("/v1/orgs/{}/api-keys", keyed.org),
        &keyed.owner.token,
        json!({"name": "short", "expires_at": soon}),
    )
    .await;
    let short = reply.body["key"].as_str().expect("key").to_owned();
    assert_eq!(
        server
            .metered("/v1/verify", Some(&short), Value::Null)
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    server
        .metered("/v1/verify", Some(&short), Value::Null)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "api_key_expired");

    // A deleted org's keys: cached or not, they stop at once.
    let other = server.keyed(json!({"name": "b"})).await;
    assert_eq!(
        server
            .metered("/v1/verify", Some(&other.key), Value::Null)
            .await
            .status,
        StatusCode::OK
    );
    let deleted = call(
        &server,
        Method::DELETE,
        &format!("/v1/orgs/{}", other.org),
        &other.owner.token,
        Value::Null,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let refused = server
        .metered("/v1/verify", Some(&other.key), Value::Null)
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
}

async fn events_are_validated_and_recorded_once(backend: Backend) {
    let server = Server::start_with(backend, &[("AUTH_IP_LIMIT_PER_MIN", "0")]).await;
    let keyed = server.keyed(json!({"name": "events"})).await;
    let two_days_ago = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let batch = json!({"events": [
        {"id": "e-1", "meter": "tokens", "quantity": 40, "properties": {"model": "small"}},
        {"id": "e-2", "meter": "tokens", "quantity": 2, "timestamp": two_days_ago},
        {"id": "e-1", "meter": "tokens", "quantity": 40},
        {"id": "e-3", "meter": "images", "quantity": 1},
    ]});
    let accepted = server
        .metered("/v1/events", Some(&keyed.key), batch.clone())
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    assert_eq!(accepted.body["accepted"], 3);
    assert!(accepted.headers.contains_key("x-ratelimit-limit"));
    // Redelivered: recorded once.
    assert_eq!(
        server
            .metered("/v1/events", Some(&keyed.key), batch)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let org = OrgId::parse(&keyed.org).expect("org id");
    let store = &server.state.store;
    let first = store
        .usage_event(&org, "e-1")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!((first.meter.as_str(), first.quantity), ("tokens", 40));
    assert_eq!(
        first.properties.and_then(|p| p.get("model").cloned()),
        Some(json!("small"))
    );
    assert!(
        store
            .usage_event(&org, "e-3")
            .await
            .expect("read")
            .is_some()
    );

    let invalid = server
        .metered(
            "/v1/events",
            Some(&keyed.key),
            json!({"events": [
                {"id": "ok", "meter": "tokens", "quantity": 1},
                {"id": "", "meter": "Tokens", "quantity": -1, "timestamp": "yesterday"},
            ]}),
        )
        .await;
    invalid.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let fields: Vec<&str> = invalid.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "events[1].id",
            "events[1].meter",
            "events[1].quantity",
            "events[1].timestamp"
        ]
    );
    assert!(
        store.usage_event(&org, "ok").await.expect("read").is_none(),
        "a refused batch records nothing"
    );
    // Times billing would refuse are refused here, not dead-lettered later.
    let stale = (chrono::Utc::now() - chrono::Duration::days(8)).to_rfc3339();
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let out_of_window = server
        .metered(
            "/v1/events",
            Some(&keyed.key),
            json!({"events": [
                {"id": "old", "meter": "tokens", "quantity": 1, "timestamp": stale},
                {"id": "new", "meter": "tokens", "quantity": 1, "timestamp": future},
            ]}),
        )
        .await;
    out_of_window.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let fields: Vec<&str> = out_of_window.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["events[0].timestamp", "events[1].timestamp"]);
    for body in [
        json!({"events": []}),
        json!({"events": (0..1001).map(|i| json!({"id": format!("x{i}"), "meter": "m", "quantity": 1})).collect::<Vec<_>>()}),
        json!({}),
    ] {
        let reply = server.metered("/v1/events", Some(&keyed.key), body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.body
        );
    }
    server
        .metered("/v1/events", None, json!({"events": []}))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_api_key");
}

async fn the_quota_refuses_at_its_limit(backend: Backend) {
    let server = Server::start_with(
        backend,
        &[
            ("AUTH_IP_LIMIT_PER_MIN", "0"),
            ("DEFAULT_MONTHLY_QUOTA", "5"),
        ],
    )
    .await;
    let keyed = server.keyed(json!({"name": "q"})).await;
    let three = server
        .metered("/v1/verify", Some(&keyed.key), json!({"quantity": 3}))
        .await;
    assert_eq!(
        three.body["quota"]["remaining"].as_u64(),
        Some(2),
        "{}",
        three.body
    );
    let over = server
        .metered("/v1/verify", Some(&keyed.key), json!({"quantity": 3}))
        .await;
    over.assert_problem(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded");
    assert!(over.headers.contains_key("retry-after"));
    let exact = server
        .metered("/v1/verify", Some(&keyed.key), json!({"quantity": 2}))
        .await;
    assert_eq!(
        exact.body["quota"]["remaining"].as_u64(),
        Some(0),
        "{}",
        exact.body
    );
}

meterline_e2e::on_every_backend!(
    verify_serves_counts_and_refuses,
    revoked_expired_and_deleted_keys_stop_at_once,
    events_are_validated_and_recorded_once,
    the_quota_refuses_at_its_limit,
);

#[tokio::test]
async fn every_served_request_is_in_the_queue_exactly_once() {
    let client = meterline_e2e::sqs::client().await;
    let url = meterline_e2e::sqs::fresh_queue(&client, "usage").await;
    let sink: Arc<dyn UsageSink> = Arc::new(SqsSink::new(client.clone(), &url));
    let server = Server::start_on(
        Backend::Sqlite,
        &[("AUTH_IP_LIMIT_PER_MIN", "0")],
        Arc::new(LocalLimiter::new()),
        Some(sink),
    )
    .await;
    let keyed = server
        .keyed(json!({"name": "sqs", "rate_limit_rpm": 20}))
        .await;
    let mut served = 0;
    for _ in 0..25 {
        if server
            .metered("/v1/verify", Some(&keyed.key), Value::Null)
            .await
            .status
            == StatusCode::OK
        {
            served += 1;
        }
    }
    assert_eq!(served, 20);
    let mut ids = std::collections::HashSet::new();
    let mut messages = 0;
    loop {
        let out = client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        if out.messages().is_empty() {
            break;
        }
        for message in out.messages() {
            let event: Value = serde_json::from_str(message.body().expect("body")).expect("json");
            assert_eq!(event["key_id"], keyed.key_id.as_str());
            ids.insert(event["id"].as_str().expect("id").to_owned());
            messages += 1;
        }
    }
    assert_eq!((messages, ids.len()), (20, 20));
}

#[tokio::test]
async fn a_queue_that_is_down_means_503_and_nothing_served() {
    let client = meterline_e2e::sqs::client_at("http://127.0.0.1:1").await;
    let sink: Arc<dyn UsageSink> = Arc::new(SqsSink::new(
        client,
        "http://127.0.0.1:1/000000000000/usage",
    ));
    let server = Server::start_on(
        Backend::Sqlite,
        &[("AUTH_IP_LIMIT_PER_MIN", "0")],
        Arc::new(LocalLimiter::new()),
        Some(sink),
    )
    .await;
    let keyed = server.keyed(json!({"name": "down"})).await;
    let reply = server
        .metered("/v1/verify", Some(&keyed.key), Value::Null)
        .await;
    reply.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    let health = server.get("/v1/health", None).await;
    assert_eq!(
        health.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        health.body
    );
    assert_eq!(health.body["checks"]["queue"]["status"], "down");
}

#[tokio::test]
async fn each_verified_request_is_one_redis_script_call() {
    let redis = meterline_e2e::PrivateRedis::start().await;
    let limiter: Arc<dyn Limiter> = Arc::new(
        RedisLimiter::connect(&redis.url(), "")
            .await
            .expect("redis"),
    );
    let server = Server::start_on(
        Backend::Sqlite,
        &[("AUTH_IP_LIMIT_PER_MIN", "0")],
        limiter,
        None,
    )
    .await;
    let keyed = server.keyed(json!({"name": "redis"})).await;
    let before = redis.script_calls().await;
    for _ in 0..30 {
        assert_eq!(
            server
                .metered("/v1/verify", Some(&keyed.key), Value::Null)
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(redis.script_calls().await - before, 30);
}

#[tokio::test]
async fn the_layer_meters_an_operators_own_route() {
    let server = Server::start_with(Backend::Sqlite, &[("AUTH_IP_LIMIT_PER_MIN", "0")]).await;
    let keyed = server
        .keyed(json!({"name": "layer", "rate_limit_rpm": 2}))
        .await;
    let app: axum::Router = axum::Router::new()
        .route("/mine", axum::routing::get(|| async { "hello" }))
        .layer(MeteringLayer::new(server.state.metering.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let get = |key: Option<&str>| {
        let mut request = client.get(format!("{base}/mine"));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        async move { Reply::from(request.send().await.expect("send")).await }
    };
    let ok = get(Some(&keyed.key)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.headers["x-ratelimit-remaining"], "1");
    assert_eq!(get(Some(&keyed.key)).await.status, StatusCode::OK);
    get(Some(&keyed.key))
        .await
        .assert_problem_shape(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    get(None)
        .await
        .assert_problem_shape(StatusCode::UNAUTHORIZED, "invalid_api_key");
}

async fn redis_that_dies(settings: &[(&str, &str)]) -> (Server, meterline_e2e::Keyed) {
    let redis = meterline_e2e::PrivateRedis::start().await;
    let limiter: Arc<dyn Limiter> = Arc::new(
        RedisLimiter::connect(&redis.url(), "")
            .await
            .expect("redis"),
    );
    let server = Server::start_on(Backend::Sqlite, settings, limiter, None).await;
    let keyed = server.keyed(json!({"name": "fail-mode"})).await;
    assert_eq!(
        server
            .metered("/v1/verify", Some(&keyed.key), Value::Null)
            .await
            .status,
        StatusCode::OK
    );
    drop(redis); // Redis goes away under a warm server.
    (server, keyed)
}

#[tokio::test]
async fn with_redis_down_fail_open_serves_and_fail_closed_refuses() {
    let (open, keyed) = redis_that_dies(&[("AUTH_IP_LIMIT_PER_MIN", "0")]).await;
    let served = open
        .metered("/v1/verify", Some(&keyed.key), Value::Null)
        .await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.body);
    assert!(
        served.body["ratelimit"].is_null(),
        "no limit was applied: {}",
        served.body
    );

    let (closed, keyed) = redis_that_dies(&[
        ("AUTH_IP_LIMIT_PER_MIN", "0"),
        ("RATE_LIMIT_FAIL_MODE", "closed"),
    ])
    .await;
    closed
        .metered("/v1/verify", Some(&keyed.key), Value::Null)
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
}

#[tokio::test]
async fn last_used_at_is_recorded_off_the_request_path() {
    let server = Server::start_with(Backend::Sqlite, &[("AUTH_IP_LIMIT_PER_MIN", "0")]).await;
    let keyed = server.keyed(json!({"name": "touched"})).await;
    let keys = format!("/v1/orgs/{}/api-keys", keyed.org);
    let before = call(&server, Method::GET, &keys, &keyed.owner.token, Value::Null).await;
    assert!(before.body["data"][0]["last_used_at"].is_null());
    assert_eq!(
        server
            .metered("/v1/verify", Some(&keyed.key), Value::Null)
            .await
            .status,
        StatusCode::OK
    );
    for _ in 0..50 {
        let after = call(&server, Method::GET, &keys, &keyed.owner.token, Value::Null).await;
        if after.body["data"][0]["last_used_at"].is_string() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("last_used_at was never recorded");
}
