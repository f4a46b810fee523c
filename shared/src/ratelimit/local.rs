//! The in-process limiter: the embedded default when there is no `REDIS_URL`. The same
//! decisions as the Redis script (same GCRA arithmetic, same order of checks), under one lock.
//! Per process: under Lambda each instance would count alone, so production uses Redis.

use super::gcra::{self, Tested};
use super::{
    BatchDecision, BatchRequest, Bucket, Decision, LimitRequest, Limiter, LimiterError, QuotaState,
    RateState, Refund,
};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Drop idle state every this many checks, so memory stays bounded.
const SWEEP_EVERY: u64 = 10_000;

#[derive(Default)]
struct State {
    /// Theoretical arrival times by limit key, microseconds.
    tats: HashMap<String, i64>,
    /// Quota counters: units used and when the counter expires.
    quotas: HashMap<String, (u64, i64)>,
    /// Revocation marks and when they expire.
    revoked: HashMap<String, i64>,
    /// Counted event ids (`org:id`) and when they are forgotten (the dedup window).
    events: HashMap<String, i64>,
    /// The meters each org has used (for its meter cap).
    meters: HashMap<String, HashSet<String>>,
    checks: u64,
}

/// Rate limits and quotas in this process's memory.
#[derive(Default)]
pub struct LocalLimiter {
    state: Mutex<State>,
}

impl LocalLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state; a panic elsewhere while it was held leaves nothing half-written that matters.
    fn locked(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state for one more check, swept of what expired every `SWEEP_EVERY` checks.
    fn checking(&self, now: i64) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.locked();
        state.checks += 1;
        if state.checks.is_multiple_of(SWEEP_EVERY) {
            state.sweep(now);
        }
        state
    }
}

impl State {
    fn sweep(&mut self, now: i64) {
        self.tats.retain(|_, tat| *tat > now.saturating_mul(1000));
        self.quotas.retain(|_, (_, expires)| *expires > now);
        self.revoked.retain(|_, expires| *expires > now);
        self.events.retain(|_, expires| *expires > now);
    }

    /// The rate limits of `request` at `now`: refused (the decision), or allowed with the
    /// binding state and the limits to write if everything else allows.
    fn rates(&self, request: &LimitRequest) -> Result<(Tested, Option<Tested>), Decision> {
        let now = request.now_ms;
        let mark = format!("{}:{}", request.org_id, request.key_id);
        if self
            .revoked
            .get(&mark)
            .is_some_and(|expires| *expires > now)
        {
            return Err(Decision::Revoked);
        }
        let tat = |key: &str| self.tats.get(key).copied().unwrap_or(0);
        let org = gcra::test(tat(&org_key(request)), request.org_rpm, now);
        let key = request
            .key_rpm
            .map(|rpm| gcra::test(tat(&key_key(request)), rpm, now));
        let binding = binding(org, key);
        if !org.allowed || key.is_some_and(|k| !k.allowed) {
            let retry = org.retry_after_ms.max(key.map_or(0, |k| k.retry_after_ms));
            return Err(Decision::RateLimited {
                rate: binding.state,
                retry_after_ms: retry,
            });
        }
        Ok((org, key))
    }
}

fn org_key(request: &LimitRequest) -> String {
    format!("org:{}", request.org_id)
}

fn key_key(request: &LimitRequest) -> String {
    format!("key:{}:{}", request.org_id, request.key_id)
}

fn event_mark(org: &str, id: &str) -> String {
    format!("{org}:{id}")
}

/// The limit to report: a refusing one first, else the one with less room.
fn binding(org: Tested, key: Option<Tested>) -> Tested {
    match key {
        Some(k)
            if (!k.allowed && org.allowed)
                || (k.allowed == org.allowed && k.state.remaining < org.state.remaining) =>
        {
            k
        }
        _ => org,
    }
}

