//! The clients: each a tokio task on the shared HTTP client, sending one request after another
//! until the time is up, and recording every answer (status, code, what was sent, when).
//!
//! The mix per request: 55% `/v1/verify` (a meter and quantity), else `/v1/events`: a fresh batch
//! of 1-20 events with ids unique to the run (sometimes one id twice in the batch), or 5% a
//! resend of a batch this client already had accepted (idempotency: nothing may count twice),
//! 3% a batch half made of already-accepted events and half of new ones, 3% a retry of a batch
//! that was refused with 429 (its events count only if the retry is accepted).

use crate::consumer::Backlog;
use crate::setup::Tenants;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The meters the clients use.
pub const METERS: [&str; 3] = ["requests", "tokens", "images"];

/// The most accepted (and refused) batches a client remembers for resends and retries.
const REMEMBER: usize = 64;

/// One usage event as a client sends it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The client-chosen id, unique to the run.
    pub id: String,
    /// Its meter.
    pub meter: &'static str,
    /// Its quantity.
    pub quantity: u64,
    /// An explicit time (some events are up to three hours old), else the server's now.
    pub timestamp: Option<String>,
}

/// The events of one `/v1/events` body, in order (an id may appear twice).
#[derive(Debug)]
pub struct Batch {
    /// The events as sent.
    pub events: Vec<Event>,
}

impl Batch {
    /// The events the server counts for this request: the first of each id.
    pub fn distinct(&self) -> Vec<&Event> {
        let mut seen = HashSet::new();
        self.events
            .iter()
            .filter(|event| seen.insert(event.id.as_str()))
            .collect()
    }

    fn body(&self) -> Value {
        let events: Vec<Value> = self
            .events
            .iter()
            .map(|event| {
                let mut value =
                    json!({"id": event.id, "meter": event.meter, "quantity": event.quantity});
                if let Some(at) = &event.timestamp {
                    value["timestamp"] = json!(at);
                }
                value
            })
            .collect();
        json!({ "events": events })
    }
}

/// What a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `/v1/verify`.
    Verify,
    /// `/v1/events` with new events.
    Fresh,
    /// `/v1/events` again with a batch that was accepted before.
    Resend,
    /// `/v1/events` with some accepted events and some new ones.
    Overlap,
    /// `/v1/events` again with a batch that was refused before.
    Retry,
}

impl Kind {
    /// The endpoint's short name.
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            _ => "events",
        }
    }

    /// The name in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Fresh => "events (new)",
            Self::Resend => "events (resent)",
            Self::Overlap => "events (overlap)",
            Self::Retry => "events (retry of 429)",
        }
    }
}

