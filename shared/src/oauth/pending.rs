//! An authorization request between `/authorize` and `/callback`: kept server-side as a
//! one-time secret keyed by the hash of its `state`, so a state works once, for its provider,
//! within ten minutes, and the PKCE verifier never leaves the server.

use super::OAuthError;
use super::pkce::{PkceVerifier, state_hash};
use crate::store::{OneTimeRecord, Purpose};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How long a user has to come back from the provider.
pub(crate) const STATE_TTL_MINUTES: i64 = 10;

/// What the callback needs back: which provider the state is for, the verifier, the nonce.
#[derive(Serialize, Deserialize)]
pub(crate) struct Pending {
    /// The provider the request went to.
    pub(crate) provider: String,
    /// The PKCE code verifier.
    pub(crate) verifier: String,
    /// The OIDC nonce sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
}

impl Pending {
    /// The one-time record for `state`, valid from `now` for ten minutes.
    pub(crate) fn record(
        &self,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<OneTimeRecord, OAuthError> {
        let hash = state_hash(state);
        let payload =
            serde_json::to_string(self).map_err(|err| OAuthError::Internal(err.into()))?;
        Ok(OneTimeRecord {
            purpose: Purpose::OAuthState,
            subject: hash.as_str().to_owned(),
            secret_hash: hash,
            created_at: now,
            expires_at: now + Duration::minutes(STATE_TTL_MINUTES),
            attempts: 0,
            payload: Some(payload),
        })
    }

    /// Reads a record's payload back; one that does not parse is an unusable state.
    pub(crate) fn from_record(record: &OneTimeRecord) -> Result<Self, OAuthError> {
        record
            .payload
            .as_deref()
            .and_then(|payload| serde_json::from_str(payload).ok())
            .ok_or(OAuthError::InvalidState)
    }

    /// The verifier as a typed secret.
    pub(crate) fn verifier(&self) -> PkceVerifier {
        PkceVerifier::from_stored(self.verifier.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_is_keyed_by_the_state_hash() {
        let now = Utc::now();
        let pending = Pending {
            provider: "keycloak".into(),
            verifier: PkceVerifier::generate().expose().to_owned(),
            nonce: Some("n".into()),
        };
        let record = pending.record("the-state", now).expect("record");
        assert_eq!(record.purpose, Purpose::OAuthState);
        assert_eq!(record.subject, state_hash("the-state").as_str());
        assert_eq!(record.secret_hash, state_hash("the-state"));
        assert_eq!(record.expires_at - now, Duration::minutes(10));
        let back = Pending::from_record(&record).expect("payload");
        assert_eq!(back.provider, "keycloak");
        assert_eq!(back.verifier, pending.verifier);
        assert_eq!(back.nonce.as_deref(), Some("n"));
    }
}
