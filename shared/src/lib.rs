//! Meterline's core: everything the Lambda functions share.
//!
//! Dependency direction inside the crate: `http` -> `auth`, `store`, `ratelimit` -> `domain`.
//! Handlers in the function crates reach storage only through [`store::Store`], so every
//! backend behaves the same.

pub mod api_keys;
pub mod auth;
pub mod billing;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod invitations;
pub mod lambda;
pub mod mail;
pub mod metering;
pub mod oauth;
pub mod orgs;
pub mod ratelimit;
pub mod state;
pub mod store;
pub mod teams;
pub mod telemetry;
pub mod time_format;
pub mod usage;

pub use config::Config;
pub use state::AppState;
