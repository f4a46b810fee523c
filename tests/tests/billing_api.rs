//! The billing API end to end over HTTP, on every store backend: the plan catalog and its
//! admins, subscriptions (owner only, audited), plans driving the metering limits, usage
//! reports in JSON and CSV, the upcoming invoice, and Stripe's signed webhooks applied once.

use chrono::{TimeZone, Utc};
use meterline::auth::{WebhookSecret, sign};
use meterline::clock::{Clock, ManualClock, SystemClock};
use meterline::domain::OrgId;
use meterline_e2e::{Account, Backend, Reply, Server, call, link_token, unique_email};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const WEBHOOK_SECRET: &str = "whsec_e2e_0123456789";

/// A free plan with cheap graduated overage on `requests`, so invoices have round numbers.
const PLANS: &str = r#"[
  {"id": "pln_free", "name": "Free", "price_cents": 0, "rate_limit_rpm": 600,
   "quotas": {"requests": 5, "*": 3},
   "overage": {"requests": [{"up_to": 10, "unit_amount_cents": 3}, {"up_to": null, "unit_amount_cents": 1}]}},
  {"id": "pln_pro", "name": "Pro", "price_cents": 4900, "rate_limit_rpm": 6000,
   "quotas": {"*": 1000000}}
]"#;

struct Fixture {
    server: Server,
    admin: Account,
    owner: Account,
    org: String,
    /// A second configured platform-admin address that no account has yet.
    spare_admin_email: String,
}

/// Proves `email`'s address with the link its signup mailed.
async fn verify_email(server: &Server, email: &str) {
    let token = link_token(&server.last_mail(email, "verify_email"));
    let verified = server
        .post("/v1/auth/verify-email", json!({ "token": token }), None)
        .await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.body);
}

impl Fixture {
    async fn new(backend: Backend) -> Self {
        Self::on_clock(backend, Arc::new(SystemClock)).await
    }

    /// The fixture on a server whose services read the time from `clock`.
    async fn on_clock(backend: Backend, clock: Arc<dyn Clock>) -> Self {
        let admin_email = unique_email();
        let spare_admin_email = unique_email();
        let admins = format!("{admin_email},{spare_admin_email}");
        let server = Server::start_with_clock(
            backend,
            &[
                ("AUTH_IP_LIMIT_PER_MIN", "0"),
                ("PLANS_JSON", PLANS),
                ("PLATFORM_ADMIN_EMAILS", &admins),
                ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
                ("KEY_CACHE_TTL_SECS", "1"),
            ],
            clock,
        )
        .await;
        let user = server.signup(&admin_email, "correct horse battery").await;
        verify_email(&server, &admin_email).await;
        let tokens = server.login(&admin_email, "correct horse battery").await;
        let admin = Account {
            id: user["id"].as_str().expect("id").into(),
            email: admin_email,
            token: tokens.access,
        };
        let owner = server.account().await;
        let org = server.org(&owner, "Billed").await;
        Self {
            server,
            admin,
            owner,
            org,
            spare_admin_email,
        }
    }

    async fn call(&self, who: &Account, method: Method, path: &str, body: Value) -> Reply {
        call(&self.server, method, path, &who.token, body).await
    }

    fn org_path(&self, rest: &str) -> String {
        format!("/v1/orgs/{}{rest}", self.org)
    }

    async fn actions(&self) -> Vec<String> {
        let log = self
            .call(
                &self.owner,
                Method::GET,
                &self.org_path("/audit-log"),
                Value::Null,
            )
            .await;
        assert_eq!(log.status, StatusCode::OK, "{}", log.body);
        log.body["data"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|entry| entry["action"].as_str().expect("action").to_owned())
            .collect()
    }

    async fn webhook(&self, body: &Value, timestamp: i64, secret: &str) -> Reply {
        let raw = body.to_string();
        let header = sign(
            &WebhookSecret::new(secret.into()),
            timestamp,
            raw.as_bytes(),
        );
        let response = self
            .server
            .request(Method::POST, "/v1/billing/stripe/webhook")
            .header("stripe-signature", header)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("sent");
        Reply::from(response).await
    }
}

