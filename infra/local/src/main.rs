//! `cargo run`: Meterline on 127.0.0.1:3000 (`HOST`, `PORT`), state in `STORE_URL`
//! (default: the SQLite file `meterline.db` here).

use anyhow::Context as _;
use meterline::{AppState, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    };
    meterline::telemetry::init(config.log_format);
    let address = (config.host, config.port);
    let state = AppState::from_config(config).await?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {}:{}", address.0, address.1))?;
    tracing::info!(
        address = %listener.local_addr()?,
        store = state.store.backend(),
        "Meterline is listening"
    );
    meterline_local::serve(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
