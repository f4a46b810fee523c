//! Plain types and rules of Meterline, free of any I/O: what a user, an id or an email *is*.
//!
//! Everything that enters the system from outside is parsed into one of these types at the edge,
//! so the rest of the code never handles a raw, unvalidated string.

mod email;
mod ids;
mod password;
mod user;

pub use email::Email;
pub use ids::{SessionId, TokenId, UserId};
pub use password::{Password, PasswordAttempt};
pub use user::{DisplayName, User};

/// Why a value from a client was refused; carried to a 422 problem naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The request field the value came from, as the client named it.
    pub field: &'static str,
    /// A sentence a client developer can act on.
    pub message: String,
}

impl ValidationError {
    /// Builds the error for `field` with a human-readable `message`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
