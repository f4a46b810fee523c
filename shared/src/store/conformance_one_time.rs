//! Conformance cases, run on every backend.

use super::open;

mod cases {}
