//! The summary: requests and latencies per kind, the books per org and meter, the rate limits,
//! where the CPU went, and the checks with the verdict.

use crate::Args;
use crate::books::{Books, Status};
use crate::consumer::Consumed;
use crate::setup::Tenants;
use crate::stack::Stack;
use crate::traffic::{Kind, Record};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Which processes a CPU row adds up.
#[derive(Debug, Clone)]
enum Select {
    Pids(Vec<u32>),
    Cmdline(String),
    Comm(String),
}

/// A row of the CPU table: a label and the processes it covers.
#[derive(Debug, Clone)]
pub struct Process {
    label: String,
    select: Select,
}

impl Process {
    /// These processes.
    pub fn pids(label: &str, pids: Vec<u32>) -> Self {
        Self {
            label: label.into(),
            select: Select::Pids(pids),
        }
    }

    /// Every process whose command line contains `needle`.
    pub fn matching(label: &str, needle: &str) -> Self {
        Self {
            label: label.into(),
            select: Select::Cmdline(needle.into()),
        }
    }

    /// Every process whose name is `comm`.
    pub fn named(label: &str, comm: &str) -> Self {
        Self {
            label: label.into(),
            select: Select::Comm(comm.into()),
        }
    }

    fn pids_now(&self) -> Vec<u32> {
        match &self.select {
            Select::Pids(pids) => pids.clone(),
            Select::Cmdline(needle) => all_pids()
                .into_iter()
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|raw| String::from_utf8_lossy(&raw).contains(needle.as_str()))
                        .unwrap_or(false)
                })
                .collect(),
            Select::Comm(comm) => all_pids()
                .into_iter()
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .map(|name| name.trim() == comm)
                        .unwrap_or(false)
                })
                .collect(),
        }
    }
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// utime + stime of a process, in clock ticks.
fn ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Busy and total ticks of the whole machine (`/proc/stat`).
fn machine() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// CPU ticks per row at one moment.
#[derive(Debug)]
pub struct CpuSample {
    rows: Vec<(String, u64)>,
    machine: (u64, u64),
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
const TICKS: f64 = 100.0;

impl CpuSample {
    /// Reads the CPU time of each row's processes now.
    pub fn take(processes: &[Process]) -> Self {
        Self {
            rows: processes
                .iter()
                .map(|p| (p.label.clone(), p.pids_now().into_iter().map(ticks).sum()))
                .collect(),
            machine: machine(),
        }
    }

    /// CPU seconds per row between `before` and this sample, over `wall`.
    pub fn since(&self, before: &Self, wall: Duration) -> Cpu {
        let rows = self
            .rows
            .iter()
            .map(|(label, after)| {
                let before = before
                    .rows
                    .iter()
                    .find(|(l, _)| l == label)
                    .map_or(0, |(_, t)| *t);
                (label.clone(), after.saturating_sub(before) as f64 / TICKS)
            })
            .collect();
        let busy = self.machine.0.saturating_sub(before.machine.0) as f64;
        let total = self.machine.1.saturating_sub(before.machine.1) as f64;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Cpu {
            rows,
            machine_busy: if total > 0.0 {
                busy / total * cores as f64 * wall.as_secs_f64()
            } else {
                0.0
            },
            wall: wall.as_secs_f64(),
            cores,
        }
    }
}

/// Where the CPU went during the load.
#[derive(Debug)]
pub struct Cpu {
    rows: Vec<(String, f64)>,
    machine_busy: f64,
    wall: f64,
    cores: usize,
}

/// Everything the summary shows.
pub struct Summary<'a> {
    /// The command line.
    pub args: &'a Args,
    /// The services.
    pub stack: &'a Stack,
    /// Orgs and keys.
    pub tenants: &'a Tenants,
    /// Every request.
    pub records: &'a [Record],
    /// The queue's side.
    pub consumed: &'a Consumed,
    /// The verdict.
    pub books: &'a Books,
    /// How long the clients ran.
    pub elapsed: Duration,
    /// How long the queue took to drain after them.
    pub drain: Duration,
    /// The billing backlog the clients waited for.
    pub backlog: &'a crate::consumer::Backlog,
    /// CPU during the load.
    pub cpu: Cpu,
    /// The server's warnings and errors.
    pub server_log: Option<String>,
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

#[derive(Default)]
struct Row {
    sent: u64,
    served: u64,
    rate: u64,
    quota: u64,
    other_4xx: u64,
    server: u64,
    none: u64,
    latencies: Vec<u64>,
}

impl Row {
    fn add(&mut self, record: &Record) {
        self.sent += 1;
        match (record.status, record.code.as_deref()) {
            (0, _) => self.none += 1,
            (200..=299, _) => self.served += 1,
            (429, Some("rate_limited")) => self.rate += 1,
            (429, Some("quota_exceeded")) => self.quota += 1,
            (500.., _) => self.server += 1,
            _ => self.other_4xx += 1,
        }
        self.latencies.push(record.latency_us);
    }

