//! Metering: usage events → windows, per meter.
//!
//! A tenant defines meters ([`meter::MeterSpec`], `POST /v1/meters`): which
//! event type a meter reads, what it takes from each event (`count`,
//! `quantity` or a dimension), how it aggregates (sum, count, min, max,
//! unique_count, latest), which dimensions split its windows and how long a
//! window is (default an hour, UTC, dividing a day).
//!
//! Windows are updated incrementally ([`update`]) in the same atomic index
//! batch that stores an event (see `crate::eventlog`), so a window never
//! disagrees with the event log: a late event updates its own window
//! whatever its age, and a correction or retraction takes the replaced
//! revision out of its window. A new meter's windows are built once from
//! the events already stored. Reads are in [`window`].

pub mod meter;
#[cfg(test)]
mod tests;
pub mod update;
pub mod window;

pub use meter::{Aggregation, Meter, MeterSpec, MeterState, Meters, TenantMeters};
pub use window::{MeterWindow, Total, WindowFilter, WindowRow};
