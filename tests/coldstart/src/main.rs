//! `meterline-coldstart`: each Lambda function's release binary, its cold start, warm latency
//! and peak memory, measured under an emulation of the Lambda Runtime API on loopback.
//!
//! For every function the harness spawns the binary with a production-like environment
//! (`APP_ENV=production`, a random 32-byte `JWT_SECRET`, the store, Redis and queue settings
//! template.yaml gives it, the `AWS_LAMBDA_*` variables Lambda sets), hands it one event as its
//! first invocation and times spawn -> the response POSTed back (the cold start), then a few
//! warm invocations (event handed out -> response), reads the process's `VmHWM` and kills it;
//! `--runs` times per probe. HTTP functions get two probes: `GET /health` (no backend touched)
//! and one real request that goes through the store, the limiter and the queue; the billing
//! consumer gets an SQS event with one usage event. Every answer is checked (status, or no
//! batch item failure), so a failing function stops the run instead of giving a number.
//!
//! Needs the release binaries (`bash infra/coldstart.sh` builds them, then runs this) and the
//! local services (`eval "$(bash infra/services.sh)"`: moto_server for DynamoDB and SQS, Redis,
//! and Postgres for `--store postgres`).

mod events;
mod process;
mod runtime_api;

use anyhow::{Context, bail};
use events::{HttpAnswer, HttpRequest};
use process::{Launch, Session};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Requests per metering key and org over a run, kept below the default plan's 600 a minute.
const REQUESTS_PER_KEY: usize = 400;

/// A fresh login once the access token (15 minutes by default) is this old.
const TOKEN_REFRESH: Duration = Duration::from_secs(10 * 60);

const USAGE: &str = "\
usage: meterline-coldstart [--runs N] [--warm N] [--store dynamodb|postgres] [--bin-dir DIR]
                           [--only NAME[,NAME...]] [--env NAME=VALUE]...
  --runs N      cold starts per probe and function (default 10)
  --warm N      warm invocations after each cold one (default 5)
  --store S     dynamodb (moto_server at AWS_ENDPOINT_URL, default) or postgres
                (COLDSTART_POSTGRES_URL, default postgres://postgres:postgres@127.0.0.1:5432/meterline_coldstart;
                the database must exist)
  --bin-dir DIR the release binaries (default $CARGO_TARGET_DIR/release or target/release)
  --only NAMES  only these functions (auth, orgs, api-keys, metering, billing-api, billing)
  --env N=V     one more variable for every function (repeatable; overrides the harness's)
Environment: AWS_ENDPOINT_URL (default http://127.0.0.1:4566), REDIS_URL
(default redis://127.0.0.1:6379).";

/// The state backend the functions run on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StoreKind {
    DynamoDb,
    Postgres,
}

/// Command-line options.
#[derive(Debug)]
struct Options {
    runs: usize,
    warm: usize,
    store: StoreKind,
    bin_dir: PathBuf,
    only: Option<Vec<String>>,
    /// Extra variables for every function (`--env NAME=VALUE`), after the harness's own.
    extra_env: Vec<(String, String)>,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let default_bin_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
            .join("release");
        let mut options = Self {
            runs: 10,
            warm: 5,
            store: StoreKind::DynamoDb,
            bin_dir: default_bin_dir,
            only: None,
            extra_env: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--runs" => options.runs = value()?.parse().context("--runs")?,
                "--warm" => options.warm = value()?.parse().context("--warm")?,
                "--store" => {
                    options.store = match value()?.as_str() {
                        "dynamodb" => StoreKind::DynamoDb,
                        "postgres" => StoreKind::Postgres,
                        other => bail!("--store {other}: dynamodb or postgres"),
                    }
                }
                "--bin-dir" => options.bin_dir = PathBuf::from(value()?),
                "--env" => {
                    let pair = value()?;
                    let (name, val) = pair
                        .split_once('=')
                        .with_context(|| format!("--env {pair}: NAME=VALUE"))?;
                    options.extra_env.push((name.to_owned(), val.to_owned()));
                }
                "--only" => {
                    options.only = Some(
                        value()?
                            .split(',')
                            .map(|name| {
                                let name = name.trim();
                                name.strip_prefix("meterline-").unwrap_or(name).to_owned()
                            })
                            .collect(),
                    )
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other}\n{USAGE}"),
            }
        }
        if options.runs == 0 {
            bail!("--runs must be at least 1");
        }
        Ok(options)
    }
}

