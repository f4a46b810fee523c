//! The metering rules of issue 14, end to end over HTTP on every store backend: a resent event
//! spends no quota and a 503 spends nothing (item 8); counters saturate instead of overflowing
//! (item 7); an event is at most 8 KiB (12c); an org has a bounded number of meters (12d); and
//! an event's quota and bill are the month of its timestamp (12e).

use chrono::{Datelike, TimeZone, Utc};
use meterline::domain::UsageEvent;
use meterline::ratelimit::{Limiter, LocalLimiter, RedisLimiter};
use meterline::usage::{DirectSink, SinkError, UsageSink};
use meterline_e2e::{Backend, Keyed, PrivateRedis, Reply, Server, call};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

const OPEN_AUTH: (&str, &str) = ("AUTH_IP_LIMIT_PER_MIN", "0");

/// A sink that can be switched off: the direct sink into the server's store, or a failure.
#[derive(Default)]
struct Switchable {
    inner: OnceLock<Arc<dyn UsageSink>>,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl UsageSink for Switchable {
    fn backend(&self) -> &'static str {
        "switchable"
    }

    async fn send(&self, events: &[UsageEvent]) -> Result<(), SinkError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(SinkError(std::io::Error::other("switched off").into()));
        }
        self.inner.get().expect("wired").send(events).await
    }

    async fn ping(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

async fn server_with(
    backend: Backend,
    settings: &[(&str, &str)],
    limiter: Arc<dyn Limiter>,
) -> (Server, Arc<Switchable>) {
    let sink = Arc::new(Switchable::default());
    let server = Server::start_on(
        backend,
        settings,
        limiter,
        Some(Arc::clone(&sink) as Arc<dyn UsageSink>),
    )
    .await;
    let direct: Arc<dyn UsageSink> = Arc::new(DirectSink::new(Arc::clone(&server.state.store)));
    assert!(sink.inner.set(direct).is_ok());
    (server, sink)
}

async fn send(server: &Server, key: &Keyed, events: Value) -> Reply {
    server
        .metered("/v1/events", Some(&key.key), json!({ "events": events }))
        .await
}

/// The quota used of `meter` this month, read by a zero-cost probe: a verify of 1 unit, whose
/// own unit is subtracted.
async fn quota_used(server: &Server, key: &Keyed, meter: &str) -> u64 {
    let reply = server
        .metered(
            "/v1/verify",
            Some(&key.key),
            json!({"meter": meter, "quantity": 1}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["quota"]["used"].as_u64().expect("quota used") - 1
}

fn batch(ids: &[&str], quantity: u64) -> Value {
    ids.iter()
        .map(|id| json!({"id": id, "meter": "tokens", "quantity": quantity}))
        .collect()
}

async fn a_resent_batch_spends_no_quota_and_is_answered_as_duplicates_on(
    backend: Backend,
    limiter: Arc<dyn Limiter>,
) {
    let (server, _) = server_with(
        backend,
        &[OPEN_AUTH, ("DEFAULT_MONTHLY_QUOTA", "100")],
        limiter,
    )
    .await;
    let keyed = server.keyed(json!({"name": "retry"})).await;
    let events = batch(&["a", "b", "c"], 5);
    let first = send(&server, &keyed, events.clone()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(
        (
            first.body["accepted"].as_u64(),
            first.body["duplicates"].as_u64()
        ),
        (Some(3), Some(0))
    );
    assert_eq!(quota_used(&server, &keyed, "tokens").await, 15);

    let again = send(&server, &keyed, events).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    assert_eq!(
        (
            again.body["accepted"].as_u64(),
            again.body["duplicates"].as_u64()
        ),
        (Some(0), Some(3))
    );
    // The probe above spent 1; the resend spent nothing.
    assert_eq!(quota_used(&server, &keyed, "tokens").await, 16);

    // A batch mixing new and resent events spends for the new ones only.
    let mixed = send(&server, &keyed, batch(&["c", "d"], 5)).await;
    assert_eq!(
        (
            mixed.body["accepted"].as_u64(),
            mixed.body["duplicates"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(quota_used(&server, &keyed, "tokens").await, 22);
}

async fn a_resent_batch_spends_no_quota_and_is_answered_as_duplicates(backend: Backend) {
    a_resent_batch_spends_no_quota_and_is_answered_as_duplicates_on(
        backend,
        Arc::new(LocalLimiter::new()),
    )
    .await;
}

async fn a_request_refused_with_503_spends_no_quota(backend: Backend) {
    let (server, sink) = server_with(
        backend,
        &[OPEN_AUTH, ("DEFAULT_MONTHLY_QUOTA", "100")],
        Arc::new(LocalLimiter::new()),
    )
    .await;
    let keyed = server.keyed(json!({"name": "down"})).await;
    sink.down.store(true, Ordering::SeqCst);
    let refused = send(&server, &keyed, batch(&["x", "y"], 10)).await;
    refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    let verify = server
        .metered(
            "/v1/verify",
            Some(&keyed.key),
            json!({"meter": "tokens", "quantity": 7}),
        )
        .await;
    verify.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    sink.down.store(false, Ordering::SeqCst);
    assert_eq!(
        quota_used(&server, &keyed, "tokens").await,
        0,
        "nothing was spent"
    );
    // The retry is new (it was never recorded): counted once, and recorded.
    let retried = send(&server, &keyed, batch(&["x", "y"], 10)).await;
    assert_eq!(
        (
            retried.body["accepted"].as_u64(),
            retried.body["duplicates"].as_u64()
        ),
        (Some(2), Some(0)),
        "{}",
        retried.body
    );
    assert_eq!(quota_used(&server, &keyed, "tokens").await, 21);
    let org = meterline::domain::OrgId::parse(&keyed.org).expect("org");
    assert!(
        server
            .state
            .store
            .usage_event(&org, "x")
            .await
            .expect("read")
            .is_some()
    );
}

async fn usage_counters_saturate_at_i64_max_and_reports_stay_200(backend: Backend) {
    // No quota on any meter, so quantities near i64::MAX pass the limiter.
    let server = Server::start_with(backend, &[OPEN_AUTH, ("DEFAULT_MONTHLY_QUOTA", "0")]).await;
    let keyed = server.keyed(json!({"name": "huge"})).await;
    let max = i64::MAX;
    for id in ["big-1", "big-2"] {
        let reply = send(
            &server,
            &keyed,
            json!([{"id": id, "meter": "tokens", "quantity": max}]),
        )
        .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    }
    let token = &keyed.owner.token;
    let org = &keyed.org;
    for granularity in ["month", "day", "hour"] {
        let report = call(
            &server,
            Method::GET,
            &format!("/v1/orgs/{org}/usage?granularity={granularity}"),
            token,
            Value::Null,
        )
        .await;
        assert_eq!(report.status, StatusCode::OK, "{}", report.body);
        assert_eq!(
            report.body["totals"]["tokens"].as_u64(),
            Some(max.unsigned_abs()),
            "{}",
            report.body
        );
    }
    let invoice = call(
        &server,
        Method::GET,
        &format!("/v1/orgs/{org}/invoices/upcoming"),
        token,
        Value::Null,
    )
    .await;
    assert_eq!(invoice.status, StatusCode::OK, "{}", invoice.body);
    // Another event still counts (the counter stays saturated, nothing fails).
    let more = send(
        &server,
        &keyed,
        json!([{"id": "big-3", "meter": "tokens", "quantity": 1}]),
    )
    .await;
    assert_eq!(more.status, StatusCode::ACCEPTED, "{}", more.body);
}

async fn an_event_over_8_kib_is_refused_with_event_too_large(backend: Backend) {
    let server = Server::start_with(backend, &[OPEN_AUTH, ("DEFAULT_MONTHLY_QUOTA", "100")]).await;
    let keyed = server.keyed(json!({"name": "big"})).await;
    let filler = "x".repeat(8 * 1024);
    let reply = send(
        &server,
        &keyed,
        json!([
            {"id": "small", "meter": "tokens", "quantity": 1},
            {"id": "large", "meter": "tokens", "quantity": 1, "properties": {"blob": filler}},
        ]),
    )
    .await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "event_too_large");
    let org = meterline::domain::OrgId::parse(&keyed.org).expect("org");
    assert!(
        server
            .state
            .store
            .usage_event(&org, "small")
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(
        quota_used(&server, &keyed, "tokens").await,
        0,
        "nothing was counted"
    );
    // Just under the cap is fine.
    let fits = "x".repeat(7 * 1024);
    let ok = send(
        &server,
        &keyed,
        json!([{"id": "fits", "meter": "tokens", "quantity": 1, "properties": {"blob": fits}}]),
    )
    .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
}

async fn an_org_may_use_at_most_max_meters_per_org_meters(backend: Backend) {
    let server = Server::start_with(backend, &[OPEN_AUTH, ("MAX_METERS_PER_ORG", "3")]).await;
    let keyed = server.keyed(json!({"name": "meters"})).await;
    let event = |id: &str, meter: &str| json!({"id": id, "meter": meter, "quantity": 1});
    let ok = send(&server, &keyed, json!([event("1", "m1"), event("2", "m2")])).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    // `requests` (verify's meter) is the third.
    let verify = server
        .metered("/v1/verify", Some(&keyed.key), Value::Null)
        .await;
    assert_eq!(verify.status, StatusCode::OK, "{}", verify.body);
    let over = send(&server, &keyed, json!([event("3", "m1"), event("4", "m4")])).await;
    over.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "too_many_meters");
    let org = meterline::domain::OrgId::parse(&keyed.org).expect("org");
    assert!(
        server
            .state
            .store
            .usage_event(&org, "3")
            .await
            .expect("read")
            .is_none()
    );
    let verify_new = server
        .metered("/v1/verify", Some(&keyed.key), json!({"meter": "m5"}))
        .await;
    verify_new.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "too_many_meters");
    // Known meters go on being counted.
    let known = send(&server, &keyed, json!([event("3", "m1"), event("5", "m2")])).await;
    assert_eq!(known.status, StatusCode::ACCEPTED, "{}", known.body);
}

async fn a_backdated_event_counts_against_the_quota_of_the_month_it_is_billed_in(backend: Backend) {
    // A lateness window long enough to reach back into last month, whatever today's date.
    let server = Server::start_with(
        backend,
        &[
            OPEN_AUTH,
            ("DEFAULT_MONTHLY_QUOTA", "5"),
            ("USAGE_LATENESS_SECS", "3456000"),
        ],
    )
    .await;
    let keyed = server.keyed(json!({"name": "late"})).await;
    let now = Utc::now();
    let this_month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .expect("first of the month");
    let last_month = this_month - chrono::Duration::hours(2);
    let at = last_month.to_rfc3339();
    let late = send(
        &server,
        &keyed,
        json!([{"id": "late-1", "meter": "tokens", "quantity": 5, "timestamp": at}]),
    )
    .await;
    assert_eq!(late.status, StatusCode::ACCEPTED, "{}", late.body);
    // This month's quota is untouched: the event is billed in last month, and counted there.
    let now_verify = server
        .metered(
            "/v1/verify",
            Some(&keyed.key),
            json!({"meter": "tokens", "quantity": 5}),
        )
        .await;
    assert_eq!(now_verify.status, StatusCode::OK, "{}", now_verify.body);
    // Last month's quota is used up by it.
    let more = send(
        &server,
        &keyed,
        json!([{"id": "late-2", "meter": "tokens", "quantity": 1, "timestamp": at}]),
    )
    .await;
    more.assert_problem(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded");
    // And the bill agrees: last month's counter holds the late event.
    let from =
        (this_month - chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = this_month.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let report = call(
        &server,
        Method::GET,
        &format!(
            "/v1/orgs/{}/usage?granularity=day&from={from}&to={to}",
            keyed.org
        ),
        &keyed.owner.token,
        Value::Null,
    )
    .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert_eq!(
        report.body["totals"]["tokens"].as_u64(),
        Some(5),
        "{}",
        report.body
    );
}

/// In SQS mode, one org's counter reaching `i64::MAX` fails nothing: the consumer's batch,
/// with another org's events in it, is applied whole.
async fn a_saturating_counter_does_not_poison_the_consumers_batch(backend: Backend) {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    use meterline::domain::{ApiKeyId, Granularity, OrgId};
    let server = Server::start(backend).await;
    let store = Arc::clone(&server.state.store);
    let (a, b) = (OrgId::generate(), OrgId::generate());
    let now = Utc::now();
    let event = |org: &OrgId, id: &str, quantity: u64| UsageEvent {
        id: id.into(),
        org_id: org.clone(),
        key_id: ApiKeyId::generate(),
        meter: "tokens".into(),
        quantity,
        timestamp: now,
        properties: None,
    };
    let max = i64::MAX.unsigned_abs();
    let admission = meterline::usage::Admission {
        lateness: chrono::Duration::days(7),
        future_skew: chrono::Duration::minutes(5),
    };
    let batch = |events: &[UsageEvent]| {
        let mut batch = SqsEvent::default();
        for (n, e) in events.iter().enumerate() {
            let mut record = SqsMessage::default();
            record.message_id = Some(format!("m{n}"));
            record.body = Some(serde_json::to_string(e).expect("json"));
            batch.records.push(record);
        }
        batch
    };
    // Org a's counter is near the top; the next batch takes it past, with org b's event in it.
    let first = batch(&[event(&a, "1", max)]);
    let response = meterline_billing::handle(&*store, &admission, first, now).await;
    assert!(response.batch_item_failures.is_empty());
    let second = batch(&[event(&a, "2", max), event(&b, "1", 5)]);
    let response = meterline_billing::handle(&*store, &admission, second, now).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "the batch was poisoned"
    );
    for (org, expected) in [(&a, max), (&b, 5)] {
        let series = store
            .usage_series(
                org,
                Granularity::Month,
                now - chrono::Duration::days(40),
                now + chrono::Duration::days(1),
                None,
            )
            .await
            .expect("read");
        assert_eq!(
            series.iter().map(|p| p.quantity).collect::<Vec<_>>(),
            [expected]
        );
    }
}

meterline_e2e::on_every_backend!(
    a_saturating_counter_does_not_poison_the_consumers_batch,
    a_resent_batch_spends_no_quota_and_is_answered_as_duplicates,
    a_request_refused_with_503_spends_no_quota,
    usage_counters_saturate_at_i64_max_and_reports_stay_200,
    an_event_over_8_kib_is_refused_with_event_too_large,
    an_org_may_use_at_most_max_meters_per_org_meters,
    a_backdated_event_counts_against_the_quota_of_the_month_it_is_billed_in,
);

/// The same dedup rule with the Redis limiter (production's): the event ids live in Redis.
#[tokio::test]
async fn a_resent_batch_spends_no_redis_quota() {
    let redis = PrivateRedis::start().await;
    let limiter: Arc<dyn Limiter> = Arc::new(
        RedisLimiter::connect(&redis.url(), "")
            .await
            .expect("redis"),
    );
    a_resent_batch_spends_no_quota_and_is_answered_as_duplicates_on(Backend::Sqlite, limiter).await;
}
