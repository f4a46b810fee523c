//! Fault tests: a dependency goes away under a running server and comes back, and the same
//! server (never restarted) serves again.
//!
//! - Redis is killed, restarted on its port, then partitioned away: `RATE_LIMIT_FAIL_MODE=open`
//!   serves unlimited, `closed` answers 503; once Redis is back, limits apply again and
//!   `/v1/health` is 200.
//! - The SQS endpoint stops, then black-holes: `/v1/verify` and `/v1/events` answer 503 within
//!   the sink's timeouts; every 2xx's event is in the queue exactly once and no refused
//!   request's is, and billing counts exactly those; a refused request spends no quota.
//! - The store (Postgres, DynamoDB) stops, then black-holes: every kind of request is 503
//!   `service_unavailable`, never a 500 or a hang; a store call cut mid-flight (undelivered,
//!   answer lost, or never answered) is 503 too.
//! - A billing batch whose write died halfway (partly committed, or committed with its answer
//!   lost) is redelivered and every event counts once, on every backend.
//!
//! Backends are taken away through [`meterline_e2e::faults::Proxy`], never by stopping the
//! shared servers other tests use; Redis is a private redis-server really killed and restarted.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{Duration as Span, Utc};
use meterline::domain::{ApiKeyId, Granularity, OrgId, UsageEvent};
use meterline::ratelimit::{Limiter, LocalLimiter, RedisLimiter};
use meterline::store::Store;
use meterline::usage::{Admission, SqsSink, UsageSink};
use meterline_e2e::faults::{
    Cut, Proxy, dynamodb_endpoint, dynamodb_via, eventually, postgres_url, postgres_via, within,
};
use meterline_e2e::{Backend, PrivateRedis, Reply, Server, call, sqs};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Longest a request may take to be refused while a backend is stopped (connections refused).
const FAST: Duration = Duration::from_secs(8);
/// Longest a request may take to be refused while a backend is black-holed (timeouts).
const BOUNDED: Duration = Duration::from_secs(15);
/// Longest the server may take to notice a backend is back.
const RECOVERY: Duration = Duration::from_secs(20);

const OPEN_AUTH: (&str, &str) = ("AUTH_IP_LIMIT_PER_MIN", "0");

async fn verify(server: &Server, key: &str) -> Reply {
    server.metered("/v1/verify", Some(key), Value::Null).await
}

async fn events(server: &Server, key: &str, batch: &[(&str, u64)]) -> Reply {
    let events: Vec<Value> = batch
        .iter()
        .map(|(id, quantity)| json!({"id": id, "meter": "tokens", "quantity": quantity}))
        .collect();
    server
        .metered("/v1/events", Some(key), json!({ "events": events }))
        .await
}

/// `/v1/health` as it stands now: one round of checks answers for `HEALTH_TTL`, so this waits
/// that long first, and the answer is never one made before the fault was set up.
async fn health(server: &Server) -> Reply {
    tokio::time::sleep(meterline::http::HEALTH_TTL).await;
    server.get("/v1/health", None).await
}

/// Asserts `/v1/health` is 503 with `backend` (`store`, `limiter`, `queue`) down.
#[track_caller]
fn assert_down(reply: &Reply, backend: &str) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(
        reply.body["checks"][backend]["status"], "down",
        "{}",
        reply.body
    );
}