fn ids(reply: &Reply) -> Vec<String> {
    reply.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|plan| plan["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn the_catalog_is_public_and_edited_by_platform_admins(backend: Backend) {
    let f = Fixture::new(backend).await;
    let plans = f.server.get("/v1/plans", None).await;
    assert_eq!(plans.status, StatusCode::OK);
    assert_eq!(ids(&plans), ["pln_free", "pln_pro"]);
    assert_eq!(
        plans.body["data"][0]["overage"]["requests"][0]["unit_amount_cents"],
        3
    );

    let team = json!({"id": "pln_team", "name": "Team", "price_cents": 1900, "rate_limit_rpm": 1200,
                      "quotas": {"requests": 100}});
    f.call(&f.owner, Method::POST, "/v1/plans", team.clone())
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    let created = f
        .call(&f.admin, Method::POST, "/v1/plans", team.clone())
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["price_cents"], 1900);
    f.call(&f.admin, Method::POST, "/v1/plans", team.clone())
        .await
        .assert_problem(StatusCode::CONFLICT, "plan_exists");
    let bad_tiers = json!({"name": "Bad", "price_cents": 1, "rate_limit_rpm": 10,
        "overage": {"requests": [{"up_to": 10, "unit_amount_cents": 1}]}});
    f.call(&f.admin, Method::POST, "/v1/plans", bad_tiers)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let updated = f
        .call(
            &f.admin,
            Method::PUT,
            "/v1/plans/pln_team",
            json!({"name": "Team", "price_cents": 2500, "rate_limit_rpm": 1200}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["price_cents"], 2500);
    assert_eq!(updated.body["created_at"], created.body["created_at"]);
    f.call(&f.admin, Method::DELETE, "/v1/plans/pln_none", Value::Null)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "plan_not_found");
    f.call(&f.admin, Method::DELETE, "/v1/plans/pln_free", Value::Null)
        .await
        .assert_problem(StatusCode::CONFLICT, "default_plan");
    let archived = f
        .call(&f.admin, Method::DELETE, "/v1/plans/pln_team", Value::Null)
        .await;
    assert_eq!(archived.body["archived"], true, "{}", archived.body);
    assert_eq!(
        ids(&f.server.get("/v1/plans", None).await),
        ["pln_free", "pln_pro"]
    );
    assert_eq!(
        f.server.get("/v1/plans/pln_team", None).await.body["archived"],
        true
    );
    f.call(
        &f.owner,
        Method::PUT,
        &f.org_path("/subscription"),
        json!({"plan_id": "pln_team"}),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "plan_archived");
    let log = f
        .call(&f.admin, Method::GET, "/v1/plans/audit-log", Value::Null)
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let actions: Vec<&str> = log.body["data"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["plan.archived", "plan.updated", "plan.created"]);
    assert_eq!(log.body["data"][1]["before"]["price_cents"], 1900);
    assert_eq!(log.body["data"][1]["actor_user_id"], f.admin.id.as_str());
    f.call(&f.owner, Method::GET, "/v1/plans/audit-log", Value::Null)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
}

