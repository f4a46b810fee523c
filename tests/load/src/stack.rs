//! What a run talks to: the server (spawned from the release binary, or one given with `--url`),
//! its Postgres schema, Redis, and the SQS queue, each fresh and private to the run so runs
//! never mix with each other or with the test suites sharing the machine.

use crate::Args;
use crate::report::Process;
use anyhow::{Context as _, bail};
use meterline::store::Store;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The plan catalog of a spawned server. Every org starts on `pln_load_open` (no quota, a rate
/// far above what the machine can send); the quota orgs are moved to the `pln_load_quota_*`
/// plans, whose hard `tokens` (and `images`) quotas are used up during a run at different times;
/// `requests` on `pln_load_quota_s` has overage tiers, so it may pass its quota and is billed.
pub const PLANS_JSON: &str = r#"[
 {"id":"pln_load_open","name":"Load open","price_cents":0,"rate_limit_rpm":1000000},
 {"id":"pln_load_quota_s","name":"Load quota S","price_cents":0,"rate_limit_rpm":1000000,
  "quotas":{"tokens":1000,"requests":100},
  "overage":{"requests":[{"up_to":null,"unit_amount_cents":1}]}},
 {"id":"pln_load_quota_m","name":"Load quota M","price_cents":0,"rate_limit_rpm":1000000,
  "quotas":{"tokens":4000}},
 {"id":"pln_load_quota_l","name":"Load quota L","price_cents":0,"rate_limit_rpm":1000000,
  "quotas":{"tokens":12000,"images":150}}
]"#;

/// A child process stopped (killed and reaped) when dropped.
struct Owned {
    label: &'static str,
    child: Child,
}

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The services of one run.
pub struct Stack {
    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub base_url: String,
    /// The server's store, for the books (and for the billing consumer).
    pub store: Arc<dyn Store>,
    /// An SQS client for the queue's endpoint.
    pub sqs: aws_sdk_sqs::Client,
    /// The usage queue.
    pub queue_url: String,
    /// The SQS endpoint.
    pub sqs_endpoint: String,
    /// The limiter's Redis, when known (always, for a spawned server).
    pub redis_url: Option<String>,
    /// What the server runs on, for the report.
    pub store_label: String,
    /// Where logs go.
    pub dir: PathBuf,
    schema: Option<(String, String)>,
    owns_queue: bool,
    server_bin: Option<PathBuf>,
    // Dropped in this order: the server first, then what it uses.
    server: Option<Owned>,
    moto: Option<Owned>,
    redis: Option<Owned>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("no free loopback port")?
        .port())
}

async fn wait_port(port: u16, owned: &mut Owned, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Some(status) = owned.child.try_wait()? {
            bail!(
                "{} exited ({status}) before listening on {port}; its log {}:\n{}",
                owned.label,
                log.display(),
                tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{} did not listen on {port} within 60 s; its log {}:\n{}",
        owned.label,
        log.display(),
        tail(log)
    )
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<(std::fs::File, PathBuf)> {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).with_context(|| format!("{}", path.display()))?;
    Ok((file, path))
}

fn spawn(label: &'static str, command: &mut Command, log: &Path) -> anyhow::Result<Owned> {
    let file = std::fs::OpenOptions::new().append(true).open(log)?;
    let child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {label} ({command:?})"))?;
    Ok(Owned { label, child })
}

/// An SQS client for `endpoint` with static test credentials (like `tests/src/sqs.rs`).
async fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "meterline-load",
        ))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// The SQS endpoint of the environment: `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`, else moto's
/// default port.
fn env_sqs_endpoint() -> String {
    ["AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|url| !url.is_empty()))
        .unwrap_or_else(|| "http://127.0.0.1:4566".into())
}

/// The server binary: `--server-bin`, else `meterline` next to this executable (both built by
/// `cargo build --release`), else the workspace's `target/release/meterline`.
fn server_binary(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.server_bin {
        return Ok(PathBuf::from(path));
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("meterline")));
    let workspace = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/release/meterline"
    ));
    sibling
        .into_iter()
        .chain([workspace])
        .find(|path| path.is_file())
        .context(
            "the local server binary was not found: build it with \
             `cargo build --release -p meterline-local` (or pass --server-bin)",
        )
}

