//! Log setup: JSON lines under Lambda (CloudWatch Logs Insights can query every field, and the
//! request span puts `request_id` on each line), readable lines on a terminal.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops. `RUST_LOG` overrides the
/// default level (`info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _already_set = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .without_time() // Lambda stamps every line itself.
            .try_init(),
        LogFormat::Pretty => builder.with_target(false).try_init(),
    };
}
