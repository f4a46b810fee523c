//! `template.yaml` (the SAM template operators deploy) checked against the code it deploys.
//!
//! Three sources name the HTTP routes: the functions' routers, the workspace Cargo.toml's
//! `[workspace.metadata.lambda.watch.router]` (what `cargo lambda watch` serves) and the
//! template's `HttpApi` events. These tests hold all three to one another, with no route list of
//! their own: every path a router declares is in the watch table on its package; the watch table
//! and the template route the same paths to the same functions; every (method, path) the template
//! routes is answered by that function's router (not its 404/405 fallback), and every method a
//! router answers on a path is routed by the template. Each function's environment (Globals
//! merged in) must start its `Config` in production, with the settings its job needs.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use meterline::clock::SystemClock;
use meterline::config::{AppEnv, Config, LogFormat};
use meterline::ratelimit::LocalLimiter;
use meterline::store::testing;
use meterline::{AppState, http};
use serde_norway::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower::ServiceExt;

/// The methods a route can be probed with (HEAD follows GET in axum, OPTIONS is API Gateway's
/// CORS preflight).
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The one function that sends usage events to the queue (and so needs `USAGE_QUEUE_URL`).
const USAGE_SENDER: &str = "meterline-metering";

/// The SQS consumer: no HTTP routes, no Redis.
const CONSUMER: &str = "meterline-billing";

/// The workspace root (the template's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// A router per HTTP function package: the only per-function list here, and a new HTTP
/// function without an entry fails `every_function_is_a_cargo_lambda_arm64_build`.
fn router_of(package: &str) -> Option<fn(AppState) -> Router> {
    Some(match package {
        "meterline-auth" => meterline_auth::router,
        "meterline-orgs" => meterline_orgs::router,
        "meterline-api-keys" => meterline_api_keys::router,
        "meterline-metering" => meterline_metering::router,
        "meterline-billing-api" => meterline_billing_api::router,
        _ => return None,
    })
}

