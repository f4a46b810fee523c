//! The mails of the account lifecycle, each as plain text and HTML. Links point at the front
//! end (`APP_URL`), which posts the token back to the API.

use super::Message;
use crate::domain::Email;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// What every mail is signed with and links to.
#[derive(Debug, Clone)]
pub struct Branding {
    /// The product name.
    pub app_name: String,
    /// The front end's base URL, without a trailing slash.
    pub app_url: String,
}

impl Default for Branding {
    fn default() -> Self {
        Self {
            app_name: "Meterline".into(),
            app_url: "http://localhost:3000".into(),
        }
    }
}

/// "48 hours", "30 minutes": how long a link or code lives, in words.
fn lifetime(ttl: Duration) -> String {
    let minutes = ttl.as_secs().div_ceil(60);
    match minutes {
        m if m >= 120 && m % 60 == 0 => format!("{} hours", m / 60),
        1 => "1 minute".into(),
        m => format!("{m} minutes"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(brand: &Branding, paragraphs: &[String]) -> String {
    let body: String = paragraphs.iter().map(|p| format!("<p>{p}</p>\n")).collect();
    format!(
        "<!doctype html>\n<html><body style=\"font-family:sans-serif\">\n{body}<p>— {}</p>\n</body></html>\n",
        escape(&brand.app_name)
    )
}

/// The link that confirms the address: `{APP_URL}/verify-email?token=...`.
pub fn verify_email(brand: &Branding, to: Email, token: &str, ttl: Duration) -> Message {
    let link = format!("{}/verify-email?token={token}", brand.app_url);
    let name = &brand.app_name;
    Message {
        to,
        subject: format!("Confirm your email for {name}"),
        text: format!(
            "Confirm your email address by opening this link:\n\n{link}\n\nThe link works once and expires in {}.\nIf you did not sign up for {name}, ignore this mail.\n\n— {name}\n",
            lifetime(ttl)
        ),
        html: html(
            brand,
            &[
                "Confirm your email address:".into(),
                format!("<a href=\"{0}\">{0}</a>", escape(&link)),
                format!(
                    "The link works once and expires in {}. If you did not sign up for {}, ignore this mail.",
                    lifetime(ttl),
                    escape(name)
                ),
            ],
        ),
        kind: "verify_email",
    }
}

/// The link that sets a new password: `{APP_URL}/reset-password?token=...`.
pub fn password_reset(brand: &Branding, to: Email, token: &str, ttl: Duration) -> Message {
    let link = format!("{}/reset-password?token={token}", brand.app_url);
    let name = &brand.app_name;
    Message {
        to,
        subject: format!("Reset your {name} password"),
        text: format!(
            "Someone asked to reset the password of your {name} account. To choose a new one, open:\n\n{link}\n\nThe link works once and expires in {}. Resetting signs you out everywhere.\nIf it was not you, ignore this mail: your password stays as it is.\n\n— {name}\n",
            lifetime(ttl)
        ),
        html: html(
            brand,
            &[
                format!(
                    "Someone asked to reset the password of your {} account. To choose a new one, open:",
                    escape(name)
                ),
                format!("<a href=\"{0}\">{0}</a>", escape(&link)),
                format!(
                    "The link works once and expires in {}. Resetting signs you out everywhere. If it was not you, ignore this mail.",
                    lifetime(ttl)
                ),
            ],
        ),
        kind: "password_reset",
    }
}

/// A six-digit sign-in code.
pub fn login_code(brand: &Branding, to: Email, code: &str, ttl: Duration) -> Message {
    let name = &brand.app_name;
    Message {
        to,
        subject: format!("Your {name} sign-in code"),
        text: format!(
            "Your sign-in code is:\n\n{code}\n\nIt works once and expires in {}. Never share it: {name} will never ask you for it.\n\n— {name}\n",
            lifetime(ttl)
        ),
        html: html(
            brand,
            &[
                "Your sign-in code is:".into(),
                format!("<strong style=\"font-size:1.5em;letter-spacing:0.2em\">{code}</strong>"),
                format!(
                    "It works once and expires in {}. Never share it.",
                    lifetime(ttl)
                ),
            ],
        ),
        kind: "login_code",
    }
}

/// The notice that the password changed, so an owner who did not do it can react.
pub fn password_changed(brand: &Branding, to: Email, at: DateTime<Utc>) -> Message {
    let name = &brand.app_name;
    let when = at.format("%Y-%m-%d %H:%M UTC");
    Message {
        to,
        subject: format!("Your {name} password was changed"),
        text: format!(
            "The password of your {name} account was changed at {when}, and every other session was signed out.\nIf this was not you, reset your password at {}/forgot-password at once.\n\n— {name}\n",
            brand.app_url
        ),
        html: html(
            brand,
            &[
                format!(
                    "The password of your {} account was changed at {when}, and every other session was signed out.",
                    escape(name)
                ),
                format!(
                    "If this was not you, <a href=\"{0}/forgot-password\">reset your password</a> at once.",
                    escape(&brand.app_url)
                ),
            ],
        ),
        kind: "password_changed",
    }
}

/// An invitation to join an org: `{APP_URL}/invitations`, where the invitee (signed in with
/// this address, or after signing up with it) accepts or declines. The org's name is the
/// inviter's text, so it is escaped in HTML and nothing in the mail is a secret.
pub fn invitation(
    brand: &Branding,
    to: Email,
    org_name: &str,
    role: &str,
    expires_at: DateTime<Utc>,
) -> Message {
    let name = &brand.app_name;
    let link = format!("{}/invitations", brand.app_url);
    let until = expires_at.format("%Y-%m-%d %H:%M UTC");
    Message {
        subject: format!("You are invited to join {org_name} on {name}"),
        text: format!(
            "You are invited to join the organization \"{org_name}\" on {name} as {role}.\nTo accept or decline, sign in (or sign up) with this address ({to}) and open:\n\n{link}\n\nThe invitation expires at {until}. If you do not know this organization, ignore this mail: nothing happens unless you accept.\n\n— {name}\n"
        ),
        html: html(
            brand,
            &[
                format!(
                    "You are invited to join the organization &quot;{}&quot; on {} as {role}.",
                    escape(org_name),
                    escape(name)
                ),
                format!(
                    "To accept or decline, sign in (or sign up) with this address and open <a href=\"{0}\">{0}</a>.",
                    escape(&link)
                ),
                format!(
                    "The invitation expires at {until}. If you do not know this organization, ignore this mail: nothing happens unless you accept."
                ),
            ],
        ),
        to,
        kind: "invitation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> Email {
        Email::parse("ann@example.com").expect("email")
    }

    #[test]
    fn links_carry_the_token_and_say_how_long_they_live() {
        let brand = Branding::default();
        let mail = verify_email(&brand, ann(), "abc.def", Duration::from_secs(48 * 3600));
        assert!(
            mail.text
                .contains("http://localhost:3000/verify-email?token=abc.def")
        );
        assert!(mail.text.contains("48 hours"));
        assert!(mail.html.contains("verify-email?token=abc.def"));
        let reset = password_reset(&brand, ann(), "t", Duration::from_secs(1800));
        assert!(reset.text.contains("/reset-password?token=t"));
        assert!(reset.text.contains("30 minutes"));
    }

    #[test]
    fn an_invitation_names_the_org_escaped_in_html() {
        let mail = invitation(
            &Branding::default(),
            ann(),
            "<b>Acme</b>",
            "admin",
            Utc::now(),
        );
        assert_eq!(mail.kind, "invitation");
        assert!(mail.text.contains("<b>Acme</b>") && mail.text.contains("/invitations"));
        assert!(mail.html.contains("&lt;b&gt;Acme&lt;/b&gt;") && !mail.html.contains("<b>Acme"));
    }

    #[test]
    fn the_product_name_is_escaped_in_html() {
        let brand = Branding {
            app_name: "<Acme & Co>".into(),
            ..Branding::default()
        };
        let mail = password_changed(&brand, ann(), Utc::now());
        assert!(mail.html.contains("&lt;Acme &amp; Co&gt;"));
        assert!(!mail.html.contains("<Acme"));
    }
}
