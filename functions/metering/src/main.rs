//! Lambda entry for the metering function: bootstrap only.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    meterline::lambda::serve(meterline_metering::router).await
}
