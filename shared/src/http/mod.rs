//! HTTP conventions every function shares: the problem+json error, request ids, extractors
//! that turn bad input into 4xx problems, the bearer-token caller, and the common layers.

mod app;
mod bearer;
mod client_ip;
mod error;
mod extract;
mod health;
mod metered;
pub mod openapi;
mod origin;
pub mod request_id;
mod throttle;

pub use app::service;
pub use bearer::Caller;
pub use client_ip::ClientIp;
pub use error::{ApiError, FieldError, Problem};
pub use extract::{
    Json, JsonOrForm, List, OptionalJson, PageQuery, Paging, Path, Query, json_object,
};
pub use health::HEALTH_TTL;
pub use metered::{
    API_KEY_HEADER, MeterRejection, MeteringLayer, MeteringService, api_key, metered_headers,
    rate_headers,
};
pub use origin::Origin;
pub use throttle::throttle_by_ip;