/// The request a probe makes, with the answer it must get.
enum Probe {
    /// `GET /health` (200): the runtime, the router and the middleware, no backend.
    Health,
    /// `POST /v1/auth/login` with an unknown email (401 `invalid_credentials`): lockout read,
    /// user lookup, an argon2id verification against the dummy hash, a failure write.
    Login,
    /// `GET /v1/orgs` with a bearer token (200): token check, revocation read, a store query.
    ListOrgs,
    /// `GET /v1/orgs/{org}/api-keys` with a bearer token (200): membership read, a store query.
    ListKeys,
    /// `POST /v1/verify` with a live API key (200): key lookup in the store, the Redis check,
    /// one SQS send.
    Verify,
    /// `GET /v1/orgs/{org}/usage` with a bearer token (200): membership read, counter query.
    Usage,
    /// An SQS batch of one usage event (no batch item failure): dedup record and counters.
    Billing,
}

impl Probe {
    fn label(&self) -> &'static str {
        match self {
            Self::Health => "GET /health -> 200",
            Self::Login => "POST /v1/auth/login (unknown email) -> 401",
            Self::ListOrgs => "GET /v1/orgs (bearer) -> 200",
            Self::ListKeys => "GET /v1/orgs/{org}/api-keys (bearer) -> 200",
            Self::Verify => "POST /v1/verify (live key) -> 200",
            Self::Usage => "GET /v1/orgs/{org}/usage (bearer) -> 200",
            Self::Billing => "SQS batch of 1 usage event -> no batchItemFailures",
        }
    }
}

/// One function of template.yaml.
struct Function {
    /// The package, binary and `AWS_LAMBDA_FUNCTION_NAME`.
    binary: &'static str,
    /// Answers HTTP API events (gets `REDIS_URL`) rather than SQS batches.
    http: bool,
    /// Gets `USAGE_QUEUE_URL` (metering sends to it; auth reports it in `/v1/health`).
    queue: bool,
    /// Its real-request probe.
    real: Probe,
}

const FUNCTIONS: [Function; 6] = [
    Function {
        binary: "meterline-auth",
        http: true,
        queue: true,
        real: Probe::Login,
    },
    Function {
        binary: "meterline-orgs",
        http: true,
        queue: false,
        real: Probe::ListOrgs,
    },
    Function {
        binary: "meterline-api-keys",
        http: true,
        queue: false,
        real: Probe::ListKeys,
    },
    Function {
        binary: "meterline-metering",
        http: true,
        queue: true,
        real: Probe::Verify,
    },
    Function {
        binary: "meterline-billing-api",
        http: true,
        queue: false,
        real: Probe::Usage,
    },
    Function {
        binary: "meterline-billing",
        http: false,
        queue: false,
        real: Probe::Billing,
    },
];

/// One org with one live API key, for the probes.
struct Tenant {
    org_id: String,
    key_id: String,
    key: String,
}

/// What the probes need: a user with a token, and tenants.
struct Seed {
    email: String,
    password: String,
    token: String,
    token_at: Instant,
    tenants: Vec<Tenant>,
}

/// Everything needed to start a function.
struct Bench {
    options: Options,
    run_id: String,
    store_url: String,
    jwt_secret: String,
    aws_endpoint: String,
    redis_url: String,
    queue_url: String,
    log_dir: PathBuf,
    unique: u64,
    /// `/proc/loadavg` when measuring began: other work on the machine skews the numbers.
    load_before: String,
}

impl Bench {
    /// An id unique to this harness run.
    fn unique(&mut self, prefix: &str) -> String {
        self.unique += 1;
        format!("{prefix}{}{:05}", self.run_id, self.unique)
    }

