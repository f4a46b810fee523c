//! The limiter conformance suite, run against the in-process limiter and a real Redis
//! (`REDIS_URL`, default `redis://127.0.0.1:6379`, each test under its own key prefix). Time is
//! passed in, so the cases are exact.

use super::*;
use std::sync::Arc;

fn namespace() -> String {
    format!("t_{}:", ulid::Ulid::new().to_string().to_lowercase())
}

mod open {
    use super::*;

    pub async fn local() -> Arc<dyn Limiter> {
        Arc::new(LocalLimiter::new())
    }

    pub async fn redis() -> Arc<dyn Limiter> {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let limiter = RedisLimiter::connect(&url, &namespace())
            .await
            .unwrap_or_else(|err| {
                panic!("Redis at {url} is required (run infra/services.sh): {err:#}")
            });
        limiter
            .ping()
            .await
            .unwrap_or_else(|err| panic!("Redis at {url} does not answer: {err:#}"));
        Arc::new(limiter)
    }
}

const T0: i64 = 1_800_000_000_000;

fn request(org: &str, key: &str, key_rpm: Option<u32>, org_rpm: u32, now_ms: i64) -> LimitRequest {
    LimitRequest {
        key_id: key.into(),
        org_id: org.into(),
        key_rpm,
        org_rpm,
        quotas: Vec::new(),
        now_ms,
    }
}

async fn allowed(limiter: &dyn Limiter, request: &LimitRequest, times: usize) -> usize {
    let mut count = 0;
    for _ in 0..times {
        if matches!(
            limiter.check(request).await.expect("check"),
            Decision::Allowed { .. }
        ) {
            count += 1;
        }
    }
    count
}

mod cases {
    use super::*;

