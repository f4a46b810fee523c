//! Teams on SQL.

use super::SqlStore;
use crate::store::TeamStore;

impl TeamStore for SqlStore {}