/// A CloudFormation intrinsic, in short (`!Ref X`) or long (`{Ref: X}`, `{Fn::If: ...}`) form:
/// its name without `Fn::` and its argument.
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => Some((
            tagged.tag.to_string().trim_start_matches('!').to_owned(),
            &tagged.value,
        )),
        Value::Mapping(map) if map.len() == 1 => {
            let (key, arg) = map.iter().next()?;
            let key = key.as_str()?;
            if key == "Ref" || key.starts_with("Fn::") {
                Some((key.trim_start_matches("Fn::").to_owned(), arg))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_mapping()?.get(key)
}

/// One `AWS::Serverless::Function` of the template.
struct Function {
    logical_id: String,
    /// `Metadata.BuildProperties.Binary`: the workspace binary (= package) it runs.
    binary: String,
    properties: Value,
    metadata: Value,
}

impl Function {
    /// A property from the function, else from `Globals.Function`.
    fn property<'a>(&'a self, template: &'a Template, name: &str) -> Option<&'a Value> {
        get(&self.properties, name).or_else(|| get(&template.globals, name))
    }

    /// Its events of `Type: kind`, by name.
    fn events(&self, kind: &str) -> Vec<(&str, &Value)> {
        let Some(events) = get(&self.properties, "Events").and_then(Value::as_mapping) else {
            return Vec::new();
        };
        events
            .iter()
            .filter(|(_, event)| get(event, "Type").and_then(Value::as_str) == Some(kind))
            .map(|(name, event)| (name.as_str().unwrap_or("?"), event))
            .collect()
    }
}

/// The parsed template.
struct Template {
    parameters: Mapping,
    globals: Value,
    resources: Mapping,
    functions: Vec<Function>,
}

impl Template {
    fn load() -> Self {
        let raw = read(&root().join("template.yaml"));
        let doc: Value = serde_norway::from_str(&raw).expect("template.yaml is YAML");
        let resources = get(&doc, "Resources")
            .and_then(Value::as_mapping)
            .expect("Resources")
            .clone();
        let functions = resources
            .iter()
            .filter(|(_, r)| {
                get(r, "Type").and_then(Value::as_str) == Some("AWS::Serverless::Function")
            })
            .map(|(id, r)| {
                let logical_id = id.as_str().expect("logical id").to_owned();
                let metadata = get(r, "Metadata").cloned().unwrap_or(Value::Null);
                let binary = get(&metadata, "BuildProperties")
                    .and_then(|p| get(p, "Binary"))
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{logical_id}: Metadata.BuildProperties.Binary"))
                    .to_owned();
                Function {
                    logical_id,
                    binary,
                    properties: get(r, "Properties").cloned().unwrap_or(Value::Null),
                    metadata,
                }
            })
            .collect();
        Self {
            parameters: get(&doc, "Parameters")
                .and_then(Value::as_mapping)
                .cloned()
                .unwrap_or_default(),
            globals: get(&doc, "Globals")
                .and_then(|g| get(g, "Function"))
                .cloned()
                .unwrap_or(Value::Null),
            resources,
            functions,
        }
    }

    fn function(&self, binary: &str) -> &Function {
        self.functions
            .iter()
            .find(|f| f.binary == binary)
            .unwrap_or_else(|| panic!("template.yaml has no function for {binary}"))
    }

    /// Every `HttpApi` route: (METHOD, path) -> the binary serving it. The catch-all event
    /// (no Path: API Gateway's `$default` route) is left out and returned apart.
    fn routes(&self) -> (BTreeMap<(String, String), String>, Vec<String>) {
        let mut routes = BTreeMap::new();
        let mut catch_all = Vec::new();
        for function in &self.functions {
            for (name, event) in function.events("HttpApi") {
                let props = get(event, "Properties").unwrap_or(&Value::Null);
                let api = get(props, "ApiId").and_then(intrinsic);
                assert!(
                    matches!(&api, Some((kind, Value::String(id))) if kind == "Ref" && id == "HttpApi"),
                    "{}.{name}: ApiId must be !Ref HttpApi",
                    function.logical_id
                );
                let path = get(props, "Path").and_then(Value::as_str);
                let method = get(props, "Method").and_then(Value::as_str);
                let (Some(path), Some(method)) = (path, method) else {
                    assert!(
                        path.is_none() && method.is_none(),
                        "{}.{name}: Path and Method go together",
                        function.logical_id
                    );
                    catch_all.push(function.binary.clone());
                    continue;
                };
                let key = (method.to_ascii_uppercase(), path.to_owned());
                let previous = routes.insert(key.clone(), function.binary.clone());
                assert!(previous.is_none(), "{key:?} is routed twice");
            }
        }
        (routes, catch_all)
    }

    /// Globals' variables overlaid with the function's own (the function's win, as in SAM).
    fn environment(&self, function: &Function) -> Mapping {
        let variables = |props: &Value| {
            get(props, "Environment")
                .and_then(|e| get(e, "Variables"))
                .and_then(Value::as_mapping)
                .cloned()
                .unwrap_or_default()
        };
        let mut merged = variables(&self.globals);
        merged.extend(variables(&function.properties));
        merged
    }

    /// A value as CloudFormation would give it with every condition true and the parameters'
    /// defaults: `None` for `AWS::NoValue`. Resource references and secrets become
    /// placeholders (`<Table>`, `{{resolve:...}}` kept as written).
    fn resolve(&self, value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => match intrinsic(value) {
                Some((name, arg)) if name == "Ref" => self.reference(arg.as_str()?),
                Some((name, arg)) if name == "If" => self.resolve(arg.as_sequence()?.get(1)?),
                Some((name, arg)) if name == "Sub" => Some(self.substitute(arg.as_str()?)),
                Some((name, arg)) if name == "GetAtt" => Some(format!(
                    "<{}>",
                    arg.as_str().map(str::to_owned).unwrap_or_else(|| {
                        let parts: Vec<_> = arg
                            .as_sequence()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        parts.join(".")
                    })
                )),
                other => panic!("cannot resolve {other:?}"),
            },
        }
    }

    fn reference(&self, name: &str) -> Option<String> {
        if name == "AWS::NoValue" {
            return None;
        }
        match self.parameters.get(name) {
            Some(parameter) => Some(
                get(parameter, "Default")
                    .and_then(|d| self.resolve(d))
                    .unwrap_or_else(|| format!("<{name}>")),
            ),
            None => Some(format!("<{name}>")),
        }
    }

    fn substitute(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("closed ${") + start;
            let name = &rest[start + 2..end];
            out.push_str(&self.reference(name).unwrap_or_default());
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// `[workspace.metadata.lambda.watch.router]`: path -> package.
fn watch_table() -> BTreeMap<String, String> {
    let manifest: toml::Table = read(&root().join("Cargo.toml"))
        .parse()
        .expect("Cargo.toml is TOML");
    let router = ["workspace", "metadata", "lambda", "watch", "router"]
        .iter()
        .try_fold(&toml::Value::Table(manifest), |v, k| v.get(k))
        .and_then(toml::Value::as_table)
        .expect("[workspace.metadata.lambda.watch.router]")
        .clone();
    router
        .into_iter()
        .map(|(path, package)| {
            let package = package.as_str().expect("a package name").to_owned();
            (path, package)
        })
        .collect()
}

/// A function crate under `functions/`: its package name, `[[bin]]` names and directory.
struct Crate {
    package: String,
    bins: Vec<String>,
    dir: PathBuf,
}

fn function_crates() -> Vec<Crate> {
    let mut crates = Vec::new();
    let dirs = std::fs::read_dir(root().join("functions")).expect("functions/");
    for dir in dirs.map(|entry| entry.expect("entry").path()) {
        let manifest: toml::Table = read(&dir.join("Cargo.toml")).parse().expect("TOML");
        let package = manifest["package"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let bins = manifest
            .get("bin")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|bin| bin.get("name")?.as_str().map(str::to_owned))
            .collect();
        crates.push(Crate { package, bins, dir });
    }
    crates.sort_by(|a, b| a.package.cmp(&b.package));
    crates
}

/// Every `.rs` file of a crate's `src/`, one text: routes may be declared in any module.
fn crate_source(dir: &Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("src"))
        .expect("src/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| read(path))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The literal paths of every `.route("...", ...)` call in a crate's source.
fn declared_paths(source: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        rest = rest[at + ".route(".len()..].trim_start();
        if let Some(literal) = rest.strip_prefix('"') {
            let end = literal.find('"').expect("closed string");
            paths.push(literal[..end].to_owned());
        }
    }
    paths
}

/// A state for building routers in-process: SQLite, the in-process limiter, test settings.
async fn state() -> AppState {
    let vars = HashMap::from([
        ("APP_ENV".to_owned(), "test".to_owned()),
        (
            "JWT_SECRET".to_owned(),
            meterline_e2e::TEST_JWT_SECRET.to_owned(),
        ),
    ]);
    let config = Config::from_vars(&vars).expect("test configuration");
    AppState::assemble(
        config,
        testing::sqlite().await,
        Arc::new(LocalLimiter::new()),
        Arc::new(SystemClock),
    )
    .expect("state")
}

/// A function's whole stack as its Lambda serves it (routes + health + shared fallbacks).
fn service(routes: Router, state: &AppState) -> Router {
    http::service(routes, state)
}

/// Whether `app` answers `method path` from a route (anything but its 404/405 fallbacks).
struct Prober {
    /// The fallback's 404 problem (`code`, `detail`), learnt from a path no router has.
    not_found: (String, String),
}

impl Prober {
    async fn new(state: &AppState) -> Self {
        let (status, body) = call(
            service(Router::new(), state),
            "GET",
            "/__template_probe__/nothing",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        Self {
            not_found: problem(&body),
        }
    }

    async fn routed(&self, app: Router, method: &str, path: &str) -> bool {
        let concrete = concrete(path);
        let (status, body) = call(app, method, &concrete).await;
        match status {
            StatusCode::METHOD_NOT_ALLOWED => false,
            StatusCode::NOT_FOUND => problem(&body) != self.not_found,
            _ => true,
        }
    }
}

/// `{param}` segments filled with a sample value.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                "probe"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn call(app: Router, method: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path)
        .body(Body::empty())
        .expect("request");
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, body.to_vec())
}

fn problem(body: &[u8]) -> (String, String) {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |name: &str| json[name].as_str().unwrap_or_default().to_owned();
    (field("code"), field("detail"))
}

#[test]
fn every_function_is_a_cargo_lambda_arm64_build() {
    let template = Template::load();
    let crates = function_crates();
    for function in &template.functions {
        let id = &function.logical_id;
        assert_eq!(
            get(&function.metadata, "BuildMethod").and_then(Value::as_str),
            Some("rust-cargolambda"),
            "{id}: BuildMethod"
        );
        assert!(
            crates.iter().any(|c| c.bins.contains(&function.binary)),
            "{id}: {} is no [[bin]] under functions/",
            function.binary
        );
        let string = |name| function.property(&template, name).and_then(Value::as_str);
        assert_eq!(string("Runtime"), Some("provided.al2023"), "{id}: Runtime");
        assert_eq!(string("Handler"), Some("bootstrap"), "{id}: Handler");
        assert_eq!(
            string("CodeUri"),
            Some("."),
            "{id}: CodeUri is the workspace"
        );
        let arch = function.property(&template, "Architectures");
        assert_eq!(
            arch.and_then(Value::as_sequence)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>()),
            Some(vec!["arm64"]),
            "{id}: Architectures"
        );
    }
    // Every function crate is deployed exactly once, and every HTTP one has a router here.
    for krate in &crates {
        for bin in &krate.bins {
            let count = template
                .functions
                .iter()
                .filter(|f| &f.binary == bin)
                .count();
            assert_eq!(count, 1, "{bin} must be deployed by exactly one function");
        }
        for bin in &krate.bins {
            let serves_http = !template.function(bin).events("HttpApi").is_empty();
            assert_eq!(
                serves_http,
                router_of(bin).is_some(),
                "{bin}: an HTTP function needs a router in router_of, and only those"
            );
        }
    }
}

