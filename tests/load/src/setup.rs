//! The tenants of a run, created over HTTP like a customer would: one owner account, orgs on
//! chosen plans (some with a lower org rate limit), and API keys (some with their own rate
//! limit). The limits each org and key actually got are read back from the API, so the checks
//! use what the server enforces, also against a server started elsewhere (`--url`).

use anyhow::{Context as _, bail};
use meterline::domain::Plan;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One org of the scenario: what it is for, its plan, its own rate limit and its keys (each
/// with its own rate limit, if any, and its share of the clients' requests).
struct Spec {
    label: &'static str,
    plan: Option<&'static str>,
    org_rpm: Option<u32>,
    keys: &'static [(Option<u32>, u32)],
}

/// The scenario; key weights add up to 1000. Most traffic goes to unlimited keys (throughput);
/// `key-rate` keys and the `org-rate` org are pushed past their limits; the quota orgs use up
/// their hard `tokens` quotas at different times of the run.
const SCENARIO: &[Spec] = &[
    Spec {
        label: "open-1",
        plan: None,
        org_rpm: None,
        keys: &[(None, 85), (None, 85)],
    },
    Spec {
        label: "open-2",
        plan: None,
        org_rpm: None,
        keys: &[(None, 85), (None, 85)],
    },
    Spec {
        label: "open-3",
        plan: None,
        org_rpm: None,
        keys: &[(None, 85), (None, 85)],
    },
    Spec {
        label: "open-4",
        plan: None,
        org_rpm: None,
        keys: &[(None, 85), (None, 85)],
    },
    Spec {
        label: "key-rate",
        plan: None,
        org_rpm: None,
        keys: &[(Some(2), 34), (Some(30), 33), (Some(600), 33)],
    },
    Spec {
        label: "org-rate",
        plan: None,
        org_rpm: Some(30),
        keys: &[(None, 34), (None, 33), (Some(10), 33)],
    },
    Spec {
        label: "quota-s",
        plan: Some("pln_load_quota_s"),
        org_rpm: None,
        keys: &[(None, 40)],
    },
    Spec {
        label: "quota-m",
        plan: Some("pln_load_quota_m"),
        org_rpm: None,
        keys: &[(None, 20), (Some(600), 20)],
    },
    Spec {
        label: "quota-l",
        plan: Some("pln_load_quota_l"),
        org_rpm: None,
        keys: &[(None, 40)],
    },
];

/// An org as the server configured it.
#[derive(Debug)]
pub struct Org {
    /// Its id.
    pub id: String,
    /// Its role in the scenario.
    pub label: String,
    /// The plan in force (read back from its subscription).
    pub plan: Plan,
    /// The org's binding requests per minute: its plan's, or its own when lower.
    pub rpm: u32,
}

/// An API key as the server configured it.
#[derive(Debug)]
pub struct Key {
    /// Index of its org in [`Tenants::orgs`].
    pub org: usize,
    /// Its id.
    pub id: String,
    /// The plaintext key.
    pub secret: String,
    /// Its own requests per minute, if any.
    pub rpm: Option<u32>,
    /// Its share of the requests (of 1000).
    pub weight: u32,
    /// `org-label/n`, for the tables.
    pub label: String,
}

/// Every org and key of a run.
#[derive(Debug)]
pub struct Tenants {
    /// The orgs.
    pub orgs: Vec<Org>,
    /// The keys.
    pub keys: Vec<Key>,
}

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = http.request(method.clone(), &url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = response.status();
    let bytes = response.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

async fn expect(
    http: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
    want: StatusCode,
) -> anyhow::Result<Value> {
    let what = format!("{method} {url}");
    let (status, body) = call(http, method, url, token, body).await?;
    if status != want {
        bail!("{what}: expected {want}, got {status}: {body}");
    }
    Ok(body)
}

fn text(body: &Value, field: &str) -> anyhow::Result<String> {
    body[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no `{field}` in {body}"))
}

/// Creates the scenario's tenants on the server at `base`.
pub async fn create(http: &reqwest::Client, base: &str) -> anyhow::Result<Tenants> {
    let email = format!(
        "load-{}@example.com",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let password = "load test password 1";
    let credentials = json!({"email": email, "password": password});
    expect(
        http,
        Method::POST,
        format!("{base}/v1/auth/signup"),
        None,
        Some(credentials.clone()),
        StatusCode::CREATED,
    )
    .await?;
    let login = expect(
        http,
        Method::POST,
        format!("{base}/v1/auth/login"),
        None,
        Some(credentials),
        StatusCode::OK,
    )
    .await?;
    let token = text(&login, "access_token")?;
    let token = Some(token.as_str());

    let mut tenants = Tenants {
        orgs: Vec::new(),
        keys: Vec::new(),
    };
    for spec in SCENARIO {
        let mut body = json!({"name": format!("load {}", spec.label)});
        if let Some(rpm) = spec.org_rpm {
            body["rate_limit_rpm"] = json!(rpm);
        }
        let org = expect(
            http,
            Method::POST,
            format!("{base}/v1/orgs"),
            token,
            Some(body),
            StatusCode::CREATED,
        )
        .await?;
        let org_id = text(&org, "id")?;
        let subscription = format!("{base}/v1/orgs/{org_id}/subscription");
        if let Some(plan) = spec.plan {
            let (status, body) = call(
                http,
                Method::PUT,
                subscription.clone(),
                token,
                Some(json!({"plan_id": plan})),
            )
            .await?;
            if status != StatusCode::OK {
                // A server started elsewhere may not offer the load plans: the org stays on
                // its default plan, and the checks use whatever plan it is on.
                eprintln!(
                    "setup: {} could not move to {plan} ({status}: {body}); it stays on the default plan",
                    spec.label
                );
            }
        }
        let current = expect(http, Method::GET, subscription, token, None, StatusCode::OK).await?;
        let plan_id = text(&current, "plan_id")?;
        let plan = expect(
            http,
            Method::GET,
            format!("{base}/v1/plans/{plan_id}"),
            None,
            None,
            StatusCode::OK,
        )
        .await?;
        let plan: Plan = serde_json::from_value(plan.clone())
            .with_context(|| format!("plan {plan_id} as the API shows it: {plan}"))?;
        let own_rpm = org["rate_limit_rpm"]
            .as_u64()
            .and_then(|rpm| u32::try_from(rpm).ok());
        let rpm = own_rpm.map_or(plan.rate_limit_rpm, |own| own.min(plan.rate_limit_rpm));
        let org_index = tenants.orgs.len();
        tenants.orgs.push(Org {
            id: org_id.clone(),
            label: spec.label.into(),
            plan,
            rpm,
        });
        for (n, (key_rpm, weight)) in spec.keys.iter().enumerate() {
            let mut body = json!({"name": format!("load {} {n}", spec.label)});
            if let Some(rpm) = key_rpm {
                body["rate_limit_rpm"] = json!(rpm);
            }
            let key = expect(
                http,
                Method::POST,
                format!("{base}/v1/orgs/{org_id}/api-keys"),
                token,
                Some(body),
                StatusCode::CREATED,
            )
            .await?;
            tenants.keys.push(Key {
                org: org_index,
                id: text(&key, "id")?,
                secret: text(&key, "key")?,
                rpm: key["rate_limit_rpm"]
                    .as_u64()
                    .and_then(|rpm| u32::try_from(rpm).ok()),
                weight: *weight,
                label: format!("{}/{n}", spec.label),
            });
        }
    }
    Ok(tenants)
}
