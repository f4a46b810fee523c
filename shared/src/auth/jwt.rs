//! Access tokens: HS256 JWTs with `sub, iat, exp, jti, iss, aud` (+ `sid`, the session), the
//! algorithm pinned so a token cannot choose how it is checked.

use crate::config::Config;
use crate::domain::{SessionId, TokenId, UserId};
use chrono::{DateTime, Duration, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The claims Meterline writes into, and requires of, an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user.
    pub sub: UserId,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// This token's id, so it alone can be revoked at logout.
    pub jti: TokenId,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The session (refresh-token family) the token was issued from.
    pub sid: SessionId,
}

/// A freshly signed access token.
#[derive(Debug)]
pub struct IssuedAccessToken {
    /// The compact JWT.
    pub token: String,
    /// Its claims.
    pub claims: AccessClaims,
}

/// Why a presented access token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    /// Well-formed and signed by us, but past `exp`.
    Expired,
    /// Anything else: bad signature, wrong algorithm, issuer or audience, missing claims.
    Invalid,
}

/// Signs and checks access tokens with the configured secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl TokenKeys {
    /// Keys and rules from the configuration.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let secret = config.jwt_secret.expose().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.jwt_issuer]);
        validation.set_audience(&[&config.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud", "jti"]);
        // Expiry is checked against the injected clock below, not the library's wall clock.
        validation.validate_exp = false;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            ttl: Duration::from_std(config.access_token_ttl)?,
        })
    }

    /// How long a new access token lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs a token for `user` in `session`, valid from `now` for the configured lifetime.
    pub fn issue(
        &self,
        user: &UserId,
        session: &SessionId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<IssuedAccessToken> {
        let claims = AccessClaims {
            sub: user.clone(),
            iat: now.timestamp(),
            exp: (now + self.ttl).timestamp(),
            jti: TokenId::generate(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sid: session.clone(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedAccessToken { token, claims })
    }

    /// Checks signature, algorithm, issuer, audience and expiry at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenRejection> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenRejection::Invalid)?;
        if data.claims.exp <= now.timestamp() {
            return Err(TokenRejection::Expired);
        }
        Ok(data.claims)
    }
}

/// The expiry of a token as a time.
pub(crate) fn expires_at(claims: &AccessClaims) -> DateTime<Utc> {
    Utc.timestamp_opt(claims.exp, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn keys(pairs: &[(&str, &str)]) -> TokenKeys {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TokenKeys::from_config(&Config::from_vars(&vars).expect("config")).expect("keys")
    }

    #[test]
    fn round_trips_and_expires_on_the_clock() {
        let keys = keys(&[]);
        let now = Utc::now();
        let issued = keys
            .issue(&UserId::generate(), &SessionId::generate(), now)
            .expect("sign");
        let claims = keys.verify(&issued.token, now).expect("valid");
        assert_eq!(claims.sub, issued.claims.sub);
        assert_eq!(claims.exp - claims.iat, 900);
        let later = now + Duration::seconds(901);
        assert_eq!(
            keys.verify(&issued.token, later).err(),
            Some(TokenRejection::Expired)
        );
    }

    #[test]
    fn other_secret_issuer_or_audience_is_invalid() {
        let now = Utc::now();
        let ours = keys(&[]);
        for theirs in [
            keys(&[("JWT_SECRET", "another-secret-entirely-0123456789")]),
            keys(&[("JWT_ISSUER", "someone-else")]),
            keys(&[("JWT_AUDIENCE", "another-api")]),
        ] {
            let token = theirs
                .issue(&UserId::generate(), &SessionId::generate(), now)
                .expect("sign")
                .token;
            assert_eq!(
                ours.verify(&token, now).err(),
                Some(TokenRejection::Invalid)
            );
        }
        assert_eq!(
            ours.verify("garbage", now).err(),
            Some(TokenRejection::Invalid)
        );
    }

    #[test]
    fn the_algorithm_is_pinned() {
        let now = Utc::now();
        let ours = keys(&[]);
        let claims = ours
            .issue(&UserId::generate(), &SessionId::generate(), now)
            .expect("sign")
            .claims;
        let secret = crate::config::DEVELOPMENT_JWT_SECRET.as_bytes();
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("sign");
        assert_eq!(
            ours.verify(&hs512, now).err(),
            Some(TokenRejection::Invalid)
        );
    }
}