#[async_trait]
impl Limiter for LocalLimiter {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn check(&self, request: &LimitRequest) -> Result<Decision, LimiterError> {
        let now = request.now_ms;
        let mut state = self.checking(now);
        let mark = format!("{}:{}", request.org_id, request.key_id);
        if state
            .revoked
            .get(&mark)
            .is_some_and(|expires| *expires > now)
        {
            return Ok(Decision::Revoked);
        }
        let org_key = format!("org:{}", request.org_id);
        let key_key = format!("key:{}:{}", request.org_id, request.key_id);
        let tat = |key: &str| state.tats.get(key).copied().unwrap_or(0);
        let org = gcra::test(tat(&org_key), request.org_rpm, now);
        let key = request
            .key_rpm
            .map(|rpm| gcra::test(tat(&key_key), rpm, now));
        let binding: Tested = match key {
            Some(k)
                if (!k.allowed && org.allowed)
                    || (k.allowed == org.allowed && k.state.remaining < org.state.remaining) =>
            {
                k
            }
            _ => org,
        };
        if !org.allowed || key.is_some_and(|k| !k.allowed) {
            let retry = org.retry_after_ms.max(key.map_or(0, |k| k.retry_after_ms));
            return Ok(Decision::RateLimited {
                rate: binding.state,
                retry_after_ms: retry,
            });
        }
        let mut counted = Vec::with_capacity(request.quotas.len());
        for quota in &request.quotas {
            let counter = format!("{}:{}", request.org_id, quota.period_key);
            let used = state
                .quotas
                .get(&counter)
                .filter(|(_, expires)| *expires > now)
                .map_or(0, |(used, _)| *used);
            if used + quota.quantity > quota.limit {
                return Ok(Decision::QuotaExceeded {
                    rate: binding.state,
                    quota: QuotaState {
                        limit: quota.limit,
                        used,
                    },
                });
            }
            counted.push((counter, used + quota.quantity, quota));
        }
        let quota_state = counted.first().map(|(_, used, quota)| QuotaState {
            limit: quota.limit,
            used: *used,
        });
        for (counter, used, quota) in counted {
            state.quotas.insert(counter, (used, quota.period_end_ms));
        }
        state.tats.insert(org_key, org.new_tat);
        if let Some(key) = key {
            state.tats.insert(key_key, key.new_tat);
        }
        Ok(Decision::Allowed {
            rate: binding.state,
            quota: quota_state,
        })
    }

    async fn check_buckets(&self, buckets: &[Bucket], now: i64) -> Result<Decision, LimiterError> {
        let mut state = self.checking(now);
        let tested: Vec<(String, Tested)> = buckets
            .iter()
            .map(|bucket| {
                let name = format!("bucket:{}", bucket.key);
                let tat = state.tats.get(&name).copied().unwrap_or(0);
                let result = gcra::test(tat, bucket.per_minute, now);
                (name, result)
            })
            .collect();
        // The same choice of binding bucket as `buckets.lua`: a refusing one first, then the
        // one with the fewest requests left.
        let mut binding: Option<Tested> = None;
        for (_, t) in &tested {
            let better = binding.is_none_or(|b| {
                (!t.allowed && b.allowed)
                    || (t.allowed == b.allowed && t.state.remaining < b.state.remaining)
            });
            if better {
                binding = Some(*t);
            }
        }
        let Some(binding) = binding else {
            return Ok(Decision::Allowed {
                rate: RateState {
                    limit: 0,
                    remaining: 0,
                    reset_ms: 0,
                },
                quota: None,
            });
        };
        if tested.iter().any(|(_, t)| !t.allowed) {
            let retry = tested
                .iter()
                .map(|(_, t)| t.retry_after_ms)
                .max()
                .unwrap_or(0);
            return Ok(Decision::RateLimited {
                rate: binding.state,
                retry_after_ms: retry,
            });
        }
        for (name, t) in tested {
            state.tats.insert(name, t.new_tat);
        }
        Ok(Decision::Allowed {
            rate: binding.state,
            quota: None,
        })
    }

    async fn mark_revoked(
        &self,
        org_id: &str,
        key_id: &str,
        now: i64,
        ttl_ms: u64,
    ) -> Result<(), LimiterError> {
        let mut state = self.locked();
        let expires = now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        state.revoked.insert(format!("{org_id}:{key_id}"), expires);
        Ok(())
    }

    async fn ping(&self) -> Result<(), LimiterError> {
        Ok(())
    }

