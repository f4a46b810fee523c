//! The OpenAPI 3.1 document, generated from the code: each endpoint group describes its own
//! operations (`#[utoipa::path]` on its handlers) and this module joins them with what every
//! route shares — the problem+json error answers, the security schemes and `x-request-id`.
//!
//! The shared error answers are added by rule rather than repeated on ~40 handlers, so the
//! document cannot forget one: a body can be malformed (400), too large (413), of the wrong
//! type (415) or invalid (422); a query can be malformed (400) or invalid (422); a path with an
//! id can name nothing the caller may see (404); an authenticated route can refuse the caller
//! (401); a backend can be down (503). What only some operations answer (403, 409, 429) they
//! declare themselves.

use super::error::{FieldError, Problem};
use super::health;
use utoipa::OpenApi;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, Ref, RefOr};

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The security scheme of routes that take a user's access token.
pub const BEARER: &str = "bearer";
/// The security scheme of the metering routes.
pub const API_KEY: &str = "api_key";
/// The security scheme of the Stripe webhook (an HMAC signature header).
pub const STRIPE_SIGNATURE: &str = "stripe_signature";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Meterline",
        description = "Accounts and tokens, organizations with roles, API keys, rate limits, \
            quotas, usage metering and billing-ready reports. Every error is an RFC 9457 \
            `application/problem+json` body with a stable `code`; every response carries \
            `x-request-id`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "http://127.0.0.1:3000", description = "the local server (`cargo run`)")),
    paths(health::alive, health::backends),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "health", description = "Liveness and backend checks"),
        (name = "auth", description = "Accounts, sessions and tokens"),
        (name = "orgs", description = "Organizations, members, roles and the audit log"),
        (name = "api-keys", description = "An organization's API keys"),
        (name = "metering", description = "Verify a key and record usage (X-API-Key)"),
        (name = "billing", description = "Plans, subscriptions, usage reports and invoices"),
    )
)]
struct Base;

/// Joins the endpoint groups' parts into Meterline's one document (the local server serves it
/// at `/openapi.json`; `openapi.json` in the repository is a copy a test keeps equal).
pub fn document(
    parts: impl IntoIterator<Item = utoipa::openapi::OpenApi>,
) -> utoipa::openapi::OpenApi {
    let mut doc = Base::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    for part in parts {
        doc.merge(part);
    }
    let components = doc.components.get_or_insert_with(Components::new);
    add_security_schemes(components);
    add_error_responses(components);
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            add_shared_answers(path, operation);
            add_links(operation);
        }
    }
    doc
}

/// Where a created resource can be used next. Clients read links as documentation; contract
/// tests (schemathesis' stateful phase) follow them to chain real calls.
struct Follow {
    /// The operation whose answer holds the value.
    from: &'static str,
    status: &'static str,
    name: &'static str,
    /// The operation the value is for.
    to: &'static str,
    /// Target parameter and the runtime expression that fills it.
    parameters: &'static [(&'static str, &'static str)],
}

/// A [`Follow`] from `from`'s `status` answer to `to`, named `name`.
const fn link(
    from: &'static str,
    status: &'static str,
    name: &'static str,
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
) -> Follow {
    Follow {
        from,
        status,
        name,
        to,
        parameters,
    }
}

const NEW_ORG: &[(&str, &str)] = &[("org", "$response.body#/id")];
const SAME_ORG: &[(&str, &str)] = &[("org", "$request.path.org")];
const NEW_PLAN: &[(&str, &str)] = &[("plan", "$response.body#/id")];

// A table: one link a line reads better than rustfmt's one argument a line.
#[rustfmt::skip]
const LINKS: &[Follow] = &[
    link("create_org", "201", "GetOrg", "get_org", NEW_ORG),
    link("create_org", "201", "UpdateOrg", "update_org", NEW_ORG),
    link("create_org", "201", "ListMembers", "list_members", NEW_ORG),
    link("create_org", "201", "AddMember", "put_member", NEW_ORG),
    link("create_org", "201", "AuditLog", "audit_log", NEW_ORG),
    link("create_org", "201", "CreateKey", "create_key", NEW_ORG),
    link("create_org", "201", "ListKeys", "list_keys", NEW_ORG),
    link("create_org", "201", "Usage", "usage", NEW_ORG),
    link("create_org", "201", "UsageCsv", "usage_csv", NEW_ORG),
    link("create_org", "201", "Subscription", "get_subscription", NEW_ORG),
    link("create_org", "201", "Subscribe", "put_subscription", NEW_ORG),
    link("create_org", "201", "UpcomingInvoice", "upcoming_invoice", NEW_ORG),
    link("create_org", "201", "DeleteOrg", "delete_org", NEW_ORG),
    link("put_subscription", "200", "Cancel", "cancel_subscription", SAME_ORG),
    link("create_key", "201", "RevokeKey", "revoke_key", &[("org", "$request.path.org"), ("key", "$response.body#/id")]),
    link("put_member", "200", "RemoveMember", "remove_member", &[("org", "$request.path.org"), ("user", "$response.body#/user_id")]),
    link("put_member", "202", "RevokeInvitation", "revoke_invitation", &[("org", "$request.path.org"), ("invitation", "$response.body#/invitation/id")]),
    link("create_org", "201", "ListInvitations", "list_invitations", NEW_ORG),
    link("create_plan", "201", "GetPlan", "get_plan", NEW_PLAN),
    link("create_plan", "201", "UpdatePlan", "update_plan", NEW_PLAN),
    link("create_plan", "201", "ArchivePlan", "archive_plan", NEW_PLAN),
];

