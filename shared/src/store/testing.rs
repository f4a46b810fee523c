//! Fresh, empty stores on the real backends, each in a namespace of its own (a SQLite file, a
//! Postgres schema, a DynamoDB table), for test suites that run in parallel.
//!
//! Endpoints: `TEST_POSTGRES_URL` (default `postgres://postgres:postgres@127.0.0.1:5432/postgres`)
//! and `AWS_ENDPOINT_URL` (default `http://127.0.0.1:4566`, e.g. moto_server), as
//! `infra/services.sh` starts and prints them. An unreachable backend panics with the reason:
//! a test must fail, never skip, when its server is missing.

use super::{DynamoStore, Store};
use std::sync::Arc;

fn namespace() -> String {
    format!("t_{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A new SQLite file in the temp directory.
pub async fn sqlite() -> Arc<dyn Store> {
    let path = std::env::temp_dir().join(format!("meterline-{}.db", namespace()));
    let path = path.to_str().expect("temp path is UTF-8").to_owned();
    Arc::new(super::sqlite::open(&path).await.expect("open SQLite file"))
}

/// A new schema on the test Postgres server.
pub async fn postgres() -> Arc<dyn Store> {
    let url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());
    let store = super::postgres::connect_in_schema(&url, &namespace())
        .await
        .unwrap_or_else(|err| {
            panic!("Postgres at {url} is required (run infra/services.sh): {err:#}")
        });
    Arc::new(store)
}

/// The test AWS endpoint (`AWS_ENDPOINT_URL`, default moto on 127.0.0.1:4566) and the
/// configuration of a client for it: fixed region and test credentials.
pub async fn aws_endpoint() -> (String, aws_config::SdkConfig) {
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "meterline-tests",
        ))
        .load()
        .await;
    (endpoint, config)
}

/// A new table on the test DynamoDB endpoint.
pub async fn dynamodb() -> Arc<dyn Store> {
    dynamodb_table().await.0
}

/// A new table on the test DynamoDB endpoint, and its name (to arm faults on it).
pub async fn dynamodb_table() -> (Arc<dyn Store>, String) {
    let (endpoint, config) = aws_endpoint().await;
    let table = namespace();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table.clone());
    store.create_table_if_missing().await.unwrap_or_else(|err| {
        panic!("DynamoDB endpoint {endpoint} is required (run infra/services.sh): {err:#}")
    });
    (Arc::new(store), table)
}

/// Makes the test DynamoDB endpoint (`infra/moto_server.py`) cancel the next `count`
/// TransactWriteItems on `table` with `TransactionConflict`, as real DynamoDB does when a
/// concurrent write touches one of their items.
pub async fn arm_transaction_conflicts(table: &str, count: u32) {
    let (endpoint, _) = aws_endpoint().await;
    let armed = reqwest::Client::new()
        .post(format!("{endpoint}/_meterline/transaction-conflicts"))
        .json(&serde_json::json!({"table": table, "count": count}))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    if let Err(err) = armed {
        panic!("{endpoint} must be infra/moto_server.py (run infra/services.sh): {err}");
    }
}
