//! Lambda entry for the auth function: bootstrap only.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    meterline::lambda::serve(meterline_auth::router).await
}
