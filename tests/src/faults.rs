//! Fault injection: take a backend away under a running server and give it back, without
//! touching the shared servers other tests use.
//!
//! - [`Proxy`]: a loopback TCP proxy in front of a real backend (Postgres, moto's DynamoDB or
//!   SQS, Redis). Point the server at the proxy, then [`Proxy::stop`] (the backend died: live
//!   connections close, new ones are closed at once), [`Proxy::blackhole`] (a partition:
//!   connections open but nothing comes back), [`Proxy::resume`], or [`Proxy::cut_at`] a chosen
//!   request (a crash halfway through a multi-step write, before or after the backend acted).
//! - [`PrivateRedis::kill`] and [`PrivateRedis::restart`]: a Redis that really dies and comes
//!   back on the same port, memory lost.
//! - [`crate::Server::start_over`]: a server on a store of the test's choosing (e.g. one reached
//!   through a proxy), and [`postgres_via`] / [`dynamodb_via`] to build such stores.

use crate::PrivateRedis;
use meterline::store::{DynamoStore, Store};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bytes flow both ways.
    Forward,
    /// The backend is gone: every connection is closed, new ones at once.
    Stopped,
    /// A partition: connections stay open (new ones are accepted) and nothing moves. They are
    /// closed when the partition ends, as TCP would have given up on them by then.
    Blackhole,
}

/// Where [`Proxy::cut_at`] cuts, relative to the request that trips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The request never reaches the backend (the crash came before it was sent).
    Undelivered,
    /// The backend gets the request and acts on it, but its answer is lost (the crash came
    /// after the backend committed, before the caller heard of it).
    AnswerLost,
    /// The backend goes silent at this request: it is not delivered, nothing answers, and the
    /// proxy black-holes (as [`Proxy::blackhole`]) until [`Proxy::resume`].
    Stalled,
}

struct Trip {
    pattern: Vec<u8>,
    /// Occurrences still to see before the one that trips.
    remaining: usize,
    cut: Cut,
}

struct Shared {
    upstream: String,
    mode: watch::Sender<Mode>,
    trip: Mutex<Option<Trip>>,
    tripped: AtomicBool,
    accepted: AtomicUsize,
}

impl Shared {
    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Counts the armed pattern's occurrences in `window` (the connection's last bytes
    /// followed by a new chunk, so a pattern split across chunks is seen once); `Some` when
    /// this chunk trips the wire.
    fn check(&self, window: &[u8]) -> Option<Cut> {
        let mut trip = self.trip.lock().expect("trip lock");
        let armed = trip.as_mut()?;
        let hits = window
            .windows(armed.pattern.len())
            .filter(|w| *w == armed.pattern.as_slice())
            .count();
        if hits == 0 {
            return None;
        }
        if hits <= armed.remaining {
            armed.remaining -= hits;
            return None;
        }
        let cut = armed.cut;
        *trip = None;
        self.tripped.store(true, Ordering::SeqCst);
        Some(cut)
    }
}