    pub async fn concurrent_clients_get_exactly_the_limit(limiter: Arc<dyn Limiter>) {
        let clients = (0..64).map(|_| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                let request = request("org_a", "key_a", None, 100, T0);
                allowed(&*limiter, &request, 4).await
            })
        });
        let mut total = 0;
        for client in clients {
            total += client.await.expect("task");
        }
        assert_eq!(total, 100);
    }

    pub async fn the_window_slides_without_a_boundary_burst(limiter: Arc<dyn Limiter>) {
        // 100 at the end of one wall-clock minute...
        let late = T0 + 59_500;
        assert_eq!(
            allowed(&*limiter, &request("org_b", "k", None, 100, late), 150).await,
            100
        );
        // ...buy only the steady rate (one per 600 ms) at the start of the next, not 100 more.
        let next_minute = late + 1_000;
        assert_eq!(
            allowed(
                &*limiter,
                &request("org_b", "k", None, 100, next_minute),
                150
            )
            .await,
            1
        );
        let refused = limiter
            .check(&request("org_b", "k", None, 100, next_minute))
            .await
            .expect("check");
        let Decision::RateLimited {
            rate,
            retry_after_ms,
        } = refused
        else {
            panic!("{refused:?}")
        };
        assert_eq!((rate.limit, rate.remaining), (100, 0));
        assert!(
            retry_after_ms > 0 && retry_after_ms <= 600,
            "{retry_after_ms}"
        );
        // After a full minute of quiet the whole burst is back.
        assert_eq!(
            allowed(
                &*limiter,
                &request("org_b", "k", None, 100, next_minute + 60_000),
                150
            )
            .await,
            100
        );
    }

    pub async fn key_and_org_limits_both_bind(limiter: Arc<dyn Limiter>) {
        assert_eq!(
            allowed(&*limiter, &request("org_c", "small", Some(5), 100, T0), 20).await,
            5
        );
        // The org still has room for another key...
        assert_eq!(
            allowed(&*limiter, &request("org_c", "other", None, 100, T0), 200).await,
            95
        );
        // ...and an org limit is shared by all its keys.
        assert_eq!(
            allowed(&*limiter, &request("org_d", "one", Some(100), 10, T0), 8).await,
            8
        );
        assert_eq!(
            allowed(&*limiter, &request("org_d", "two", Some(100), 10, T0), 8).await,
            2
        );
        let Decision::Allowed { rate, .. } = limiter
            .check(&request("org_e", "k", Some(5), 100, T0))
            .await
            .expect("check")
        else {
            panic!("first request")
        };
        assert_eq!(
            (rate.limit, rate.remaining),
            (5, 4),
            "the tighter limit is reported"
        );
    }

    pub async fn revocation_acts_on_the_next_request(limiter: Arc<dyn Limiter>) {
        let r = request("org_f", "key_f", None, 100, T0);
        assert_eq!(allowed(&*limiter, &r, 1).await, 1);
        limiter
            .mark_revoked("org_f", "key_f", T0, 60_000)
            .await
            .expect("mark");
        assert_eq!(limiter.check(&r).await.expect("check"), Decision::Revoked);
        let sibling = request("org_f", "key_g", None, 100, T0);
        assert_eq!(allowed(&*limiter, &sibling, 1).await, 1, "only that key");
    }

    pub async fn the_quota_stops_exactly_at_its_limit(limiter: Arc<dyn Limiter>) {
        let with = |quantity: u64| LimitRequest {
            quotas: vec![QuotaRequest {
                period_key: "requests:2027-01".into(),
                limit: 10,
                quantity,
                period_end_ms: T0 + 86_400_000,
            }],
            ..request("org_g", "k", None, 1000, T0)
        };
        for used in [3, 6, 9] {
            let Decision::Allowed { quota: Some(q), .. } =
                limiter.check(&with(3)).await.expect("check")
            else {
                panic!("allowed")
            };
            assert_eq!((q.used, q.limit), (used, 10));
        }
        assert_eq!(
            limiter.check(&with(3)).await.expect("check"),
            Decision::QuotaExceeded {
                rate: RateState {
                    limit: 1000,
                    remaining: 996,
                    reset_ms: 240
                },
                quota: QuotaState { limit: 10, used: 9 }
            }
        );
        assert!(matches!(
            limiter.check(&with(1)).await.expect("check"),
            Decision::Allowed {
                quota: Some(QuotaState { used: 10, .. }),
                ..
            }
        ));
        assert!(matches!(
            limiter.check(&with(1)).await.expect("check"),
            Decision::QuotaExceeded { .. }
        ));
        // A refused request counted nothing: the rate limit saw exactly the four allowed ones.
        let Decision::Allowed { rate, .. } = limiter
            .check(&request("org_g", "k", None, 1000, T0))
            .await
            .expect("check")
        else {
            panic!()
        };
        assert_eq!(rate.remaining, 1000 - 5);
    }

    pub async fn every_quota_of_a_request_must_have_room(limiter: Arc<dyn Limiter>) {
        let quota = |meter: &str, limit, quantity| QuotaRequest {
            period_key: format!("{meter}:2027-01"),
            limit,
            quantity,
            period_end_ms: T0 + 86_400_000,
        };
        let both = |a, b| LimitRequest {
            quotas: vec![quota("calls", 10, a), quota("tokens", 100, b)],
            ..request("org_j", "k", None, 1000, T0)
        };
        assert!(matches!(
            limiter.check(&both(1, 90)).await.expect("check"),
            Decision::Allowed {
                quota: Some(QuotaState { used: 1, limit: 10 }),
                ..
            }
        ));
        let refused = limiter.check(&both(1, 20)).await.expect("check");
        assert!(
            matches!(
                refused,
                Decision::QuotaExceeded {
                    quota: QuotaState {
                        limit: 100,
                        used: 90
                    },
                    ..
                }
            ),
            "{refused:?}"
        );
        // The refused request counted nothing, on either quota.
        assert!(matches!(
            limiter.check(&both(9, 10)).await.expect("check"),
            Decision::Allowed {
                quota: Some(QuotaState { used: 10, .. }),
                ..
            }
        ));
    }

    pub async fn concurrent_quota_use_never_overshoots(limiter: Arc<dyn Limiter>) {
        let quota = QuotaRequest {
            period_key: "events:2027-01".into(),
            limit: 50,
            quantity: 1,
            period_end_ms: T0 + 86_400_000,
        };
        let clients = (0..16).map(|_| {
            let limiter = Arc::clone(&limiter);
            let request = LimitRequest {
                quotas: vec![quota.clone()],
                ..request("org_h", "k", None, 10_000, T0)
            };
            tokio::spawn(async move { allowed(&*limiter, &request, 10).await })
        });
        let mut total = 0;
        for client in clients {
            total += client.await.expect("task");
        }
        assert_eq!(total, 50);
    }
}

macro_rules! conformance {
    ($backend:ident: $($case:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(super::open::$backend().await).await;
                }
            )+
        }
    };
}