#[test]
fn the_watch_table_and_the_template_route_the_same_paths_to_the_same_functions() {
    let template = Template::load();
    let (routes, catch_all) = template.routes();
    let watch = watch_table();
    let template_paths: BTreeMap<&str, BTreeSet<&str>> =
        routes
            .iter()
            .fold(BTreeMap::new(), |mut paths, ((_, path), binary)| {
                paths
                    .entry(path.as_str())
                    .or_default()
                    .insert(binary.as_str());
                paths
            });
    for (path, package) in &watch {
        let served_by = template_paths.get(path.as_str());
        assert_eq!(
            served_by,
            Some(&BTreeSet::from([package.as_str()])),
            "{path}: the watch table sends it to {package}, template.yaml to {served_by:?}"
        );
    }
    let extra: Vec<_> = template_paths
        .keys()
        .filter(|path| !watch.contains_key(**path))
        .collect();
    assert!(
        extra.is_empty(),
        "routed by template.yaml, not in the watch table: {extra:?}"
    );
    // The catch-all goes to a function whose stack answers unknown routes with the problem 404.
    assert!(
        catch_all.len() <= 1,
        "one $default route at most: {catch_all:?}"
    );
    for binary in catch_all {
        assert!(
            router_of(&binary).is_some(),
            "$default must go to an HTTP function"
        );
    }
}

