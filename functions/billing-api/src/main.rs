//! Lambda entry for the billing API function: bootstrap only.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    meterline::lambda::serve(meterline_billing_api::router).await
}
