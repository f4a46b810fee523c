//! Request throttling. For now: the per-client-IP throttle in front of the auth endpoints.

mod ip;

pub use ip::IpRateLimiter;