#[tokio::test]
async fn every_path_a_router_declares_is_in_the_watch_table_on_its_package() {
    let watch = watch_table();
    let state = state().await;
    let prober = Prober::new(&state).await;
    for krate in function_crates() {
        let declared = declared_paths(&crate_source(&krate.dir));
        let http = krate.bins.iter().any(|bin| router_of(bin).is_some());
        assert_eq!(
            !declared.is_empty(),
            http,
            "{}: declared routes {declared:?}",
            krate.package
        );
        for path in &declared {
            assert_eq!(
                watch.get(path),
                Some(&krate.package),
                "{} routes {path}; the watch table (and so template.yaml) must send it there",
                krate.package
            );
        }
        // And the other way: a path the table gives this package is one its source declares,
        // or one the shared stack serves on every function (the health routes).
        for (path, _) in watch.iter().filter(|(_, p)| **p == krate.package) {
            let shared = prober
                .routed(service(Router::new(), &state), "GET", path)
                .await;
            assert!(
                declared.contains(path) || shared,
                "the watch table sends {path} to {}, which does not route it",
                krate.package
            );
        }
    }
}

#[tokio::test]
async fn template_routes_and_router_methods_agree() {
    let template = Template::load();
    let (routes, _) = template.routes();
    let state = state().await;
    let prober = Prober::new(&state).await;
    let paths: BTreeMap<&str, &str> = routes
        .iter()
        .map(|((_, path), binary)| (path.as_str(), binary.as_str()))
        .collect();
    for (path, binary) in paths {
        let routes_of = router_of(binary).unwrap_or_else(|| panic!("{binary} has no router"));
        for method in METHODS {
            let app = service(routes_of(state.clone()), &state);
            let answered = prober.routed(app, method, path).await;
            let in_template = routes.get(&(method.to_owned(), path.to_owned()));
            match (answered, in_template) {
                (true, Some(_)) | (false, None) => {}
                (true, None) => {
                    panic!("{binary} answers {method} {path}, but template.yaml does not route it")
                }
                (false, Some(_)) => panic!(
                    "template.yaml routes {method} {path} to {binary}, whose router does not answer it"
                ),
            }
        }
    }
}

