//! The store's windows as the core's usage source: canonical usage for a tenant's period.

use super::{CanonicalUsage, LinePart, Period};
use crate::eventlog::LogError;
use crate::masterdata::ContractLine;
use crate::metering::Meter;
use crate::metering::window::{self, WindowFilter, WindowRow};
use crate::money::Quantity;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};

/// A failed read of the store behind enrichment.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Why a contract line's usage cannot be enriched.
pub type EnrichError = tollgate_core::enrich::EnrichError<ReadError>;

/// A failed read as an enrichment error.
pub(crate) fn read(e: impl Into<ReadError>) -> EnrichError {
    EnrichError::Read(e.into())
}

/// A tenant's meters and windows in the event index.
pub struct StoredUsage<'a> {
    pub store: &'a Store,
    pub tenant: &'a str,
}

impl tollgate_core::enrich::UsageSource for StoredUsage<'_> {
    type Error = ReadError;

    fn meter(&self, id: &str) -> Result<Option<Meter>, ReadError> {
        Ok(window::load_meter(&self.store.eventlog, self.tenant, id)?)
    }

    fn windows(
        &self,
        customer: &str,
        meter: &Meter,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<WindowRow>, ReadError> {
        let filter = WindowFilter {
            customer: Some(customer.to_string()),
            from: Some(from),
            to: Some(to),
            ..WindowFilter::default()
        };
        Ok(window::windows(&self.store.eventlog, self.tenant, meter, &filter)?)
    }

    /// An event indexed between the two reads shows as a count mismatch,
    /// and the read is repeated.
    fn window_with_events(&self, meter: &Meter, first: WindowRow) -> Result<(WindowRow, Vec<String>), EnrichError> {
        let mut row = first;
        for _ in 0..5 {
            let ids = window::window_event_ids(&self.store.eventlog, self.tenant, meter, &row).map_err(read)?;
            if ids.len() as u64 == row.window.events {
                return Ok((row, ids));
            }
            let filter = WindowFilter {
                customer: Some(row.customer.clone()),
                from: Some(row.start),
                to: Some(row.end),
                dimensions: row.dimensions.clone(),
            };
            let again = window::windows(&self.store.eventlog, self.tenant, meter, &filter).map_err(read)?;
            row = again.into_iter().find(|r| r.id == row.id).unwrap_or(WindowRow { window: Default::default(), ..row });
        }
        Err(EnrichError::Window { window: row.id, message: "window and its event index keep disagreeing".into() })
    }

    fn total(&self, meter: &Meter, rows: &[WindowRow]) -> Result<Quantity, ReadError> {
        Ok(window::total(&self.store.eventlog, self.tenant, meter, rows)?.value)
    }
}

/// Builds the canonical usage of one part of a contract line — one per
/// legal entity its usage is billed by — and the source event ids of each.
pub fn canonical_usage(
    store: &Store,
    tenant: &str,
    part: &LinePart,
    period: &Period,
) -> Result<Vec<(CanonicalUsage, Vec<String>)>, EnrichError> {
    tollgate_core::enrich::canonical_usage(&StoredUsage { store, tenant }, tenant, part, period)
}

/// The metered quantity of a contract line's meter over `[from, to)`, as it stands now.
pub fn usage_total(
    store: &Store,
    tenant: &str,
    line: &ContractLine,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Quantity, EnrichError> {
    tollgate_core::enrich::usage_total(&StoredUsage { store, tenant }, line, from, to)
}
