//! The Lambda Runtime API (the `2018-06-01` contract a custom runtime polls), served on
//! loopback for one function process: `GET /2018-06-01/runtime/invocation/next` long-polls
//! until the harness submits an event, then hands it out with the `Lambda-Runtime-*` headers;
//! `POST .../invocation/{id}/response`, `.../invocation/{id}/error` and
//! `/2018-06-01/runtime/init/error` are accepted (202) and reported to the harness with the
//! instant they arrived. Anything else the runtime asks for is answered 404 and reported, so a
//! harness gap shows up as a failure instead of a number.

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

/// How long an invocation may run, as the function's `Timeout` (template.yaml: 10 s).
const TIMEOUT: Duration = Duration::from_secs(10);

/// One event to hand to the function.
#[derive(Debug)]
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: String,
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    pub function_arn: String,
    /// The event, JSON.
    pub payload: Vec<u8>,
}

/// What the function did, with the instant the harness saw it.
#[derive(Debug)]
pub enum Report {
    /// It asked for the next event (`GET .../invocation/next` arrived).
    Polled {
        /// When the request arrived.
        at: Instant,
    },
    /// An event was handed out in answer to a poll.
    Delivered {
        /// The event's request id.
        request_id: String,
        /// When the answer left the handler.
        at: Instant,
    },
    /// `POST .../invocation/{id}/response`.
    Response {
        /// The request id in the path.
        request_id: String,
        /// When the response arrived (its whole body read).
        at: Instant,
        /// The function's result.
        body: Bytes,
    },
    /// `POST .../invocation/{id}/error`.
    Error {
        /// The request id in the path.
        request_id: String,
        /// `Lambda-Runtime-Function-Error-Type`, if sent.
        error_type: Option<String>,
        /// The error document.
        body: Bytes,
    },
    /// `POST /2018-06-01/runtime/init/error`: the function failed before taking an event.
    InitError {
        /// `Lambda-Runtime-Function-Error-Type`, if sent.
        error_type: Option<String>,
        /// The error document.
        body: Bytes,
    },
    /// A request outside the contract this harness serves.
    Unexpected {
        /// Its method.
        method: Method,
        /// Its path.
        uri: Uri,
    },
}

struct Shared {
    queue: Mutex<mpsc::UnboundedReceiver<Invocation>>,
    reports: mpsc::UnboundedSender<Report>,
    traces: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn report(&self, report: Report) {
        // The harness only stops listening once it is done with the process.
        let _ignored = self.reports.send(report);
    }
}

/// One Runtime API endpoint on `127.0.0.1:<ephemeral port>`, for one function process.
pub struct RuntimeApi {
    address: SocketAddr,
    invocations: mpsc::UnboundedSender<Invocation>,
    reports: mpsc::UnboundedReceiver<Report>,
    server: JoinHandle<()>,
}

impl RuntimeApi {
    /// Binds a loopback port and starts serving.
    pub async fn start() -> anyhow::Result<Self> {
        let (invocations, queue) = mpsc::unbounded_channel();
        let (report_tx, reports) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            reports: report_tx,
            traces: std::sync::atomic::AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .fallback(unexpected)
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("bind the Runtime API on loopback")?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("coldstart: runtime API server stopped: {err}");
            }
        });
        Ok(Self {
            address,
            invocations,
            reports,
            server,
        })
    }

    /// `AWS_LAMBDA_RUNTIME_API` for the process: `host:port`, as Lambda sets it.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Queues an event; the function's pending (or next) poll receives it.
    pub fn submit(&self, invocation: Invocation) -> anyhow::Result<()> {
        self.invocations
            .send(invocation)
            .map_err(|_| anyhow::anyhow!("the Runtime API server has stopped"))
    }

    /// The next thing the function did; `None` once the server is gone.
    pub async fn next_report(&mut self) -> Option<Report> {
        self.reports.recv().await
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn epoch_millis(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared.report(Report::Polled { at: Instant::now() });
    // Cancel-safe: a poll dropped by the client leaves the event queued for the next one.
    let invocation = shared.queue.lock().await.recv().await;
    let Some(invocation) = invocation else {
        return (StatusCode::GONE, "the harness is done").into_response();
    };
    let now = SystemTime::now();
    let trace = shared
        .traces
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let epoch_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let built = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &invocation.request_id)
        .header(
            "lambda-runtime-deadline-ms",
            epoch_millis(now + TIMEOUT).to_string(),
        )
        .header(
            "lambda-runtime-invoked-function-arn",
            &invocation.function_arn,
        )
        .header(
            "lambda-runtime-trace-id",
            format!("Root=1-{epoch_secs:08x}-{trace:024x};Parent={trace:016x};Sampled=0"),
        )
        .body(Body::from(invocation.payload));
    match built {
        Ok(response) => {
            shared.report(Report::Delivered {
                request_id: invocation.request_id,
                at: Instant::now(),
            });
            response
        }
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> Response {
    shared.report(Report::Response {
        request_id,
        at: Instant::now(),
        body,
    });
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.report(Report::Error {
        request_id,
        error_type: error_type(&headers),
        body,
    });
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

async fn init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.report(Report::InitError {
        error_type: error_type(&headers),
        body,
    });
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

async fn unexpected(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    shared.report(Report::Unexpected { method, uri });
    (
        StatusCode::NOT_FOUND,
        "not part of this Runtime API harness",
    )
        .into_response()
}
