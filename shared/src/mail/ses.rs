//! Amazon SES (v2 API): the mailer in AWS. Every call is bounded like the store's, so a slow
//! SES endpoint costs a request at most the send timeout.

use super::{Mailer, Message};
use anyhow::Context as _;
use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Sends through SES with the standard AWS configuration chain (region, credentials,
/// `AWS_ENDPOINT_URL`). The client is made on the first send, so building the application
/// state stays synchronous and a function that never mails never loads it.
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: Arc<OnceCell<Client>>,
    from: String,
}

impl SesMailer {
    /// A mailer sending as `from`, which must be an identity SES has verified.
    pub fn new(from: &str) -> Self {
        Self {
            client: Arc::new(OnceCell::new()),
            from: from.to_owned(),
        }
    }

    /// A mailer on a given AWS configuration (e.g. a local endpoint).
    pub fn connect_with(config: &aws_config::SdkConfig, from: &str) -> Self {
        Self {
            client: Arc::new(OnceCell::new_with(Some(client(config)))),
            from: from.to_owned(),
        }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async { client(&aws_config::load_from_env().await) })
            .await
    }
}

/// An SES client whose every call is bounded: 1 s to connect, 2 s per attempt, 3 s in all.
fn client(config: &aws_config::SdkConfig) -> Client {
    let ses = aws_sdk_sesv2::config::Builder::from(config)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(3))
                .build(),
        )
        .build();
    Client::from_conf(ses)
}

fn content(data: &str) -> anyhow::Result<Content> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .context("SES content")
}

#[async_trait]
impl Mailer for SesMailer {
    fn backend(&self) -> &'static str {
        "ses"
    }

    async fn send(&self, message: &Message) -> anyhow::Result<()> {
        let body = Body::builder()
            .text(content(&message.text)?)
            .html(content(&message.html)?)
            .build();
        let simple = aws_sdk_sesv2::types::Message::builder()
            .subject(content(&message.subject)?)
            .body(body)
            .build();
        let sent = self
            .client()
            .await
            .send_email()
            .from_email_address(&self.from)
            .destination(
                Destination::builder()
                    .to_addresses(message.to.as_str())
                    .build(),
            )
            .content(EmailContent::builder().simple(simple).build())
            .send()
            .await
            .context("SES SendEmail failed")?;
        tracing::info!(
            message_id = sent.message_id().unwrap_or_default(),
            "mail accepted by SES"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;
    use crate::mail::templates;

    fn mail() -> Message {
        templates::login_code(
            &templates::Branding::default(),
            Email::parse("ann@example.com").expect("email"),
            "123456",
            Duration::from_secs(900),
        )
    }

    #[tokio::test]
    async fn ses_sends_from_a_verified_identity_and_refuses_others() {
        // moto, as infra/services.sh starts it, refuses unverified senders as SES does.
        let (_, config) = crate::store::testing::aws_endpoint().await;
        let domain = format!(
            "{}.example.com",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let from = format!("Meterline <no-reply@{domain}>");
        let mailer = SesMailer::connect_with(&config, &from);
        let refused = mailer.send(&mail()).await;
        assert!(refused.is_err(), "an unverified sender is refused");
        client(&config)
            .create_email_identity()
            .email_identity(&domain)
            .send()
            .await
            .expect("the SES endpoint is required (run infra/services.sh)");
        mailer
            .send(&mail())
            .await
            .expect("sent from a verified identity");
    }
}
