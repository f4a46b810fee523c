//! The local mailer: each message becomes a JSON file in a folder (newest sorts last), and a
//! log line says where, so a developer reads the mail without any mail server.

use super::{Mailer, Message};
use anyhow::Context as _;
use async_trait::async_trait;
use serde_json::json;
use std::path::PathBuf;

/// Writes each message to `<dir>/<unix ms>-<ulid>-<kind>.json`.
#[derive(Debug, Clone)]
pub struct OutboxMailer {
    dir: PathBuf,
    from: String,
}

impl OutboxMailer {
    /// An outbox in `dir` (created on first send), sending as `from`.
    pub fn new(dir: PathBuf, from: &str) -> Self {
        Self {
            dir,
            from: from.to_owned(),
        }
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    fn backend(&self) -> &'static str {
        "outbox"
    }

    async fn send(&self, message: &Message) -> anyhow::Result<()> {
        let now = chrono::Utc::now();
        let id = ulid::Ulid::new().to_string().to_lowercase();
        let name = format!("{}-{id}-{}.json", now.timestamp_millis(), message.kind);
        let body = json!({
            "id": id,
            "kind": message.kind,
            "from": self.from,
            "to": message.to.as_str(),
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "sent_at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        tokio::fs::create_dir_all(&self.dir)
            .await
            .with_context(|| format!("cannot create the outbox folder {:?}", self.dir))?;
        let path = self.dir.join(name);
        let bytes = serde_json::to_vec_pretty(&body)?;
        // Written aside and renamed, so a reader never sees half a message.
        let partial = path.with_extension("part");
        tokio::fs::write(&partial, bytes)
            .await
            .with_context(|| format!("cannot write {partial:?}"))?;
        tokio::fs::rename(&partial, &path)
            .await
            .with_context(|| format!("cannot rename {partial:?}"))?;
        tracing::info!(path = %path.display(), subject = %message.subject, "mail written to the outbox");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;
    use crate::mail::templates;

    #[tokio::test]
    async fn each_message_is_one_readable_file() {
        let dir = std::env::temp_dir().join(format!("outbox-{}", ulid::Ulid::new()));
        let outbox = OutboxMailer::new(dir.clone(), "Us <no-reply@example.com>");
        let to = Email::parse("ann@example.com").expect("email");
        let message = templates::login_code(
            &templates::Branding::default(),
            to,
            "424242",
            std::time::Duration::from_secs(900),
        );
        outbox.send(&message).await.expect("sent");
        outbox.send(&message).await.expect("sent");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("outbox exists")
            .map(|entry| entry.expect("entry").path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 2);
        let mail: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&files[0]).expect("read")).expect("json");
        assert_eq!(mail["to"], "ann@example.com");
        assert_eq!(mail["kind"], "login_code");
        assert_eq!(mail["from"], "Us <no-reply@example.com>");
        assert!(mail["text"].as_str().expect("text").contains("424242"));
        std::fs::remove_dir_all(dir).ok();
    }
}
