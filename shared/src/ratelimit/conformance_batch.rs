//! Conformance cases for [`Limiter::check_batch`] and [`Limiter::refund`]: event-id dedup, the
//! give-back of a refused request, and the meter cap, on the in-process limiter and Redis.

use super::open;

mod cases {
    use super::super::T0;
    use crate::ratelimit::{
        BatchDecision, BatchRequest, Decision, EventCharge, LimitRequest, Limiter, QuotaRequest,
        QuotaState, Refund,
    };
    use std::sync::Arc;

    const DAY_MS: u64 = 24 * 3600 * 1000;

    fn batch(org: &str, events: &[(&str, u64)], dedup_ttl_ms: u64) -> BatchRequest {
        BatchRequest {
            limits: LimitRequest {
                key_id: "key".into(),
                org_id: org.into(),
                key_rpm: None,
                org_rpm: 1000,
                quotas: vec![QuotaRequest {
                    period_key: "tokens:2027-01".into(),
                    limit: 100,
                    quantity: 0,
                    period_end_ms: T0 + 40 * DAY_MS as i64,
                }],
                now_ms: T0,
            },
            events: events
                .iter()
                .map(|(id, quantity)| EventCharge {
                    id: (*id).into(),
                    meter: "tokens".into(),
                    quota: Some(0),
                    quantity: *quantity,
                })
                .collect(),
            dedup_ttl_ms,
            max_meters: 0,
        }
    }

    fn org() -> String {
        format!("org_{}", ulid::Ulid::new().to_string().to_lowercase())
    }

    /// The used quota and duplicate flags of an allowed batch; panics otherwise.
    async fn counted(limiter: &dyn Limiter, request: &BatchRequest) -> (u64, Vec<bool>) {
        match limiter.check_batch(request).await.expect("check") {
            BatchDecision::Decided {
                decision:
                    Decision::Allowed {
                        quota: Some(QuotaState { used, .. }),
                        ..
                    },
                duplicate,
            } => (used, duplicate),
            other => panic!("not allowed: {other:?}"),
        }
    }

    pub async fn a_resent_event_spends_its_quota_once(limiter: Arc<dyn Limiter>) {
        let (a, b) = (org(), org());
        let first = batch(&a, &[("e1", 5), ("e2", 5)], DAY_MS);
        assert_eq!(counted(&*limiter, &first).await, (10, vec![false, false]));
        assert_eq!(counted(&*limiter, &first).await, (10, vec![true, true]));
        let mixed = batch(&a, &[("e2", 5), ("e3", 7)], DAY_MS);
        assert_eq!(counted(&*limiter, &mixed).await, (17, vec![true, false]));
        // Ids are per org.
        assert_eq!(counted(&*limiter, &first).await.1, vec![true, true]);
        assert_eq!(
            counted(&*limiter, &batch(&b, &[("e1", 5)], DAY_MS)).await,
            (5, vec![false])
        );
        // Without a dedup window nothing is remembered.
        let unremembered = batch(&b, &[("v1", 1)], 0);
        assert_eq!(counted(&*limiter, &unremembered).await, (6, vec![false]));
        assert_eq!(counted(&*limiter, &unremembered).await, (7, vec![false]));
        // With the quota full, a resent event is still answered as a duplicate; a new one is not.
        let full = batch(&a, &[("e4", 83)], DAY_MS);
        assert_eq!(counted(&*limiter, &full).await.0, 100);
        assert_eq!(counted(&*limiter, &full).await, (100, vec![true]));
        assert!(matches!(
            limiter
                .check_batch(&batch(&a, &[("e5", 1)], DAY_MS))
                .await
                .expect("check"),
            BatchDecision::Decided {
                decision: Decision::QuotaExceeded { .. },
                ..
            }
        ));
    }

    pub async fn a_refund_gives_back_quota_ids_and_rate(limiter: Arc<dyn Limiter>) {
        let a = org();
        let mut request = batch(&a, &[("old", 4)], DAY_MS);
        request.limits.org_rpm = 2;
        assert_eq!(counted(&*limiter, &request).await, (4, vec![false]));
        let mut refused = batch(&a, &[("old", 4), ("new", 6)], DAY_MS);
        refused.limits.org_rpm = 2;
        let (used, duplicate) = counted(&*limiter, &refused).await;
        assert_eq!((used, duplicate.clone()), (10, vec![true, false]));
        limiter
            .refund(&Refund {
                request: &refused,
                duplicate: &duplicate,
            })
            .await
            .expect("refund");
        // The retry is new again, spends once, and the rate allowance came back.
        assert_eq!(counted(&*limiter, &refused).await, (10, vec![true, false]));
        assert!(matches!(
            limiter.check_batch(&refused).await.expect("check"),
            BatchDecision::Decided {
                decision: Decision::RateLimited { .. },
                ..
            }
        ));
    }

    pub async fn an_org_uses_at_most_its_meter_cap(limiter: Arc<dyn Limiter>) {
        let a = org();
        let with_meters = |meters: &[&str], id: &str| {
            let mut request = batch(&a, &[], DAY_MS);
            request.max_meters = 2;
            request.events = meters
                .iter()
                .enumerate()
                .map(|(i, meter)| EventCharge {
                    id: format!("{id}-{i}"),
                    meter: (*meter).into(),
                    quota: Some(0),
                    quantity: 1,
                })
                .collect();
            request
        };
        assert_eq!(
            counted(&*limiter, &with_meters(&["m1", "m2", "m1"], "a"))
                .await
                .0,
            3
        );
        assert_eq!(
            limiter
                .check_batch(&with_meters(&["m1", "m3"], "b"))
                .await
                .expect("check"),
            BatchDecision::TooManyMeters { limit: 2 }
        );
        // Nothing of the refused request was counted or remembered.
        assert_eq!(
            counted(&*limiter, &with_meters(&["m2", "m1"], "b")).await,
            (5, vec![false, false])
        );
    }
}

every_limiter!(
    a_resent_event_spends_its_quota_once,
    a_refund_gives_back_quota_ids_and_rate,
    an_org_uses_at_most_its_meter_cap,
);
