//! `/v1/health` needs no credentials, so a flood of it must not become a flood of backend
//! calls: one round of checks answers every request for a second.

use meterline::ratelimit::{Limiter, RedisLimiter};
use meterline_e2e::{Backend, PrivateRedis, Server};
use reqwest::StatusCode;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_are_shared_not_one_round_per_request() {
    let redis = PrivateRedis::start().await;
    let limiter: Arc<dyn Limiter> = Arc::new(
        RedisLimiter::connect(&redis.url(), "")
            .await
            .expect("redis"),
    );
    let server = Arc::new(Server::start_on(Backend::Sqlite, &[], limiter, None).await);
    let pings_before = redis.command_calls("ping").await;

    // A concurrent flood, then a sequential one, well inside a second.
    let started = std::time::Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let server = Arc::clone(&server);
        flood.spawn(async move { server.get("/v1/health", None).await });
    }
    let mut replies = flood.join_all().await;
    for _ in 0..20 {
        replies.push(server.get("/v1/health", None).await);
    }
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
    let elapsed = started.elapsed();
    let pings = redis.command_calls("ping").await - pings_before;
    // One round per started second at most (plus the one in flight at a boundary).
    let allowed = elapsed.as_secs() + 2;
    assert!(
        pings <= allowed,
        "{pings} limiter pings for 70 health requests in {elapsed:?}"
    );
    assert_eq!(replies[0].body["checks"]["limiter"]["backend"], "redis");

    // After a second, the next request checks again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let before = redis.command_calls("ping").await;
    assert_eq!(server.get("/v1/health", None).await.status, StatusCode::OK);
    assert_eq!(redis.command_calls("ping").await - before, 1);
}
