//! Opaque, prefixed, time-ordered identifiers (`usr_01j...`).
//!
//! The prefix tells a reader (and a support engineer reading a log) what kind of thing an id
//! names; the ULID body sorts by creation time, which keeps "newest first" listings cheap.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Mutex;

/// One monotonic ULID source per process: ids made in the same millisecond still sort in the
/// order they were made (a plain `Ulid::new()` randomises them within the millisecond).
static GENERATOR: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());

fn next_ulid() -> ulid::Ulid {
    let mut generator = GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Overflow needs 2^80 ids in one millisecond; fall back to a fresh random one.
    generator.generate().unwrap_or_else(|_| ulid::Ulid::new())
}

/// The OpenAPI schema of an id: a string of `prefix_` and a lower-case ULID, so clients and
/// contract tests know the shape without reading the code.
pub(crate) fn id_schema(
    prefix: &str,
    body_len: usize,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    let object = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^{prefix}_[0-9a-z]{{{body_len}}}$")))
        .build();
    utoipa::openapi::RefOr::T(Schema::Object(object))
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id, ordered after every id made earlier by this process.
            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, next_ulid().to_string().to_lowercase()))
            }

            /// Accepts only a well-formed id of this kind, so a mistyped path segment is a clean
            /// "not found" rather than a store query with garbage in it.
            pub fn parse(raw: &str) -> Option<Self> {
                let body = raw.strip_prefix(concat!($prefix, "_"))?;
                let ok = body.len() == 26 && ulid::Ulid::from_string(body).is_ok()
                    && body.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
                ok.then(|| Self(raw.to_owned()))
            }

            /// The id as text, for storage keys and JSON.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                id_schema($prefix, 26)
            }
        }

        impl utoipa::ToSchema for $name {}

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw).ok_or_else(|| format!("not a valid {} id", $prefix))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

prefixed_id!(
    /// Names a user account.
    UserId,
    "usr"
);
prefixed_id!(
    /// Names a login session: one refresh-token family and the access tokens issued from it.
    SessionId,
    "ses"
);
prefixed_id!(
    /// Names one access token (its JWT `jti`), so that token alone can be revoked.
    TokenId,
    "tok"
);

prefixed_id!(
    /// Names an organization (a tenant).
    OrgId,
    "org"
);
prefixed_id!(
    /// Names an API key (never the key itself).
    ApiKeyId,
    "key"
);
prefixed_id!(
    /// Names one audit-log entry.
    AuditEntryId,
    "aud"
);
prefixed_id!(
    /// Names a team inside an organization.
    TeamId,
    "team"
);
prefixed_id!(
    /// Names an invitation to join an organization.
    InvitationId,
    "inv"
);
prefixed_id!(
    /// Names one entry of a user's own security log.
    SecurityEventId,
    "sev"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_sort_by_time() {
        let a = UserId::generate();
        assert_eq!(UserId::parse(a.as_str()), Some(a.clone()));
        // Even within one millisecond, later ids sort after earlier ones.
        let burst: Vec<UserId> = (0..1000).map(|_| UserId::generate()).collect();
        assert!(burst.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(a < burst[0]);
        assert!(a.as_str().starts_with("usr_"));
    }

    #[test]
    fn foreign_or_malformed_ids_are_refused() {
        let session = SessionId::generate();
        assert_eq!(UserId::parse(session.as_str()), None);
        assert_eq!(UserId::parse("usr_"), None);
        assert_eq!(UserId::parse("usr_01JABCDEFGHJKMNPQRSTVWXYZ0"), None);
        assert_eq!(UserId::parse("usr_01jabcdefghjkmnpqrstvwxyz0x"), None);
    }
}
