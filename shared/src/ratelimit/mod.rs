//! Rate limits and quotas on the metering hot path, behind one trait with two backends:
//! Redis (production: one Lua script per request) and in-process (the embedded default).
//!
//! **Algorithm: GCRA** (the generic cell rate algorithm, a.k.a. a virtual-scheduling token
//! bucket). Each limit keeps one number, the *theoretical arrival time* (TAT). With a limit of
//! `L` per minute every request costs `T = 60 s / L`; a request at `now` is allowed when
//! `max(TAT, now) + T - now <= 60 s`, and then `TAT = max(TAT, now) + T`. So a burst of at most
//! `L` is allowed from idle, and after it requests flow at exactly the rate `L`/min. There is no
//! window edge to game (a fixed window lets `2L` through around its boundary), memory is one
//! integer per limit, and the check and update are one atomic step: which is why GCRA and not a
//! sliding log (one entry per request) or a sliding-window counter (approximate).
//!
//! One check covers, atomically: the key's revocation mark, the per-key limit, the per-org
//! limit and the org's quota for the period. Nothing is counted unless everything allows.

mod batch;
mod gcra;
mod ip;
mod local;
mod redis;

#[cfg(test)]
mod conformance;

pub use batch::{BatchDecision, BatchRequest, EventCharge, Refund};
pub use ip::IpRateLimiter;
pub use local::LocalLimiter;
pub use redis::RedisLimiter;

use async_trait::async_trait;

/// One metered request to check and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRequest {
    /// The API key's id.
    pub key_id: String,
    /// The key's org.
    pub org_id: String,
    /// The key's own requests per minute, if it has one.
    pub key_rpm: Option<u32>,
    /// The org's requests per minute.
    pub org_rpm: u32,
    /// The quotas this request counts against (one per meter it uses); all must have room.
    pub quotas: Vec<QuotaRequest>,
    /// The caller's clock, Unix milliseconds (all instances share NTP time).
    pub now_ms: i64,
}

/// The quota a request counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRequest {
    /// Names the counter: org, meter and period (e.g. `requests:2026-11`).
    pub period_key: String,
    /// Units allowed in the period.
    pub limit: u64,
    /// Units this request uses.
    pub quantity: u64,
    /// When the period ends, Unix milliseconds (the counter expires after it).
    pub period_end_ms: i64,
}

/// The state of the binding rate limit after a check, for the `RateLimit` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    /// Requests per minute of the binding limit.
    pub limit: u32,
    /// Requests still allowed right now.
    pub remaining: u32,
    /// Milliseconds until the limit is fully replenished.
    pub reset_ms: u64,
}

/// The quota after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaState {
    /// Units allowed in the period.
    pub limit: u64,
    /// Units used, including this request when it was allowed.
    pub used: u64,
}

/// What the limiter decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve it; it has been counted.
    Allowed {
        /// The binding rate limit.
        rate: RateState,
        /// The first quota's state, when there is one.
        quota: Option<QuotaState>,
    },
    /// The key was revoked (its mark is set): refuse, whatever any cache says.
    Revoked,
    /// Over a rate limit; nothing counted.
    RateLimited {
        /// The limit that refused it.
        rate: RateState,
        /// Milliseconds until a retry can succeed.
        retry_after_ms: u64,
    },
    /// The quota is used up; nothing counted.
    QuotaExceeded {
        /// The binding rate limit.
        rate: RateState,
        /// The exhausted quota (the first that had no room).
        quota: QuotaState,
    },
}

/// One independent limit of a [`Limiter::check_buckets`] call: a GCRA bucket named only by
/// what it limits (e.g. `mail:login_code:<address hash>` or `mailip:<ip>`). Unlike the per-key
/// limit of [`LimitRequest`], which is filed under its org, a bucket is shared by every caller
/// that names it, so a per-address limit holds whatever the client IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// The bucket's name; equal names are one bucket.
    pub key: String,
    /// Requests per minute it allows (a burst of this many from idle).
    pub per_minute: u32,
}

/// The limiter could not decide (its backend is down); `RATE_LIMIT_FAIL_MODE` says what then.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct LimiterError(#[source] pub anyhow::Error);

/// Rate limits, quotas and revocation marks.
#[async_trait]
pub trait Limiter: Send + Sync + 'static {
    /// The backend's name, for health reports.
    fn backend(&self) -> &'static str;

    /// Checks and, when allowed, counts one request: one atomic step.
    async fn check(&self, request: &LimitRequest) -> Result<Decision, LimiterError>;

    /// Checks independent buckets and, when every one allows, counts one request in each: one
    /// atomic step. Answers [`Decision::Allowed`] (without a quota) or
    /// [`Decision::RateLimited`] with the binding bucket's state; no buckets allow everything.
    async fn check_buckets(
        &self,
        buckets: &[Bucket],
        now_ms: i64,
    ) -> Result<Decision, LimiterError>;

    /// Marks a key revoked so the next check refuses it, even where a key cache still holds
    /// it. The mark outlives any cache (`ttl_ms`).
    async fn mark_revoked(
        &self,
        org_id: &str,
        key_id: &str,
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<(), LimiterError>;

    /// A cheap round trip proving the backend answers.
    async fn ping(&self) -> Result<(), LimiterError>;

    /// Checks and, when allowed, counts one metered request carrying `request.events`, in one
    /// atomic step: rate limits, the org's meter cap, and the quotas of the events not seen
    /// before (an event id seen within the dedup window spends nothing and is reported as a
    /// duplicate). The default, for limiters that keep no event ids, counts every event.
    async fn check_batch(&self, request: &BatchRequest) -> Result<BatchDecision, LimiterError> {
        let mut limits = request.limits.clone();
        for (index, quota) in limits.quotas.iter_mut().enumerate() {
            quota.quantity = request
                .events
                .iter()
                .filter(|e| e.quota == Some(index))
                .fold(0u64, |sum, e| sum.saturating_add(e.quantity));
        }
        Ok(BatchDecision::Decided {
            decision: self.check(&limits).await?,
            duplicate: vec![false; request.events.len()],
        })
    }

    /// Gives back what an allowed [`Limiter::check_batch`] spent, when the request could not be
    /// served after all (the sink refused its events): the rate-limit allowance, the quota of
    /// its new events, and their ids (so a retry is new). The default does nothing.
    async fn refund(&self, refund: &Refund<'_>) -> Result<(), LimiterError> {
        let _ = refund;
        Ok(())
    }
}