/// Waits until `/v1/health` is 200 again, without restarting anything.
async fn recovers(server: &Server) {
    eventually(RECOVERY, "/v1/health back to 200", || async {
        health(server).await.status == StatusCode::OK
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 1. Redis dies and comes back.

/// What a verify answers while Redis is away: served without limits (`open`) or refused.
#[track_caller]
fn assert_fail_mode(reply: &Reply, fail_mode: &str) {
    if fail_mode == "open" {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(
            reply.body["ratelimit"].is_null(),
            "no limit applied: {}",
            reply.body
        );
    } else {
        reply.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    }
}

/// Redis is killed and restarted on its port (memory lost), then partitioned away (through a
/// proxy) and reachable again, under one server that never restarts.
async fn redis_dies_and_comes_back(fail_mode: &str) {
    let mut redis = PrivateRedis::start().await;
    let proxy = Proxy::in_front_of(&redis.url()).await;
    let limiter: Arc<dyn Limiter> = Arc::new(
        RedisLimiter::connect(&proxy.rewrite(&redis.url()), "")
            .await
            .expect("redis"),
    );
    let settings = [OPEN_AUTH, ("RATE_LIMIT_FAIL_MODE", fail_mode)];
    let server = Server::start_on(Backend::Sqlite, &settings, limiter, None).await;
    // Two a minute: a refused key stays refused for 30 s, longer than the partition below.
    let keyed = server
        .keyed(json!({"name": "redis", "rate_limit_rpm": 2}))
        .await;
    let first = verify(&server, &keyed.key).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["ratelimit"]["remaining"], 1);

    redis.kill();
    assert_down(
        &within(FAST, "health, Redis killed", health(&server)).await,
        "limiter",
    );
    // More than the limit of 2: with `open`, none is limited while Redis is away.
    for _ in 0..4 {
        let reply = within(FAST, "verify, Redis killed", verify(&server, &keyed.key)).await;
        assert_fail_mode(&reply, fail_mode);
    }

    // Back on the same port, empty; the same server, limiter and connection manager.
    redis.restart().await;
    recovers(&server).await;
    let mut remaining = Vec::new();
    for _ in 0..2 {
        let reply = verify(&server, &keyed.key).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        remaining.push(reply.body["ratelimit"]["remaining"].clone());
    }
    assert_eq!(remaining, [json!(1), json!(0)], "limits apply again");
    verify(&server, &keyed.key)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");

    // A partition: Redis holds the connection and never answers. Bounded by the limiter's
    // timeouts, then the fail mode again.
    proxy.blackhole();
    assert_down(
        &within(FAST, "health, Redis silent", health(&server)).await,
        "limiter",
    );
    for _ in 0..2 {
        let reply = within(FAST, "verify, Redis silent", verify(&server, &keyed.key)).await;
        assert_fail_mode(&reply, fail_mode);
    }
    proxy.resume();
    recovers(&server).await;
    // Redis kept its state this time: the key is still over its limit.
    verify(&server, &keyed.key)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[tokio::test]
async fn redis_down_fail_open_serves_unlimited_then_limits_again() {
    redis_dies_and_comes_back("open").await;
}

#[tokio::test]
async fn redis_down_fail_closed_refuses_then_serves_again() {
    redis_dies_and_comes_back("closed").await;
}

// ---------------------------------------------------------------------------------------
// 2. The SQS endpoint stops.

#[tokio::test]
async fn a_queue_outage_loses_nothing_and_recovers() {
    let direct = sqs::client().await;
    let url = sqs::fresh_queue(&direct, "faults").await;
    let proxy = Proxy::in_front_of(&sqs::endpoint()).await;
    let config = meterline_e2e::faults::aws_config_at(&proxy.endpoint()).await;
    // The production sink settings (timeouts, no SDK retries) on a client through the proxy.
    let sink: Arc<dyn UsageSink> = Arc::new(SqsSink::connect_with(&config, &url));
    let server = Server::start_on(
        Backend::Sqlite,
        &[OPEN_AUTH],
        Arc::new(LocalLimiter::new()),
        Some(sink),
    )
    .await;
    let keyed = server.keyed(json!({"name": "queue"})).await;
    let mut verified = 0;
    let mut served_events: Vec<(&str, u64)> = Vec::new();

    for _ in 0..3 {
        assert_eq!(verify(&server, &keyed.key).await.status, StatusCode::OK);
        verified += 1;
    }
    let batch = [("a-1", 10), ("a-2", 20), ("a-3", 30)];
    let reply = events(&server, &keyed.key, &batch).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    served_events.extend(batch);
    assert_eq!(health(&server).await.status, StatusCode::OK);
    assert!(proxy.accepted() > 0, "the sink goes through the proxy");

    // Stopped: refused at once, nothing counted.
    proxy.stop();
    for _ in 0..2 {
        within(FAST, "verify, queue stopped", verify(&server, &keyed.key))
            .await
            .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    }
    within(
        FAST,
        "events, queue stopped",
        events(&server, &keyed.key, &[("b-1", 100), ("b-2", 200)]),
    )
    .await
    .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    assert_down(
        &within(FAST, "health, queue stopped", health(&server)).await,
        "queue",
    );

    // Black-holed: refused after the sink's timeouts, not never (both at once).
    proxy.blackhole();
    let (verified_then, events_then, report) = tokio::join!(
        within(
            BOUNDED,
            "verify, queue black-holed",
            verify(&server, &keyed.key)
        ),
        within(
            BOUNDED,
            "events, queue black-holed",
            events(&server, &keyed.key, &[("c-1", 1000)]),
        ),
        within(BOUNDED, "health, queue black-holed", health(&server)),
    );
    verified_then.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    events_then.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    assert_down(&report, "queue");

    // Back: the same server and sink serve again.
    proxy.resume();
    recovers(&server).await;
    for _ in 0..2 {
        assert_eq!(verify(&server, &keyed.key).await.status, StatusCode::OK);
        verified += 1;
    }
    let batch = [("d-1", 40), ("d-2", 50)];
    let reply = events(&server, &keyed.key, &batch).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    served_events.extend(batch);

    // The queue, read directly: each served event exactly once, no refused one.
    let mut records = Vec::new();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let out = direct
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
            let event: UsageEvent =
                serde_json::from_str(message.body().expect("body")).expect("a usage event");
            assert_eq!(event.key_id.as_str(), keyed.key_id);
            *ids.entry(event.id).or_default() += 1;
            records.push(record(message.message_id(), message.body()));
        }
    }
    direct
        .delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("delete queue");
    let verify_events: Vec<_> = ids
        .iter()
        .filter(|(id, _)| id.starts_with("evt_"))
        .collect();
    assert_eq!(verify_events.len(), verified, "one event per served verify");
    assert!(verify_events.iter().all(|(_, n)| **n == 1), "{ids:?}");
    let client_events: BTreeMap<&str, usize> = ids
        .iter()
        .filter(|(id, _)| !id.starts_with("evt_"))
        .map(|(id, n)| (id.as_str(), *n))
        .collect();
    let expected: BTreeMap<&str, usize> = served_events.iter().map(|(id, _)| (*id, 1)).collect();
    assert_eq!(
        client_events, expected,
        "served events once, refused ones never"
    );

    // And billing counts exactly the served requests and events.
    let store = meterline::store::testing::sqlite().await;
    let response =
        meterline_billing::handle(&*store, &admission(), sqs_event(records), Utc::now()).await;
    assert!(response.batch_item_failures.is_empty());
    let org = OrgId::parse(&keyed.org).expect("org id");
    let totals = totals(&*store, &org, Granularity::Month).await;
    let tokens: u64 = served_events.iter().map(|(_, q)| q).sum();
    assert_eq!(
        totals,
        BTreeMap::from([
            ("requests".to_owned(), verified as u64),
            ("tokens".into(), tokens)
        ])
    );
}

/// A request the queue refuses (503) spends nothing on the Redis limiter: its quota and event
/// ids are given back, so its retry is new and spends once; a resent served batch spends
/// nothing.
#[tokio::test]
async fn a_request_the_queue_refuses_spends_no_quota() {
    let direct = sqs::client().await;
    let url = sqs::fresh_queue(&direct, "refund").await;
    let proxy = Proxy::in_front_of(&sqs::endpoint()).await;
    let config = meterline_e2e::faults::aws_config_at(&proxy.endpoint()).await;
    let sink: Arc<dyn UsageSink> = Arc::new(SqsSink::connect_with(&config, &url));
    let redis = PrivateRedis::start().await;
    let limiter: Arc<dyn Limiter> = Arc::new(
        RedisLimiter::connect(&redis.url(), "")
            .await
            .expect("redis"),
    );
    let server = Server::start_on(
        Backend::Sqlite,
        &[OPEN_AUTH, ("DEFAULT_MONTHLY_QUOTA", "1000")],
        limiter,
        Some(sink),
    )
    .await;
    let keyed = server.keyed(json!({"name": "refund"})).await;
    let tokens_used = || async {
        let reply = server
            .metered(
                "/v1/verify",
                Some(&keyed.key),
                json!({"meter": "tokens", "quantity": 1}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["quota"]["used"].as_u64().expect("used")
    };
    let served = events(&server, &keyed.key, &[("a-1", 10)]).await;
    assert_eq!(served.status, StatusCode::ACCEPTED, "{}", served.body);

    proxy.stop();
    within(
        FAST,
        "events, queue stopped",
        events(&server, &keyed.key, &[("a-1", 10), ("b-1", 100)]),
    )
    .await
    .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    proxy.blackhole();
    within(
        BOUNDED,
        "events, queue black-holed",
        events(&server, &keyed.key, &[("b-1", 100)]),
    )
    .await
    .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    proxy.resume();
    recovers(&server).await;
    // 10 served, plus this probe's 1: the refused requests spent nothing.
    assert_eq!(tokens_used().await, 11);
    let retried = events(&server, &keyed.key, &[("a-1", 10), ("b-1", 100)]).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    assert_eq!(
        (
            retried.body["accepted"].as_u64(),
            retried.body["duplicates"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(tokens_used().await, 112);
    direct
        .delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("delete queue");
}

// ---------------------------------------------------------------------------------------
// 3. The store stops.

/// A proxy in front of `backend`'s test server and a fresh store through it.
async fn store_behind_proxy(backend: Backend) -> (Proxy, Arc<dyn Store>) {
    match backend {
        Backend::Postgres => {
            let proxy = Proxy::in_front_of(&postgres_url()).await;
            let store = postgres_via(&proxy).await;
            (proxy, store)
        }
        Backend::Dynamodb => {
            let proxy = Proxy::in_front_of(&dynamodb_endpoint()).await;
            let store = dynamodb_via(&proxy).await;
            (proxy, store)
        }
        Backend::Sqlite => unreachable!("a SQLite file cannot be stopped"),
    }
}

/// Every kind of request that needs the store answers 503 `service_unavailable` within
/// `limit`, all at once: bearer reads and writes, login, signup, metering with a warm and a
/// cold key, and `/v1/health` names the store.
async fn all_refused(server: &Server, token: &str, warm: &str, cold: &str, limit: Duration) {
    let email = meterline_e2e::unique_email();
    let signup = json!({"email": email, "password": "correct horse battery"});
    let (list, create, login, signup, warm, cold, batch, report) = tokio::join!(
        within(
            limit,
            "GET /v1/orgs",
            call(server, Method::GET, "/v1/orgs", token, Value::Null)
        ),
        within(
            limit,
            "POST /v1/orgs",
            call(
                server,
                Method::POST,
                "/v1/orgs",
                token,
                json!({"name": "Down"})
            ),
        ),
        within(
            limit,
            "login",
            server.attempt_login(&email, "correct horse battery")
        ),
        within(
            limit,
            "signup",
            server.post("/v1/auth/signup", signup, None)
        ),
        within(limit, "verify, warm key", verify(server, warm)),
        within(limit, "verify, cold key", verify(server, cold)),
        within(limit, "events", events(server, warm, &[("down-1", 1000)])),
        within(limit, "health", health(server)),
    );
    for reply in [list, create, login, signup, warm, cold, batch] {
        reply.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    }
    assert_down(&report, "store");
}

async fn a_store_outage_is_503_and_recovers(backend: Backend) {
    let (proxy, store) = store_behind_proxy(backend).await;
    let server = Server::start_over(store, &[OPEN_AUTH], Arc::new(LocalLimiter::new()), None).await;
    let keyed = server.keyed(json!({"name": "warm"})).await;
    let cold = call(
        &server,
        Method::POST,
        &format!("/v1/orgs/{}/api-keys", keyed.org),
        &keyed.owner.token,
        json!({"name": "cold"}),
    )
    .await;
    assert_eq!(cold.status, StatusCode::CREATED, "{}", cold.body);
    let cold = cold.body["key"].as_str().expect("key").to_owned();
    assert_eq!(verify(&server, &keyed.key).await.status, StatusCode::OK);
    let reply = events(&server, &keyed.key, &[("up-1", 5)]).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(health(&server).await.status, StatusCode::OK);
    assert!(proxy.accepted() > 0, "the store goes through the proxy");

    proxy.stop();
    all_refused(&server, &keyed.owner.token, &keyed.key, &cold, FAST).await;
    proxy.blackhole();
    all_refused(&server, &keyed.owner.token, &keyed.key, &cold, BOUNDED).await;

    proxy.resume();
    recovers(&server).await;
    let orgs = call(
        &server,
        Method::GET,
        "/v1/orgs",
        &keyed.owner.token,
        Value::Null,
    )
    .await;
    assert_eq!(orgs.status, StatusCode::OK, "{}", orgs.body);
    assert_eq!(orgs.body["data"][0]["id"], keyed.org.as_str());
    assert_eq!(verify(&server, &keyed.key).await.status, StatusCode::OK);
    assert_eq!(verify(&server, &cold).await.status, StatusCode::OK);
    let reply = events(&server, &keyed.key, &[("up-2", 7)]).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let fresh = server.account().await;
    assert!(fresh.id.starts_with("usr_"));

    // Only what was served is counted: 3 verifies and 2 event batches, none of the refused.
    let usage = call(
        &server,
        Method::GET,
        &format!("/v1/orgs/{}/usage?granularity=month", keyed.org),
        &keyed.owner.token,
        Value::Null,
    )
    .await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.body);
    assert_eq!(usage.body["totals"], json!({"requests": 3, "tokens": 12}));
}

/// A store call whose connection is cut while it runs (its request undelivered, its answer
/// lost, or no answer ever: a partition mid-call) is 503 `service_unavailable` within bounds,
/// not a 500 or a hang; the same server then serves again once the store is back.
async fn a_store_call_cut_mid_flight_is_503(backend: Backend) {
    // A transaction's first message: sent as text on every call, whatever the statement cache.
    let pattern = match backend {
        Backend::Postgres => "BEGIN",
        _ => "DynamoDB_20120810.TransactWriteItems",
    };
    let (proxy, store) = store_behind_proxy(backend).await;
    let server = Server::start_over(store, &[OPEN_AUTH], Arc::new(LocalLimiter::new()), None).await;
    let owner = server.account().await;
    let create = || {
        call(
            &server,
            Method::POST,
            "/v1/orgs",
            &owner.token,
            json!({"name": "Cut"}),
        )
    };
    for cut in [Cut::Undelivered, Cut::AnswerLost, Cut::Stalled] {
        proxy.cut_at(pattern, 1, cut);
        let reply = within(BOUNDED, &format!("POST /v1/orgs, {cut:?}"), create()).await;
        assert!(proxy.tripped(), "{cut:?}: the wire was cut");
        reply.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
        proxy.resume();
        recovers(&server).await;
        let reply = create().await;
        assert_eq!(reply.status, StatusCode::CREATED, "{cut:?}: {}", reply.body);
    }
}

/// One `psql -tAc` query on the test Postgres server (as `infra/services.sh` installs it).
fn psql(sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([postgres_url().as_str(), "-tAc", sql])
        .output()
        .expect("psql is required (run infra/services.sh)");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Postgres ends the session of a store call while it runs, as it does to every session on a
/// shutdown or failover (`pg_terminate_backend`: 57P01 "terminating connection due to
/// administrator command"): the request is 503, not 500, and the next one is served.
#[tokio::test]
async fn postgres_ending_a_session_mid_call_is_503() {
    let schema = format!("t_{}", ulid::Ulid::new().to_string().to_lowercase());
    let store = meterline::store::postgres::connect_in_schema(&postgres_url(), &schema)
        .await
        .expect("Postgres (run infra/services.sh)");
    let server = Server::start_over(
        Arc::new(store),
        &[OPEN_AUTH],
        Arc::new(LocalLimiter::new()),
        None,
    )
    .await;
    let owner = server.account().await;

    // Another session locks the orgs table, so creating an org waits inside Postgres.
    let mut locker = std::process::Command::new("psql")
        .args([postgres_url().as_str(), "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    let mut input = locker.stdin.take().expect("stdin");
    std::io::Write::write_all(
        &mut input,
        format!("BEGIN; LOCK TABLE {schema}.orgs IN ACCESS EXCLUSIVE MODE;\n").as_bytes(),
    )
    .expect("lock");
    let locked_by = format!(
        "SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = '{schema}' AND c.relname = 'orgs' AND l.granted \
         AND l.mode = 'AccessExclusiveLock'"
    );
    let mut holder = String::new();
    eventually(FAST, "the lock is taken", || {
        holder = psql(&locked_by);
        std::future::ready(!holder.is_empty())
    })
    .await;

    let request = tokio::spawn({
        let (server_url, token) = (
            server.request(Method::POST, "/v1/orgs"),
            owner.token.clone(),
        );
        async move {
            let response = server_url
                .bearer_auth(token)
                .json(&json!({"name": "Ended"}))
                .send()
                .await
                .expect("request sent");
            Reply::from(response).await
        }
    });
    let waiting =
        format!("SELECT pid FROM pg_stat_activity WHERE {holder} = ANY(pg_blocking_pids(pid))");
    let mut blocked = String::new();
    eventually(FAST, "the store call waits on the lock", || {
        blocked = psql(&waiting);
        std::future::ready(!blocked.is_empty())
    })
    .await;
    assert_eq!(
        psql(&format!("SELECT pg_terminate_backend({blocked})")),
        "t"
    );
    let reply = within(FAST, "the ended call", request)
        .await
        .expect("request task");
    std::io::Write::write_all(&mut input, b"ROLLBACK;\n").expect("unlock");
    drop(input);
    let _ = locker.wait();
    reply.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");

    let again = call(
        &server,
        Method::POST,
        "/v1/orgs",
        &owner.token,
        json!({"name": "Again"}),
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
}

/// Like `on_every_backend!`, for the backends a proxy can stand in front of (a SQLite file
/// cannot be stopped): `proxied::postgres::case` and `proxied::dynamodb::case`.
macro_rules! on_proxied_backends {
    ($($case:ident),+ $(,)?) => {
        mod proxied {
            mod postgres { $( #[tokio::test] async fn $case() { super::super::$case(meterline_e2e::Backend::Postgres).await } )+ }
            mod dynamodb { $( #[tokio::test] async fn $case() { super::super::$case(meterline_e2e::Backend::Dynamodb).await } )+ }
        }
    };
}

on_proxied_backends!(
    a_store_outage_is_503_and_recovers,
    a_store_call_cut_mid_flight_is_503,
    a_billing_write_cut_halfway_counts_once,
);

// ---------------------------------------------------------------------------------------
// 4. A billing batch retried after a crash halfway.

/// Quantities are `1 + COUNT_BASE * n`: a total modulo `COUNT_BASE` is how many events it
/// counts, so the totals show how many events the store took as new, not only their sum.
const COUNT_BASE: u64 = 100_000;

fn admission() -> Admission {
    Admission {
        lateness: Span::days(7),
        future_skew: Span::minutes(5),
    }
}

fn record(message_id: Option<&str>, body: Option<&str>) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = message_id.map(str::to_owned);
    record.body = body.map(str::to_owned);
    record
}

/// `count` distinct events of one org over three meters, then `duplicates` copies of some of
/// them (same id), shuffled deterministically.
fn usage_events(
    org: &OrgId,
    count: usize,
    duplicates: usize,
) -> (Vec<UsageEvent>, Vec<UsageEvent>) {
    let key = ApiKeyId::generate();
    let now = Utc::now();
    let mut random = meterline_e2e::Lcg(7);
    let meters = ["requests", "tokens", "images"];
    let unique: Vec<UsageEvent> = (0..count)
        .map(|i| UsageEvent {
            id: format!("half-{i}"),
            org_id: org.clone(),
            key_id: key.clone(),
            meter: meters[i % 3].into(),
            quantity: 1 + COUNT_BASE * random.next(9),
            timestamp: now - Span::minutes(random.next(3 * 24 * 60) as i64),
            properties: None,
        })
        .collect();
    let mut all = unique.clone();
    for _ in 0..duplicates {
        all.push(unique[random.next(count as u64) as usize].clone());
    }
    for i in (1..all.len()).rev() {
        all.swap(i, random.next(i as u64 + 1) as usize);
    }
    (unique, all)
}

fn batch_of(events: &[UsageEvent]) -> SqsEvent {
    let records = events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let body = serde_json::to_string(event).expect("json");
            record(Some(&format!("msg-{i}")), Some(&body))
        })
        .collect();
    sqs_event(records)
}

fn sqs_event(records: Vec<SqsMessage>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

/// Totals per meter over the last 40 days at `granularity`.
async fn totals(store: &dyn Store, org: &OrgId, granularity: Granularity) -> BTreeMap<String, u64> {
    let now = Utc::now();
    let mut totals = BTreeMap::new();
    for point in store
        .usage_series(
            org,
            granularity,
            now - Span::days(40),
            now + Span::days(1),
            None,
        )
        .await
        .expect("series")
    {
        *totals.entry(point.meter).or_default() += point.quantity;
    }
    totals
}

/// Events counted at every granularity (the same number at each, or the test fails).
async fn counted(store: &dyn Store, org: &OrgId) -> u64 {
    let mut counts = Vec::new();
    for granularity in Granularity::ALL {
        let totals = totals(store, org, granularity).await;
        counts.push(totals.values().map(|sum| sum % COUNT_BASE).sum::<u64>());
    }
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
    counts[0]
}

/// The counters are exactly the unique events' sums, at every granularity.
async fn assert_counted_once(store: &dyn Store, org: &OrgId, unique: &[UsageEvent]) {
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for event in unique {
        *expected.entry(event.meter.clone()).or_default() += event.quantity;
    }
    for granularity in Granularity::ALL {
        assert_eq!(
            totals(store, org, granularity).await,
            expected,
            "{granularity:?} totals"
        );
    }
    assert_eq!(counted(store, org).await, unique.len() as u64);
}

async fn a_batch_redelivered_after_a_crash_halfway_counts_once(backend: Backend) {
    let store: Arc<dyn Store> = match backend {
        Backend::Sqlite => meterline::store::testing::sqlite().await,
        Backend::Postgres => meterline::store::testing::postgres().await,
        Backend::Dynamodb => meterline::store::testing::dynamodb().await,
    };
    let client = sqs::client().await;
    let url = sqs::fresh_queue(&client, "crash").await;
    let org = OrgId::generate();
    // More than one DynamoDB transaction's worth (24 events), with duplicates inside the batch.
    let (unique, all) = usage_events(&org, 40, 8);
    SqsSink::new(client.clone(), &url)
        .send(&all)
        .await
        .expect("send");

    // One batch of every message, as Lambda hands over with a batching window.
    let receive = |visibility: i32| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let mut messages = Vec::new();
            loop {
                let out = client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .visibility_timeout(visibility)
                    .send()
                    .await
                    .expect("receive");
                if out.messages().is_empty() {
                    return messages;
                }
                messages.extend(out.messages().iter().cloned());
            }
        }
    };
    let first = receive(1).await;
    assert_eq!(first.len(), all.len());
    let decode = |messages: &[aws_sdk_sqs::types::Message]| -> Vec<UsageEvent> {
        messages
            .iter()
            .map(|m| serde_json::from_str(m.body().expect("body")).expect("event"))
            .collect()
    };

    // The invocation commits the first half of the batch, then dies: no answer, nothing deleted.
    let half = &decode(&first)[..all.len() / 2];
    let committed = store.apply_usage(half).await.expect("first half");
    assert!(committed > 0 && committed < unique.len() as u64);
    assert_eq!(counted(&*store, &org).await, committed);

    // SQS redelivers the whole batch once its visibility timeout is over.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = receive(30).await;
    let ids = |messages: &[aws_sdk_sqs::types::Message]| {
        let mut ids: Vec<String> = messages
            .iter()
            .map(|m| m.message_id().expect("id").to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&second), ids(&first), "the same messages, redelivered");
    let batch = sqs_event(
        second
            .iter()
            .map(|m| record(m.message_id(), m.body()))
            .collect(),
    );
    let response =
        meterline_billing::handle(&*store, &admission(), batch.clone(), Utc::now()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_counted_once(&*store, &org, &unique).await;

    // Applied, but the invocation died before SQS heard of it: delivered a third time.
    let response = meterline_billing::handle(&*store, &admission(), batch, Utc::now()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_counted_once(&*store, &org, &unique).await;
    client
        .delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("delete queue");
}

meterline_e2e::on_every_backend!(a_batch_redelivered_after_a_crash_halfway_counts_once);

/// The billing write of one batch (60 events, 10 duplicates) is cut on the wire halfway
/// (DynamoDB: at the second of its three transactions, before or after DynamoDB applied it;
/// Postgres: before the counters' upsert, or after the COMMIT with its answer lost): the
/// consumer reports the whole batch failed, and its redelivery counts each event once.
async fn a_billing_write_cut_halfway_counts_once(backend: Backend) {
    // (where the wire is cut, how, and how many events are committed when it is)
    let cuts: [(&str, usize, Cut, u64); 2] = match backend {
        Backend::Dynamodb => [
            (
                "DynamoDB_20120810.TransactWriteItems",
                2,
                Cut::Undelivered,
                24,
            ),
            (
                "DynamoDB_20120810.TransactWriteItems",
                2,
                Cut::AnswerLost,
                48,
            ),
        ],
        Backend::Postgres => [
            ("INSERT INTO usage_counters", 1, Cut::Undelivered, 0),
            ("COMMIT", 1, Cut::AnswerLost, 60),
        ],
        Backend::Sqlite => unreachable!("SQLite has no wire to cut"),
    };
    for (pattern, nth, cut, committed) in cuts {
        let (proxy, store) = store_behind_proxy(backend).await;
        let org = OrgId::generate();
        let (unique, all) = usage_events(&org, 60, 10);
        let batch = batch_of(&all);

        proxy.cut_at(pattern, nth, cut);
        let response = within(
            BOUNDED,
            "a batch whose store is cut off",
            meterline_billing::handle(&*store, &admission(), batch.clone(), Utc::now()),
        )
        .await;
        assert!(proxy.tripped(), "{cut:?} at {pattern}: the wire was cut");
        assert_eq!(
            response.batch_item_failures.len(),
            all.len(),
            "{cut:?}: the whole batch is retried"
        );

        proxy.resume();
        assert_eq!(
            counted(&*store, &org).await,
            committed,
            "{cut:?} at {pattern}: committed before the cut"
        );
        let response = meterline_billing::handle(&*store, &admission(), batch, Utc::now()).await;
        assert!(response.batch_item_failures.is_empty(), "{cut:?}");
        assert_counted_once(&*store, &org, &unique).await;
        // The dedup records are the events.
        for event in &unique {
            let recorded = store
                .usage_event(&org, &event.id)
                .await
                .expect("read")
                .unwrap_or_else(|| panic!("{} was not recorded", event.id));
            assert_eq!(
                (recorded.meter.as_str(), recorded.quantity),
                (event.meter.as_str(), event.quantity)
            );
        }
    }
}