/// A loopback TCP proxy in front of `upstream` (`host:port`); stops forwarding when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            mode: watch::Sender::new(Mode::Forward),
            trip: Mutex::new(None),
            tripped: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
        });
        let accepting = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepting.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(client, Arc::clone(&accepting)));
            }
        });
        Self {
            addr,
            shared,
            accept,
        }
    }

    /// A proxy in front of the server `url` names (`scheme://[user@]host[:port]/...`).
    pub async fn in_front_of(url: &str) -> Self {
        Self::start(&authority(url)).await
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn rewrite(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}{}{path}", self.addr)
    }

    /// `http://` and the proxy's address: an endpoint URL for an AWS client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far: a test that means to go through the proxy can check it did.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// The backend dies: live connections are closed, new ones closed as soon as accepted.
    pub fn stop(&self) {
        self.shared.set(Mode::Stopped);
    }

    /// A partition: nothing more is forwarded either way and new connections are accepted but
    /// never answered, until [`Proxy::resume`] or [`Proxy::stop`] closes them all.
    pub fn blackhole(&self) {
        self.shared.set(Mode::Blackhole);
    }

    /// The backend is back: new connections are forwarded again.
    pub fn resume(&self) {
        self.shared.set(Mode::Forward);
    }

    /// Arms a trip wire: the `nth` (1-based) occurrence of `pattern` in what clients send,
    /// counted over every connection from now on, cuts the backend off as `cut` says and leaves
    /// the proxy stopped (as [`Proxy::stop`]; black-holed for [`Cut::Stalled`]) until
    /// [`Proxy::resume`].
    pub fn cut_at(&self, pattern: &str, nth: usize, cut: Cut) {
        assert!(
            nth >= 1 && !pattern.is_empty(),
            "cut at a 1-based occurrence"
        );
        self.shared.tripped.store(false, Ordering::SeqCst);
        *self.shared.trip.lock().expect("trip lock") = Some(Trip {
            pattern: pattern.as_bytes().to_vec(),
            remaining: nth - 1,
            cut,
        });
    }

    /// Whether the wire armed by [`Proxy::cut_at`] has tripped.
    pub fn tripped(&self) -> bool {
        self.shared.tripped.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.set(Mode::Stopped);
    }
}

/// `host:port` of a URL, with the scheme's default port when it names none.
fn authority(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host = rest[..end].rsplit('@').next().unwrap_or_default();
    if host.contains(':') {
        return host.to_owned();
    }
    let port = match scheme {
        "postgres" | "postgresql" => 5432,
        "redis" => 6379,
        "https" => 443,
        _ => 80,
    };
    format!("{host}:{port}")
}

/// One client connection: forwarded while the mode allows, closed when it stops.
async fn serve(client: TcpStream, shared: Arc<Shared>) {
    let mut mode = shared.mode.subscribe();
    let current = *mode.borrow_and_update();
    match current {
        Mode::Forward => {}
        Mode::Stopped => return,
        Mode::Blackhole => {
            // Accepted, never answered; closed whenever the partition ends.
            let _ = mode.changed().await;
            return;
        }
    }
    let Ok(upstream) = TcpStream::connect(&shared.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let doomed = AtomicBool::new(false);
    let pump = async {
        tokio::select! {
            () = upward(&client, &upstream, &shared, &doomed) => {}
            () = downward(&upstream, &client, &shared, &doomed) => {}
        }
    };
    let mut pump = std::pin::pin!(pump);
    let mut held = false;
    loop {
        tokio::select! {
            () = &mut pump, if !held => return,
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *mode.borrow_and_update();
                match (now, held) {
                    (Mode::Forward, false) => {}
                    // Stopped, or a partition that ended: TCP gave up on this connection.
                    (Mode::Stopped, _) | (Mode::Forward, true) => return,
                    // The pump is no longer polled: nothing moves, both ends stay open.
                    (Mode::Blackhole, _) => held = true,
                }
            }
        }
    }
}