    async fn check_batch(&self, request: &BatchRequest) -> Result<BatchDecision, LimiterError> {
        let limits = &request.limits;
        let now = limits.now_ms;
        let mut state = self.checking(now);
        let (org, key) = match state.rates(limits) {
            Ok(allowed) => allowed,
            Err(decision) => {
                return Ok(BatchDecision::Decided {
                    decision,
                    duplicate: vec![false; request.events.len()],
                });
            }
        };
        let rate = binding(org, key).state;
        if request.max_meters > 0 {
            let known = state.meters.get(&limits.org_id);
            let fresh = Refund::meters(request)
                .into_iter()
                .filter(|m| known.is_none_or(|k| !k.contains(*m)))
                .count();
            if known.map_or(0, HashSet::len) + fresh > request.max_meters as usize {
                return Ok(BatchDecision::TooManyMeters {
                    limit: request.max_meters,
                });
            }
        }
        let duplicate: Vec<bool> = request
            .events
            .iter()
            .map(|event| {
                request.dedup_ttl_ms > 0
                    && state
                        .events
                        .get(&event_mark(&limits.org_id, &event.id))
                        .is_some_and(|expires| *expires > now)
            })
            .collect();
        let mut adding = vec![0u64; limits.quotas.len()];
        for (event, seen) in request.events.iter().zip(&duplicate) {
            if let (false, Some(index)) = (*seen, event.quota)
                && let Some(sum) = adding.get_mut(index)
            {
                *sum = sum.saturating_add(event.quantity);
            }
        }
        let mut counted = Vec::with_capacity(limits.quotas.len());
        for (quota, quantity) in limits.quotas.iter().zip(&adding) {
            let counter = format!("{}:{}", limits.org_id, quota.period_key);
            let used = state
                .quotas
                .get(&counter)
                .filter(|(_, expires)| *expires > now)
                .map_or(0, |(used, _)| *used);
            if used.saturating_add(*quantity) > quota.limit {
                return Ok(BatchDecision::Decided {
                    decision: Decision::QuotaExceeded {
                        rate,
                        quota: QuotaState {
                            limit: quota.limit,
                            used,
                        },
                    },
                    duplicate,
                });
            }
            counted.push((counter, used + quantity, quota));
        }
        let quota_state = counted.first().map(|(_, used, quota)| QuotaState {
            limit: quota.limit,
            used: *used,
        });
        for (counter, used, quota) in counted {
            state.quotas.insert(counter, (used, quota.period_end_ms));
        }
        let forget_at = now.saturating_add(i64::try_from(request.dedup_ttl_ms).unwrap_or(i64::MAX));
        for (event, seen) in request.events.iter().zip(&duplicate) {
            if request.dedup_ttl_ms > 0 && !seen {
                state
                    .events
                    .insert(event_mark(&limits.org_id, &event.id), forget_at);
            }
        }
        if request.max_meters > 0 {
            let meters = state.meters.entry(limits.org_id.clone()).or_default();
            meters.extend(Refund::meters(request).into_iter().map(str::to_owned));
        }
        state.tats.insert(org_key(limits), org.new_tat);
        if let Some(key) = key {
            state.tats.insert(key_key(limits), key.new_tat);
        }
        Ok(BatchDecision::Decided {
            decision: Decision::Allowed {
                rate,
                quota: quota_state,
            },
            duplicate,
        })
    }

    async fn refund(&self, refund: &Refund<'_>) -> Result<(), LimiterError> {
        let limits = &refund.request.limits;
        let mut state = self.locked();
        for (quota, amount) in limits.quotas.iter().zip(refund.quota_amounts()) {
            let counter = format!("{}:{}", limits.org_id, quota.period_key);
            if let Some((used, _)) = state.quotas.get_mut(&counter) {
                *used = used.saturating_sub(amount);
            }
        }
        for id in refund.forgotten_ids() {
            state.events.remove(&event_mark(&limits.org_id, id));
        }
        let rates = [
            (org_key(limits), Some(limits.org_rpm)),
            (key_key(limits), limits.key_rpm),
        ];
        for (name, rpm) in rates {
            if let (Some(rpm), Some(tat)) = (rpm, state.tats.get_mut(&name)) {
                *tat -= gcra::PERIOD_US / i64::from(rpm.max(1));
            }
        }
        Ok(())
    }
}