impl Stack {
    /// Starts (or connects to) everything the run needs.
    pub async fn start(args: &Args) -> anyhow::Result<Self> {
        let run = ulid::Ulid::new().to_string().to_lowercase();
        let dir = std::env::temp_dir().join(format!("meterline-load-{run}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        if let Some(url) = &args.url {
            return Self::external(args, url, dir).await;
        }
        let server_bin = server_binary(args)?;

        // A private Redis: the limiter has no key prefix setting, and flushing the shared
        // Redis would wipe other runs' and tests' state.
        let redis_port = free_port()?;
        let (_, redis_log) = log_file(&dir, "redis.log")?;
        let mut redis = spawn(
            "redis-server",
            Command::new(&args.redis_server).args([
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]),
            &redis_log,
        )
        .context("redis-server is required (run infra/services.sh)")?;
        wait_port(redis_port, &mut redis, &redis_log).await?;
        let redis_url = format!("redis://127.0.0.1:{redis_port}");

        // SQS: a private moto_server unless an endpoint is given, so a busy shared moto (one
        // Python process, DynamoDB requests serialized) cannot stall this run's sends, and
        // this run's load cannot stall other suites.
        let (sqs_endpoint, moto) = match &args.sqs_endpoint {
            Some(endpoint) => (endpoint.clone(), None),
            None => {
                let port = free_port()?;
                let (_, moto_log) = log_file(&dir, "moto.log")?;
                let mut moto = spawn(
                    "moto_server",
                    Command::new("python3").args([
                        args.moto_script.as_str(),
                        "-H",
                        "127.0.0.1",
                        "-p",
                        &port.to_string(),
                    ]),
                    &moto_log,
                )
                .context("python3 with moto[server] is required (run infra/services.sh)")?;
                wait_port(port, &mut moto, &moto_log).await?;
                (format!("http://127.0.0.1:{port}"), Some(moto))
            }
        };
        let sqs = sqs_client(&sqs_endpoint).await;
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("meterline-load-{run}"))
            .send()
            .await
            .with_context(|| format!("cannot create a queue on SQS at {sqs_endpoint}"))?
            .queue_url()
            .context("CreateQueue returned no URL")?
            .to_owned();

        // A fresh schema (migrated here, before the server starts).
        let schema = format!("load_{run}");
        let store = meterline::store::postgres::connect_in_schema(&args.postgres_url, &schema)
            .await
            .with_context(|| {
                format!(
                    "Postgres at {} is required (run infra/services.sh)",
                    args.postgres_url
                )
            })?;
        let separator = if args.postgres_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let store_url = format!(
            "{}{separator}options=-c%20search_path%3D{schema}",
            args.postgres_url
        );

        let port = free_port()?;
        let (_, server_log) = log_file(&dir, "server.log")?;
        let jwt_secret = format!("load-{run}-{}", ulid::Ulid::new());
        let mut server = spawn(
            "meterline (local server)",
            Command::new(&server_bin).env_clear().envs([
                ("APP_ENV", "test"),
                ("HOST", "127.0.0.1"),
                ("PORT", &port.to_string()),
                ("JWT_SECRET", &jwt_secret),
                ("STORE_URL", &store_url),
                ("REDIS_URL", &redis_url),
                // A limiter outage must show as 503s here, not as silently unlimited
                // requests that would make the limit checks meaningless.
                ("RATE_LIMIT_FAIL_MODE", "closed"),
                ("USAGE_QUEUE_URL", &queue_url),
                ("AWS_ENDPOINT_URL", &sqs_endpoint),
                ("AWS_ENDPOINT_URL_SQS", &sqs_endpoint),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("PLANS_JSON", PLANS_JSON),
                ("DEFAULT_PLAN_ID", "pln_load_open"),
                ("AUTH_IP_LIMIT_PER_MIN", "0"),
                ("LOG_FORMAT", "json"),
                ("RUST_LOG", "warn"),
            ]),
            &server_log,
        )?;
        wait_port(port, &mut server, &server_log).await?;
        let base_url = format!("http://127.0.0.1:{port}");
        wait_healthy(&base_url, &mut server, &server_log).await?;

        Ok(Self {
            base_url,
            store: Arc::new(store),
            sqs,
            queue_url,
            sqs_endpoint,
            redis_url: Some(redis_url),
            store_label: format!("postgres schema {schema}"),
            dir,
            schema: Some((args.postgres_url.clone(), schema)),
            owns_queue: true,
            server_bin: Some(server_bin),
            server: Some(server),
            moto,
            redis: Some(redis),
        })
    }

