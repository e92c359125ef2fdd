//! Business time as an input: the domain and the store never read the
//! system clock; whoever runs them (the gateway's workflows) hands them a
//! [`Clock`], which tests can hold still or move.

use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Where the current instant comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// A clock shared by every part of a gateway.
pub type SharedClock = Arc<dyn Clock>;
