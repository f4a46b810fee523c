//! The one bootstrap every HTTP function's `main.rs` calls: config, logs, state, then the
//! Lambda runtime serving the function's router.

use crate::config::Config;
use crate::http;
use crate::state::AppState;
use crate::telemetry;
use axum::Router;

/// Runs `routes` (built from the shared state) as a Lambda HTTP function. A configuration
/// error is printed naming the variable and ends the process before any request is taken.
pub async fn serve(routes: impl FnOnce(AppState) -> Router) -> Result<(), lambda_http::Error> {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    };
    telemetry::init(config.log_format);
    let state = AppState::from_config(config).await?;
    let app = http::service(routes(state.clone()), &state);
    lambda_http::run(app).await
}
