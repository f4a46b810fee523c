//! `meterline-load`: drives `POST /v1/verify` and `POST /v1/events` with N concurrent clients
//! for T seconds against the real local server (Postgres store, Redis limiter, SQS usage queue),
//! feeds the queue through the real billing consumer (`meterline_billing::handle`) while it
//! runs, and then checks the books: every 2xx has exactly one counted event, resent events are
//! counted once, no key or org exceeded its rate limit, no org exceeded a hard quota, no 5xx.
//! Prints a summary table and exits non-zero when any check fails.
//!
//! ```sh
//! eval "$(bash infra/services.sh)"
//! cargo build --release -p meterline-local -p meterline-load
//! target/release/meterline-load --clients 64 --seconds 60
//! ```
//!
//! See `tests/load/README.md` for what each check means and every flag.

mod books;
mod consumer;
mod report;
mod setup;
mod stack;
mod traffic;

use anyhow::{Context as _, bail};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const HELP: &str = "\
meterline-load: N clients on /v1/verify and /v1/events for T seconds, then the books.

By default it starts everything it needs, isolated from anything else on the machine: a
private redis-server, a private moto_server (SQS), a fresh schema on the Postgres server and
the local server binary (`meterline`, built beside this one) configured with them.

  --clients N         concurrent clients (default 64)
  --seconds T         how long they run (default 60)
  --smoke             a short run for CI: 8 clients, 10 seconds
  --consumers N       concurrent billing consumers draining the queue meanwhile (default 4)
  --max-backlog N     clients wait while more than N usage messages are queued and not yet
                      counted (default 100; 0 = never wait). moto's cost per call grows with
                      the queue's length: without a bound the run collapses into a backlog
                      of ever slower calls
  --seed N            seed of the clients' choices (default: from the clock; printed); the
                      interleaving, and so the answers, still differ from run to run
  --server-bin PATH   the local server binary (default: `meterline` next to this binary,
                      else target/release/meterline)
  --postgres-url URL  Postgres server for the fresh schema (default $TEST_POSTGRES_URL, else
                      postgres://postgres:postgres@127.0.0.1:5432/postgres)
  --sqs-endpoint URL  use this SQS endpoint (e.g. the shared moto on http://127.0.0.1:4566)
                      instead of starting a private moto_server
  --moto-script PATH  what starts the private moto_server (default tests/load/moto_sqs.py:
                      infra/moto_server.py with SQS calls serialized and the clock read cheaply)
  --redis-server PATH redis-server binary (default: from PATH)
  --keep              keep the schema, queue and logs even when the books balance
  --drain-timeout S   longest wait for the queue to empty after the run (default 120)

Logs of this tool (the billing consumer's warnings) go to stderr, filtered by LOAD_LOG
(default warn,sqlx::query=error).

Against a server that is already running (setup still goes over HTTP):
  --url URL           the server; then the books need both of:
  --store-url URL     its STORE_URL
  --queue-url URL     its USAGE_QUEUE_URL (this tool becomes the queue's only consumer)
  --redis-url URL     optional: its REDIS_URL, to check the limiter's quota counters too
";

/// Everything the command line chooses.
#[derive(Debug, Clone)]
struct Args {
    clients: usize,
    seconds: u64,
    consumers: usize,
    max_backlog: u64,
    seed: u64,
    server_bin: Option<String>,
    postgres_url: String,
    sqs_endpoint: Option<String>,
    moto_script: String,
    redis_server: String,
    keep: bool,
    drain_timeout: Duration,
    url: Option<String>,
    store_url: Option<String>,
    queue_url: Option<String>,
    redis_url: Option<String>,
}

fn parse_args() -> anyhow::Result<Option<Args>> {
    let mut args = Args {
        clients: 64,
        seconds: 60,
        consumers: 4,
        max_backlog: 100,
        seed: u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(1),
        server_bin: None,
        postgres_url: std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into()),
        sqs_endpoint: None,
        moto_script: concat!(env!("CARGO_MANIFEST_DIR"), "/moto_sqs.py").into(),
        redis_server: "redis-server".into(),
        keep: false,
        drain_timeout: Duration::from_secs(120),
        url: None,
        store_url: None,
        queue_url: None,
        redis_url: None,
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let mut value = || {
            raw.next()
                .with_context(|| format!("{flag} needs a value (see --help)"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--clients" => args.clients = value()?.parse().context("--clients")?,
            "--seconds" => args.seconds = value()?.parse().context("--seconds")?,
            "--smoke" => {
                args.clients = 8;
                args.seconds = 10;
            }
            "--consumers" => args.consumers = value()?.parse().context("--consumers")?,
            "--max-backlog" => args.max_backlog = value()?.parse().context("--max-backlog")?,
            "--seed" => args.seed = value()?.parse().context("--seed")?,
            "--server-bin" => args.server_bin = Some(value()?),
            "--postgres-url" => args.postgres_url = value()?,
            "--sqs-endpoint" => args.sqs_endpoint = Some(value()?),
            "--moto-script" => args.moto_script = value()?,
            "--redis-server" => args.redis_server = value()?,
            "--keep" => args.keep = true,
            "--drain-timeout" => {
                args.drain_timeout =
                    Duration::from_secs(value()?.parse().context("--drain-timeout")?);
            }
            "--url" => args.url = Some(value()?.trim_end_matches('/').to_owned()),
            "--store-url" => args.store_url = Some(value()?),
            "--queue-url" => args.queue_url = Some(value()?),
            "--redis-url" => args.redis_url = Some(value()?),
            other => bail!("unknown argument {other} (see --help)"),
        }
    }
    if args.clients == 0 || args.seconds == 0 || args.consumers == 0 {
        bail!("--clients, --seconds and --consumers must be at least 1");
    }
    if args.url.is_some() && (args.store_url.is_none() || args.queue_url.is_none()) {
        bail!(
            "with --url the books need the server's --store-url and --queue-url (this tool drains the queue into the store through the billing consumer)"
        );
    }
    Ok(Some(args))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOAD_LOG")
                // sqlx's slow-statement warnings are the billing consumers' counter upserts
                // waiting on each other's row locks; the summary shows that time as a total.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx::query=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("meterline-load: {err:#}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("meterline-load: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// One whole run; `Ok(true)` when every check passed. Everything started here is stopped when
/// the stack is dropped, before this returns.
async fn run(args: Args) -> anyhow::Result<bool> {
    let stack = stack::Stack::start(&args).await?;
    eprintln!("{}", stack.describe());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients + 8)
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()
        .context("HTTP client")?;

    let setup_started = Instant::now();
    let tenants = setup::create(&http, &stack.base_url).await?;
    eprintln!(
        "setup: {} orgs, {} keys in {:.1} s",
        tenants.orgs.len(),
        tenants.keys.len(),
        setup_started.elapsed().as_secs_f64()
    );
    let tenants = Arc::new(tenants);

    let sending = Arc::new(AtomicBool::new(true));
    let backlog = Arc::new(consumer::Backlog::new(args.max_backlog));
    let consumers = consumer::start(
        stack.sqs.clone(),
        stack.queue_url.clone(),
        Arc::clone(&stack.store),
        args.consumers,
        Arc::clone(&sending),
        Arc::clone(&backlog),
    );
    let cpu_before = report::CpuSample::take(&stack.processes());
    let started = Instant::now();
    let records = traffic::run(
        &http,
        &stack.base_url,
        &tenants,
        args.clients,
        Duration::from_secs(args.seconds),
        args.seed,
        &backlog,
    )
    .await?;
    let elapsed = started.elapsed();
    let cpu_after = report::CpuSample::take(&stack.processes());
    sending.store(false, Ordering::Release);
    eprintln!(
        "load: {} requests in {:.1} s; draining the queue",
        records.len(),
        elapsed.as_secs_f64()
    );
    let drain_started = Instant::now();
    let consumed = consumers.finish(args.drain_timeout).await;
    let drain = drain_started.elapsed();

    let books = books::check(books::Inputs {
        tenants: &tenants,
        records: &records,
        consumed: &consumed,
        store: &stack.store,
        redis: stack.redis_url.as_deref(),
    })
    .await?;
    let summary = report::Summary {
        args: &args,
        stack: &stack,
        tenants: &tenants,
        records: &records,
        consumed: &consumed,
        books: &books,
        elapsed,
        drain,
        backlog: &backlog,
        cpu: cpu_after.since(&cpu_before, elapsed),
        server_log: stack.server_log_summary(),
    };
    println!("{summary}");
    let ok = books.ok();
    stack.finish(ok && !args.keep).await;
    Ok(ok)
}
