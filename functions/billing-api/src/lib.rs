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
    AuditEntry, Granularity, Invoice, OrgId, Plan, PlanId, PlanTerms, ValidationError, parse_meter,
};
use meterline::http::{
    ApiError, Caller, Json, List, Origin, PageQuery, Paging, Path, Problem, Query,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(paths(
    list_plans,
    create_plan,
    plan_audit_log,
    get_plan,
    update_plan,
    archive_plan,
    usage,
    usage_csv,
    get_subscription,
    put_subscription,
    cancel_subscription,
    upcoming_invoice,
    stripe_webhook
))]
struct Api;

/// This group's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Api::openapi()
}

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
#[derive(Serialize, ToSchema)]
struct PlanList {
    data: Vec<Plan>,
}

/// The public catalog: plans open to subscribers (archived ones are left out).
#[utoipa::path(get, path = "/v1/plans", tag = "billing",
    responses((status = 200, description = "The catalog", body = PlanList)))]
async fn list_plans(State(billing): State<Billing>) -> Result<Json<PlanList>, ApiError> {
    Ok(Json(PlanList {
        data: billing.plans(false).await?,
    }))
}

/// Every plan change, newest first (platform admins).
#[utoipa::path(get, path = "/v1/plans/audit-log", tag = "billing", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "A page of audit entries", body = List<AuditEntry>),
        (status = 403,
            description = "`forbidden`: not a platform admin (`PLATFORM_ADMIN_EMAILS`)",
            body = Problem, content_type = "application/problem+json")))]
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

/// One plan, archived or not (an org may still be on it).
#[utoipa::path(get, path = "/v1/plans/{plan}", tag = "billing",
    params(("plan" = PlanId, Path, description = "The plan")),
    responses((status = 200, description = "The plan", body = Plan),
        (status = 404, description = "`plan_not_found`",
            body = Problem, content_type = "application/problem+json")))]
async fn get_plan(
    State(billing): State<Billing>,
    Path(plan): Path<String>,
) -> Result<Json<Plan>, ApiError> {
    Ok(Json(billing.plan(&plan).await?))
}

/// A new plan: its terms, and an id of the admin's choosing (`pln_` + a slug) if wanted.
#[derive(Deserialize, ToSchema)]
struct NewPlan {
    /// `pln_` and 1 to 40 of `a-z 0-9 _ -`; a generated id when omitted.
    #[schema(pattern = "^pln_[a-z0-9_-]{1,40}$")]
    id: Option<String>,
    #[serde(flatten)]
    terms: PlanTerms,
}

/// Adds a plan to the catalog (platform admins).
#[utoipa::path(post, path = "/v1/plans", tag = "billing", security(("bearer" = [])),
    request_body = NewPlan,
    responses((status = 201, description = "The new plan", body = Plan),
        (status = 403,
            description = "`forbidden`: not a platform admin (`PLATFORM_ADMIN_EMAILS`)",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`plan_exists`: a plan has this id",
            body = Problem, content_type = "application/problem+json")))]
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

/// Changes a plan's terms (platform admins); orgs on it get the new limits within a minute.
/// An archived plan is frozen.
#[utoipa::path(put, path = "/v1/plans/{plan}", tag = "billing", security(("bearer" = [])),
    params(("plan" = PlanId, Path, description = "The plan")), request_body = PlanTerms,
    responses((status = 200, description = "The plan as changed", body = Plan),
        (status = 403,
            description = "`forbidden`: not a platform admin (`PLATFORM_ADMIN_EMAILS`)",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`plan_archived`: an archived plan cannot be edited",
            body = Problem, content_type = "application/problem+json")))]
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