    /// A server that is already running: its store, queue and (optionally) Redis as given.
    async fn external(args: &Args, url: &str, dir: PathBuf) -> anyhow::Result<Self> {
        let store_url = args.store_url.as_deref().context("--store-url")?;
        let queue_url = args.queue_url.clone().context("--queue-url")?;
        let store = meterline::store::connect(store_url)
            .await
            .with_context(|| "cannot open --store-url".to_owned())?;
        let sqs_endpoint = args.sqs_endpoint.clone().unwrap_or_else(env_sqs_endpoint);
        let sqs = sqs_client(&sqs_endpoint).await;
        let mut probe = reqwest::get(format!("{url}/health"))
            .await
            .with_context(|| format!("no server at {url}"))?;
        if !probe.status().is_success() {
            bail!("{url}/health answered {}", probe.status());
        }
        probe = reqwest::get(format!("{url}/v1/health")).await?;
        eprintln!(
            "{url}/v1/health: {}",
            probe.text().await.unwrap_or_default()
        );
        Ok(Self {
            base_url: url.to_owned(),
            store,
            sqs,
            queue_url,
            sqs_endpoint,
            redis_url: args.redis_url.clone(),
            store_label: "--store-url".into(),
            dir,
            schema: None,
            owns_queue: false,
            server_bin: None,
            server: None,
            moto: None,
            redis: None,
        })
    }

    /// One line per part, for the start of the output.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "server   {} ({})",
            self.base_url,
            self.server_bin
                .as_ref()
                .map_or("given with --url".into(), |p| p.display().to_string())
        );
        let _ = writeln!(out, "store    {}", self.store_label);
        let _ = writeln!(
            out,
            "limiter  {}",
            self.redis_url.as_deref().unwrap_or("unknown (--redis-url)")
        );
        let _ = writeln!(
            out,
            "queue    {} on {}{}",
            self.queue_url,
            self.sqs_endpoint,
            if self.moto.is_some() {
                " (private moto_server)"
            } else {
                ""
            }
        );
        let _ = write!(out, "logs     {}", self.dir.display());
        out
    }

    /// The processes whose CPU time the report shows.
    pub fn processes(&self) -> Vec<Process> {
        let mut out = vec![Process::pids("meterline-load", vec![std::process::id()])];
        if let Some(server) = &self.server {
            out.push(Process::pids("meterline server", vec![server.child.id()]));
        }
        match &self.moto {
            Some(moto) => out.push(Process::pids("moto_server", vec![moto.child.id()])),
            None => out.push(Process::matching("moto_server (shared)", "moto_server")),
        }
        if let Some(redis) = &self.redis {
            out.push(Process::pids("redis-server", vec![redis.child.id()]));
        }
        out.push(Process::named("postgres (all)", "postgres"));
        out
    }

    /// Counts of the server's warning and error lines, with the most frequent messages.
    pub fn server_log_summary(&self) -> Option<String> {
        self.server.as_ref()?;
        let text = std::fs::read_to_string(self.dir.join("server.log")).ok()?;
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        let mut lines = 0;
        for line in text.lines() {
            lines += 1;
            let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let level = parsed["level"].as_str().unwrap_or("?");
            let message = parsed["message"]
                .as_str()
                .or_else(|| parsed["fields"]["message"].as_str())
                .unwrap_or(line);
            let message: String = message.chars().take(90).collect();
            *counts.entry(format!("{level} {message}")).or_default() += 1;
        }
        let mut out = format!("server log: {lines} lines at warn or above");
        let mut sorted: Vec<_> = counts.into_iter().collect();
        sorted.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        for (message, count) in sorted.into_iter().take(8) {
            let _ = write!(out, "\n  {count:>7}  {message}");
        }
        Some(out)
    }

    /// Stops what was started; with `cleanup`, also drops the schema and the queue and removes
    /// the logs (kept when the books did not balance, or with `--keep`, for a post-mortem).
    pub async fn finish(mut self, cleanup: bool) {
        self.server.take();
        self.moto_cleanup(cleanup).await;
        self.moto.take();
        self.redis.take();
        if cleanup {
            if let Some((url, schema)) = &self.schema
                && let Err(err) = drop_schema(url, schema).await
            {
                eprintln!("could not drop schema {schema}: {err:#}");
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "kept for inspection: logs in {}{}",
                self.dir.display(),
                self.schema
                    .as_ref()
                    .map(|(_, s)| format!(", Postgres schema {s}"))
                    .unwrap_or_default()
            );
        }
    }

    async fn moto_cleanup(&self, cleanup: bool) {
        // A private moto takes its queues with it; on the shared one, delete ours.
        if cleanup && self.owns_queue && self.moto.is_none() {
            let _ = self
                .sqs
                .delete_queue()
                .queue_url(&self.queue_url)
                .send()
                .await;
        }
    }
}

async fn wait_healthy(base: &str, server: &mut Owned, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(response) = reqwest::get(format!("{base}/v1/health")).await
            && response.status().is_success()
        {
            return Ok(());
        }
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "the server exited ({status}); its log {}:\n{}",
                log.display(),
                tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "the server did not report healthy within 60 s; its log {}:\n{}",
        log.display(),
        tail(log)
    )
}

async fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut connection = sqlx::postgres::PgConnection::connect(url).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut connection)
        .await?;
    Ok(())
}
