//! Posting documents: the model and how charges become documents are
//! [`tollgate_core::document`]'s.

pub use tollgate_core::document::*;