/// The OpenAPI document (`/openapi.json`, `openapi.json`) describes exactly the operations API
/// Gateway routes, so no route goes undocumented and no documented operation is missing.
#[test]
fn the_openapi_document_describes_exactly_the_routed_operations() {
    let template = Template::load();
    let (routes, _) = template.routes();
    let routed: BTreeSet<(String, String)> = routes.into_keys().collect();
    let doc = serde_json::to_value(meterline_local::openapi()).expect("the document is JSON");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("path item").keys();
            methods.map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routed but not in the OpenAPI document: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "in the OpenAPI document but not routed: {unrouted:?}"
    );
}

#[test]
fn every_function_environment_starts_its_config_in_production() {
    let template = Template::load();
    for function in &template.functions {
        let id = &function.logical_id;
        let raw = template.environment(function);
        let mut vars: HashMap<String, String> = HashMap::new();
        for (name, value) in &raw {
            let name = name.as_str().expect("variable name").to_owned();
            if let Some(value) = template.resolve(value) {
                vars.insert(name, value);
            }
        }
        for name in ["APP_ENV", "STORE_URL", "JWT_SECRET", "DEFAULT_PLAN_ID"] {
            assert!(vars.contains_key(name), "{id}: {name} is not set");
        }
        // Secrets come from Secrets Manager by dynamic reference, never as plain values.
        for name in ["JWT_SECRET", "STRIPE_WEBHOOK_SECRET"] {
            if let Some(value) = vars.get_mut(name) {
                assert!(
                    value.starts_with("{{resolve:secretsmanager:") && value.ends_with("}}"),
                    "{id}: {name} must be a Secrets Manager dynamic reference, not {value:?}"
                );
                *value = "kX9vQ2mT7pL4wR8zN1bY6cF3hJ5dS0aGeUiOtPq".to_owned();
            }
        }
        vars.insert("AWS_LAMBDA_FUNCTION_NAME".into(), id.clone());
        let config = Config::from_vars(&vars)
            .unwrap_or_else(|err| panic!("{id}: the deployed environment fails: {err}"));
        assert_eq!(config.app_env, AppEnv::Production, "{id}");
        assert_eq!(config.log_format, LogFormat::Json, "{id}");
        assert!(
            config.store_url.starts_with("dynamodb://<Table>"),
            "{id}: STORE_URL {}",
            config.store_url
        );
        let http = router_of(&function.binary).is_some();
        if http {
            // Every HTTP function shares the limiter (metering limits, orgs and api-keys write
            // revocation marks, auth and billing-api build the same state).
            assert!(
                config
                    .redis_url
                    .as_deref()
                    .is_some_and(|url| url.starts_with("redis")),
                "{id}: REDIS_URL"
            );
        }
        if function.binary == CONSUMER {
            assert_eq!(
                config.redis_url, None,
                "{id}: the consumer must not depend on Redis"
            );
        }
        if function.binary == USAGE_SENDER {
            assert!(config.usage_queue_url.is_some(), "{id}: USAGE_QUEUE_URL");
            assert!(
                raw.get("RATE_LIMIT_FAIL_MODE").is_some(),
                "{id}: RATE_LIMIT_FAIL_MODE is the operator's choice"
            );
        }
    }
}