macro_rules! every_limiter {
    ($($case:ident),+ $(,)?) => {
        conformance!(local: $($case),+);
        conformance!(redis: $($case),+);
    };
}

every_limiter!(
    concurrent_clients_get_exactly_the_limit,
    the_window_slides_without_a_boundary_burst,
    key_and_org_limits_both_bind,
    revocation_acts_on_the_next_request,
    the_quota_stops_exactly_at_its_limit,
    concurrent_quota_use_never_overshoots,
    every_quota_of_a_request_must_have_room,
);

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    let started = std::time::Instant::now();
    let result = RedisLimiter::connect("redis://127.0.0.1:1", "x:").await;
    assert!(result.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[path = "conformance_batch.rs"]
mod batch_suite;

/// Independent buckets ([`Limiter::check_buckets`]): a bucket is one limit whoever names it.
mod bucket_cases {
    use super::*;

    fn bucket(key: &str, per_minute: u32) -> Bucket {
        Bucket {
            key: key.into(),
            per_minute,
        }
    }

    /// The mail throttle's shape: one bucket per address, one per client IP. A new IP gets no
    /// new allowance for the same address; nothing is counted when one bucket refuses.
    pub async fn a_bucket_holds_whatever_the_other_buckets(limiter: Arc<dyn Limiter>) {
        let ns = ulid::Ulid::new().to_string();
        let address = format!("addr:{ns}");
        let (ip_a, ip_b) = (format!("ip:a:{ns}"), format!("ip:b:{ns}"));
        let check = |ip: &str| vec![bucket(&address, 2), bucket(ip, 10)];
        let limiter = &*limiter;
        for _ in 0..2 {
            let decision = limiter
                .check_buckets(&check(&ip_a), T0)
                .await
                .expect("check");
            assert!(matches!(decision, Decision::Allowed { .. }), "{decision:?}");
        }
        let refused = limiter
            .check_buckets(&check(&ip_b), T0)
            .await
            .expect("check");
        let Decision::RateLimited { retry_after_ms, .. } = refused else {
            panic!("a second IP got a fresh allowance: {refused:?}");
        };
        assert_eq!(retry_after_ms, 30_000);
        // The refusal counted nothing in ip_b's bucket: it still has its ten.
        for _ in 0..10 {
            let other = format!("addr:other:{ns}:{}", ulid::Ulid::new());
            let decision = limiter
                .check_buckets(&[bucket(&other, 1), bucket(&ip_b, 10)], T0)
                .await
                .expect("check");
            assert!(matches!(decision, Decision::Allowed { .. }), "{decision:?}");
        }
        // Half a minute later the address has room for one more, from any IP.
        let later = limiter
            .check_buckets(&check(&format!("ip:c:{ns}")), T0 + 30_000)
            .await
            .expect("check");
        assert!(matches!(later, Decision::Allowed { .. }), "{later:?}");
        // No buckets, no limit.
        assert!(matches!(
            limiter.check_buckets(&[], T0).await.expect("check"),
            Decision::Allowed { .. }
        ));
    }

    /// Concurrent callers of one bucket get exactly its burst.
    pub async fn concurrent_bucket_checks_get_exactly_the_limit(limiter: Arc<dyn Limiter>) {
        let address = format!("addr:{}", ulid::Ulid::new());
        let clients = (0..16).map(|i| {
            let limiter = Arc::clone(&limiter);
            let address = address.clone();
            tokio::spawn(async move {
                let mut count = 0;
                for j in 0..4 {
                    let buckets = [bucket(&address, 20), bucket(&format!("ip:{i}:{j}"), 5)];
                    if matches!(
                        limiter.check_buckets(&buckets, T0).await.expect("check"),
                        Decision::Allowed { .. }
                    ) {
                        count += 1;
                    }
                }
                count
            })
        });
        let mut total = 0;
        for client in clients {
            total += client.await.expect("task");
        }
        assert_eq!(total, 20);
    }
}

mod buckets {
    macro_rules! bucket_conformance {
        ($backend:ident: $($case:ident),+ $(,)?) => {
            mod $backend {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        super::super::bucket_cases::$case(super::super::open::$backend().await)
                            .await;
                    }
                )+
            }
        };
    }
    bucket_conformance!(local: a_bucket_holds_whatever_the_other_buckets, concurrent_bucket_checks_get_exactly_the_limit);
    bucket_conformance!(redis: a_bucket_holds_whatever_the_other_buckets, concurrent_bucket_checks_get_exactly_the_limit);
}