    fn write(&mut self, f: &mut fmt::Formatter<'_>, name: &str, seconds: f64) -> fmt::Result {
        self.latencies.sort_unstable();
        writeln!(
            f,
            "{name:<22} {:>8} {:>7.1} {:>8} {:>8} {:>9} {:>6} {:>5} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            self.sent,
            self.sent as f64 / seconds,
            self.served,
            self.rate,
            self.quota,
            self.other_4xx,
            self.server,
            self.none,
            percentile(&self.latencies, 0.50),
            percentile(&self.latencies, 0.90),
            percentile(&self.latencies, 0.99),
            self.latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        )
    }
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "\n== meterline-load: {} clients x {} s (ran {:.1} s), seed {} ==",
            self.args.clients, self.args.seconds, seconds, self.args.seed
        )?;
        writeln!(f, "{}", self.stack.describe())?;
        writeln!(
            f,
            "tenants  {} orgs, {} keys (weights: {})",
            self.tenants.orgs.len(),
            self.tenants.keys.len(),
            self.tenants
                .keys
                .iter()
                .map(|k| format!("{}={}", k.label, k.weight))
                .collect::<Vec<_>>()
                .join(" ")
        )?;

        writeln!(
            f,
            "\n{:<22} {:>8} {:>7} {:>8} {:>8} {:>9} {:>6} {:>5} {:>6} {:>8} {:>8} {:>8} {:>8}",
            "requests",
            "sent",
            "rps",
            "2xx",
            "429 rate",
            "429 quota",
            "4xx",
            "5xx",
            "no ans",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms"
        )?;
        let mut by_kind: BTreeMap<Kind, Row> = BTreeMap::new();
        let mut by_endpoint: BTreeMap<&str, Row> = BTreeMap::new();
        let mut total = Row::default();
        for record in self.records {
            by_kind.entry(record.kind).or_default().add(record);
            by_endpoint
                .entry(record.kind.endpoint())
                .or_default()
                .add(record);
            total.add(record);
        }
        for (kind, row) in &mut by_kind {
            row.write(f, kind.name(), seconds)?;
        }
        for (endpoint, row) in &mut by_endpoint {
            row.write(f, &format!("/v1/{endpoint} (all)"), seconds)?;
        }
        // 2xx answers wait for the SQS send; 429s are the server and Redis alone.
        let mut served = Row::default();
        let mut refused = Row::default();
        for record in self.records {
            match record.status {
                200..=299 => served.add(record),
                429 => refused.add(record),
                _ => {}
            }
        }
        served.write(f, "2xx (with SQS send)", seconds)?;
        refused.write(f, "429 (no SQS)", seconds)?;
        total.write(f, "total", seconds)?;

        let buckets = 5u64;
        if let Some(start) = self.records.iter().map(|r| r.start_us).min() {
            let mut sent: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
            for record in self.records {
                let bucket =
                    u64::try_from(record.end_us - start).unwrap_or(0) / 1_000_000 / buckets;
                let entry = sent.entry(bucket).or_default();
                entry.0 += 1;
                if record.served() {
                    entry.1 += 1;
                }
            }
            let line: Vec<String> = sent
                .values()
                .map(|(all, ok)| format!("{}/{}", all / buckets, ok / buckets))
                .collect();
            writeln!(f, "rps (all/2xx) per {buckets} s: {}", line.join(" "))?;
        }
        let depth = &self.consumed.depth;
        if !depth.is_empty() {
            let line: Vec<String> = depth
                .chunks(usize::try_from(buckets).unwrap_or(5))
                .map(|c| {
                    c.iter()
                        .map(|(visible, in_flight)| visible + in_flight)
                        .max()
                        .unwrap_or(0)
                        .to_string()
                })
                .collect();
            writeln!(f, "queue depth (max) per {buckets} s: {}", line.join(" "))?;
        }