#[test]
fn billing_consumes_the_usage_queue_with_partial_batch_failures_and_a_watched_dlq() {
    let template = Template::load();
    let billing = template.function(CONSUMER);
    let events = billing.events("SQS");
    assert_eq!(events.len(), 1, "billing has one SQS event");
    let props = get(events[0].1, "Properties").expect("Properties");
    let types: Vec<&str> = get(props, "FunctionResponseTypes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(types, ["ReportBatchItemFailures"]);
    let queue = get(props, "Queue")
        .and_then(intrinsic)
        .expect("Queue: !GetAtt");
    let queue_id = match queue {
        (name, Value::String(s)) if name == "GetAtt" => s.split('.').next().expect("id").to_owned(),
        other => panic!("Queue must be !GetAtt <queue>.Arn, not {other:?}"),
    };
    let queue = template
        .resources
        .get(queue_id.as_str())
        .expect("the queue");
    let redrive = get(queue, "Properties")
        .and_then(|p| get(p, "RedrivePolicy"))
        .expect("the usage queue has a redrive policy");
    let dlq = get(redrive, "deadLetterTargetArn")
        .and_then(intrinsic)
        .and_then(|(_, arg)| {
            arg.as_str()
                .map(|s| s.split('.').next().unwrap_or(s).to_owned())
        })
        .expect("deadLetterTargetArn: !GetAtt <dlq>.Arn");
    assert!(
        template.resources.contains_key(dlq.as_str()),
        "{dlq} exists"
    );
    let watched = template.resources.iter().any(|(_, r)| {
        get(r, "Type").and_then(Value::as_str) == Some("AWS::CloudWatch::Alarm")
            && get(r, "Properties").is_some_and(|p| {
                get(p, "MetricName").and_then(Value::as_str)
                    == Some("ApproximateNumberOfMessagesVisible")
                    && serde_norway::to_string(p).is_ok_and(|text| text.contains(&dlq))
            })
    });
    assert!(watched, "an alarm watches {dlq}'s depth");
}

#[test]
fn route_declarations_are_found_on_one_line_or_several() {
    let source = r#"
        Router::new()
            .route("/v1/a", get(a).post(b))
            .route(
                "/v1/b/{id}",
                get(c),
            )
            .route_layer(layer)
    "#;
    assert_eq!(declared_paths(source), ["/v1/a", "/v1/b/{id}"]);
}
