//! Signed one-purpose tokens for mailed links (verify email, reset password): HS256 JWTs whose
//! audience names the purpose, so one kind can never pass as another or as an access token.
//! The signature and expiry refuse forgeries and stale links without a lookup; single use is
//! the store's part (the token's `jti` is kept hashed as a one-time secret).

use super::TokenRejection;
use crate::config::Config;
use crate::domain::{TokenId, UserId};
use crate::store::Purpose;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct PurposeClaims {
    sub: UserId,
    iat: i64,
    exp: i64,
    jti: TokenId,
    iss: String,
    aud: String,
}

/// A token's subject and id once its signature, purpose and expiry check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeGrant {
    /// The account it is for.
    pub user: UserId,
    /// The token's id: its one-time record holds this id's hash.
    pub jti: TokenId,
}

/// Signs and checks purpose tokens with the JWT secret.
#[derive(Clone)]
pub struct PurposeTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    audience: String,
}

impl PurposeTokens {
    /// Keys from the configuration (the JWT secret, issuer and audience).
    pub fn from_config(config: &Config) -> Self {
        let secret = config.jwt_secret.expose().as_bytes();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        }
    }

    fn audience(&self, purpose: Purpose) -> String {
        format!("{}:{}", self.audience, purpose.as_str())
    }

    /// A token for `user` and `purpose`, valid from `now` for `ttl`.
    pub fn issue(
        &self,
        purpose: Purpose,
        user: &UserId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> anyhow::Result<(String, PurposeGrant)> {
        let claims = PurposeClaims {
            sub: user.clone(),
            iat: now.timestamp(),
            exp: (now + ttl).timestamp(),
            jti: TokenId::generate(),
            iss: self.issuer.clone(),
            aud: self.audience(purpose),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((
            token,
            PurposeGrant {
                user: claims.sub,
                jti: claims.jti,
            },
        ))
    }

    /// Checks signature, algorithm, issuer, purpose and expiry at `now`.
    pub fn verify(
        &self,
        purpose: Purpose,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<PurposeGrant, TokenRejection> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[self.audience(purpose)]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud", "jti"]);
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<PurposeClaims>(token, &self.decoding, &validation)
            .map_err(|_| TokenRejection::Invalid)?;
        if data.claims.exp <= now.timestamp() {
            return Err(TokenRejection::Expired);
        }
        Ok(PurposeGrant {
            user: data.claims.sub,
            jti: data.claims.jti,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn tokens() -> PurposeTokens {
        PurposeTokens::from_config(&Config::from_vars(&HashMap::new()).expect("config"))
    }

    #[test]
    fn a_token_serves_its_purpose_until_it_expires() {
        let tokens = tokens();
        let now = Utc::now();
        let user = UserId::generate();
        let (token, grant) = tokens
            .issue(Purpose::PasswordReset, &user, now, Duration::minutes(30))
            .expect("sign");
        assert_eq!(grant.user, user);
        assert_eq!(
            tokens.verify(Purpose::PasswordReset, &token, now),
            Ok(grant.clone())
        );
        assert_eq!(
            tokens.verify(Purpose::PasswordReset, &token, now + Duration::minutes(30)),
            Err(TokenRejection::Expired)
        );
    }

    #[test]
    fn a_token_of_another_purpose_or_an_access_token_is_invalid() {
        let tokens = tokens();
        let now = Utc::now();
        let user = UserId::generate();
        let (reset, _) = tokens
            .issue(Purpose::PasswordReset, &user, now, Duration::minutes(30))
            .expect("sign");
        assert_eq!(
            tokens.verify(Purpose::VerifyEmail, &reset, now),
            Err(TokenRejection::Invalid)
        );
        let config = Config::from_vars(&HashMap::new()).expect("config");
        let access = super::super::TokenKeys::from_config(&config)
            .expect("keys")
            .issue(&user, &crate::domain::SessionId::generate(), now)
            .expect("sign")
            .token;
        assert_eq!(
            tokens.verify(Purpose::VerifyEmail, &access, now),
            Err(TokenRejection::Invalid)
        );
        assert_eq!(
            tokens.verify(Purpose::VerifyEmail, "not-a-token", now),
            Err(TokenRejection::Invalid)
        );
    }
}