/// Reads from a socket without tokio's `io-util`: `Ok(0)` at end of stream.
async fn read(from: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_read(buf) {
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

async fn write_all(to: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        to.writable().await?;
        match to.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Client to backend, watching for the trip wire.
async fn upward(client: &TcpStream, upstream: &TcpStream, shared: &Shared, doomed: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut window: Vec<u8> = Vec::new();
    loop {
        let n = match read(client, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        window.extend_from_slice(chunk);
        match shared.check(&window) {
            Some(Cut::Undelivered) => {
                shared.set(Mode::Stopped);
                return;
            }
            Some(Cut::AnswerLost) => doomed.store(true, Ordering::SeqCst),
            Some(Cut::Stalled) => {
                shared.set(Mode::Blackhole);
                // Held here, undelivered, until the connection is closed.
                std::future::pending::<()>().await;
            }
            None => {}
        }
        // Keep only what a pattern split across chunks could still need.
        let keep = shared
            .trip
            .lock()
            .expect("trip lock")
            .as_ref()
            .map_or(0, |t| t.pattern.len() - 1);
        let drop_to = window.len().saturating_sub(keep);
        window.drain(..drop_to);
        if write_all(upstream, chunk).await.is_err() {
            return;
        }
    }
}

/// Backend to client; once the wire tripped with [`Cut::AnswerLost`], the first answer is
/// swallowed and the backend cut off.
async fn downward(upstream: &TcpStream, client: &TcpStream, shared: &Shared, doomed: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match read(upstream, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if doomed.load(Ordering::SeqCst) {
            shared.set(Mode::Stopped);
            return;
        }
        if write_all(client, &buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A fresh namespace (schema or table name) for one test.
fn namespace() -> String {
    format!("t_{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// The test Postgres server's URL (`TEST_POSTGRES_URL`, as `infra/services.sh` prints it).
pub fn postgres_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

/// The test DynamoDB endpoint (`AWS_ENDPOINT_URL`, e.g. moto_server).
pub fn dynamodb_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

/// A store in a fresh schema on the test Postgres server, reached through `proxy` (which must
/// stand in front of that server), with the production pool settings. Without TLS, so a
/// [`Proxy::cut_at`] can see the statements go by.
pub async fn postgres_via(proxy: &Proxy) -> Arc<dyn Store> {
    let url = proxy.rewrite(&postgres_url());
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}sslmode=disable");
    let store = meterline::store::postgres::connect_in_schema(&url, &namespace())
        .await
        .unwrap_or_else(|err| panic!("Postgres through {url} (run infra/services.sh): {err:#}"));
    Arc::new(store)
}

/// The AWS configuration of a client for the test endpoint reached at `endpoint`, in
/// `us-east-1` with static test credentials.
pub async fn aws_config_at(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "meterline-e2e",
        ))
        .load()
        .await
}

/// A fresh table on the test DynamoDB endpoint, reached through `proxy` (which must stand in
/// front of it), with the production client settings ([`DynamoStore::connect_with`]).
pub async fn dynamodb_via(proxy: &Proxy) -> Arc<dyn Store> {
    let config = aws_config_at(&proxy.endpoint()).await;
    let store = DynamoStore::connect_with(&config, &namespace(), true)
        .await
        .unwrap_or_else(|err| {
            panic!(
                "DynamoDB at {} through the proxy (run infra/services.sh): {err:#}",
                dynamodb_endpoint()
            )
        });
    Arc::new(store)
}

impl PrivateRedis {
    /// Kills the redis-server (its memory goes with it); the port stays this Redis's.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new, empty redis-server on the same port, once the old one is gone.
    pub async fn restart(&mut self) {
        self.kill();
        let started = Instant::now();
        loop {
            let child = std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &self.port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server is required (run infra/services.sh)");
            self.child = child;
            for _ in 0..40 {
                if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                    return;
                }
                if self.child.try_wait().ok().flatten().is_some() {
                    break; // it exited: the port was not free yet
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not come back on port {}",
                self.port
            );
            self.kill();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Awaits `future`, failing the test when it takes longer than `limit`: a fault must make
/// requests fail fast, never hang.
#[track_caller]
pub fn within<F: Future>(
    limit: Duration,
    what: &str,
    future: F,
) -> impl Future<Output = F::Output> {
    let caller = std::panic::Location::caller();
    let what = what.to_owned();
    async move {
        let started = Instant::now();
        match tokio::time::timeout(limit, future).await {
            Ok(output) => output,
            Err(_) => panic!(
                "{what} took longer than {limit:?} (since {:?} ago), at {caller}",
                started.elapsed()
            ),
        }
    }
}

/// Polls `probe` every 100 ms until it returns true, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !probe().await {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
