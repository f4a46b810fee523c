//! SQS on the test endpoint (moto_server, `AWS_ENDPOINT_URL`), so every e2e test builds its
//! client and queues one way instead of each file carrying its own copy.

/// The endpoint `infra/services.sh` starts moto_server on.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4566";

/// The endpoint the suite's SQS lives at: `AWS_ENDPOINT_URL_SQS` (the SDK's per-service
/// override, e.g. SQS on a moto process of its own), else `AWS_ENDPOINT_URL`, else
/// [`DEFAULT_ENDPOINT`].
pub fn endpoint() -> String {
    ["AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|url| !url.is_empty()))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.into())
}

/// A client for the test endpoint ([`endpoint`]), in `us-east-1` with static test
/// credentials, so no test depends on the machine's AWS configuration.
pub async fn client() -> aws_sdk_sqs::Client {
    client_at(&endpoint()).await
}

/// A client like [`client`] for another endpoint, e.g. one that is down on purpose.
pub async fn client_at(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "meterline-e2e",
        ))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// Creates a new, empty standard queue named `<prefix>-<ulid>` and returns its URL, so tests
/// running in parallel never share messages. Panics when the endpoint is missing: a test must
/// fail, never skip, without its server.
pub async fn fresh_queue(client: &aws_sdk_sqs::Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase());
    client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap_or_else(|err| {
            panic!(
                "SQS at {} is required (run infra/services.sh): {err}",
                endpoint()
            )
        })
        .queue_url()
        .expect("CreateQueue returns the queue URL")
        .to_owned()
}
