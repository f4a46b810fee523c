//! The in-process limiter: the embedded default when there is no `REDIS_URL`. The same
//! decisions as the Redis script (same GCRA arithmetic, same order of checks), under one lock.
//! Per process: under Lambda each instance would count alone, so production uses Redis.

use super::gcra::{self, Tested};
use super::{Bucket, Decision, LimitRequest, Limiter, LimiterError, QuotaState, RateState};
use async_trait::async_trait;
use std::collections::HashMap;
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
}

impl State {
    fn sweep(&mut self, now: i64) {
        self.tats.retain(|_, tat| *tat > now.saturating_mul(1000));
        self.quotas.retain(|_, (_, expires)| *expires > now);
        self.revoked.retain(|_, expires| *expires > now);
    }
}

#[async_trait]
impl Limiter for LocalLimiter {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn check(&self, request: &LimitRequest) -> Result<Decision, LimiterError> {
        let now = request.now_ms;
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.checks += 1;
        if state.checks.is_multiple_of(SWEEP_EVERY) {
            state.sweep(now);
        }
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
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.checks += 1;
        if state.checks.is_multiple_of(SWEEP_EVERY) {
            state.sweep(now);
        }
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
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let expires = now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        state.revoked.insert(format!("{org_id}:{key_id}"), expires);
        Ok(())
    }

    async fn ping(&self) -> Result<(), LimiterError> {
        Ok(())
    }
}
