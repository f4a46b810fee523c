//! The user account as the API shows it.

use super::{Email, UserId, ValidationError};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A user account, exactly the fields a client may see (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    /// The account's id.
    pub id: UserId,
    /// The normalised login email.
    pub email: Email,
    /// An optional display name.
    pub name: Option<String>,
    /// Whether the email has been confirmed (always false until verification exists).
    pub email_verified: bool,
    /// When the account was created.
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
}

/// A display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Validates an optional name; blank means "no name".
    pub fn parse(raw: Option<String>) -> Result<Option<Self>, ValidationError> {
        match raw.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(name) => Ok(Some(Self(short_text("name", name)?))),
        }
    }

    /// The name as text.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A trimmed, non-empty, single-line text of at most 100 characters: the rule for every name.
pub fn short_text(field: &'static str, raw: &str) -> Result<String, ValidationError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    if text.chars().count() > 100 {
        return Err(ValidationError::new(
            field,
            "must be at most 100 characters",
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(text.to_owned())
}