async fn owners_subscribe_change_and_cancel(backend: Backend) {
    let f = Fixture::new(backend).await;
    let member = f.server.account().await;
    let stranger = f.server.account().await;
    f.server
        .add_member(&f.owner, &f.org, &member, "admin")
        .await;

    let current = f
        .call(
            &f.owner,
            Method::GET,
            &f.org_path("/subscription"),
            Value::Null,
        )
        .await;
    assert_eq!(current.status, StatusCode::OK, "{}", current.body);
    assert_eq!(current.body["plan_id"], "pln_free");
    assert_eq!(current.body["status"], "active");
    f.call(
        &member,
        Method::GET,
        &f.org_path("/subscription"),
        Value::Null,
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    f.call(
        &stranger,
        Method::GET,
        &f.org_path("/subscription"),
        Value::Null,
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not_found");
    f.call(
        &f.owner,
        Method::DELETE,
        &f.org_path("/subscription"),
        Value::Null,
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "not_subscribed");
    f.call(
        &f.owner,
        Method::PUT,
        &f.org_path("/subscription"),
        json!({"plan_id": "pln_gold"}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    f.call(
        &f.owner,
        Method::PUT,
        &f.org_path("/subscription"),
        json!({"plan": "pln_pro"}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    let pro = f
        .call(
            &f.owner,
            Method::PUT,
            &f.org_path("/subscription"),
            json!({"plan_id": "pln_pro"}),
        )
        .await;
    assert_eq!(pro.status, StatusCode::OK, "{}", pro.body);
    assert_eq!(pro.body["plan_id"], "pln_pro");
    assert_eq!(pro.body["cancel_at_period_end"], false);
    let cancelled = f
        .call(
            &f.owner,
            Method::DELETE,
            &f.org_path("/subscription"),
            Value::Null,
        )
        .await;
    assert_eq!(
        cancelled.body["cancel_at_period_end"], true,
        "{}",
        cancelled.body
    );
    assert_eq!(
        cancelled.body["plan_id"], "pln_pro",
        "the plan stays until the period ends"
    );
    let resumed = f
        .call(
            &f.owner,
            Method::PUT,
            &f.org_path("/subscription"),
            json!({"plan_id": "pln_pro"}),
        )
        .await;
    assert_eq!(resumed.body["cancel_at_period_end"], false);

    let actions = f.actions().await;
    assert_eq!(
        &actions[..3],
        [
            "subscription.resumed",
            "subscription.cancelled",
            "subscription.plan_changed"
        ]
    );
    // Base prices prorate: part of the month on free (0), the rest on pro.
    let invoice = f
        .call(
            &member,
            Method::GET,
            &f.org_path("/invoices/upcoming"),
            Value::Null,
        )
        .await;
    assert_eq!(invoice.status, StatusCode::OK, "{}", invoice.body);
    assert_eq!(invoice.body["plan_id"], "pln_pro");
    let lines = invoice.body["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 2, "{}", invoice.body);
    let pro_base = lines[1]["amount_cents"].as_u64().expect("amount");
    assert!(pro_base > 0 && pro_base <= 4900, "{pro_base}");
    assert_eq!(invoice.body["total_cents"], pro_base);
}

async fn plans_drive_the_metering_limits(backend: Backend) {
    let f = Fixture::new(backend).await;
    let keyed = f.server.keyed(json!({"name": "k"})).await;
    // Free: `tokens` falls under the `*` quota of 3 and has no overage, so it is a hard cap.
    for _ in 0..3 {
        let ok = f
            .server
            .metered("/v1/verify", Some(&keyed.key), json!({"meter": "tokens"}))
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        assert_eq!(ok.body["quota"]["limit"], 3);
    }
    f.server
        .metered("/v1/verify", Some(&keyed.key), json!({"meter": "tokens"}))
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded");
    // `requests` has overage tiers: past its quota of 5 it is billed, not refused.
    for _ in 0..7 {
        let ok = f
            .server
            .metered("/v1/verify", Some(&keyed.key), json!({}))
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    }
    let owner = keyed.owner.clone();
    let path = format!("/v1/orgs/{}/subscription", keyed.org);
    let moved = call(
        &f.server,
        Method::PUT,
        &path,
        &owner.token,
        json!({"plan_id": "pln_pro"}),
    )
    .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    // The key cache holds the old plan for at most KEY_CACHE_TTL_SECS (1 s here).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let ok = f
        .server
        .metered("/v1/verify", Some(&keyed.key), json!({"meter": "tokens"}))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["quota"]["limit"], 1_000_000);
    assert_eq!(ok.headers["x-ratelimit-limit"], "6000");
}

async fn usage_reports_and_the_invoice_add_up(backend: Backend) {
    let f = Fixture::new(backend).await;
    let keyed = f.server.keyed(json!({"name": "k"})).await;
    let now = chrono::Utc::now();
    let events: Vec<Value> = (0..20)
        .map(|i| {
            json!({"id": format!("e{i}"), "meter": "requests", "quantity": 1,
                        "timestamp": (now - chrono::Duration::minutes(i)).to_rfc3339()})
        })
        .chain([json!({"id": "t1", "meter": "tokens", "quantity": 2})])
        .collect();
    let sent = f
        .server
        .metered("/v1/events", Some(&keyed.key), json!({"events": events}))
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
    let org = &keyed.org;
    let token = &keyed.owner.token;

    let report = call(
        &f.server,
        Method::GET,
        &format!("/v1/orgs/{org}/usage?granularity=month"),
        token,
        Value::Null,
    )
    .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert_eq!(report.body["totals"], json!({"requests": 20, "tokens": 2}));
    assert_eq!(report.body["granularity"], "month");
    let from = (now - chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (now + chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let hourly = call(
        &f.server,
        Method::GET,
        &format!("/v1/orgs/{org}/usage?granularity=hour&meter=requests&from={from}&to={to}"),
        token,
        Value::Null,
    )
    .await;
    assert_eq!(hourly.status, StatusCode::OK, "{}", hourly.body);
    assert_eq!(hourly.body["totals"], json!({"requests": 20}));
    let series_sum: u64 = hourly.body["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|p| p["quantity"].as_u64().expect("q"))
        .sum();
    assert_eq!(series_sum, 20);

    let csv = f
        .server
        .request(
            Method::GET,
            &format!("/v1/orgs/{org}/usage.csv?granularity=day&from={from}&to={to}"),
        )
        .bearer_auth(token)
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/csv")
    );
    let text = csv.text().await.expect("text");
    let mut rows = text.lines();
    assert_eq!(rows.next(), Some("period_start,granularity,meter,quantity"));
    let csv_total: u64 = rows
        .map(|row| {
            row.rsplit(',')
                .next()
                .expect("q")
                .parse::<u64>()
                .expect("n")
        })
        .sum();
    assert_eq!(csv_total, 22);

    for bad in [
        "granularity=week",
        "from=yesterday",
        "meter=Bad%20Meter",
        "from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z",
        "granularity=hour&from=2026-01-01T00:00:00Z&to=2026-11-01T00:00:00Z",
    ] {
        call(
            &f.server,
            Method::GET,
            &format!("/v1/orgs/{org}/usage?{bad}"),
            token,
            Value::Null,
        )
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    call(
        &f.server,
        Method::GET,
        &format!("/v1/orgs/{org}/usage?colour=red"),
        token,
        Value::Null,
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
    call(
        &f.server,
        Method::GET,
        &format!("/v1/orgs/{}/usage", f.org),
        token,
        Value::Null,
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not_found");

    // Free plan: 5 requests included, then 10 at 3¢ and 5 at 1¢; tokens are within `*`.
    let invoice = call(
        &f.server,
        Method::GET,
        &format!("/v1/orgs/{org}/invoices/upcoming"),
        token,
        Value::Null,
    )
    .await;
    assert_eq!(invoice.status, StatusCode::OK, "{}", invoice.body);
    assert_eq!(invoice.body["total_cents"], 35, "{}", invoice.body);
    assert_eq!(invoice.body["currency"], "usd");
    let lines = invoice.body["lines"].as_array().expect("lines");
    let sum: u64 = lines
        .iter()
        .map(|l| l["amount_cents"].as_u64().expect("amount"))
        .sum();
    assert_eq!(sum, 35);
    let charged: Vec<(u64, u64)> = lines
        .iter()
        .filter(|l| l["meter"] == "requests")
        .map(|l| {
            (
                l["quantity"].as_u64().expect("q"),
                l["unit_amount_cents"].as_u64().expect("u"),
            )
        })
        .collect();
    assert_eq!(charged, [(5, 0), (10, 3), (5, 1)]);
}

fn checkout(event_id: &str, org: &str) -> Value {
    json!({"id": event_id, "type": "checkout.session.completed",
           "data": {"object": {"client_reference_id": org, "customer": "cus_1", "subscription": "sub_1",
                               "metadata": {"plan_id": "pln_pro"}}}})
}

async fn stripe_webhooks_apply_once_and_only_when_signed(backend: Backend) {
    let f = Fixture::new(backend).await;
    let now = chrono::Utc::now().timestamp();
    let event = checkout("evt_checkout_1", &f.org);

    // Past the 300 s tolerance by a margin: `now` is truncated to the second and the server
    // reads its clock later, so `now + 301` could land inside the window.
    for (timestamp, secret) in [
        (now, "whsec_wrong"),
        (now - 305, WEBHOOK_SECRET),
        (now + 305, WEBHOOK_SECRET),
    ] {
        f.webhook(&event, timestamp, secret)
            .await
            .assert_problem(StatusCode::BAD_REQUEST, "invalid_signature");
    }
    let unsigned = f
        .server
        .request(Method::POST, "/v1/billing/stripe/webhook")
        .body(event.to_string())
        .send()
        .await
        .expect("sent");
    Reply::from(unsigned)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_signature");
    let garbage = f
        .server
        .request(Method::POST, "/v1/billing/stripe/webhook")
        .header("stripe-signature", "t=abc,v1=zz")
        .body("{}")
        .send()
        .await
        .expect("sent");
    Reply::from(garbage)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_signature");
    let current = f
        .call(
            &f.owner,
            Method::GET,
            &f.org_path("/subscription"),
            Value::Null,
        )
        .await;
    assert_eq!(
        current.body["plan_id"], "pln_free",
        "refused webhooks change nothing"
    );

    let applied = f.webhook(&event, now, WEBHOOK_SECRET).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    assert_eq!(applied.body["result"], "applied");
    let replayed = f.webhook(&event, now, WEBHOOK_SECRET).await;
    assert_eq!(replayed.body["result"], "duplicate", "{}", replayed.body);
    let current = f
        .call(
            &f.owner,
            Method::GET,
            &f.org_path("/subscription"),
            Value::Null,
        )
        .await;
    assert_eq!(current.body["plan_id"], "pln_pro");
    let actions = f.actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "subscription.checkout_completed")
            .count(),
        1
    );

    let failed = json!({"id": "evt_failed_1", "type": "invoice.payment_failed",
        "data": {"object": {"subscription": "sub_1", "customer": "cus_1",
                            "subscription_details": {"metadata": {"org_id": f.org}}}}});
    assert_eq!(
        f.webhook(&failed, now, WEBHOOK_SECRET).await.body["result"],
        "applied"
    );
    let current = f
        .call(
            &f.owner,
            Method::GET,
            &f.org_path("/subscription"),
            Value::Null,
        )
        .await;
    assert_eq!(current.body["status"], "past_due");

    let other = json!({"id": "evt_other", "type": "customer.created", "data": {"object": {}}});
    assert_eq!(
        f.webhook(&other, now, WEBHOOK_SECRET).await.body["result"],
        "ignored"
    );

    let ended = json!({"id": "evt_deleted_1", "type": "customer.subscription.deleted",
        "data": {"object": {"id": "sub_1", "customer": "cus_1", "metadata": {"org_id": f.org}}}});
    assert_eq!(
        f.webhook(&ended, now, WEBHOOK_SECRET).await.body["result"],
        "applied"
    );
    let current = f
        .call(
            &f.owner,
            Method::GET,
            &f.org_path("/subscription"),
            Value::Null,
        )
        .await;
    assert_eq!(current.body["plan_id"], "pln_free");
    assert_eq!(current.body["status"], "canceled");
}

async fn platform_admin_rights_need_a_verified_email(backend: Backend) {
    let f = Fixture::new(backend).await;
    // Anyone may sign up with a configured admin address; until its owner proves it by the
    // mailed link, it grants nothing.
    let email = f.spare_admin_email.clone();
    f.server.signup(&email, "correct horse battery").await;
    let tokens = f.server.login(&email, "correct horse battery").await;
    let squatter = Account {
        id: String::new(),
        email: email.clone(),
        token: tokens.access,
    };
    let plan = json!({"id": "pln_squat", "name": "Squat", "price_cents": 0, "rate_limit_rpm": 10});
    f.call(&squatter, Method::POST, "/v1/plans", plan.clone())
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    f.call(&squatter, Method::GET, "/v1/plans/audit-log", Value::Null)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    f.call(
        &squatter,
        Method::PUT,
        "/v1/plans/pln_free",
        json!({"name": "Free", "price_cents": 100_000, "rate_limit_rpm": 1}),
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        f.server.get("/v1/plans/pln_free", None).await.body["price_cents"],
        0,
        "a refused edit changes nothing"
    );

    verify_email(&f.server, &email).await;
    let tokens = f.server.login(&email, "correct horse battery").await;
    let verified = Account {
        token: tokens.access,
        ..squatter
    };
    let created = f.call(&verified, Method::POST, "/v1/plans", plan).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
}

async fn an_archived_plan_cannot_be_edited(backend: Backend) {
    let f = Fixture::new(backend).await;
    let team =
        json!({"id": "pln_team", "name": "Team", "price_cents": 1900, "rate_limit_rpm": 1200});
    let created = f.call(&f.admin, Method::POST, "/v1/plans", team).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let archived = f
        .call(&f.admin, Method::DELETE, "/v1/plans/pln_team", Value::Null)
        .await;
    assert_eq!(archived.status, StatusCode::OK, "{}", archived.body);
    f.call(
        &f.admin,
        Method::PUT,
        "/v1/plans/pln_team",
        json!({"name": "Team", "price_cents": 1, "rate_limit_rpm": 1200}),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "plan_archived");
    let plan = f.server.get("/v1/plans/pln_team", None).await;
    assert_eq!(plan.body["price_cents"], 1900, "{}", plan.body);
    assert_eq!(plan.body["archived"], true);
}

/// A Stripe event about subscription `sub` of customer `customer` for the fixture's org.
fn about(event_id: &str, kind: &str, org: &str, sub: &str, customer: &str) -> Value {
    let object = if kind.starts_with("invoice.") {
        json!({"object": "invoice", "customer": customer, "subscription": sub,
               "subscription_details": {"metadata": {"org_id": org}}})
    } else {
        json!({"object": "subscription", "id": sub, "customer": customer,
               "metadata": {"org_id": org}})
    };
    json!({"id": event_id, "type": kind, "data": {"object": object}})
}

async fn a_webhook_about_another_subscription_changes_nothing(backend: Backend) {
    let f = Fixture::new(backend).await;
    let now = chrono::Utc::now().timestamp();
    let subscription = || async {
        f.call(
            &f.owner,
            Method::GET,
            &f.org_path("/subscription"),
            Value::Null,
        )
        .await
        .body
    };
    // On the default plan there is no provider subscription at all: nothing to mark.
    let early = about("evt_x0", "invoice.payment_failed", &f.org, "sub_1", "cus_1");
    assert_eq!(
        f.webhook(&early, now, WEBHOOK_SECRET).await.body["result"],
        "ignored"
    );
    assert_eq!(subscription().await["status"], "active");

    let bought = f
        .webhook(&checkout("evt_checkout", &f.org), now, WEBHOOK_SECRET)
        .await;
    assert_eq!(bought.body["result"], "applied", "{}", bought.body);
    let before = subscription().await;
    assert_eq!(before["plan_id"], "pln_pro");
    let log_before = f.actions().await;

    for (id, kind, sub, customer) in [
        ("evt_x1", "invoice.payment_failed", "sub_old", "cus_1"),
        ("evt_x2", "invoice.paid", "sub_old", "cus_1"),
        (
            "evt_x3",
            "customer.subscription.deleted",
            "sub_old",
            "cus_1",
        ),
        (
            "evt_x4",
            "customer.subscription.deleted",
            "sub_1",
            "cus_other",
        ),
        ("evt_x5", "invoice.payment_failed", "sub_1", "cus_other"),
    ] {
        let event = about(id, kind, &f.org, sub, customer);
        let reply = f.webhook(&event, now, WEBHOOK_SECRET).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["result"], "ignored", "{kind} {sub} {customer}");
    }
    // An event naming no subscription cannot be about the current one either.
    let unnamed = json!({"id": "evt_x6", "type": "customer.subscription.deleted",
        "data": {"object": {"metadata": {"org_id": f.org}}}});
    assert_eq!(
        f.webhook(&unnamed, now, WEBHOOK_SECRET).await.body["result"],
        "ignored"
    );
    assert_eq!(
        subscription().await,
        before,
        "ignored events change nothing"
    );
    assert_eq!(f.actions().await, log_before, "and audit nothing");

    // The org's own subscription still goes through.
    let failed = about("evt_y1", "invoice.payment_failed", &f.org, "sub_1", "cus_1");
    assert_eq!(
        f.webhook(&failed, now, WEBHOOK_SECRET).await.body["result"],
        "applied"
    );
    assert_eq!(subscription().await["status"], "past_due");
    // Invoices of API versions since 2025-03-31 name the subscription under `parent`.
    let paid = json!({"id": "evt_y3", "type": "invoice.paid", "data": {"object": {
        "object": "invoice", "customer": "cus_1",
        "parent": {"subscription_details": {"subscription": "sub_1", "metadata": {"org_id": f.org}}}}}});
    assert_eq!(
        f.webhook(&paid, now, WEBHOOK_SECRET).await.body["result"],
        "applied"
    );
    assert_eq!(subscription().await["status"], "active");
    let ended = about(
        "evt_y2",
        "customer.subscription.deleted",
        &f.org,
        "sub_1",
        "cus_1",
    );
    assert_eq!(
        f.webhook(&ended, now, WEBHOOK_SECRET).await.body["result"],
        "applied"
    );
    assert_eq!(subscription().await["plan_id"], "pln_free");
}

/// `(quantity, unit_amount_cents)` of an invoice's lines for `meter`.
fn charged(invoice: &Value, meter: &str) -> Vec<(u64, u64)> {
    invoice["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["meter"] == meter)
        .map(|l| {
            (
                l["quantity"].as_u64().expect("q"),
                l["unit_amount_cents"].as_u64().expect("u"),
            )
        })
        .collect()
}

async fn send_requests(f: &Fixture, key: &str, prefix: &str, n: usize) {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("{prefix}{i}"), "meter": "requests", "quantity": 1}))
        .collect();
    let sent = f
        .server
        .metered("/v1/events", Some(key), json!({"events": events}))
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
}

async fn a_downgrade_waits_for_the_period_end_and_usage_keeps_its_plans_price(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let f = Fixture::on_clock(backend, clock.clone()).await;
    let keyed = f.server.keyed(json!({"name": "k"})).await;
    let path = format!("/v1/orgs/{}/subscription", keyed.org);
    let invoice_path = format!("/v1/orgs/{}/invoices/upcoming", keyed.org);
    let token = keyed.owner.token.clone();
    let choose = |plan: &'static str| {
        let (path, token) = (path.clone(), token.clone());
        let server = &f.server;
        async move { call(server, Method::PUT, &path, &token, json!({"plan_id": plan})).await }
    };

    // 20 requests under free: 5 included, 10 at 3¢, 5 at 1¢ = 35¢.
    send_requests(&f, &keyed.key, "free", 20).await;
    clock.advance(chrono::Duration::minutes(1));
    let upgraded = choose("pln_pro").await;
    assert_eq!(upgraded.status, StatusCode::OK, "{}", upgraded.body);
    assert_eq!(
        upgraded.body["plan_id"], "pln_pro",
        "an upgrade acts at once"
    );
    assert_eq!(upgraded.body["pending_plan_id"], Value::Null);
    // 30 more under pro, which includes them.
    send_requests(&f, &keyed.key, "pro", 30).await;

    let downgraded = choose("pln_free").await;
    assert_eq!(downgraded.status, StatusCode::OK, "{}", downgraded.body);
    assert_eq!(
        downgraded.body["plan_id"], "pln_pro",
        "a downgrade waits for the period's end"
    );
    assert_eq!(downgraded.body["pending_plan_id"], "pln_free");
    let current = call(&f.server, Method::GET, &path, &token, Value::Null).await;
    assert_eq!(current.body["plan_id"], "pln_pro", "{}", current.body);
    assert_eq!(current.body["pending_plan_id"], "pln_free");

    let invoice = call(&f.server, Method::GET, &invoice_path, &token, Value::Null).await;
    assert_eq!(invoice.status, StatusCode::OK, "{}", invoice.body);
    assert_eq!(invoice.body["plan_id"], "pln_pro");
    assert_eq!(
        charged(&invoice.body, "requests"),
        [(5, 0), (10, 3), (5, 1), (30, 0)],
        "{}",
        invoice.body
    );
    let lines = invoice.body["lines"].as_array().expect("lines");
    let pro_base = lines[1]["amount_cents"].as_u64().expect("amount");
    assert!(pro_base > 0 && pro_base <= 4900, "{}", invoice.body);
    assert_eq!(invoice.body["total_cents"], 35 + pro_base);

    // The period ends: the downgrade takes over, and the closed period keeps its prices.
    let period_end = chrono::DateTime::parse_from_rfc3339(
        current.body["current_period_end"].as_str().expect("end"),
    )
    .expect("time")
    .with_timezone(&Utc);
    let during = clock.now();
    clock.advance(period_end - during + chrono::Duration::hours(1));
    let token = f
        .server
        .login(&keyed.owner.email, "correct horse battery")
        .await
        .access;
    let next = call(&f.server, Method::GET, &path, &token, Value::Null).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    assert_eq!(next.body["plan_id"], "pln_free", "{}", next.body);
    assert_eq!(next.body["pending_plan_id"], Value::Null);
    let org = f
        .server
        .state
        .store
        .org(&OrgId::parse(&keyed.org).expect("org id"))
        .await
        .expect("read")
        .expect("org");
    let closed = f
        .server
        .state
        .billing
        .invoice_for(&org, during)
        .await
        .expect("invoice");
    assert_eq!(closed.plan_id.as_str(), "pln_pro");
    assert_eq!(closed.total_cents, 35 + pro_base);
    let upcoming = call(&f.server, Method::GET, &invoice_path, &token, Value::Null).await;
    assert_eq!(upcoming.body["plan_id"], "pln_free", "{}", upcoming.body);
    assert_eq!(upcoming.body["total_cents"], 0);
}

async fn plan_changes_are_capped_per_period(backend: Backend) {
    let f = Fixture::new(backend).await;
    let path = f.org_path("/subscription");
    // Up, scheduled down, withdrawn, scheduled down, ...: ten changes, then no more.
    for i in 0..10 {
        let plan = if i % 2 == 0 { "pln_pro" } else { "pln_free" };
        let reply = f
            .call(&f.owner, Method::PUT, &path, json!({"plan_id": plan}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "change {i}: {}", reply.body);
        assert_eq!(reply.body["plan_id"], "pln_pro");
        let pending = if i % 2 == 0 {
            Value::Null
        } else {
            json!("pln_free")
        };
        assert_eq!(reply.body["pending_plan_id"], pending, "change {i}");
    }
    let before = f.call(&f.owner, Method::GET, &path, Value::Null).await;
    assert_eq!(before.body["pending_plan_id"], "pln_free");
    f.call(&f.owner, Method::PUT, &path, json!({"plan_id": "pln_pro"}))
        .await
        .assert_problem(StatusCode::CONFLICT, "too_many_plan_changes");
    let after = f.call(&f.owner, Method::GET, &path, Value::Null).await;
    assert_eq!(after.body, before.body, "a refused change changes nothing");
    let changes = f
        .actions()
        .await
        .iter()
        .filter(|a| a.starts_with("subscription."))
        .count();
    assert_eq!(changes, 10);
    // Cancelling is not a plan change; the fall back to the default plan replaces the
    // scheduled downgrade.
    let cancelled = f.call(&f.owner, Method::DELETE, &path, Value::Null).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["cancel_at_period_end"], true);
    assert_eq!(cancelled.body["pending_plan_id"], Value::Null);
    assert_eq!(cancelled.body["plan_id"], "pln_pro");
}

async fn the_base_price_total_is_rounded_once(backend: Backend) {
    let dec1 = Utc
        .with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
        .single()
        .expect("date");
    let clock = Arc::new(ManualClock::new(dec1));
    let f = Fixture::on_clock(backend, clock.clone()).await;
    for (id, price) in [("pln_b31", 31), ("pln_c62", 62)] {
        let plan = json!({"id": id, "name": id, "price_cents": price, "rate_limit_rpm": 600});
        let created = f.call(&f.admin, Method::POST, "/v1/plans", plan).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    let path = f.org_path("/subscription");
    // Access tokens expire by the server's clock, so the owner logs in again after each jump.
    async fn owner(f: &Fixture) -> Account {
        let email = f.owner.email.clone();
        let token = f.server.login(&email, "correct horse battery").await.access;
        Account {
            id: String::new(),
            email,
            token,
        }
    }
    // December has 31 days: 31¢ for 12 hours is 0.5¢, 62¢ for 30.25 days is 60.5¢.
    clock.advance(chrono::Duration::hours(6));
    let b = f
        .call(
            &owner(&f).await,
            Method::PUT,
            &path,
            json!({"plan_id": "pln_b31"}),
        )
        .await;
    assert_eq!(b.body["plan_id"], "pln_b31", "{}", b.body);
    clock.advance(chrono::Duration::hours(12));
    let me = owner(&f).await;
    let c = f
        .call(&me, Method::PUT, &path, json!({"plan_id": "pln_c62"}))
        .await;
    assert_eq!(c.body["plan_id"], "pln_c62", "{}", c.body);
    let invoice = f
        .call(
            &me,
            Method::GET,
            &f.org_path("/invoices/upcoming"),
            Value::Null,
        )
        .await;
    assert_eq!(invoice.status, StatusCode::OK, "{}", invoice.body);
    let base: Vec<u64> = invoice.body["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["amount_cents"].as_u64().expect("amount"))
        .collect();
    // 0 + 0.5 + 60.5 = 61 exactly: rounded once, not 0 + 1 + 61.
    assert_eq!(invoice.body["total_cents"], 61, "{}", invoice.body);
    assert_eq!(base, [0, 1, 60]);
}

meterline_e2e::on_every_backend!(
    the_catalog_is_public_and_edited_by_platform_admins,
    owners_subscribe_change_and_cancel,
    plans_drive_the_metering_limits,
    usage_reports_and_the_invoice_add_up,
    stripe_webhooks_apply_once_and_only_when_signed,
    platform_admin_rights_need_a_verified_email,
    an_archived_plan_cannot_be_edited,
    a_webhook_about_another_subscription_changes_nothing,
    a_downgrade_waits_for_the_period_end_and_usage_keeps_its_plans_price,
    plan_changes_are_capped_per_period,
    the_base_price_total_is_rounded_once,
);
