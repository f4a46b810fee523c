//! The verify path in-process (no HTTP): authenticate a warm API key, check and count its
//! limits and quota, hand the event to a sink. Per-request median and p99 with the in-process
//! limiter and with Redis on loopback, and the store reads a warm request makes (target: 0);
//! then throughput: 64 tasks verifying at once for two seconds on the multi-threaded runtime.
//! The sink is a no-op so the table measures the hot path itself, not a store write.
//!
//! `cargo bench -p meterline-e2e --bench verify` (the Redis row needs
//! `eval "$(bash infra/services.sh)"` first).

use async_trait::async_trait;
use meterline::domain::UsageEvent;
use meterline::ratelimit::{Limiter, LocalLimiter, RedisLimiter};
use meterline::usage::{SinkError, UsageSink};
use meterline_e2e::{Backend, Server};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WARMUP: usize = 200;
const SAMPLES: usize = 5_000;
const TASKS: usize = 64;
const THROUGHPUT_FOR: Duration = Duration::from_secs(2);

struct NullSink;

#[async_trait]
impl UsageSink for NullSink {
    fn backend(&self) -> &'static str {
        "null"
    }
    async fn send(&self, _events: &[UsageEvent]) -> Result<(), SinkError> {
        Ok(())
    }
    async fn ping(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn run(name: &str, limiter: Arc<dyn Limiter>) {
    let settings = [
        ("AUTH_IP_LIMIT_PER_MIN", "0"),
        ("DEFAULT_ORG_RATE_LIMIT_RPM", "1000000"),
        ("DEFAULT_MONTHLY_QUOTA", "1000000000000"),
    ];
    let server = Server::start_on(
        Backend::Sqlite,
        &settings,
        limiter,
        Some(Arc::new(NullSink)),
    )
    .await;
    let keyed = server.keyed(json!({"name": "bench"})).await;
    let metering = server.state.metering.clone();
    let mut samples = Vec::with_capacity(SAMPLES);
    let mut reads_before = 0;
    for i in 0..WARMUP + SAMPLES {
        if i == WARMUP {
            reads_before = metering.store_reads();
        }
        let started = Instant::now();
        let key = metering.authenticate(&keyed.key).await.expect("key");
        let event = UsageEvent {
            id: format!("evt-{i}"),
            org_id: key.key.org_id.clone(),
            key_id: key.key.id.clone(),
            meter: "requests".into(),
            quantity: 1,
            timestamp: metering.now(),
            properties: None,
        };
        metering.meter(&key, &[event]).await.expect("allowed");
        if i >= WARMUP {
            samples.push(started.elapsed());
        }
    }
    let reads = metering.store_reads() - reads_before;
    samples.sort();
    let median = samples[SAMPLES / 2];
    let p99 = samples[SAMPLES * 99 / 100];
    // One org and key per task: an org may be allowed at most 1,000,000 requests a minute,
    // which 64 tasks on one key would exceed, and a refusal is not the path being measured.
    let mut keys = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        keys.push(server.keyed(json!({"name": "bench"})).await.key);
    }
    let per_second = throughput(&metering, &keys).await;
    println!(
        "| {name:<10} | {:>9.1} | {:>7.1} | {:>19.3} | {:>20.0} |",
        micros(median),
        micros(p99),
        reads as f64 / SAMPLES as f64,
        per_second
    );
}

/// Verified requests per second with [`TASKS`] tasks verifying at once, each with its own key.
async fn throughput(metering: &meterline::metering::Metering, keys: &[String]) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(task, key)| {
            let metering = metering.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let mut served = 0u64;
                while started.elapsed() < THROUGHPUT_FOR {
                    let key = metering.authenticate(&key).await.expect("key");
                    let event = UsageEvent {
                        id: format!("evt-{task}-{served}"),
                        org_id: key.key.org_id.clone(),
                        key_id: key.key.id.clone(),
                        meter: "requests".into(),
                        quantity: 1,
                        timestamp: metering.now(),
                        properties: None,
                    };
                    metering.meter(&key, &[event]).await.expect("allowed");
                    served += 1;
                }
                served
            })
        })
        .collect();
    let mut served = 0;
    for task in tasks {
        served += task.await.expect("task");
    }
    served as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    println!("verify path in-process, {SAMPLES} warm requests after {WARMUP} warm-up");
    println!("| limiter    | median µs | p99 µs  | store reads/request | verified/s, 64 tasks |");
    println!("|------------|-----------|---------|---------------------|----------------------|");
    run("in-process", Arc::new(LocalLimiter::new())).await;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("bench_{}:", ulid::Ulid::new().to_string().to_lowercase());
    let redis = RedisLimiter::connect(&url, &prefix)
        .await
        .expect("Redis on loopback");
    run("redis", Arc::new(redis)).await;
}