fn add_links(operation: &mut Operation) {
    let Some(id) = operation.operation_id.clone() else {
        return;
    };
    for follow in LINKS.iter().filter(|follow| follow.from == id) {
        let Some(RefOr::T(response)) = operation.responses.responses.get_mut(follow.status) else {
            continue;
        };
        let link = follow.parameters.iter().fold(
            LinkBuilder::new().operation_id(follow.to),
            |link, (name, value)| link.parameter(*name, *value),
        );
        response
            .links
            .insert(follow.name.to_owned(), RefOr::T(link.build()));
    }
    if id == "signup" {
        // The account just made can log in with what it was made with.
        if let Some(RefOr::T(response)) = operation.responses.responses.get_mut("201") {
            let login = LinkBuilder::new().operation_id("login").request_body(Some(
                serde_json::json!({"email": "$request.body#/email", "password": "$request.body#/password"}),
            ));
            response
                .links
                .insert("Login".to_owned(), RefOr::T(login.build()));
        }
    }
}

fn add_security_schemes(components: &mut Components) {
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some("The `access_token` from login or refresh"))
                .build(),
        ),
    );
    components.add_security_scheme(
        API_KEY,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-API-Key",
            "An organization's `ml_live_...` key",
        ))),
    );
    components.add_security_scheme(
        STRIPE_SIGNATURE,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "Stripe-Signature",
            "`t=<unix time>,v1=<hex HMAC-SHA256 of \"t.payload\">` with the endpoint's secret",
        ))),
    );
}

/// The shared error answers: status, component name, description.
const ERRORS: [(&str, &str, &str); 8] = [
    (
        "400",
        "BadRequest",
        "Malformed JSON body or query string (`invalid_json`, `invalid_query`)",
    ),
    (
        "401",
        "Unauthorized",
        "Missing, invalid, expired or revoked credentials",
    ),
    (
        "404",
        "NotFound",
        "No such resource, or none the caller may see (`not_found`)",
    ),
    (
        "413",
        "PayloadTooLarge",
        "The body is larger than `MAX_BODY_BYTES` (`payload_too_large`)",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "The body is not JSON (`unsupported_media_type`)",
    ),
    (
        "422",
        "ValidationFailed",
        "A value breaks a rule; `errors` names each field (`validation_failed`)",
    ),
    (
        "429",
        "TooManyRequests",
        "Too many requests from this client IP (`rate_limited`); see `Retry-After`",
    ),
    (
        "503",
        "ServiceUnavailable",
        "A backend (store, limiter or queue) cannot be reached",
    ),
];

fn request_id_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(
            "The request's id (API Gateway's, or one made up); quote it to support",
        ))
        .build()
}

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .header("x-request-id", request_id_header())
        .build()
}

fn shared_answer(status: &str) -> Ref {
    let name = ERRORS
        .iter()
        .find(|(code, ..)| *code == status)
        .map_or("ServiceUnavailable", |(_, name, _)| name);
    Ref::from_response_name(name)
}

fn add_error_responses(components: &mut Components) {
    for (_, name, description) in ERRORS {
        components
            .responses
            .insert(name.to_owned(), RefOr::T(problem_response(description)));
    }
}

/// Whether the operation requires the security scheme `scheme`.
fn requires(operation: &Operation, scheme: &str) -> bool {
    operation.security.iter().flatten().any(|requirement| {
        serde_json::to_value(requirement)
            .ok()
            .and_then(|value| value.as_object().map(|map| map.contains_key(scheme)))
            .unwrap_or(false)
    })
}

fn add_shared_answers(path: &str, operation: &mut Operation) {
    let parameters = operation.parameters.iter().flatten();
    let has_query = parameters
        .clone()
        .any(|p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query)));
    let has_path = path.contains('{');
    let has_body = operation.request_body.is_some();
    let authenticated = requires(operation, BEARER) || requires(operation, API_KEY);
    let mut statuses = vec!["503"];
    if has_body {
        statuses.extend(["400", "413", "415", "422"]);
    }
    if has_query {
        statuses.extend(["400", "422"]);
    }
    if has_path {
        statuses.push("404");
    }
    if authenticated {
        statuses.push("401");
    }
    if path.starts_with("/v1/auth/") {
        statuses.push("429");
    }
    let responses = &mut operation.responses.responses;
    for status in statuses {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(shared_answer(status)));
    }
    for response in responses.values_mut() {
        if let RefOr::T(response) = response {
            response
                .headers
                .entry("x-request-id".to_owned())
                .or_insert_with(|| RefOr::T(request_id_header()));
        }
    }
}
