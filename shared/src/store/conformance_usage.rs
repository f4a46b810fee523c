//! Conformance cases for usage counters at their limits, run on every backend.

use super::open;

mod cases {
    use super::super::now;
    use crate::domain::{ApiKeyId, Granularity, OrgId, UsageEvent};
    use crate::store::Store;
    use chrono::Duration;
    use std::sync::Arc;

    /// One event at a fixed time (an hour's middle), so all land in the same counters.
    fn event(org: &OrgId, id: &str, quantity: u64) -> UsageEvent {
        use chrono::{DurationRound, TimeDelta};
        let hour = now().duration_trunc(TimeDelta::hours(1)).expect("an hour");
        UsageEvent {
            id: id.into(),
            org_id: org.clone(),
            key_id: ApiKeyId::generate(),
            meter: "tokens".into(),
            quantity,
            timestamp: hour - Duration::minutes(30),
            properties: None,
        }
    }

    /// Two events near `i64::MAX`, in one batch and in two: every counter saturates at
    /// `i64::MAX` and reads back, and the batch carrying another org's event still applies.
    pub async fn counters_saturate_at_i64_max(store: Arc<dyn Store>) {
        let max = i64::MAX.unsigned_abs();
        let (a, b, c) = (OrgId::generate(), OrgId::generate(), OrgId::generate());
        assert_eq!(
            store
                .apply_usage(&[event(&a, "1", max - 1)])
                .await
                .expect("first"),
            1
        );
        // A second delivery for `a` in the same batch as another org's event.
        assert_eq!(
            store
                .apply_usage(&[event(&a, "2", max), event(&b, "1", 7)])
                .await
                .expect("a saturating batch applies"),
            2
        );
        // Two huge events of one org in one batch.
        assert_eq!(
            store
                .apply_usage(&[event(&c, "1", max), event(&c, "2", max)])
                .await
                .expect("one batch"),
            2
        );
        let (from, to) = (now() - Duration::days(40), now() + Duration::days(1));
        for granularity in Granularity::ALL {
            for (org, expected) in [(&a, max), (&b, 7), (&c, max)] {
                let series = store
                    .usage_series(org, granularity, from, to, None)
                    .await
                    .expect("counters read");
                assert_eq!(
                    series.iter().map(|p| p.quantity).collect::<Vec<_>>(),
                    [expected],
                    "{granularity:?}"
                );
            }
        }
        // A saturated counter takes more without failing.
        store
            .apply_usage(&[event(&a, "3", 1)])
            .await
            .expect("still applies");
    }
}

every_backend!(counters_saturate_at_i64_max);
