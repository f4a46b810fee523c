//! The billing endpoint group: the plan catalog, subscriptions, usage reports (JSON and CSV),
//! the upcoming invoice and Stripe's webhook. The rules live in [`meterline::billing`]; this
//! crate maps HTTP onto them.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use meterline::AppState;
use meterline::billing::{Billing, SubscriptionView, UsageReport, WebhookOutcome};
use meterline::domain::{
    AuditEntry, Granularity, Invoice, Plan, PlanId, PlanTerms, ValidationError, parse_meter,
};
use meterline::http::{ApiError, Caller, Json, List, Origin, Paging, Path, Query};
use serde::{Deserialize, Serialize};

/// The billing routes, at the same paths as in `template.yaml`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/plans", get(list_plans).post(create_plan))
        .route("/v1/plans/audit-log", get(plan_audit_log))
        .route(
            "/v1/plans/{plan}",
            get(get_plan).put(update_plan).delete(archive_plan),
        )
        .route("/v1/orgs/{org}/usage", get(usage))
        .route("/v1/orgs/{org}/usage.csv", get(usage_csv))
        .route(
            "/v1/orgs/{org}/subscription",
            get(get_subscription)
                .put(put_subscription)
                .delete(cancel_subscription),
        )
        .route("/v1/orgs/{org}/invoices/upcoming", get(upcoming_invoice))
        .route("/v1/billing/stripe/webhook", post(stripe_webhook))
        .with_state(state)
}

/// The public catalog: plans open to subscribers.
#[derive(Serialize)]
struct PlanList {
    data: Vec<Plan>,
}

async fn list_plans(State(billing): State<Billing>) -> Result<Json<PlanList>, ApiError> {
    Ok(Json(PlanList {
        data: billing.plans(false).await?,
    }))
}

async fn plan_audit_log(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Paging(page): Paging,
) -> Result<List<AuditEntry>, ApiError> {
    Ok(List::of(
        billing.plan_audit_log(&caller.user_id, &page).await?,
        |entry| entry,
    ))
}

async fn get_plan(
    State(billing): State<Billing>,
    Path(plan): Path<String>,
) -> Result<Json<Plan>, ApiError> {
    Ok(Json(billing.plan(&plan).await?))
}

/// A new plan: its terms, and an id of the admin's choosing (`pln_` + a slug) if wanted.
#[derive(Deserialize)]
struct NewPlan {
    id: Option<String>,
    #[serde(flatten)]
    terms: PlanTerms,
}

async fn create_plan(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Json(body): Json<NewPlan>,
) -> Result<impl IntoResponse, ApiError> {
    let id = body
        .id
        .as_deref()
        .map(|raw| {
            PlanId::parse(raw).ok_or_else(|| {
                ValidationError::new("id", "must be pln_ followed by 1 to 40 of a-z 0-9 _ -")
            })
        })
        .transpose()?;
    let plan = billing
        .create_plan(&caller.user_id, id, body.terms, &origin)
        .await?;
    Ok((StatusCode::CREATED, Json(plan)))
}

async fn update_plan(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path(plan): Path<String>,
    Json(terms): Json<PlanTerms>,
) -> Result<Json<Plan>, ApiError> {
    Ok(Json(
        billing
            .update_plan(&caller.user_id, &plan, terms, &origin)
            .await?,
    ))
}

async fn archive_plan(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path(plan): Path<String>,
) -> Result<Json<Plan>, ApiError> {
    Ok(Json(
        billing
            .archive_plan(&caller.user_id, &plan, &origin)
            .await?,
    ))
}

/// `?from=&to=&granularity=&meter=` of a usage report.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
    granularity: Option<String>,
    meter: Option<String>,
}

/// The parsed query: every bad value reported at once.
struct UsageRange {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    granularity: Granularity,
    meter: Option<String>,
}

fn time(field: &'static str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ValidationError> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(raw)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| ValidationError::new(field, "must be an RFC 3339 time"))
    })
    .transpose()
}

impl UsageQuery {
    fn parse(self) -> Result<UsageRange, ApiError> {
        let from = time("from", self.from.as_deref());
        let to = time("to", self.to.as_deref());
        let granularity = self
            .granularity
            .as_deref()
            .map_or(Ok(Granularity::Day), str::parse);
        let meter = self
            .meter
            .as_deref()
            .map(|raw| parse_meter("meter", raw))
            .transpose();
        match (from, to, granularity, meter) {
            (Ok(from), Ok(to), Ok(granularity), Ok(meter)) => Ok(UsageRange {
                from,
                to,
                granularity,
                meter,
            }),
            (from, to, granularity, meter) => Err(ApiError::invalid(
                [from.err(), to.err(), granularity.err(), meter.err()]
                    .into_iter()
                    .flatten()
                    .collect(),
            )),
        }
    }
}

async fn report(
    billing: &Billing,
    caller: &meterline::auth::AccessContext,
    org: &str,
    query: UsageQuery,
) -> Result<UsageReport, ApiError> {
    let range = query.parse()?;
    Ok(billing
        .usage(
            &caller.user_id,
            org,
            (range.from, range.to),
            range.granularity,
            range.meter.as_deref(),
        )
        .await?)
}

async fn usage(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Path(org): Path<String>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    Ok(Json(report(&billing, &caller, &org, query).await?))
}

/// The same report as CSV: a header row, then one row per counter.
async fn usage_csv(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Path(org): Path<String>,
    Query(query): Query<UsageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let report = report(&billing, &caller, &org, query).await?;
    let mut csv = String::from("period_start,granularity,meter,quantity\r\n");
    for point in &report.series {
        // Meter names are `a-z 0-9 _ . -` only, so no field ever needs quoting.
        csv.push_str(&format!(
            "{},{},{},{}\r\n",
            point
                .period_start
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            report.granularity.as_str(),
            point.meter,
            point.quantity
        ));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"usage.csv\"",
            ),
        ],
        csv,
    ))
}

async fn get_subscription(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Path(org): Path<String>,
) -> Result<Json<SubscriptionView>, ApiError> {
    Ok(Json(billing.subscription(&caller.user_id, &org).await?))
}

/// The plan to move to.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoosePlan {
    plan_id: String,
}

async fn put_subscription(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path(org): Path<String>,
    Json(body): Json<ChoosePlan>,
) -> Result<Json<SubscriptionView>, ApiError> {
    Ok(Json(
        billing
            .subscribe(&caller.user_id, &org, &body.plan_id, &origin)
            .await?,
    ))
}

async fn cancel_subscription(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path(org): Path<String>,
) -> Result<Json<SubscriptionView>, ApiError> {
    Ok(Json(billing.cancel(&caller.user_id, &org, &origin).await?))
}

async fn upcoming_invoice(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Path(org): Path<String>,
) -> Result<Json<Invoice>, ApiError> {
    Ok(Json(billing.upcoming_invoice(&caller.user_id, &org).await?))
}

/// Stripe's webhook: the raw body, as signed, and its `Stripe-Signature`.
async fn stripe_webhook(
    State(billing): State<Billing>,
    Origin(origin): Origin,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookOutcome>, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest {
                code: "invalid_body",
                detail: rejection.body_text(),
            }
        }
    })?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok());
    Ok(Json(
        billing.stripe_webhook(signature, &body, &origin).await?,
    ))
}
