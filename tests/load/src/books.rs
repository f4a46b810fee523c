//! The books: what the clients were promised (their 2xx answers) against what reached the
//! queue, what the store counted, and what the limiter allowed.
//!
//! Exactly once, in three steps, each exact:
//! 1. promised = queued: the distinct client event ids of all 2xx `/v1/events` answers are
//!    exactly the client ids in the queue (nothing missing, nothing a refused request sent), each
//!    with its meter and quantity; and per key and meter, the quantities of the 2xx `/v1/verify`
//!    answers are exactly (as a multiset) those of the server-named (`evt_…`) events queued;
//! 2. queued = recorded: every distinct queued event has its dedup record in the store, with
//!    its meter and quantity;
//! 3. recorded = counted: per org and meter, the store's hour, day and month counters each add
//!    up to exactly the promised quantity (verify quantities plus the quantity of each distinct
//!    accepted event once, however often it was resent).
//!
//! Limits: no org's counted total of a hard-quota meter exceeds its quota, and the limiter's
//! own quota counter equals the quantities of the 2xx requests, each event id once (a resent
//! event spends no quota: the limiter remembers ids within its dedup window). No key or org was served more than GCRA allows:
//! with `L` per minute, interval `T = floor(60 s / L)` (µs, as the limiter computes it), `n`
//! allowed requests at server times `t_1 <= … <= t_n` satisfy `TAT_n >= t_1 + n·T` and
//! `TAT_n - t_n <= L·T`, so `n <= L + floor((t_n - t_1) / T)`; `t_1` and `t_n` are bounded by
//! the first allowed request's send time and the last one's answer time (same clock, rounded
//! out to the server's milliseconds).

use crate::consumer::Consumed;
use crate::setup::Tenants;
use crate::traffic::Record;
use chrono::{DateTime, Datelike as _, TimeZone as _, Utc};
use meterline::domain::{Granularity, OrgId, UsageEvent};
use meterline::store::Store;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the books are checked from.
pub struct Inputs<'a> {
    /// The orgs and keys.
    pub tenants: &'a Tenants,
    /// Every request and answer.
    pub records: &'a [Record],
    /// What the queue delivered.
    pub consumed: &'a Consumed,
    /// The store billing wrote to.
    pub store: &'a Arc<dyn Store>,
    /// The limiter's Redis, when known.
    pub redis: Option<&'a str>,
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Holds.
    Ok,
    /// Holds, but the run did not exercise what it should have (e.g. no limit was hit).
    Warn,
    /// Does not hold.
    Fail,
}

/// One line of the verdict.
#[derive(Debug)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// Whether it held.
    pub status: Status,
    /// The numbers behind it.
    pub detail: String,
}

/// One org and meter in the books.
#[derive(Debug)]
pub struct MeterRow {
    /// The org's label.
    pub org: String,
    /// The meter.
    pub meter: String,
    /// Units promised by 2xx answers.
    pub promised: u64,
    /// Units in the store's month counters.
    pub counted: u64,
    /// Distinct events counted for it.
    pub events: u64,
    /// `hard N`, `N + overage`, or `-`.
    pub quota: String,
    /// The limiter's quota counter (units of 2xx requests, each event id once), when known.
    pub limiter: Option<u64>,
    /// Quota refusals of the org (any meter).
    pub refused: u64,
}

/// One rate limit in the books.
#[derive(Debug)]
pub struct RateRow {
    /// `key <label>` or `org <label>`.
    pub who: String,
    /// Requests per minute.
    pub rpm: u32,
    /// Requests sent.
    pub sent: u64,
    /// 2xx answers.
    pub served: u64,
    /// The most GCRA allows over the served requests' span.
    pub bound: u64,
    /// The most GCRA allows over the span of all requests sent (more sent: it must refuse).
    pub bound_sent: u64,
    /// The span (seconds).
    pub span: f64,
    /// 429 `rate_limited` answers.
    pub limited: u64,
}

