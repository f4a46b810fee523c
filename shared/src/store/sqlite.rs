//! SQLite: the embedded default. One file, no server, the same SQL as Postgres.

use super::sql::SqlStore;
use anyhow::Context as _;
use sqlx::Executor;
use sqlx::any::AnyPoolOptions;

/// Opens (creating if missing) the database file at `path` and applies migrations.
pub async fn open(path: &str) -> anyhow::Result<SqlStore> {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{path}?mode=rwc");
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // Writers wait for each other instead of failing with "database is locked".
                conn.execute("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
                    .await?;
                Ok(())
            })
        })
        .connect(&url)
        .await
        .with_context(|| format!("cannot open SQLite database {path:?}"))?;
    // WAL lets readers proceed during a write; the mode is stored in the file itself.
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&pool)
        .await
        .context("cannot switch SQLite to WAL mode")?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&pool)
        .await
        .context("SQLite migrations failed")?;
    Ok(SqlStore::new(pool, "sqlite"))
}
