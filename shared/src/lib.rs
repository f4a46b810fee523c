//! Meterline's core: everything the Lambda functions share.
//!
//! Dependency direction inside the crate: `http` -> `auth`, `store` -> `domain`. Handlers in
//! the function crates reach storage only through [`store::Store`], so every backend behaves
//! the same.

pub mod auth;
pub mod clock;
pub mod config;
pub mod domain;
pub mod store;
pub mod time_format;
