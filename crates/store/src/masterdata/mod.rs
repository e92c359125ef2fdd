//! Master data in the store: a tenant's versions are loaded, written
//! (checked by [`tollgate_core::masterdata::plan`]) and fsynced here; the
//! model, its checks and its history are [`tollgate_core::masterdata`]'s.

pub mod history;
mod versions;

pub use tollgate_core::masterdata::*;
pub use versions::{Written, migrate_unversioned, write};
