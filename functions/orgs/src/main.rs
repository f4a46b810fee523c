//! Lambda entry for the orgs function: bootstrap only.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    meterline::lambda::serve(meterline_orgs::router).await
}
