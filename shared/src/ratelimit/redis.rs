//! The Redis limiter: the whole check is one Lua script (`check.lua`), sent as EVALSHA (the
//! script is loaded once per connection's server, re-loaded only if Redis forgets it). One
//! round trip per metered request.
//!
//! Keys carry the org in a hash tag (`ml:{org_…}:…`), so one request's keys share a cluster
//! slot and the script stays valid on clustered Redis.

use super::{
    BatchDecision, BatchRequest, Bucket, Decision, LimitRequest, Limiter, LimiterError, QuotaState,
    RateState, Refund,
};
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use std::time::Duration;

const CHECK: &str = concat!(include_str!("gcra.lua"), include_str!("check.lua"));
/// A metered request with its events, dedup and meter cap: [`Limiter::check_batch`].
const BATCH: &str = concat!(include_str!("gcra.lua"), include_str!("batch.lua"));
/// Gives back what a batch spent: [`Limiter::refund`].
const REFUND: &str = include_str!("refund.lua");
/// Independent buckets: [`Limiter::check_buckets`].
const BUCKETS: &str = concat!(include_str!("gcra.lua"), include_str!("buckets.lua"));

/// Rate limits and quotas in Redis (ElastiCache in AWS).
pub struct RedisLimiter {
    connection: ConnectionManager,
    script: redis::Script,
    batch: redis::Script,
    refund: redis::Script,
    buckets: redis::Script,
    prefix: String,
}

impl RedisLimiter {
    /// Connects to `url` (`redis://host:6379`); every key starts with `prefix` (a namespace,
    /// e.g. per test).
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(1);
        let mut connection = ConnectionManager::new_with_config(client, config).await?;
        let script = redis::Script::new(CHECK);
        // Loaded once up front, so every check is exactly one EVALSHA (redis-rs would also
        // re-load it after a NOSCRIPT, e.g. when Redis restarts).
        script.prepare_invoke().load_async(&mut connection).await?;
        let batch = redis::Script::new(BATCH);
        batch.prepare_invoke().load_async(&mut connection).await?;
        let buckets = redis::Script::new(BUCKETS);
        buckets.prepare_invoke().load_async(&mut connection).await?;
        Ok(Self {
            connection,
            script,
            batch,
            refund: redis::Script::new(REFUND),
            buckets,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, org: &str, rest: &str) -> String {
        format!("{}ml:{{{org}}}:{rest}", self.prefix)
    }
}

fn unavailable(err: redis::RedisError) -> LimiterError {
    LimiterError(err.into())
}

/// The decision in the first seven numbers of a script's reply (check.lua and batch.lua).
fn decision(reply: &[i64], with_quota: bool) -> Result<Decision, LimiterError> {
    let [code, limit, remaining, reset, retry, q_limit, q_used, ..] = reply[..] else {
        return Err(LimiterError(anyhow::anyhow!(
            "unexpected script reply {reply:?}"
        )));
    };
    let rate = RateState {
        limit: limit as u32,
        remaining: remaining as u32,
        reset_ms: reset as u64,
    };
    let quota = QuotaState {
        limit: q_limit as u64,
        used: q_used as u64,
    };
    Ok(match code {
        0 => Decision::Allowed {
            rate,
            quota: with_quota.then_some(quota),
        },
        1 => Decision::Revoked,
        2 => Decision::RateLimited {
            rate,
            retry_after_ms: retry as u64,
        },
        _ => Decision::QuotaExceeded { rate, quota },
    })
}

#[async_trait]
impl Limiter for RedisLimiter {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn check(&self, request: &LimitRequest) -> Result<Decision, LimiterError> {
        let org = &request.org_id;
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(self.key(org, &format!("revoked:{}", request.key_id)))
            .key(self.key(org, &format!("tat:key:{}", request.key_id)))
            .key(self.key(org, "tat:org"))
            .arg(request.now_ms)
            .arg(request.key_rpm.unwrap_or(0))
            .arg(request.org_rpm.max(1));
        for quota in &request.quotas {
            invocation
                .key(self.key(org, &format!("quota:{}", quota.period_key)))
                .arg(quota.limit)
                .arg(quota.quantity)
                .arg(quota.period_end_ms);
        }
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        decision(&reply, !request.quotas.is_empty())
    }