        let books = self.books;
        writeln!(
            f,
            "\nevents   {} promised by 2xx answers (distinct), {} distinct queued (+{} copies: {} sent again by clients or the sink, {} redelivered by SQS), {} with a dedup record in the store",
            books.promised_events,
            books.queued_events,
            books.redeliveries,
            books.redeliveries.saturating_sub(books.sqs_redelivered),
            books.sqs_redelivered,
            books.recorded_events
        )?;
        let c = self.consumed;
        writeln!(
            f,
            "billing  {} consumers: {} messages in {} receives; {:.1} s in ReceiveMessage, {:.1} s in billing::handle (Postgres), {:.1} s in DeleteMessageBatch; queue drained {:.1} s after the clients stopped; {} SQS errors{}",
            self.args.consumers,
            c.messages,
            c.receives,
            c.receive_time.as_secs_f64(),
            c.handle_time.as_secs_f64(),
            c.delete_time.as_secs_f64(),
            self.drain.as_secs_f64(),
            c.errors.len(),
            c.errors
                .first()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        )?;
        let waited = self
            .backlog
            .waited_us
            .load(std::sync::atomic::Ordering::Relaxed) as f64
            / 1e6;
        writeln!(
            f,
            "clients  waited {waited:.1} s in all ({:.0}% of their time) for the billing backlog to fall under {} messages",
            waited / (seconds * self.args.clients as f64) * 100.0,
            self.backlog.limit
        )?;
        writeln!(
            f,
            "store    {} event lookups in {:.1} s",
            books.queued_events,
            books.lookup_time.as_secs_f64()
        )?;

        writeln!(
            f,
            "\n{:<10} {:<9} {:>10} {:>10} {:>8} {:>16} {:>10} {:>10}  books",
            "org", "meter", "promised", "counted", "events", "quota", "limiter", "quota 429"
        )?;
        for row in &books.meters {
            writeln!(
                f,
                "{:<10} {:<9} {:>10} {:>10} {:>8} {:>16} {:>10} {:>10}  {}",
                row.org,
                row.meter,
                row.promised,
                row.counted,
                row.events,
                row.quota,
                row.limiter.map_or("-".into(), |v| v.to_string()),
                row.refused,
                if row.promised == row.counted {
                    "="
                } else {
                    "DIFFERENT"
                }
            )?;
        }

        writeln!(
            f,
            "\n{:<16} {:>8} {:>8} {:>8} {:>8} {:>7} {:>9} {:>7}",
            "rate limit", "rpm", "sent", "served", "bound", "used", "rate 429", "span s"
        )?;
        for row in &books.rates {
            writeln!(
                f,
                "{:<16} {:>8} {:>8} {:>8} {:>8} {:>6.1}% {:>9} {:>7.1}",
                row.who,
                row.rpm,
                row.sent,
                row.served,
                row.bound,
                if row.bound > 0 {
                    row.served as f64 / row.bound as f64 * 100.0
                } else {
                    0.0
                },
                row.limited,
                row.span
            )?;
        }

        writeln!(
            f,
            "\ncpu during the load ({:.1} s wall, {} cores = {:.0} cpu-s):",
            self.cpu.wall,
            self.cpu.cores,
            self.cpu.wall * self.cpu.cores as f64
        )?;
        let mut tracked = 0.0;
        for (label, secs) in &self.cpu.rows {
            tracked += secs;
            writeln!(
                f,
                "  {label:<22} {secs:>7.1} cpu-s  {:>5.0}% of a core",
                secs / self.cpu.wall * 100.0
            )?;
        }
        writeln!(
            f,
            "  {:<22} {:>7.1} cpu-s  (kernel, other processes)",
            "everything else",
            (self.cpu.machine_busy - tracked).max(0.0)
        )?;
        writeln!(
            f,
            "  {:<22} {:>7.1} cpu-s  {:>5.0}% of the machine",
            "machine busy",
            self.cpu.machine_busy,
            self.cpu.machine_busy / (self.cpu.wall * self.cpu.cores as f64) * 100.0
        )?;
        if let Some(log) = &self.server_log {
            writeln!(f, "\n{log}")?;
        }

        writeln!(f, "\nchecks")?;
        for check in &books.checks {
            let mark = match check.status {
                Status::Ok => "OK  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            writeln!(f, "  {mark} {}: {}", check.name, check.detail)?;
        }
        let failed = books
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        if failed == 0 {
            write!(f, "\nBOOKS OK: every check holds")
        } else {
            write!(f, "\nBOOKS FAIL: {failed} checks do not hold")
        }
    }
}
