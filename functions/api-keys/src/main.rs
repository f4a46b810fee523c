//! Lambda entry for the api-keys function: bootstrap only.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    meterline::lambda::serve(meterline_api_keys::router).await
}
