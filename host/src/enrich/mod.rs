//! Enrichment over the store: a tenant's windows in the event index as
//! the [`UsageSource`](tollgate_core::enrich::UsageSource) of [`tollgate_core::enrich`], which turns windows and
//! master data into canonical usage; and the unmatched-usage queue.

pub mod unmatched;
mod usage;

pub use tollgate_core::enrich::{
    CanonicalUsage, LinePart, Period, Segment, TRANSFORMATION_VERSION, UsageLineage, WindowRef, line_parts, part_id,
    segments,
};
pub(crate) use usage::read;
pub use usage::{EnrichError, ReadError, StoredUsage, canonical_usage, usage_total};
