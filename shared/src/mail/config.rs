//! Mail settings: which mailer, the sender, and the links mails point to.

use crate::config::{AppEnv, ConfigError, Env};
use std::path::PathBuf;
use std::time::Duration;

/// Which mailer sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailerKind {
    /// Files in a folder (development and tests).
    Outbox(PathBuf),
    /// Amazon SES v2 (AWS).
    Ses,
    /// No sender configured (`MAIL_FROM` unset in production): every send fails with a logged
    /// error, so functions that never mail need no mail settings.
    Disabled,
}

/// The mail settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailConfig {
    /// `MAILER`: `outbox` (default outside production) or `ses` (default in production);
    /// `MAIL_OUTBOX_DIR` is the outbox folder (default `outbox`).
    pub mailer: MailerKind,
    /// `MAIL_FROM`: the sender, e.g. `Acme <no-reply@acme.com>` (an SES-verified identity);
    /// unset in production disables mail.
    pub from: String,
    /// `APP_URL`: the front end the links in mails open (`{APP_URL}/verify-email?token=...`).
    pub app_url: String,
    /// `APP_NAME`: the product name mails are signed with.
    pub app_name: String,
    /// `MAIL_SEND_TIMEOUT_MS`: how long a request waits for the provider (default 3000).
    pub send_timeout: Duration,
}

impl MailConfig {
    /// Reads the mail variables. In production mail goes through SES once `MAIL_FROM` names a
    /// sender, and then `APP_URL` must be https; without a sender, mail is disabled.
    pub(crate) fn from_env(env: &Env<'_>, app_env: AppEnv) -> Result<Self, ConfigError> {
        let production = app_env == AppEnv::Production;
        let refuse = |variable: &'static str, reason: &str| ConfigError {
            variable: variable.into(),
            reason: reason.into(),
        };
        let default_mailer = if production { "ses" } else { "outbox" };
        let mailer = match env.get("MAILER").map(str::trim).unwrap_or(default_mailer) {
            "ses" => MailerKind::Ses,
            "outbox" if production => {
                return Err(refuse(
                    "MAILER",
                    "outbox is for development; use ses when APP_ENV=production",
                ));
            }
            "outbox" => {
                MailerKind::Outbox(PathBuf::from(env.non_empty("MAIL_OUTBOX_DIR", "outbox")?))
            }
            other => return Err(refuse("MAILER", &format!("{other:?} is not ses or outbox"))),
        };
        let (mailer, from) = match env
            .get("MAIL_FROM")
            .map(str::trim)
            .filter(|raw| !raw.is_empty())
        {
            Some(from) => (mailer, from.to_owned()),
            None if production => (MailerKind::Disabled, String::new()),
            None => (mailer, "Meterline <no-reply@localhost>".to_owned()),
        };
        if from.contains(['\r', '\n']) {
            return Err(refuse("MAIL_FROM", "must be one line"));
        }
        let app_url = env
            .get("APP_URL")
            .map(str::trim)
            .filter(|raw| !raw.is_empty())
            .unwrap_or("http://localhost:3000")
            .trim_end_matches('/')
            .to_owned();
        // Without mail there are no links to check.
        let scheme_ok = app_url.starts_with("https://")
            || (!production && app_url.starts_with("http://"))
            || mailer == MailerKind::Disabled;
        if !scheme_ok {
            return Err(refuse(
                "APP_URL",
                "must be an https:// URL (http:// is allowed outside production)",
            ));
        }
        Ok(Self {
            mailer,
            from,
            app_url,
            app_name: env.non_empty("APP_NAME", "Meterline")?,
            send_timeout: Duration::from_millis(env.ranged(
                "MAIL_SEND_TIMEOUT_MS",
                3000,
                100..=8000,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::HashMap;

    fn production(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut vars: HashMap<String, String> = [
            ("APP_ENV", "production"),
            ("JWT_SECRET", "a-long-production-secret-0123456789abcdef"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        vars.retain(|_, v| !v.is_empty());
        Config::from_vars(&vars)
    }

    #[test]
    fn production_mails_through_ses_once_a_sender_is_named() {
        let quiet = production(&[]).expect("config");
        assert_eq!(quiet.mail.mailer, MailerKind::Disabled);
        let mailing = production(&[
            ("MAIL_FROM", "Acme <no-reply@acme.com>"),
            ("APP_URL", "https://app.acme.com/"),
        ])
        .expect("config");
        assert_eq!(mailing.mail.mailer, MailerKind::Ses);
        assert_eq!(mailing.mail.app_url, "https://app.acme.com");
    }

    #[test]
    fn production_refuses_an_outbox_plain_http_links_and_unverifiable_logins() {
        let variable = |extra: &[(&str, &str)]| production(extra).err().map(|e| e.variable);
        assert_eq!(
            variable(&[("MAIL_FROM", "a@acme.com"), ("MAILER", "outbox")]).as_deref(),
            Some("MAILER")
        );
        assert_eq!(
            variable(&[
                ("MAIL_FROM", "a@acme.com"),
                ("APP_URL", "http://app.acme.com")
            ])
            .as_deref(),
            Some("APP_URL")
        );
        assert_eq!(
            variable(&[("REQUIRE_VERIFIED_EMAIL", "true")]).as_deref(),
            Some("REQUIRE_VERIFIED_EMAIL")
        );
        assert_eq!(
            variable(&[("MAIL_FROM", "a@acme.com\r\nBcc: x@evil.com")]).as_deref(),
            Some("MAIL_FROM")
        );
    }

    #[test]
    fn development_writes_to_an_outbox_by_default() {
        let config = Config::from_vars(&HashMap::new()).expect("config");
        assert_eq!(
            config.mail.mailer,
            MailerKind::Outbox(PathBuf::from("outbox"))
        );
        assert_eq!(config.mail.app_url, "http://localhost:3000");
    }
}