    fn launch(&self, function: &Function, store_url: &str) -> Launch {
        let short = function.binary.trim_start_matches("meterline-");
        let mut env: Vec<(String, String)> = [
            ("APP_ENV", "production"),
            ("JWT_SECRET", &self.jwt_secret),
            ("STORE_URL", store_url),
            ("DEFAULT_PLAN_ID", "pln_free"),
            ("SECRETS_REVISION", "1"),
            // As template.yaml's Globals set it (argon2's working memory is handed back).
            ("MALLOC_MMAP_THRESHOLD_", "131072"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_ENDPOINT_URL", &self.aws_endpoint),
            ("AWS_LAMBDA_FUNCTION_NAME", function.binary),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
            ("_HANDLER", "bootstrap"),
            ("TZ", ":UTC"),
            ("LANG", "en_US.UTF-8"),
            ("PATH", "/usr/local/bin:/usr/bin/:/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.push((
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/meterline/{short}"),
        ));
        env.push((
            "AWS_LAMBDA_LOG_STREAM_NAME".into(),
            format!("coldstart/[$LATEST]{}", self.run_id),
        ));
        env.push((
            "LAMBDA_TASK_ROOT".into(),
            self.options.bin_dir.display().to_string(),
        ));
        if function.http {
            env.push(("REDIS_URL".into(), self.redis_url.clone()));
        }
        if function.queue {
            env.push(("USAGE_QUEUE_URL".into(), self.queue_url.clone()));
        }
        if function.binary == "meterline-metering" {
            env.push(("RATE_LIMIT_FAIL_MODE".into(), "open".into()));
        }
        env.extend(self.options.extra_env.iter().cloned());
        Launch {
            name: function.binary.to_owned(),
            binary: self.options.bin_dir.join(function.binary),
            env,
            log: self.log_dir.join(format!("{}.log", function.binary)),
        }
    }

    /// The event for `probe`, and how to check its answer.
    fn event(&mut self, probe: &Probe, seed: &Seed, run: usize) -> (Value, Expect) {
        let request_id = self.unique("req");
        let now = chrono::Utc::now();
        let tenant = &seed.tenants[run % seed.tenants.len()];
        let http = |request: HttpRequest<'_>, status| {
            (request.event(&request_id, now), Expect::Status(status))
        };
        match probe {
            Probe::Health => http(HttpRequest::new("GET", "/health"), 200),
            Probe::Login => {
                let email = format!("{}@example.com", self.unique("nobody-"));
                http(
                    HttpRequest::new("POST", "/v1/auth/login")
                        .json(json!({"email": email, "password": "not the password 1"})),
                    401,
                )
            }
            Probe::ListOrgs => http(HttpRequest::new("GET", "/v1/orgs").bearer(&seed.token), 200),
            Probe::ListKeys => {
                let path = format!("/v1/orgs/{}/api-keys", tenant.org_id);
                http(HttpRequest::new("GET", &path).bearer(&seed.token), 200)
            }
            Probe::Verify => http(
                HttpRequest::new("POST", "/v1/verify")
                    .header("x-api-key", &tenant.key)
                    .json(json!({})),
                200,
            ),
            Probe::Usage => {
                let path = format!("/v1/orgs/{}/usage", tenant.org_id);
                http(HttpRequest::new("GET", &path).bearer(&seed.token), 200)
            }
            Probe::Billing => {
                let event = json!({
                    "id": self.unique("evt_coldstart_"),
                    "org_id": tenant.org_id,
                    "key_id": tenant.key_id,
                    "meter": "requests",
                    "quantity": 1,
                    "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                });
                let message_id = self.unique("msg-");
                (
                    events::sqs_event(&message_id, &event),
                    Expect::NoBatchFailures,
                )
            }
        }
    }

    /// Invokes `probe` once and checks the answer.
    async fn probe(
        &mut self,
        session: &mut Session,
        probe: &Probe,
        seed: &Seed,
        run: usize,
    ) -> anyhow::Result<process::Answer> {
        let (event, expect) = self.event(probe, seed, run);
        let answer = session.invoke(&event).await?;
        match expect {
            Expect::Status(status) => {
                HttpAnswer::parse(&answer.body)?.expect(probe.label(), status)?;
            }
            Expect::NoBatchFailures => events::expect_no_batch_failures(&answer.body)?,
        }
        Ok(answer)
    }

    /// One cold start of `function` with `probe` first, then the warm invocations.
    async fn cold_run(
        &mut self,
        function: &Function,
        probe: &Probe,
        seed: &Seed,
        run: usize,
    ) -> anyhow::Result<Sample> {
        let launch = self.launch(function, &self.store_url.clone());
        let mut session = Session::start(&launch).await?;
        let first = self.probe(&mut session, probe, seed, run).await?;
        let first_rss = session.peak_rss()?;
        let mut warm = Vec::with_capacity(self.options.warm);
        for _ in 0..self.options.warm {
            warm.push(
                self.probe(&mut session, probe, seed, run)
                    .await?
                    .since_delivery,
            );
        }
        let sample = Sample {
            cold: first.since_spawn,
            init: session
                .init_duration()
                .context("answered without polling")?,
            warm,
            first_rss,
            peak_rss: session.peak_rss()?,
        };
        session.stop().await?;
        Ok(sample)
    }

    /// Invokes `function` with HTTP requests that must answer `status`, in one process.
    async fn call(
        &mut self,
        function: &Function,
        store_url: &str,
        requests: Vec<(HttpRequest<'_>, u16)>,
    ) -> anyhow::Result<Vec<HttpAnswer>> {
        let launch = self.launch(function, store_url);
        let mut session = Session::start(&launch).await?;
        let mut answers = Vec::new();
        for (request, status) in requests {
            let what = format!("{} {} (seeding)", request.method, request.path);
            let event = request.event(&self.unique("seed"), chrono::Utc::now());
            let answer = session.invoke(&event).await?;
            answers.push(HttpAnswer::parse(&answer.body)?.expect(&what, status)?);
        }
        session.stop().await?;
        Ok(answers)
    }

    /// A user, `tenants` orgs with a key each, all made through the functions themselves.
    async fn seed(&mut self, tenants: usize) -> anyhow::Result<Seed> {
        let [auth, orgs, api_keys, ..] = &FUNCTIONS;
        // The first process creates the DynamoDB table if missing; the measured ones run on
        // `dynamodb://TABLE` as in AWS (no DescribeTable at init).
        let first_url = match self.options.store {
            StoreKind::DynamoDb => format!("{}?create=true", self.store_url),
            StoreKind::Postgres => self.store_url.clone(),
        };
        let email = format!("{}@example.com", self.unique("coldstart-"));
        let password = format!("coldstart password {}", self.run_id);
        let credentials = json!({"email": email, "password": password});
        let answers = self
            .call(
                auth,
                &first_url,
                vec![
                    (
                        HttpRequest::new("POST", "/v1/auth/signup").json(credentials.clone()),
                        201,
                    ),
                    (
                        HttpRequest::new("POST", "/v1/auth/login").json(credentials),
                        200,
                    ),
                ],
            )
            .await?;
        let token = answers
            .last()
            .context("no login answer")?
            .field("access_token")?;
        let token_at = Instant::now();
        let store_url = self.store_url.clone();
        let creates = (0..tenants)
            .map(|n| {
                let request = HttpRequest::new("POST", "/v1/orgs")
                    .bearer(&token)
                    .json(json!({"name": format!("coldstart {n}")}));
                (request, 201)
            })
            .collect();
        let org_ids = self
            .call(orgs, &store_url, creates)
            .await?
            .iter()
            .map(|answer| answer.field("id"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let paths: Vec<String> = org_ids
            .iter()
            .map(|org| format!("/v1/orgs/{org}/api-keys"))
            .collect();
        let creates = paths
            .iter()
            .map(|path| {
                let request = HttpRequest::new("POST", path)
                    .bearer(&token)
                    .json(json!({"name": "coldstart"}));
                (request, 201)
            })
            .collect();
        let keys = self.call(api_keys, &store_url, creates).await?;
        let tenants = org_ids
            .into_iter()
            .zip(keys)
            .map(|(org_id, answer)| {
                Ok(Tenant {
                    org_id,
                    key_id: answer.field("id")?,
                    key: answer.field("key")?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Seed {
            email,
            password,
            token,
            token_at,
            tenants,
        })
    }

    /// Logs in again when the access token is getting old.
    async fn refresh_token(&mut self, seed: &mut Seed) -> anyhow::Result<()> {
        if seed.token_at.elapsed() < TOKEN_REFRESH {
            return Ok(());
        }
        let store_url = self.store_url.clone();
        let login = HttpRequest::new("POST", "/v1/auth/login")
            .json(json!({"email": seed.email, "password": seed.password}));
        let answers = self
            .call(&FUNCTIONS[0], &store_url, vec![(login, 200)])
            .await?;
        seed.token = answers
            .first()
            .context("no login answer")?
            .field("access_token")?;
        seed.token_at = Instant::now();
        Ok(())
    }
}

/// How an answer is checked.
enum Expect {
    /// An HTTP response with this status.
    Status(u16),
    /// An `SqsBatchResponse` naming no failed message.
    NoBatchFailures,
}

/// One cold start and the warm invocations after it.
struct Sample {
    /// Spawn -> the first response's arrival.
    cold: Duration,
    /// Spawn -> the first poll for an event.
    init: Duration,
    /// Event handed out -> response, for each warm invocation.
    warm: Vec<Duration>,
    /// `VmHWM` right after the first (cold) invocation, bytes.
    first_rss: u64,
    /// `VmHWM` after the last invocation, bytes.
    peak_rss: u64,
}

/// A function's measurements.
struct Row {
    binary: &'static str,
    size: u64,
    health: Vec<Sample>,
    real: Vec<Sample>,
    real_label: &'static str,
}

/// The nearest-rank percentile `p` (0-100) of `values`, in milliseconds.
fn percentile(values: &[Duration], p: usize) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).map(|d| d.as_secs_f64() * 1000.0)
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.1}"))
}

fn mib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1_048_576.0)
}

fn cold_cell(samples: &[Sample]) -> String {
    let cold: Vec<Duration> = samples.iter().map(|s| s.cold).collect();
    if cold.is_empty() {
        return "—".to_owned();
    }
    format!(
        "{} / {}",
        ms(percentile(&cold, 50)),
        ms(percentile(&cold, 90))
    )
}

fn print_table(bench: &Bench, rows: &[Row]) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let store = match bench.options.store {
        StoreKind::DynamoDb => "DynamoDB (moto_server)",
        StoreKind::Postgres => "Postgres",
    };
    println!(
        "Cold start under the emulated Lambda Runtime API (meterline-coldstart), the binaries in \
         {} ({}), {cores} cores ({cpu}); store: {store}, Redis and SQS (moto_server) on loopback; \
         {} cold starts per probe, {} warm invocations after each; load average {} before, \
         {} after.\n",
        bench.options.bin_dir.display(),
        std::env::consts::ARCH,
        bench.options.runs,
        bench.options.warm,
        bench.load_before,
        load_average()
    );
    println!(
        "| function | binary MiB | init median ms | cold start median / p90 ms (GET /health) \
         | cold start median / p90 ms (first real request) | warm median ms (real request) \
         | warm median ms (GET /health) | peak RSS MiB (after the cold invocation / after all) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let all = || row.health.iter().chain(&row.real);
        let init: Vec<Duration> = all().map(|s| s.init).collect();
        let warm_real: Vec<Duration> = row.real.iter().flat_map(|s| s.warm.clone()).collect();
        let warm_health: Vec<Duration> = row.health.iter().flat_map(|s| s.warm.clone()).collect();
        let first_rss = all().map(|s| s.first_rss).max().unwrap_or_default();
        let peak = all().map(|s| s.peak_rss).max().unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            row.binary,
            mib(row.size),
            ms(percentile(&init, 50)),
            cold_cell(&row.health),
            cold_cell(&row.real),
            ms(percentile(&warm_real, 50)),
            ms(percentile(&warm_health, 50)),
            mib(first_rss),
            mib(peak),
        );
    }
    println!("\nReal requests (the first invocation of their own cold starts):");
    for row in rows {
        println!("- {}: {}", row.binary, row.real_label);
    }
    println!(
        "\ncold start = process spawn -> first response POSTed to the Runtime API; init = spawn -> \
         first poll for an event; warm = event handed out -> response (median over all warm \
         invocations); peak RSS = the largest VmHWM of any run, read after its cold invocation \
         and again after its warm ones, just before the kill. Binary sizes are the stripped \
         x86_64 release files; the arm64 zips are measured by infra/sizes.sh."
    );
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|raw| raw.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// 32 random bytes, hex: a production-acceptable `JWT_SECRET`.
fn random_secret() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut bytes))
        .context("read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates (or finds) the usage queue on the SQS endpoint and returns its URL.
async fn create_queue(endpoint: &str, name: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .post(format!("{}/", endpoint.trim_end_matches('/')))
        .header("x-amz-target", "AmazonSQS.CreateQueue")
        .header("content-type", "application/x-amz-json-1.0")
        // moto reads the service and region from the credential scope; it checks no signature.
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sqs/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(json!({"QueueName": name}).to_string())
        .send()
        .await
        .with_context(|| format!("SQS CreateQueue at {endpoint} (is moto_server running?)"))?;
    let status = response.status();
    let body: Value = response.json().await.context("CreateQueue answer")?;
    body.get("QueueUrl")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("CreateQueue: {status} {body}"))
}