    async fn check_buckets(
        &self,
        buckets: &[Bucket],
        now_ms: i64,
    ) -> Result<Decision, LimiterError> {
        let mut invocation = self.buckets.prepare_invoke();
        invocation.arg(now_ms);
        for bucket in buckets {
            // One hash tag for every bucket: a call's keys must share a cluster slot, and
            // these limits (mail, sign-in) see little traffic.
            invocation
                .key(self.key("buckets", &format!("tat:{}", bucket.key)))
                .arg(bucket.per_minute.max(1));
        }
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let [code, limit, remaining, reset, retry] = reply[..] else {
            return Err(LimiterError(anyhow::anyhow!(
                "unexpected script reply {reply:?}"
            )));
        };
        let rate = RateState {
            limit: limit as u32,
            remaining: remaining as u32,
            reset_ms: reset as u64,
        };
        Ok(if code == 0 {
            Decision::Allowed { rate, quota: None }
        } else {
            Decision::RateLimited {
                rate,
                retry_after_ms: retry as u64,
            }
        })
    }

    async fn mark_revoked(
        &self,
        org_id: &str,
        key_id: &str,
        _now_ms: i64,
        ttl_ms: u64,
    ) -> Result<(), LimiterError> {
        let mut connection = self.connection.clone();
        redis::cmd("SET")
            .arg(self.key(org_id, &format!("revoked:{key_id}")))
            .arg(1)
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async::<()>(&mut connection)
            .await
            .map_err(unavailable)
    }

    async fn ping(&self) -> Result<(), LimiterError> {
        let mut connection = self.connection.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn check_batch(&self, request: &BatchRequest) -> Result<BatchDecision, LimiterError> {
        let limits = &request.limits;
        let org = &limits.org_id;
        let meters = Refund::meters(request);
        let mut invocation = self.batch.prepare_invoke();
        invocation
            .key(self.key(org, &format!("revoked:{}", limits.key_id)))
            .key(self.key(org, &format!("tat:key:{}", limits.key_id)))
            .key(self.key(org, "tat:org"))
            .key(self.key(org, "meters"))
            .arg(limits.now_ms)
            .arg(limits.key_rpm.unwrap_or(0))
            .arg(limits.org_rpm.max(1))
            .arg(limits.quotas.len())
            .arg(request.dedup_ttl_ms)
            .arg(request.max_meters)
            .arg(meters.len());
        for meter in &meters {
            invocation.arg(*meter);
        }
        for quota in &limits.quotas {
            invocation
                .key(self.key(org, &format!("quota:{}", quota.period_key)))
                .arg(quota.limit)
                .arg(quota.period_end_ms);
        }
        for event in &request.events {
            if request.dedup_ttl_ms > 0 {
                invocation.key(self.key(org, &format!("event:{}", event.id)));
            }
            invocation
                .arg(event.quota.map_or(0, |index| index + 1))
                .arg(event.quantity);
        }
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        if reply.first() == Some(&4) {
            return Ok(BatchDecision::TooManyMeters {
                limit: request.max_meters,
            });
        }
        let decision = decision(&reply, !limits.quotas.is_empty())?;
        let duplicate = (0..request.events.len())
            .map(|i| reply.get(7 + i) == Some(&1))
            .collect();
        Ok(BatchDecision::Decided {
            decision,
            duplicate,
        })
    }

    async fn refund(&self, refund: &Refund<'_>) -> Result<(), LimiterError> {
        let limits = &refund.request.limits;
        let org = &limits.org_id;
        let mut invocation = self.refund.prepare_invoke();
        invocation
            .key(self.key(org, &format!("tat:key:{}", limits.key_id)))
            .key(self.key(org, "tat:org"))
            .arg(limits.key_rpm.unwrap_or(0))
            .arg(limits.org_rpm.max(1))
            .arg(limits.quotas.len());
        for (quota, amount) in limits.quotas.iter().zip(refund.quota_amounts()) {
            invocation
                .key(self.key(org, &format!("quota:{}", quota.period_key)))
                .arg(amount);
        }
        for id in refund.forgotten_ids() {
            invocation.key(self.key(org, &format!("event:{id}")));
        }
        let mut connection = self.connection.clone();
        invocation
            .invoke_async::<i64>(&mut connection)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}
