//! Passwords as they arrive from clients. Neither type ever prints its content.

use super::ValidationError;
use std::fmt;

/// The shortest password a new account may choose.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The longest password accepted, which also bounds the hashing work one request can cause.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// A new password that meets the account rules (10 to 128 characters).
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Checks the length rules; `field` names the request field in the error.
    pub fn parse(field: &'static str, raw: String) -> Result<Self, ValidationError> {
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(ValidationError::new(
                field,
                format!("must be at least {MIN_PASSWORD_CHARS} characters"),
            ));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(ValidationError::new(
                field,
                format!("must be at most {MAX_PASSWORD_CHARS} characters"),
            ));
        }
        Ok(Self(raw))
    }

    /// The secret itself, for the hasher only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A password typed at login: not held to the rules of a new one (they may have changed), only
/// bounded so a huge body cannot buy a huge hash computation.
#[derive(Clone)]
pub struct PasswordAttempt(String);

impl PasswordAttempt {
    /// Wraps the attempt; `None` when it is too long to be any account's password.
    pub fn new(raw: String) -> Option<Self> {
        (raw.chars().count() <= MAX_PASSWORD_CHARS).then_some(Self(raw))
    }

    /// A stand-in for an attempt too long to check: hashing it still costs the usual work.
    pub fn placeholder() -> Self {
        Self(String::new())
    }

    /// The secret itself, for the hasher only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordAttempt(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_rules_count_characters_not_bytes() {
        assert!(Password::parse("password", "a".repeat(9)).is_err());
        assert!(Password::parse("password", "a".repeat(10)).is_ok());
        assert!(Password::parse("password", "é".repeat(128)).is_ok());
        assert!(Password::parse("password", "a".repeat(129)).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let password = Password::parse("password", "hunter2hunter2".into()).expect("valid");
        assert!(!format!("{password:?}").contains("hunter2"));
    }
}