/// The verdict and the tables behind it.
#[derive(Debug)]
pub struct Books {
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// Per org and meter.
    pub meters: Vec<MeterRow>,
    /// Per limited key, and per org.
    pub rates: Vec<RateRow>,
    /// Distinct events promised (client events + verify).
    pub promised_events: u64,
    /// Distinct events in the queue.
    pub queued_events: u64,
    /// Queue deliveries beyond the first of each event (client resends included).
    pub redeliveries: u64,
    /// Of those, messages SQS delivered again (same message id).
    pub sqs_redelivered: u64,
    /// Dedup records found in the store.
    pub recorded_events: u64,
    /// How long the store lookups took.
    pub lookup_time: Duration,
}

impl Books {
    /// Whether every check held.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }
}

fn verdict(checks: &mut Vec<Check>, name: &str, ok: bool, detail: String) {
    checks.push(Check {
        name: name.into(),
        status: if ok { Status::Ok } else { Status::Fail },
        detail,
    });
}

fn examples<T: std::fmt::Debug>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<T> = items.into_iter().take(3).collect();
    if items.is_empty() {
        String::new()
    } else {
        format!(" e.g. {items:?}")
    }
}

/// The most a GCRA limit of `rpm` lets through between `first_us` and `last_us` (client wall
/// clock, rounded out to the server's milliseconds).
pub fn gcra_bound(rpm: u32, first_us: i64, last_us: i64) -> u64 {
    let interval = 60_000_000 / i64::from(rpm.max(1));
    let lo = first_us.div_euclid(1000) * 1000;
    let hi = (last_us + 999).div_euclid(1000) * 1000;
    u64::from(rpm) + u64::try_from((hi - lo).max(0) / interval).unwrap_or(0)
}

/// The month keys (`2026-11`) the limiter used between two times.
fn months(from_us: i64, to_us: i64) -> BTreeSet<String> {
    [from_us, to_us]
        .into_iter()
        .filter_map(|us| Utc.timestamp_micros(us).single())
        .map(|at: DateTime<Utc>| format!("{:04}-{:02}", at.year(), at.month()))
        .collect()
}

/// The requests of one key or org, for its rate-limit row.
struct Span {
    sent: u64,
    served: u64,
    first: i64,
    last: i64,
    sent_span: (i64, i64),
    limited: u64,
}

impl Span {
    fn row(self, who: String, rpm: u32) -> RateRow {
        RateRow {
            who,
            rpm,
            sent: self.sent,
            served: self.served,
            bound: gcra_bound(rpm, self.first, self.last),
            bound_sent: gcra_bound(rpm, self.sent_span.0, self.sent_span.1),
            span: (self.last - self.first) as f64 / 1e6,
            limited: self.limited,
        }
    }
}

/// A client event as promised: meter, quantity, org.
type Promise = (String, u64, usize);

