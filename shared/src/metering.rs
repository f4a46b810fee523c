//! The metering hot path: authenticate an API key, check and count its rate limits and quotas,
//! hand the usage events to the sink. One limiter round trip and one sink call per request; the
//! key (with its org's limit) is cached in memory, so a warm request reads nothing from the
//! store, and revocation still acts at once through the limiter's revocation mark.

use crate::auth::{ApiKeyHash, ApiKeySecret};
use crate::billing::PlanBook;
use crate::clock::Clock;
use crate::config::FailMode;
use crate::domain::{ApiKey, Plan, UsageEvent};
use crate::ratelimit::{
    BatchDecision, BatchRequest, Decision, EventCharge, LimitRequest, Limiter, QuotaRequest,
    QuotaState, RateState, Refund,
};
use crate::store::{Store, StoreError};
use crate::usage::{SinkError, UsageSink};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `last_used_at` is written at most this often per key.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Why a metered request was refused.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// Missing, malformed, mistyped or unknown key (or another org's: they are all unknown).
    #[error("the API key is not valid")]
    InvalidKey,
    /// The key was revoked.
    #[error("the API key has been revoked")]
    Revoked,
    /// The key is past its expiry.
    #[error("the API key has expired")]
    Expired,
    /// Over a rate limit.
    #[error("rate limit exceeded; retry later")]
    RateLimited {
        /// The limit that refused it.
        rate: RateState,
        /// Until a retry can succeed.
        retry_after: Duration,
    },
    /// The period's quota is used up.
    #[error("the quota for this period is used up")]
    QuotaExceeded {
        /// The binding rate limit.
        rate: RateState,
        /// The exhausted quota.
        quota: QuotaState,
        /// When the period (and the refusal) ends.
        period_end: DateTime<Utc>,
    },
    /// The request would take the org past `MAX_METERS_PER_ORG` distinct meters.
    #[error("this org already uses {limit} meters, the most it may (MAX_METERS_PER_ORG)")]
    TooManyMeters {
        /// The cap.
        limit: u32,
    },
    /// The limiter is down and `RATE_LIMIT_FAIL_MODE=closed`.
    #[error("rate limiting is unavailable")]
    LimiterUnavailable,
    /// The usage sink did not take the events: the request must not be served.
    #[error("usage recording is unavailable")]
    SinkUnavailable(#[source] SinkError),
    /// The store failed while looking up the key.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a served request was counted as.
#[derive(Debug, Clone, Copy)]
pub struct Metered {
    /// The binding rate limit (absent when the limiter was down and failing open).
    pub rate: Option<RateState>,
    /// The first quota's state.
    pub quota: Option<QuotaState>,
    /// When the quota period ends.
    pub period_end: DateTime<Utc>,
    /// Events counted now (not seen within the dedup window).
    pub accepted: usize,
    /// Events seen within the dedup window: answered, but not counted again.
    pub duplicates: usize,
}

/// A key as the hot path needs it, with its org's plan and rate limit.
#[derive(Debug)]
pub struct MeteredKey {
    /// The key's metadata.
    pub key: ApiKey,
    /// The org's requests per minute: its plan's, or lower where the org set less.
    pub org_rpm: u32,
    /// The org's plan when the key was loaded: its quotas apply (a plan change acts when the
    /// cached key expires, within `KEY_CACHE_TTL_SECS`).
    pub plan: Arc<Plan>,
    fetched: Instant,
    last_touch_ms: AtomicI64,
}

/// How the hot path is configured.
#[derive(Debug, Clone, Copy)]
pub struct MeteringPolicy {
    /// What to do when the limiter is down.
    pub fail_mode: FailMode,
    /// How long a key stays cached.
    pub key_cache_ttl: Duration,
    /// How long a counted event id is remembered, so a resend spends no quota.
    pub dedup_window: Duration,
    /// How late an event may arrive: a month's quota counter is kept this long past its end.
    pub lateness: Duration,
    /// The most distinct meters an org may use; 0 = no cap.
    pub max_meters_per_org: u32,
}

/// The metering service. Cheap to clone.
#[derive(Clone)]
pub struct Metering {
    store: Arc<dyn Store>,
    limiter: Arc<dyn Limiter>,
    sink: Arc<dyn UsageSink>,
    plans: PlanBook,
    clock: Arc<dyn Clock>,
    policy: MeteringPolicy,
    cache: Arc<Mutex<HashMap<ApiKeyHash, Arc<MeteredKey>>>>,
    store_reads: Arc<AtomicU64>,
}

/// The calendar month (UTC) containing `now`: its key (`2026-11`) and its end.
fn month(now: DateTime<Utc>) -> (String, DateTime<Utc>) {
    let (year, month) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let end = Utc
        .with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    (format!("{:04}-{:02}", now.year(), now.month()), end)
}

impl Metering {
    /// The service over its parts.
    pub fn new(
        store: Arc<dyn Store>,
        limiter: Arc<dyn Limiter>,
        sink: Arc<dyn UsageSink>,
        plans: PlanBook,
        clock: Arc<dyn Clock>,
        policy: MeteringPolicy,
    ) -> Self {
        Self {
            store,
            limiter,
            sink,
            plans,
            clock,
            policy,
            cache: Arc::default(),
            store_reads: Arc::default(),
        }
    }

    /// The sink, for health reports.
    pub fn sink(&self) -> &Arc<dyn UsageSink> {
        &self.sink
    }

    /// Store reads made by the hot path so far (a warm request makes none).
    pub fn store_reads(&self) -> u64 {
        self.store_reads.load(Ordering::Relaxed)
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The key a client presented: checksum first (garbage costs no lookup), then the cache,
    /// then the store.
    pub async fn authenticate(&self, presented: &str) -> Result<Arc<MeteredKey>, MeterError> {
        let secret = ApiKeySecret::parse(presented).ok_or(MeterError::InvalidKey)?;
        let hash = secret.hash();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&hash)
            .filter(|entry| entry.fetched.elapsed() < self.policy.key_cache_ttl)
            .cloned();
        let entry = match cached {
            Some(entry) => entry,
            None => {
                let entry = Arc::new(self.load(&hash).await?);
                self.cache
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(hash, Arc::clone(&entry));
                entry
            }
        };
        let now = self.clock.now();
        if entry.key.revoked_at.is_some() {
            return Err(MeterError::Revoked);
        }
        if entry.key.expires_at.is_some_and(|at| at <= now) {
            return Err(MeterError::Expired);
        }
        Ok(entry)
    }

    async fn load(&self, hash: &ApiKeyHash) -> Result<MeteredKey, MeterError> {
        self.store_reads.fetch_add(3, Ordering::Relaxed);
        let key = self
            .store
            .api_key_by_hash(hash)
            .await?
            .ok_or(MeterError::InvalidKey)?;
        let org = self
            .store
            .org(&key.org_id)
            .await?
            .ok_or(MeterError::InvalidKey)?;
        let plan = self.plans.current_plan(&org, self.clock.now()).await?;
        Ok(MeteredKey {
            org_rpm: org
                .rate_limit_rpm
                .map_or(plan.rate_limit_rpm, |rpm| rpm.min(plan.rate_limit_rpm)),
            plan,
            last_touch_ms: AtomicI64::new(key.last_used_at.map_or(0, |at| at.timestamp_millis())),
            fetched: Instant::now(),
            key,
        })
    }

    /// Checks and counts one request carrying `events` whose ids the server made up (never
    /// resent, so not remembered), then hands them to the sink. Refused requests count nothing
    /// and send nothing.
    pub async fn meter(
        &self,
        key: &MeteredKey,
        events: &[UsageEvent],
    ) -> Result<Metered, MeterError> {
        self.count(key, events, false).await
    }

    /// Like [`Metering::meter`] for events with the client's ids: an id counted within the
    /// dedup window (`USAGE_DEDUP_WINDOW_SECS`) is a duplicate and spends no quota.
    pub async fn meter_events(
        &self,
        key: &MeteredKey,
        events: &[UsageEvent],
    ) -> Result<Metered, MeterError> {
        self.count(key, events, true).await
    }

    /// The limiter's request for `events`: each counts against the quota of its meter for the
    /// month of its timestamp (the month it is billed in), so a late event spends the quota of
    /// the period whose invoice it lands on.
    fn batch_request(
        &self,
        key: &MeteredKey,
        events: &[UsageEvent],
        remember: bool,
    ) -> BatchRequest {
        let now = self.clock.now();
        let keep_past_end = chrono::Duration::from_std(self.policy.lateness)
            .unwrap_or(chrono::Duration::days(7))
            + chrono::Duration::days(1);
        let mut quotas: BTreeMap<(String, String), (usize, QuotaRequest)> = BTreeMap::new();
        let mut charges = Vec::with_capacity(events.len());
        for event in events {
            let (period, end) = month(event.timestamp);
            let quota = key.plan.hard_quota(&event.meter).map(|limit| {
                let next = quotas.len();
                quotas
                    .entry((event.meter.clone(), period.clone()))
                    .or_insert_with(|| {
                        (
                            next,
                            QuotaRequest {
                                period_key: format!("{}:{period}", event.meter),
                                limit,
                                quantity: 0,
                                period_end_ms: (end + keep_past_end).timestamp_millis(),
                            },
                        )
                    })
                    .0
            });
            charges.push(EventCharge {
                id: event.id.clone(),
                meter: event.meter.clone(),
                quota,
                quantity: event.quantity,
            });
        }
        let mut ordered: Vec<(usize, QuotaRequest)> = quotas.into_values().collect();
        ordered.sort_by_key(|(index, _)| *index);
        BatchRequest {
            limits: LimitRequest {
                key_id: key.key.id.to_string(),
                org_id: key.key.org_id.to_string(),
                key_rpm: key.key.rate_limit_rpm,
                org_rpm: key.org_rpm,
                quotas: ordered.into_iter().map(|(_, quota)| quota).collect(),
                now_ms: now.timestamp_millis(),
            },
            events: charges,
            dedup_ttl_ms: if remember {
                u64::try_from(self.policy.dedup_window.as_millis()).unwrap_or(u64::MAX)
            } else {
                0
            },
            max_meters: self.policy.max_meters_per_org,
        }
    }

    async fn count(
        &self,
        key: &MeteredKey,
        events: &[UsageEvent],
        remember: bool,
    ) -> Result<Metered, MeterError> {
        let now = self.clock.now();
        let (_, period_end) = month(now);
        let request = self.batch_request(key, events, remember);
        let decided = match self.limiter.check_batch(&request).await {
            Ok(BatchDecision::TooManyMeters { limit }) => {
                return Err(MeterError::TooManyMeters { limit });
            }
            Ok(BatchDecision::Decided {
                decision,
                duplicate,
            }) => Ok((decision, duplicate)),
            Err(err) => Err(err),
        };
        let (rate, quota, duplicate) = match decided {
            Ok((Decision::Allowed { rate, quota }, duplicate)) => (Some(rate), quota, duplicate),
            Ok((Decision::Revoked, _)) => {
                self.forget(&key.key);
                return Err(MeterError::Revoked);
            }
            Ok((
                Decision::RateLimited {
                    rate,
                    retry_after_ms,
                },
                _,
            )) => {
                return Err(MeterError::RateLimited {
                    rate,
                    retry_after: Duration::from_millis(retry_after_ms),
                });
            }
            Ok((Decision::QuotaExceeded { rate, quota }, _)) => {
                return Err(MeterError::QuotaExceeded {
                    rate,
                    quota,
                    period_end,
                });
            }
            Err(err) => match self.policy.fail_mode {
                FailMode::Open => {
                    tracing::warn!(error = ?err, "limiter unavailable; serving unlimited (fail open)");
                    (None, None, Vec::new())
                }
                FailMode::Closed => {
                    tracing::error!(error = ?err, "limiter unavailable; refusing (fail closed)");
                    return Err(MeterError::LimiterUnavailable);
                }
            },
        };
        // Duplicates go to the sink too: the store counts each id once, and an id whose first
        // request was refused after all (its refund lost) is then still recorded.
        if !events.is_empty()
            && let Err(err) = self.sink.send(events).await
        {
            if rate.is_some() {
                let refund = Refund {
                    request: &request,
                    duplicate: &duplicate,
                };
                if let Err(err) = self.limiter.refund(&refund).await {
                    tracing::error!(error = ?err, "could not give back a refused request's quota");
                }
            }
            return Err(MeterError::SinkUnavailable(err));
        }
        self.touch_later(key, now);
        let duplicates = duplicate.iter().filter(|d| **d).count();
        Ok(Metered {
            rate,
            quota,
            period_end,
            accepted: events.len() - duplicates,
            duplicates,
        })
    }

    fn forget(&self, key: &ApiKey) {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|_, entry| entry.key.id != key.id);
    }

    /// Updates `last_used_at` at most once a minute per key, off the request's path.
    fn touch_later(&self, key: &MeteredKey, now: DateTime<Utc>) {
        let now_ms = now.timestamp_millis();
        let last = key.last_touch_ms.load(Ordering::Relaxed);
        if now_ms - last < TOUCH_EVERY_MS
            || key
                .last_touch_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let store = Arc::clone(&self.store);
        let (org, id) = (key.key.org_id.clone(), key.key.id.clone());
        tokio::spawn(async move {
            if let Err(err) = store.touch_api_key(&org, &id, now).await {
                tracing::warn!(error = ?err, key_id = %id, "could not record last_used_at");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_end_at_the_next_first() {
        let at = |y, m, d| {
            Utc.with_ymd_and_hms(y, m, d, 12, 0, 0)
                .single()
                .expect("time")
        };
        assert_eq!(
            month(at(2026, 11, 24)),
            (
                "2026-11".into(),
                Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
                    .single()
                    .expect("t")
            )
        );
        assert_eq!(
            month(at(2026, 12, 31)).1,
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
                .single()
                .expect("t")
        );
    }
}