/// Archives a plan (platform admins): no new subscribers, orgs on it stay.
#[utoipa::path(delete, path = "/v1/plans/{plan}", tag = "billing", security(("bearer" = [])),
    params(("plan" = PlanId, Path, description = "The plan")),
    responses((status = 200, description = "The archived plan", body = Plan),
        (status = 403,
            description = "`forbidden`: not a platform admin (`PLATFORM_ADMIN_EMAILS`)",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`default_plan`: every org falls back to it", body = Problem,
            content_type = "application/problem+json")))]
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
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UsageQuery {
    /// The range's start (RFC 3339); the current period's start when omitted.
    #[param(format = DateTime)]
    from: Option<String>,
    /// The range's end, exclusive (RFC 3339); now when omitted.
    #[param(format = DateTime)]
    to: Option<String>,
    /// `hour`, `day` (default) or `month`.
    #[param(value_type = Option<Granularity>)]
    granularity: Option<String>,
    /// Only this meter.
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
    raw.map(|raw| meterline::time_format::parse(field, raw))
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

/// The org's usage counters over a range, and their totals per meter.
#[utoipa::path(get, path = "/v1/orgs/{org}/usage", tag = "billing", security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization"), UsageQuery),
    responses((status = 200, description = "The report", body = UsageReport),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json")))]
async fn usage(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Path(org): Path<String>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    Ok(Json(report(&billing, &caller, &org, query).await?))
}

/// The same report as CSV: a header row, then one row per counter.
/// The same report as CSV.
#[utoipa::path(get, path = "/v1/orgs/{org}/usage.csv", tag = "billing",
    security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization"), UsageQuery),
    responses((status = 200, description = "`period_start,granularity,meter,quantity` rows",
        body = String, content_type = "text/csv"),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json")))]
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

/// The org's plan and standing.
#[utoipa::path(get, path = "/v1/orgs/{org}/subscription", tag = "billing",
    security(("bearer" = [])), params(("org" = OrgId, Path, description = "The organization")),
    responses((status = 200, description = "The subscription", body = SubscriptionView),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json")))]
async fn get_subscription(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Path(org): Path<String>,
) -> Result<Json<SubscriptionView>, ApiError> {
    Ok(Json(billing.subscription(&caller.user_id, &org).await?))
}

/// The plan to move to.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChoosePlan {
    #[schema(value_type = PlanId)]
    plan_id: String,
}

/// Chooses a plan (owners). A plan with a higher base price acts at once (the base price is
/// prorated); any other is scheduled for the period's end and shown as `pending_plan_id`.
/// Choosing the current plan again withdraws a scheduled downgrade or a cancellation. At most
/// 10 plan changes per period.
#[utoipa::path(put, path = "/v1/orgs/{org}/subscription", tag = "billing",
    security(("bearer" = [])),
    params(("org" = OrgId, Path, description = "The organization")),
    request_body = ChoosePlan,
    responses((status = 200, description = "The subscription", body = SubscriptionView),
        (status = 403, description = "`forbidden`: only owners manage the subscription",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`plan_archived`: the plan takes no new subscribers; \
            `too_many_plan_changes`: 10 plan changes this period already",
            body = Problem, content_type = "application/problem+json")))]
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

/// Cancels at the period's end (owners): the org goes back to the default plan then (this
/// replaces a scheduled downgrade).
#[utoipa::path(delete, path = "/v1/orgs/{org}/subscription", tag = "billing",
    security(("bearer" = [])), params(("org" = OrgId, Path, description = "The organization")),
    responses((status = 200, description = "The subscription, ending at the period's end",
        body = SubscriptionView),
        (status = 403, description = "`forbidden`: only owners manage the subscription",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_subscribed`: the org is on the default plan",
            body = Problem, content_type = "application/problem+json")))]
async fn cancel_subscription(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Origin(origin): Origin,
    Path(org): Path<String>,
) -> Result<Json<SubscriptionView>, ApiError> {
    Ok(Json(billing.cancel(&caller.user_id, &org, &origin).await?))
}

/// The invoice the current period would have if it ended now.
#[utoipa::path(get, path = "/v1/orgs/{org}/invoices/upcoming", tag = "billing",
    security(("bearer" = [])), params(("org" = OrgId, Path, description = "The organization")),
    responses((status = 200, description = "The invoice so far", body = Invoice),
        (status = 403, description = "`forbidden`: the caller's role does not allow this",
            body = Problem, content_type = "application/problem+json")))]
async fn upcoming_invoice(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    Path(org): Path<String>,
) -> Result<Json<Invoice>, ApiError> {
    Ok(Json(billing.upcoming_invoice(&caller.user_id, &org).await?))
}

/// Stripe's webhook: the raw body, as signed, and its `Stripe-Signature`.
/// Stripe's events about subscriptions, verified by `Stripe-Signature`; each applied once.
#[utoipa::path(post, path = "/v1/billing/stripe/webhook", tag = "billing",
    security(("stripe_signature" = [])),
    request_body(content = Object, description = "The Stripe event, exactly as signed"),
    responses((status = 200, description = "`applied`, `duplicate` or `ignored`",
        body = WebhookOutcome),
        (status = 400,
            description = "`invalid_signature`: missing, malformed, stale or wrong signature",
            body = Problem, content_type = "application/problem+json")))]
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
