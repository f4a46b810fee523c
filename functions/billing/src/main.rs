//! Lambda entry for the billing consumer: bootstrap only. Subscribed to the usage queue with
//! `ReportBatchItemFailures`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use meterline::usage::Admission;
use meterline::{AppState, Config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    };
    meterline::telemetry::init(config.log_format);
    let admission = Admission {
        lateness: chrono::Duration::from_std(config.usage_lateness)?,
        future_skew: chrono::Duration::from_std(config.usage_future_skew)?,
    };
    let state = AppState::from_config(config).await?;
    let store = state.store.clone();
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| {
            let store = store.clone();
            async move {
                let now = chrono::Utc::now();
                Ok::<_, Error>(
                    meterline_billing::handle(&*store, &admission, event.payload, now).await,
                )
            }
        },
    ))
    .await
}
