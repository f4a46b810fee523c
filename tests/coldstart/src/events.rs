//! The events API Gateway (HTTP API, payload format 2.0) and SQS hand a function, and the
//! answers read back from what the function POSTs to the Runtime API.

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};

/// A client address from the documentation range (RFC 5737), as API Gateway's `sourceIp`.
const SOURCE_IP: &str = "203.0.113.7";

/// An HTTP request as API Gateway's HTTP API hands it to a function (payload format 2.0).
pub struct HttpRequest<'a> {
    /// `GET`, `POST` ...
    pub method: &'a str,
    /// The path, without a query string.
    pub path: &'a str,
    /// Extra headers, lower-case names.
    pub headers: Vec<(&'a str, String)>,
    /// A JSON body, if any.
    pub body: Option<Value>,
}

impl<'a> HttpRequest<'a> {
    /// A request without headers or body.
    pub fn new(method: &'a str, path: &'a str) -> Self {
        Self {
            method,
            path,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds `authorization: Bearer <token>`.
    pub fn bearer(mut self, token: &str) -> Self {
        self.headers
            .push(("authorization", format!("Bearer {token}")));
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &'a str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// Sets a JSON body (and its content type).
    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// The API Gateway v2 event, for `request_id` at `now`.
    pub fn event(&self, request_id: &str, now: chrono::DateTime<chrono::Utc>) -> Value {
        let body = self.body.as_ref().map(Value::to_string);
        let mut headers = serde_json::Map::new();
        for (name, value) in [
            ("accept", "*/*".to_owned()),
            (
                "host",
                "coldstart.execute-api.us-east-1.amazonaws.com".to_owned(),
            ),
            ("user-agent", "meterline-coldstart".to_owned()),
            ("x-forwarded-for", SOURCE_IP.to_owned()),
            ("x-forwarded-port", "443".to_owned()),
            ("x-forwarded-proto", "https".to_owned()),
            (
                "x-amzn-trace-id",
                format!(
                    "Root=1-{:08x}-{:024x}",
                    now.timestamp(),
                    now.timestamp_micros()
                ),
            ),
        ] {
            headers.insert(name.to_owned(), Value::String(value));
        }
        if let Some(body) = &body {
            headers.insert("content-type".into(), "application/json".into());
            headers.insert("content-length".into(), body.len().to_string().into());
        }
        for (name, value) in &self.headers {
            headers.insert((*name).to_owned(), Value::String(value.clone()));
        }
        json!({
            "version": "2.0",
            "routeKey": format!("{} {}", self.method, self.path),
            "rawPath": self.path,
            "rawQueryString": "",
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "coldstart",
                "domainName": "coldstart.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "coldstart",
                "http": {
                    "method": self.method,
                    "path": self.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": SOURCE_IP,
                    "userAgent": "meterline-coldstart"
                },
                "requestId": request_id,
                "routeKey": format!("{} {}", self.method, self.path),
                "stage": "$default",
                "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
                "timeEpoch": now.timestamp_millis()
            },
            "body": body,
            "isBase64Encoded": false
        })
    }
}

/// An HTTP function's answer: what lambda_http POSTs for an HTTP API event.
#[derive(Debug)]
pub struct HttpAnswer {
    /// `statusCode`.
    pub status: u16,
    /// `body`, decoded when `isBase64Encoded`.
    pub body: String,
}

impl HttpAnswer {
    /// Reads the API Gateway v2 response document.
    pub fn parse(raw: &[u8]) -> anyhow::Result<Self> {
        let doc: Value = serde_json::from_slice(raw).with_context(|| {
            format!("the response is not JSON: {}", String::from_utf8_lossy(raw))
        })?;
        let status = doc
            .get("statusCode")
            .and_then(Value::as_u64)
            .and_then(|status| u16::try_from(status).ok())
            .with_context(|| format!("no statusCode in {doc}"))?;
        let body = doc.get("body").and_then(Value::as_str).unwrap_or_default();
        let body = if doc.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(body)
                .context("a base64 body that does not decode")?;
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            body.to_owned()
        };
        Ok(Self { status, body })
    }

    /// Fails unless the status is `expected`.
    pub fn expect(self, what: &str, expected: u16) -> anyhow::Result<Self> {
        if self.status != expected {
            bail!(
                "{what}: status {} where {expected} was expected; body: {}",
                self.status,
                self.body
            );
        }
        Ok(self)
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }

    /// A string field of the JSON body.
    pub fn field(&self, name: &str) -> anyhow::Result<String> {
        self.json()?
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("no string {name:?} in {}", self.body))
    }
}

/// An SQS event with one message, as the event source mapping hands the billing consumer.
pub fn sqs_event(message_id: &str, body: &Value) -> Value {
    json!({
        "Records": [{
            "messageId": message_id,
            "receiptHandle": format!("coldstart-{message_id}"),
            "body": body.to_string(),
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": chrono::Utc::now().timestamp_millis().to_string(),
                "SenderId": "AROAEXAMPLE:meterline-metering",
                "ApproximateFirstReceiveTimestamp": chrono::Utc::now().timestamp_millis().to_string()
            },
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:meterline-usage",
            "awsRegion": "us-east-1"
        }]
    })
}

/// Fails unless the billing consumer's `SqsBatchResponse` names no failed message.
pub fn expect_no_batch_failures(raw: &[u8]) -> anyhow::Result<()> {
    let doc: Value = serde_json::from_slice(raw)
        .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(raw)))?;
    match doc.get("batchItemFailures").and_then(Value::as_array) {
        Some(failures) if failures.is_empty() => Ok(()),
        Some(_) => bail!("the billing consumer refused the usage event: {doc}"),
        None => bail!("no batchItemFailures in {doc}"),
    }
}
