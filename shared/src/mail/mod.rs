//! Outgoing email behind one trait: Amazon SES in AWS, an outbox folder locally (a file per
//! message a developer can open), with the templates of the account lifecycle. A send is
//! bounded in time, so a slow provider never holds a request for long.

mod config;
mod outbox;
mod ses;
pub mod templates;

pub use config::{MailConfig, MailerKind};
pub use outbox::OutboxMailer;
pub use ses::SesMailer;

use crate::domain::Email;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// One email, ready to send: both a plain-text and an HTML body.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The recipient.
    pub to: Email,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
    /// Which template made it (`verify_email`, `password_reset`, `login_code`,
    /// `password_changed`), for logs and the outbox file name.
    pub kind: &'static str,
}

/// Bodies carry one-time secrets, so a `Debug` print shows only who and what.
impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("kind", &self.kind)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Where mail goes.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// The backend's name (`ses`, `outbox`), for logs and health.
    fn backend(&self) -> &'static str;

    /// Hands one message to the provider.
    async fn send(&self, message: &Message) -> anyhow::Result<()>;
}

/// The mailer when no sender is configured: refuses, so the log says why no mail came.
struct Disabled;

#[async_trait]
impl Mailer for Disabled {
    fn backend(&self) -> &'static str {
        "disabled"
    }

    async fn send(&self, _message: &Message) -> anyhow::Result<()> {
        anyhow::bail!("mail is not configured: set MAIL_FROM (an SES-verified sender)")
    }
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The provider did not answer within the bound.
    #[error("the mail provider did not answer within {0:?}")]
    TimedOut(Duration),
    /// The provider refused or failed.
    #[error("the mail provider failed: {0:#}")]
    Failed(#[source] anyhow::Error),
}

/// The mailer with its time bound: what the services send through. Cheap to clone.
#[derive(Clone)]
pub struct Postman {
    mailer: Arc<dyn Mailer>,
    from: String,
    timeout: Duration,
}

impl Postman {
    /// Sends through `mailer`, giving up after `timeout`.
    pub fn new(mailer: Arc<dyn Mailer>, from: impl Into<String>, timeout: Duration) -> Self {
        Self {
            mailer,
            from: from.into(),
            timeout,
        }
    }

    /// The mailer the configuration names: the outbox folder or SES.
    pub fn from_config(config: &MailConfig) -> Self {
        let mailer: Arc<dyn Mailer> = match &config.mailer {
            MailerKind::Outbox(dir) => Arc::new(OutboxMailer::new(dir.clone(), &config.from)),
            MailerKind::Ses => Arc::new(SesMailer::new(&config.from)),
            MailerKind::Disabled => Arc::new(Disabled),
        };
        Self::new(mailer, config.from.clone(), config.send_timeout)
    }

    /// The sender address.
    pub fn from_address(&self) -> &str {
        &self.from
    }

    /// Sends `message`, waiting at most the configured bound.
    #[tracing::instrument(skip_all, fields(kind = message.kind, mailer = self.mailer.backend()))]
    pub async fn send(&self, message: &Message) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout, self.mailer.send(message)).await {
            Ok(Ok(())) => {
                tracing::info!("mail sent");
                Ok(())
            }
            Ok(Err(err)) => Err(SendError::Failed(err)),
            Err(_) => Err(SendError::TimedOut(self.timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stuck;

    #[async_trait]
    impl Mailer for Stuck {
        fn backend(&self) -> &'static str {
            "stuck"
        }

        async fn send(&self, _message: &Message) -> anyhow::Result<()> {
            std::future::pending::<()>().await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_silent_provider_is_given_up_on_in_time() {
        let postman = Postman::new(Arc::new(Stuck), "a@b.co", Duration::from_millis(50));
        let message = templates::login_code(
            &templates::Branding::default(),
            Email::parse("ann@example.com").expect("email"),
            "123456",
            Duration::from_secs(900),
        );
        let started = std::time::Instant::now();
        let result = postman.send(&message).await;
        assert!(matches!(result, Err(SendError::TimedOut(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn debug_never_shows_the_body() {
        let message = templates::login_code(
            &templates::Branding::default(),
            Email::parse("ann@example.com").expect("email"),
            "987654",
            Duration::from_secs(900),
        );
        assert!(!format!("{message:?}").contains("987654"));
    }
}