async fn run() -> anyhow::Result<()> {
    let options = Options::parse()?;
    let functions: Vec<&Function> = FUNCTIONS
        .iter()
        .filter(|f| {
            options.only.as_ref().is_none_or(|only| {
                only.iter()
                    .any(|name| f.binary.trim_start_matches("meterline-") == name)
            })
        })
        .collect();
    if functions.is_empty() {
        bail!("--only names no function\n{USAGE}");
    }
    // Every binary a run starts, seeding included.
    for function in FUNCTIONS.iter().take(3).chain(functions.iter().copied()) {
        let binary = options.bin_dir.join(function.binary);
        if !binary.is_file() {
            bail!(
                "{} is missing: build the release binaries first (bash infra/coldstart.sh, or \
                 cargo build --release -p {}), or pass --bin-dir",
                binary.display(),
                function.binary
            );
        }
    }
    let env_or = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    let aws_endpoint = env_or("AWS_ENDPOINT_URL", "http://127.0.0.1:4566");
    let redis_url = env_or("REDIS_URL", "redis://127.0.0.1:6379");
    let store_url = match options.store {
        StoreKind::DynamoDb => "dynamodb://meterline-coldstart".to_owned(),
        StoreKind::Postgres => env_or(
            "COLDSTART_POSTGRES_URL",
            "postgres://postgres:postgres@127.0.0.1:5432/meterline_coldstart",
        ),
    };
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let queue_url = create_queue(&aws_endpoint, "meterline-coldstart-usage").await?;
    let log_dir = std::env::temp_dir().join("meterline-coldstart");
    std::fs::create_dir_all(&log_dir)?;
    let metering_requests = if functions.iter().any(|f| matches!(f.real, Probe::Verify)) {
        options.runs * (options.warm + 1)
    } else {
        0
    };
    let tenants = metering_requests.div_ceil(REQUESTS_PER_KEY).max(1);
    let mut bench = Bench {
        options,
        run_id,
        store_url,
        jwt_secret: random_secret()?,
        aws_endpoint,
        redis_url,
        queue_url,
        log_dir,
        unique: 0,
        load_before: load_average(),
    };
    eprintln!(
        "coldstart: seeding a user and {tenants} org(s) with a key through the functions \
         (logs in {})",
        bench.log_dir.display()
    );
    let mut seed = bench.seed(tenants).await?;
    let mut rows = Vec::new();
    for function in functions {
        bench.refresh_token(&mut seed).await?;
        let binary = bench.options.bin_dir.join(function.binary);
        let size = std::fs::metadata(&binary)?.len();
        let mut row = Row {
            binary: function.binary,
            size,
            health: Vec::new(),
            real: Vec::new(),
            real_label: function.real.label(),
        };
        let probes: Vec<&Probe> = if function.http {
            vec![&Probe::Health, &function.real]
        } else {
            vec![&function.real]
        };
        for probe in probes {
            eprint!(
                "coldstart: {} {}: {} cold starts ",
                function.binary,
                probe.label(),
                bench.options.runs
            );
            let mut samples = Vec::new();
            for run in 0..bench.options.runs {
                let sample = bench
                    .cold_run(function, probe, &seed, run)
                    .await
                    .with_context(|| format!("{}: {}", function.binary, probe.label()))?;
                eprint!(".");
                samples.push(sample);
            }
            let cold: Vec<Duration> = samples.iter().map(|s| s.cold).collect();
            eprintln!(" median {} ms", ms(percentile(&cold, 50)));
            if matches!(probe, Probe::Health) {
                row.health = samples;
            } else {
                row.real = samples;
            }
        }
        rows.push(row);
    }
    print_table(&bench, &rows);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("\ncoldstart: {err:#}");
        std::process::exit(1);
    }
}
