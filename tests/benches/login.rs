//! Login latency over HTTP on the local server with the production argon2id cost
//! (m=19456 KiB, t=2, p=1), on each store backend. Prints a table; no assertion.
//!
//! `cargo bench -p meterline-e2e --bench login` (Postgres and DynamoDB rows need
//! `eval "$(bash infra/services.sh)"` first; a backend that is not reachable panics).

use meterline_e2e::{Backend, Server, unique_email};
use std::time::{Duration, Instant};

const SAMPLES: usize = 20;

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    println!(
        "login latency, {SAMPLES} sequential logins after one warm-up (argon2id m=19456 t=2 p=1)"
    );
    println!("| backend  | median ms | p95 ms | min ms | max ms |");
    println!("|----------|-----------|--------|--------|--------|");
    for backend in [Backend::Sqlite, Backend::Postgres, Backend::Dynamodb] {
        let server = Server::start_with(backend, &[("AUTH_IP_LIMIT_PER_MIN", "0")]).await;
        let email = unique_email();
        server.signup(&email, "correct horse battery").await;
        server.login(&email, "correct horse battery").await;
        let mut samples: Vec<Duration> = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let started = Instant::now();
            server.login(&email, "correct horse battery").await;
            samples.push(started.elapsed());
        }
        samples.sort();
        let median = (samples[SAMPLES / 2 - 1] + samples[SAMPLES / 2]) / 2;
        let p95 = samples[(SAMPLES * 95).div_ceil(100) - 1];
        println!(
            "| {:<8} | {:>9.1} | {:>6.1} | {:>6.1} | {:>6.1} |",
            format!("{backend:?}").to_lowercase(),
            millis(median),
            millis(p95),
            millis(samples[0]),
            millis(samples[SAMPLES - 1]),
        );
    }
}