/// Checks everything; an error only when the store or Redis could not be read.
pub async fn check(inputs: Inputs<'_>) -> anyhow::Result<Books> {
    let Inputs {
        tenants,
        records,
        consumed,
        store,
        redis,
    } = inputs;
    let mut checks = Vec::new();
    let org_index: HashMap<&str, usize> = tenants
        .orgs
        .iter()
        .enumerate()
        .map(|(i, o)| (o.id.as_str(), i))
        .collect();
    let key_index: HashMap<&str, usize> = tenants
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.id.as_str(), i))
        .collect();

    // --- The answers themselves.
    let server_errors = records.iter().filter(|r| r.status >= 500).count();
    verdict(
        &mut checks,
        "no 5xx",
        server_errors == 0,
        format!(
            "{server_errors} answers >= 500{}",
            examples(
                records
                    .iter()
                    .filter(|r| r.status >= 500)
                    .map(|r| r.problem.as_deref().unwrap_or(""))
            )
        ),
    );
    let transport = records.iter().filter(|r| r.status == 0).count();
    verdict(
        &mut checks,
        "every request answered",
        transport == 0,
        format!(
            "{transport} transport errors or timeouts{}",
            examples(
                records
                    .iter()
                    .filter(|r| r.status == 0)
                    .map(|r| r.problem.as_deref().unwrap_or(""))
            )
        ),
    );
    let unknown_429: Vec<&Record> = records
        .iter()
        .filter(|r| r.status == 429 && r.problem.is_some())
        .collect();
    verdict(
        &mut checks,
        "every 429 is rate_limited or quota_exceeded, with Retry-After",
        unknown_429.is_empty(),
        format!(
            "{} of {} 429s not{}",
            unknown_429.len(),
            records.iter().filter(|r| r.status == 429).count(),
            examples(
                unknown_429
                    .iter()
                    .map(|r| r.problem.as_deref().unwrap_or(""))
            )
        ),
    );
    let unexpected: Vec<&Record> = records
        .iter()
        .filter(|r| r.status != 429 && r.status > 0 && r.status < 500 && r.problem.is_some())
        .collect();
    verdict(
        &mut checks,
        "every other answer is 200 verify / 202 events as documented",
        unexpected.is_empty(),
        format!(
            "{} unexpected{}",
            unexpected.len(),
            examples(
                unexpected
                    .iter()
                    .map(|r| r.problem.as_deref().unwrap_or(""))
            )
        ),
    );

    // --- Promised: what the 2xx answers stand for.
    let mut promised_events: HashMap<(usize, &str), Promise> = HashMap::new();
    let mut promised_verify: BTreeMap<(usize, &str), Vec<u64>> = BTreeMap::new();
    let mut promised_units: BTreeMap<(usize, String), u64> = BTreeMap::new();
    let mut limiter_units: BTreeMap<(usize, String), u64> = BTreeMap::new();
    let mut inconsistent = 0;
    for record in records.iter().filter(|r| r.served()) {
        let org = tenants.keys[record.key].org;
        if let Some((meter, quantity)) = record.verify {
            promised_verify
                .entry((record.key, meter))
                .or_default()
                .push(quantity);
            *promised_units.entry((org, meter.into())).or_default() += quantity;
            *limiter_units.entry((org, meter.into())).or_default() += quantity;
        }
        if let Some(batch) = &record.batch {
            for event in batch.distinct() {
                let promise = (event.meter.to_owned(), event.quantity, org);
                match promised_events.get(&(org, event.id.as_str())) {
                    Some(earlier) if *earlier != promise => inconsistent += 1,
                    Some(_) => {}
                    None => {
                        // A resent id spends no quota again: the limiter counts it once too.
                        *limiter_units.entry((org, event.meter.into())).or_default() +=
                            event.quantity;
                        *promised_units.entry((org, event.meter.into())).or_default() +=
                            event.quantity;
                        promised_events.insert((org, event.id.as_str()), promise);
                    }
                }
            }
        }
    }
    if inconsistent > 0 {
        verdict(
            &mut checks,
            "the tool sent each event id with one meter and quantity",
            false,
            format!("{inconsistent} ids sent with different contents (a load tool bug)"),
        );
    }

    // --- Queued: what reached the queue, each event once.
    let mut queued: HashMap<(&str, &str), &UsageEvent> = HashMap::new();
    // More than one copy of an event: a client resent it (the server stamps events without a
    // timestamp with its own clock, so such copies differ in time only), SQS delivered a
    // message twice, or the sink retried a send that had gone through.
    let mut redeliveries = 0u64;
    let mut changed_copies = Vec::new();
    for event in &consumed.events {
        match queued.get(&(event.org_id.as_str(), event.id.as_str())) {
            Some(first) => {
                redeliveries += 1;
                if (&first.meter, first.quantity, &first.key_id)
                    != (&event.meter, event.quantity, &event.key_id)
                {
                    changed_copies.push(event.id.clone());
                }
            }
            None => {
                queued.insert((event.org_id.as_str(), event.id.as_str()), event);
            }
        }
    }
    let mut queued_verify: BTreeMap<(usize, &str), Vec<u64>> = BTreeMap::new();
    let mut missing = Vec::new();
    let mut unexpected_events = Vec::new();
    let mut mismatched = Vec::new();
    let mut foreign = 0u64;
    for ((org_id, id), event) in &queued {
        let Some(&org) = org_index.get(org_id) else {
            foreign += 1;
            continue;
        };
        let key = key_index.get(event.key_id.as_str()).copied();
        if key.is_none_or(|k| tenants.keys[k].org != org) {
            mismatched.push(format!("{id}: key {} not of org {org_id}", event.key_id));
            continue;
        }
        if id.starts_with("evt_") {
            if let Some(meter) = crate::traffic::METERS
                .iter()
                .find(|m| **m == event.meter.as_str())
            {
                queued_verify
                    .entry((key.unwrap_or_default(), meter))
                    .or_default()
                    .push(event.quantity);
            } else {
                mismatched.push(format!("{id}: meter {}", event.meter));
            }
            continue;
        }
        match promised_events.get(&(org, id)) {
            None => unexpected_events.push(id.to_string()),
            Some((meter, quantity, _)) if *meter != event.meter || *quantity != event.quantity => {
                mismatched.push(format!(
                    "{id}: sent {meter}x{quantity}, queued {}x{}",
                    event.meter, event.quantity
                ));
            }
            Some(_) => {}
        }
    }
    for (org, id) in promised_events.keys() {
        if !queued.contains_key(&(tenants.orgs[*org].id.as_str(), *id)) {
            missing.push(id.to_string());
        }
    }
    verdict(
        &mut checks,
        "queue = promised: every accepted event id queued, no refused one",
        missing.is_empty() && unexpected_events.is_empty() && mismatched.is_empty() && foreign == 0,
        format!(
            "{} distinct ids promised; {} missing{}, {} queued without a 2xx{}, {} with other contents{}, {} of unknown orgs",
            promised_events.len(),
            missing.len(),
            examples(&missing),
            unexpected_events.len(),
            examples(&unexpected_events),
            mismatched.len(),
            examples(&mismatched),
            foreign
        ),
    );
    let mut verify_diffs = Vec::new();
    let verify_keys: BTreeSet<(usize, &str)> = promised_verify
        .keys()
        .chain(queued_verify.keys())
        .copied()
        .collect();
    let mut promised_verify_count = 0u64;
    for key in verify_keys {
        let mut promised = promised_verify.get(&key).cloned().unwrap_or_default();
        let mut queued = queued_verify.get(&key).cloned().unwrap_or_default();
        promised_verify_count += promised.len() as u64;
        promised.sort_unstable();
        queued.sort_unstable();
        if promised != queued {
            verify_diffs.push(format!(
                "{} {}: {} served, {} queued",
                tenants.keys[key.0].label,
                key.1,
                promised.len(),
                queued.len()
            ));
        }
    }
    verdict(
        &mut checks,
        "queue = promised: one event per 2xx verify (per key, meter, quantity)",
        verify_diffs.is_empty(),
        format!(
            "{promised_verify_count} verify 2xx; {} key/meter pairs differ{}",
            verify_diffs.len(),
            examples(&verify_diffs)
        ),
    );
    verdict(
        &mut checks,
        "every copy of an event id has the same meter, quantity and key",
        changed_copies.is_empty(),
        format!(
            "{redeliveries} extra copies ({} redelivered by SQS, the rest sent again by clients or the sink), {} differing{}",
            consumed.redelivered,
            changed_copies.len(),
            examples(&changed_copies)
        ),
    );
    let failed = consumed.failed.len();
    verdict(
        &mut checks,
        "billing accepted every message, and the queue drained",
        failed == 0 && consumed.undecodable == 0 && consumed.left.is_none(),
        format!(
            "{} messages received, {failed} reported as failed, {} undecodable, left in the queue: {}",
            consumed.messages,
            consumed.undecodable,
            consumed.left.map_or("none".into(), |(v, f)| format!(
                "{v} visible, {f} in flight"
            ))
        ),
    );

    // --- Recorded: every queued event has its dedup record.
    let lookup_started = Instant::now();
    let (recorded, lookup_problems) = lookups(store, &queued).await;
    let lookup_time = lookup_started.elapsed();
    verdict(
        &mut checks,
        "store = queue: every queued event has its dedup record, same meter and quantity",
        lookup_problems.is_empty() && recorded == queued.len() as u64,
        format!(
            "{recorded} of {} found{}",
            queued.len(),
            examples(&lookup_problems)
        ),
    );

    // --- Counted: the counters add up to what was promised, in every granularity.
    let mut counted: BTreeMap<(usize, String, Granularity), u64> = BTreeMap::new();
    let to = Utc::now() + chrono::Duration::days(2);
    let from = DateTime::<Utc>::UNIX_EPOCH;
    for (index, org) in tenants.orgs.iter().enumerate() {
        let id = OrgId::parse(&org.id)
            .ok_or_else(|| anyhow::anyhow!("org id {} does not parse", org.id))?;
        for granularity in Granularity::ALL {
            for point in store
                .usage_series(&id, granularity, from, to, None)
                .await
                .map_err(|err| anyhow::anyhow!("usage_series: {err}"))?
            {
                *counted
                    .entry((index, point.meter, granularity))
                    .or_default() += point.quantity;
            }
        }
    }
    let mut count_diffs = Vec::new();
    let mut pairs: BTreeSet<(usize, String)> = promised_units.keys().cloned().collect();
    pairs.extend(counted.keys().map(|(o, m, _)| (*o, m.clone())));
    for (org, meter) in &pairs {
        let promised = promised_units
            .get(&(*org, meter.clone()))
            .copied()
            .unwrap_or(0);
        for granularity in Granularity::ALL {
            let got = counted
                .get(&(*org, meter.clone(), granularity))
                .copied()
                .unwrap_or(0);
            if got != promised {
                count_diffs.push(format!(
                    "{} {meter} by {}: promised {promised}, counted {got}",
                    tenants.orgs[*org].label,
                    granularity.as_str()
                ));
            }
        }
    }
    verdict(
        &mut checks,
        "counted = promised, per org and meter, by hour, day and month",
        count_diffs.is_empty(),
        format!(
            "{} org/meter pairs, {} differences{}",
            pairs.len(),
            count_diffs.len(),
            examples(&count_diffs)
        ),
    );

    // --- Quotas.
    let mut months_used = BTreeSet::new();
    if let (Some(first), Some(last)) = (
        records.iter().map(|r| r.start_us).min(),
        records.iter().map(|r| r.end_us).max(),
    ) {
        months_used = months(first, last);
    }
    let mut redis_connection = match redis {
        Some(url) => Some(
            redis::Client::open(url)?
                .get_multiplexed_async_connection()
                .await?,
        ),
        None => None,
    };
    let mut meters = Vec::new();
    let mut over_quota = Vec::new();
    let mut limiter_diffs = Vec::new();
    let mut quota_refusals = BTreeMap::new();
    for record in records {
        if record.status == 429 && record.code.as_deref() == Some("quota_exceeded") {
            *quota_refusals
                .entry(tenants.keys[record.key].org)
                .or_insert(0u64) += 1;
        }
    }
    let mut unexercised_quotas = Vec::new();
    for (org, meter) in &pairs {
        let plan = &tenants.orgs[*org].plan;
        let promised = promised_units
            .get(&(*org, meter.clone()))
            .copied()
            .unwrap_or(0);
        let month_total = counted
            .get(&(*org, meter.clone(), Granularity::Month))
            .copied()
            .unwrap_or(0);
        let hard = plan.hard_quota(meter);
        let mut limiter = None;
        if let (Some(limit), Some(connection)) = (hard, redis_connection.as_mut()) {
            let mut used = 0u64;
            for month in &months_used {
                let key = format!("ml:{{{}}}:quota:{meter}:{month}", tenants.orgs[*org].id);
                let value: Option<u64> =
                    redis::cmd("GET").arg(&key).query_async(connection).await?;
                used += value.unwrap_or(0);
            }
            let expected = limiter_units
                .get(&(*org, meter.clone()))
                .copied()
                .unwrap_or(0);
            if used != expected || used > limit {
                limiter_diffs.push(format!(
                    "{} {meter}: limiter counted {used}, 2xx requests carried {expected} (ids once), quota {limit}",
                    tenants.orgs[*org].label
                ));
            }
            limiter = Some(used);
        }
        if let Some(limit) = hard {
            if month_total > limit {
                over_quota.push(format!(
                    "{} {meter}: counted {month_total} > quota {limit}",
                    tenants.orgs[*org].label
                ));
            }
            // The scenario's quota orgs are meant to reach their quotas within a run.
            if tenants.orgs[*org].label.starts_with("quota-")
                && quota_refusals.get(org).copied().unwrap_or(0) == 0
            {
                unexercised_quotas.push(format!(
                    "{} {meter} ({month_total} of {limit})",
                    tenants.orgs[*org].label
                ));
            }
        }
        let events = queued
            .values()
            .filter(|e| org_index.get(e.org_id.as_str()) == Some(org) && e.meter == meter.as_str())
            .count() as u64;
        meters.push(MeterRow {
            org: tenants.orgs[*org].label.clone(),
            meter: meter.clone(),
            promised,
            counted: month_total,
            events,
            quota: match (hard, plan.included(meter)) {
                (Some(limit), _) => format!("hard {limit}"),
                (None, Some(included)) => format!("{included} + overage"),
                (None, None) => "-".into(),
            },
            limiter,
            refused: quota_refusals.get(org).copied().unwrap_or(0),
        });
    }
    verdict(
        &mut checks,
        "no org counted more than a hard quota",
        over_quota.is_empty(),
        format!(
            "{} hard-quota org/meter pairs over{}",
            over_quota.len(),
            examples(&over_quota)
        ),
    );
    if redis.is_some() {
        verdict(
            &mut checks,
            "limiter quota counters = units of the 2xx requests (each event id once)",
            limiter_diffs.is_empty(),
            format!(
                "{} differences{}",
                limiter_diffs.len(),
                examples(&limiter_diffs)
            ),
        );
    }
    checks.push(Check {
        name: "the quota-* orgs reached their hard quotas during the run".into(),
        status: if unexercised_quotas.is_empty() {
            Status::Ok
        } else {
            Status::Warn
        },
        detail: if unexercised_quotas.is_empty() {
            format!("{} quota refusals", quota_refusals.values().sum::<u64>())
        } else {
            format!("never refused: {}", unexercised_quotas.join(", "))
        },
    });

    // --- Rate limits.
    let mut rates = Vec::new();
    let span = |who: &dyn Fn(&Record) -> bool| {
        let mine: Vec<&Record> = records.iter().filter(|r| who(r)).collect();
        let served: Vec<&&Record> = mine.iter().filter(|r| r.served()).collect();
        let first = served.iter().map(|r| r.start_us).min().unwrap_or(0);
        let last = served.iter().map(|r| r.end_us).max().unwrap_or(0);
        let sent_first = mine.iter().map(|r| r.start_us).min().unwrap_or(0);
        let sent_last = mine.iter().map(|r| r.end_us).max().unwrap_or(0);
        let limited = mine
            .iter()
            .filter(|r| r.code.as_deref() == Some("rate_limited"))
            .count() as u64;
        Span {
            sent: mine.len() as u64,
            served: served.len() as u64,
            first,
            last,
            sent_span: (sent_first, sent_last),
            limited,
        }
    };
    for (index, key) in tenants.keys.iter().enumerate() {
        if let Some(rpm) = key.rpm {
            rates.push(span(&|r: &Record| r.key == index).row(format!("key {}", key.label), rpm));
        }
    }
    for (index, org) in tenants.orgs.iter().enumerate() {
        rates.push(
            span(&|r: &Record| tenants.keys[r.key].org == index)
                .row(format!("org {}", org.label), org.rpm),
        );
    }
    let over_rate: Vec<String> = rates
        .iter()
        .filter(|r| r.served > r.bound)
        .map(|r| format!("{}: served {} > {}", r.who, r.served, r.bound))
        .collect();
    verdict(
        &mut checks,
        "no key or org served more than GCRA allows (L + span/T)",
        over_rate.is_empty(),
        format!(
            "{} limits checked, {} over{}",
            rates.len(),
            over_rate.len(),
            examples(&over_rate)
        ),
    );
    let limited_total: u64 = rates
        .iter()
        .filter(|r| r.who.starts_with("key "))
        .map(|r| r.limited)
        .sum();
    let never_limited: Vec<&str> = rates
        .iter()
        .filter(|r| r.limited == 0 && r.sent > r.bound_sent)
        .map(|r| r.who.as_str())
        .collect();
    checks.push(Check {
        name: "rate limits were reached during the run".into(),
        status: if limited_total > 0 && never_limited.is_empty() {
            Status::Ok
        } else {
            Status::Warn
        },
        detail: if never_limited.is_empty() {
            format!("{limited_total} rate_limited answers on limited keys")
        } else {
            format!(
                "sent more than GCRA allows but never limited: {}",
                never_limited.join(", ")
            )
        },
    });
    Ok(Books {
        checks,
        meters,
        rates,
        promised_events: promised_events.len() as u64 + promised_verify_count,
        queued_events: queued.len() as u64,
        redeliveries,
        sqs_redelivered: consumed.redelivered,
        recorded_events: recorded,
        lookup_time,
    })
}

