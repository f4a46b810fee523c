//! Postgres: the relational production option, same SQL as SQLite.

use super::sql::SqlStore;
use anyhow::Context as _;
use sqlx::any::AnyPoolOptions;
use std::time::Duration;

/// Connects to `url` and applies migrations.
pub async fn connect(url: &str) -> anyhow::Result<SqlStore> {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .context("cannot connect to Postgres (STORE_URL)")?;
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .context("Postgres migrations failed")?;
    Ok(SqlStore::new(pool, "postgres"))
}

/// Connects with every table in `schema` (created if missing): one namespace per tenant of a
/// shared server, e.g. one per test so suites run in parallel.
pub async fn connect_in_schema(url: &str, schema: &str) -> anyhow::Result<SqlStore> {
    anyhow::ensure!(
        !schema.is_empty()
            && schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "schema name must be alphanumeric"
    );
    sqlx::any::install_default_drivers();
    let admin = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("cannot connect to Postgres")?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&admin)
        .await
        .context("cannot create schema")?;
    admin.close().await;
    let separator = if url.contains('?') { '&' } else { '?' };
    connect(&format!(
        "{url}{separator}options=-c%20search_path%3D{schema}"
    ))
    .await
}
