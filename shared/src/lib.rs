//! Meterline's core: everything the Lambda functions share.
//!
//! The layers, each using only those above it:
//!
//! | layer | modules | what it holds |
//! |---|---|---|
//! | domain | [`domain`], [`clock`], [`time_format`] | types and pure rules: ids, roles, plans, invoices, usage events |
//! | crypto | [`auth`] (passwords, tokens, key secrets, Stripe signatures) | secrets made, hashed and checked in constant time |
//! | services | [`auth`] (accounts, lifecycle), [`orgs`], [`invitations`], [`teams`], [`api_keys`], [`metering`], [`billing`], [`oauth`] | the rules of each endpoint group, over the ports below |
//! | adapters | [`store`] (SQLite, Postgres, DynamoDB), [`ratelimit`] (in-process, Redis), [`usage`] (direct, SQS), [`mail`] (outbox, SES) | the ports and their backends, each proven by one conformance suite |
//! | http | [`http`] | extractors, the one error shape, request ids, metering middleware, OpenAPI |
//! | wiring | [`config`], [`state`], [`lambda`], [`telemetry`] | configuration from the environment, the composition root, the Lambda bootstrap |
//!
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
