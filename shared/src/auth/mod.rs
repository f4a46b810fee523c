//! Account security: password hashing, access tokens, refresh tokens, and the rules that tie
//! them together (signup, login with lockout, rotation with reuse detection, logout).

mod accounts;
mod api_key;
mod jwt;
mod lifecycle;
mod password;
mod purpose_token;
mod refresh;
mod stripe;

pub use accounts::{AccessContext, Accounts, AuthError, LockoutPolicy, TokenPair};
pub use api_key::{ApiKeyHash, ApiKeySecret, DISPLAY_PREFIX_CHARS, KEY_PREFIX};
pub use jwt::{AccessClaims, IssuedAccessToken, TokenKeys, TokenRejection};
pub use lifecycle::{Lifecycle, LifecycleParts, LifecyclePolicy};
pub use password::{PasswordHash, PasswordHasher};
pub use purpose_token::{PurposeGrant, PurposeTokens};
pub use refresh::{RefreshSecret, TokenHash};
pub use stripe::{
    DEFAULT_TOLERANCE_SECS, MAX_SIGNATURE_HEADER_BYTES, SignatureError, WebhookSecret, sign,
    verify_signature,
};
