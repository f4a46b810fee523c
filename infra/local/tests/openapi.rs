//! `openapi.json` at the repository's root is the document the code generates, byte for byte,
//! and the local server serves that same document at `/openapi.json`.

use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json")
}

#[test]
fn the_committed_openapi_json_is_the_generated_document() {
    let generated = meterline_local::openapi_json();
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write openapi.json");
    }
    let committed = std::fs::read_to_string(&path).expect("openapi.json at the repository root");
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "openapi.json differs from the code's document from line {} on; regenerate it with \
             `UPDATE_OPENAPI=1 cargo test -p meterline-local --test openapi` and commit it",
            line + 1
        );
    }
}

#[test]
fn the_document_is_openapi_3_1_with_an_id_and_problem_errors_on_every_operation() {
    let doc: serde_json::Value =
        serde_json::from_str(&meterline_local::openapi_json()).expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 20, "only {} paths", paths.len());
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "{id} is used twice");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses.contains_key("503"),
                "{method} {path} does not say a backend can be down"
            );
            for (status, response) in responses {
                let Some(content) = response.get("content") else {
                    // A `$ref` to a shared problem answer, or an empty 204.
                    assert!(
                        response.get("$ref").is_some() || status == "204",
                        "{method} {path} {status} has no content"
                    );
                    continue;
                };
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        content.get("application/problem+json").is_some() || path == "/v1/health",
                        "{method} {path} {status} is not problem+json"
                    );
                }
            }
        }
    }
}

#[test]
fn every_link_names_a_real_operation_and_its_parameters() {
    let doc: serde_json::Value =
        serde_json::from_str(&meterline_local::openapi_json()).expect("the document is JSON");
    let operations: Vec<&serde_json::Value> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .collect();
    let mut links = 0;
    for operation in &operations {
        for response in operation["responses"]
            .as_object()
            .expect("responses")
            .values()
        {
            let Some(found) = response.get("links").and_then(|l| l.as_object()) else {
                continue;
            };
            for (name, link) in found {
                links += 1;
                let target = link["operationId"].as_str().expect("operationId");
                let target = operations
                    .iter()
                    .find(|op| op["operationId"] == target)
                    .unwrap_or_else(|| panic!("link {name} names no operation {target}"));
                let parameters = link["parameters"].as_object().into_iter().flatten();
                for (parameter, _) in parameters {
                    let declared = target["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["name"] == parameter.as_str());
                    assert!(
                        declared,
                        "link {name}: {target} has no parameter {parameter}"
                    );
                }
            }
        }
    }
    assert!(links >= 20, "only {links} links");
}

#[tokio::test]
async fn the_local_server_serves_the_document() {
    let dir = std::env::temp_dir().join(format!("meterline-openapi-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let vars = std::collections::HashMap::from([(
        "STORE_URL".to_owned(),
        format!("sqlite://{}", dir.join("m.db").display()),
    )]);
    let config = meterline::Config::from_vars(&vars).expect("config");
    let state = meterline::AppState::from_config(config)
        .await
        .expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(meterline_local::serve(
        listener,
        state,
        std::future::pending(),
    ));
    let response = reqwest::get(format!("{base}/openapi.json"))
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "served as JSON"
    );
    let served = response.text().await.expect("body");
    assert_eq!(served, meterline_local::openapi_json());
    let _ = std::fs::remove_dir_all(&dir);
}
