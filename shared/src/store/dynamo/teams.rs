//! Teams on DynamoDB.

use super::DynamoStore;
use crate::store::TeamStore;

impl TeamStore for DynamoStore {}