/// One request and its answer.
#[derive(Debug)]
pub struct Record {
    /// Index of the key in [`Tenants::keys`].
    pub key: usize,
    /// What was sent.
    pub kind: Kind,
    /// The status; 0 when no answer came (a transport error or timeout).
    pub status: u16,
    /// The problem's `code` of an error answer.
    pub code: Option<String>,
    /// Wall clock (Unix µs) just before sending.
    pub start_us: i64,
    /// Wall clock (Unix µs) once the answer was read.
    pub end_us: i64,
    /// How long it took (µs).
    pub latency_us: u64,
    /// For verify: the meter and quantity.
    pub verify: Option<(&'static str, u64)>,
    /// For events: the batch.
    pub batch: Option<Arc<Batch>>,
    /// What was wrong with the answer beyond its status (a contract violation), or the
    /// transport error.
    pub problem: Option<String>,
}

impl Record {
    /// A 2xx answer.
    pub fn served(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One request to send: the key, what it is, and its body's contents.
struct Request {
    key: usize,
    kind: Kind,
    verify: Option<(&'static str, u64)>,
    batch: Option<Arc<Batch>>,
}

impl Request {
    fn events(key: usize, kind: Kind, batch: Arc<Batch>) -> Self {
        Self {
            key,
            kind,
            verify: None,
            batch: Some(batch),
        }
    }
}

struct Client {
    id: usize,
    rng: StdRng,
    seq: u64,
    picks: Vec<u32>,
    accepted: Vec<(usize, Arc<Batch>)>,
    refused: Vec<(usize, Arc<Batch>)>,
}

fn quantity(rng: &mut StdRng, meter: &str) -> u64 {
    match meter {
        "tokens" => rng.gen_range(1..=200),
        "images" => rng.gen_range(1..=3),
        _ => rng.gen_range(1..=5),
    }
}

fn remember(list: &mut Vec<(usize, Arc<Batch>)>, rng: &mut StdRng, entry: (usize, Arc<Batch>)) {
    if list.len() < REMEMBER {
        list.push(entry);
    } else {
        let at = rng.gen_range(0..list.len());
        list[at] = entry;
    }
}

impl Client {
    fn new_event(&mut self) -> Event {
        self.seq += 1;
        let meter = METERS[self.rng.gen_range(0..METERS.len())];
        let timestamp = (self.rng.gen_range(0..100) < 20).then(|| {
            let age = chrono::Duration::seconds(self.rng.gen_range(0..3 * 3600));
            (chrono::Utc::now() - age).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        });
        Event {
            id: format!("c{}-{}", self.id, self.seq),
            meter,
            quantity: quantity(&mut self.rng, meter),
            timestamp,
        }
    }

    fn pick_key(&mut self) -> usize {
        let total = self.picks.last().copied().unwrap_or(1);
        let roll = self.rng.gen_range(0..total);
        self.picks.partition_point(|&bound| bound <= roll)
    }

    /// The next request: its key, its kind and its body.
    fn next(&mut self) -> Request {
        let roll = self.rng.gen_range(0..100);
        if roll < 55 {
            let meter = match self.rng.gen_range(0..10) {
                0..=4 => "requests",
                5..=8 => "tokens",
                _ => "images",
            };
            let quantity = quantity(&mut self.rng, meter);
            return Request {
                key: self.pick_key(),
                kind: Kind::Verify,
                verify: Some((meter, quantity)),
                batch: None,
            };
        }
        if roll < 60 && !self.accepted.is_empty() {
            let (key, batch) = &self.accepted[self.rng.gen_range(0..self.accepted.len())];
            return Request::events(*key, Kind::Resend, Arc::clone(batch));
        }
        if roll < 63 && !self.accepted.is_empty() {
            let (key, old) = self.accepted[self.rng.gen_range(0..self.accepted.len())].clone();
            let old = old.distinct();
            let mut events: Vec<Event> = old
                .iter()
                .take(old.len().div_ceil(2))
                .map(|event| (*event).clone())
                .collect();
            for _ in 0..self.rng.gen_range(1..=5) {
                events.push(self.new_event());
            }
            return Request::events(key, Kind::Overlap, Arc::new(Batch { events }));
        }
        if roll < 66 && !self.refused.is_empty() {
            let at = self.rng.gen_range(0..self.refused.len());
            let (key, batch) = self.refused.swap_remove(at);
            return Request::events(key, Kind::Retry, batch);
        }
        let size = self.rng.gen_range(1..=20);
        let mut events: Vec<Event> = (0..size).map(|_| self.new_event()).collect();
        if self.rng.gen_range(0..100) < 3 {
            // The same id twice in one request is one event.
            let twin = events[self.rng.gen_range(0..events.len())].clone();
            events.push(twin);
        }
        Request::events(self.pick_key(), Kind::Fresh, Arc::new(Batch { events }))
    }
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Sends one request and reads its answer into a record, checking the answer's shape.
async fn send(http: &reqwest::Client, base: &str, tenants: &Tenants, request: Request) -> Record {
    let Request {
        key: key_index,
        kind,
        verify,
        batch,
    } = request;
    let key = &tenants.keys[key_index];
    let body = match (&verify, &batch) {
        (Some((meter, quantity)), _) => json!({"meter": meter, "quantity": quantity}),
        (None, Some(batch)) => batch.body(),
        (None, None) => json!({}),
    };
    let started = Instant::now();
    let start_us = now_us();
    let sent = http
        .post(format!("{base}/v1/{}", kind.endpoint()))
        .header("x-api-key", &key.secret)
        .json(&body)
        .send()
        .await;
    let (status, code, problem) = match sent {
        Err(err) => (0, None, Some(format!("transport: {err}"))),
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            match response.bytes().await {
                Err(err) => (status, None, Some(format!("reading the body: {err}"))),
                Ok(bytes) => {
                    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    let code = answer["code"].as_str().map(str::to_owned);
                    let problem = contract(
                        tenants,
                        key_index,
                        status,
                        retry_after,
                        &answer,
                        batch.as_deref(),
                    );
                    (status, code, problem)
                }
            }
        }
    };
    Record {
        key: key_index,
        kind,
        status,
        code,
        start_us,
        end_us: now_us(),
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        verify,
        batch,
        problem,
    }
}

/// What is wrong with an answer beyond its status, if anything.
fn contract(
    tenants: &Tenants,
    key_index: usize,
    status: u16,
    retry_after: bool,
    answer: &Value,
    batch: Option<&Batch>,
) -> Option<String> {
    let key = &tenants.keys[key_index];
    match (status, batch) {
        (200, None) => {
            let ok = answer["valid"] == json!(true)
                && answer["key_id"].as_str() == Some(key.id.as_str())
                && answer["org_id"].as_str() == Some(tenants.orgs[key.org].id.as_str());
            (!ok).then(|| format!("verify 200 with an unexpected body: {answer}"))
        }
        (202, Some(batch)) => {
            // New events are `accepted`, those counted before `duplicates`: all are answered.
            let distinct = batch.distinct().len() as u64;
            let answered = answer["accepted"]
                .as_u64()
                .zip(answer["duplicates"].as_u64())
                .map(|(new, seen)| new + seen);
            (answered != Some(distinct))
                .then(|| format!("events 202 says {answer} for {distinct} distinct events"))
        }
        (429, _) => match answer["code"].as_str() {
            Some("rate_limited" | "quota_exceeded") if retry_after => None,
            Some("rate_limited" | "quota_exceeded") => Some("429 without Retry-After".into()),
            _ => Some(format!("429 with an unknown code: {answer}")),
        },
        _ => Some(format!("unexpected {status}: {answer}")),
    }
}

async fn client(
    http: reqwest::Client,
    base: Arc<str>,
    tenants: Arc<Tenants>,
    id: usize,
    seed: u64,
    deadline: Instant,
    backlog: Arc<Backlog>,
) -> Vec<Record> {
    let picks = tenants
        .keys
        .iter()
        .scan(0, |sum, key| {
            *sum += key.weight;
            Some(*sum)
        })
        .collect();
    let mut me = Client {
        id,
        rng: StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        seq: 0,
        picks,
        accepted: Vec::new(),
        refused: Vec::new(),
    };
    let mut records = Vec::new();
    while Instant::now() < deadline {
        let request = me.next();
        // A served request makes the server send one message per distinct event.
        let messages = match &request.batch {
            Some(batch) => batch.distinct().len() as u64,
            None => 1,
        };
        backlog.reserve(messages).await;
        if Instant::now() >= deadline {
            backlog.release(messages);
            break;
        }
        let record = send(&http, &base, &tenants, request).await;
        if !record.served() {
            backlog.release(messages);
        }
        if let Some(batch) = &record.batch {
            let entry = (record.key, Arc::clone(batch));
            match (record.status, record.kind) {
                (202, Kind::Fresh | Kind::Overlap | Kind::Retry) => {
                    remember(&mut me.accepted, &mut me.rng, entry);
                }
                (429, Kind::Fresh | Kind::Retry) if me.rng.gen_range(0..2) == 0 => {
                    remember(&mut me.refused, &mut me.rng, entry);
                }
                _ => {}
            }
        }
        records.push(record);
    }
    records
}

/// Runs `clients` clients for `duration`; every record, in no particular order. A client that
/// fails loses its records, so the books could not be checked: that is an error.
pub async fn run(
    http: &reqwest::Client,
    base: &str,
    tenants: &Arc<Tenants>,
    clients: usize,
    duration: Duration,
    seed: u64,
    backlog: &Arc<Backlog>,
) -> anyhow::Result<Vec<Record>> {
    let deadline = Instant::now() + duration;
    let base: Arc<str> = Arc::from(base);
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..clients {
        tasks.spawn(client(
            http.clone(),
            Arc::clone(&base),
            Arc::clone(tenants),
            id,
            seed,
            deadline,
            Arc::clone(backlog),
        ));
    }
    let mut records = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let mut part = done.map_err(|err| anyhow::anyhow!("a client task failed: {err}"))?;
        records.append(&mut part);
    }
    Ok(records)
}