/// Looks every queued event up in the store (16 lookups at a time): how many were found as
/// queued, and what was wrong with the others.
async fn lookups(
    store: &Arc<dyn Store>,
    queued: &HashMap<(&str, &str), &UsageEvent>,
) -> (u64, Vec<String>) {
    const WORKERS: usize = 16;
    let wanted: Vec<UsageEvent> = queued.values().map(|e| (*e).clone()).collect();
    let share = wanted.len().div_ceil(WORKERS).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in wanted.chunks(share) {
        let (store, chunk) = (Arc::clone(store), chunk.to_vec());
        tasks.spawn(async move {
            let mut found = 0u64;
            let mut problems = Vec::new();
            for event in chunk {
                match store.usage_event(&event.org_id, &event.id).await {
                    Ok(Some(stored))
                        if stored.meter == event.meter
                            && stored.quantity == event.quantity
                            && stored.key_id == event.key_id =>
                    {
                        found += 1;
                    }
                    Ok(Some(stored)) => problems.push(format!(
                        "{}: stored {}x{}, queued {}x{}",
                        event.id, stored.meter, stored.quantity, event.meter, event.quantity
                    )),
                    Ok(None) => problems.push(format!("{}: no dedup record", event.id)),
                    Err(err) => problems.push(format!("{}: {err}", event.id)),
                }
            }
            (found, problems)
        });
    }
    let mut found = 0;
    let mut problems = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((n, mut more)) => {
                found += n;
                problems.append(&mut more);
            }
            Err(err) => problems.push(format!("a lookup task failed: {err}")),
        }
    }
    (found, problems)
}
