//! Enrich: metering windows + master data → the canonical usage object of
//! one contract line over one billing period (fields as in
//! `../shared/DESIGN.md`), with its lineage: the windows it
//! sums, the event count and a digest of the event-id set.

pub mod unmatched;

use crate::error::{ApiError, ErrorCode};
use crate::eventlog::LogError;
use crate::masterdata::{ContractLine, MasterData};
use crate::metering::window::{self, WindowFilter, WindowRow};
use crate::metering::{Meter, MeterState};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Version of the windows → canonical usage transformation, kept in lineage.
pub const TRANSFORMATION_VERSION: u32 = 1;

/// A calendar-month billing period in UTC, e.g. `2026-11`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub timezone: String,
}

impl Period {
    /// The calendar month (UTC) holding `t`.
    pub fn containing(t: DateTime<Utc>) -> Period {
        Period::parse(&format!("{:04}-{:02}", t.year(), t.month())).unwrap_or_else(|_| Period {
            id: String::new(),
            start: t,
            end: t,
            timezone: "UTC".into(),
        })
    }

    /// Parses `YYYY-MM`.
    pub fn parse(id: &str) -> Result<Period, ApiError> {
        let bad =
            || ApiError::field(ErrorCode::InvalidArgument, "period", format!("{id:?} is not a month like 2026-11"));
        let (y, m) = id.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        let first = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
        let next = if m == 12 { NaiveDate::from_ymd_opt(y + 1, 1, 1) } else { NaiveDate::from_ymd_opt(y, m + 1, 1) }
            .ok_or_else(bad)?;
        let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default());
        Ok(Period { id: format!("{y:04}-{m:02}"), start: at(first), end: at(next), timezone: "UTC".into() })
    }

    /// The last day of the period, `YYYY-MM-DD`: the invoice date.
    pub fn last_day(&self) -> String {
        let d = (self.end - chrono::Duration::days(1)).date_naive();
        format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    }
}

/// One window aggregated into a canonical usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRef {
    /// `meter/customer/start[/dimension=value…]`.
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The window's aggregate (its sum, count, max, …).
    pub value: Decimal,
    pub events: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageLineage {
    pub windows: Vec<WindowRef>,
    pub event_count: u64,
    /// SHA-256 over the sorted event ids.
    pub event_ids_digest: String,
    pub transformation_version: u32,
}

/// The canonical usage object: what a rater rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalUsage {
    pub tenant: String,
    pub customer: String,
    pub customer_erp_account: String,
    pub legal_entity: String,
    pub contract_line: String,
    pub sku: String,
    pub erp_item: String,
    pub meter: String,
    pub currency: String,
    pub period: Period,
    pub quantity: Decimal,
    pub dimensions: BTreeMap<String, String>,
    pub params: serde_json::Value,
    pub lineage: UsageLineage,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("contract line {line}: {message}")]
    MasterData { line: String, message: String },
    #[error("window {window}: {message}")]
    Window { window: String, message: String },
}

/// A contract line's meter, active.
fn meter_of(store: &Store, tenant: &str, line: &ContractLine) -> Result<Meter, EnrichError> {
    let md_err = |message: String| EnrichError::MasterData { line: line.id.clone(), message };
    match window::load_meter(&store.eventlog, tenant, &line.meter)? {
        Some(m) if m.state == MeterState::Active => Ok(m),
        Some(_) => Err(md_err(format!("meter {} is still being built", line.meter))),
        None => Err(md_err(format!("unknown meter {}", line.meter))),
    }
}

/// Builds the canonical usage of `line` over `period`, and the source event ids.
pub fn canonical_usage(
    store: &Store,
    md: &MasterData,
    tenant: &str,
    line: &ContractLine,
    period: &Period,
) -> Result<(CanonicalUsage, Vec<String>), EnrichError> {
    let md_err = |message: String| EnrichError::MasterData { line: line.id.clone(), message };
    let customer = md.customer(&line.customer).ok_or_else(|| md_err(format!("unknown customer {}", line.customer)))?;
    let sku = md.sku(&line.sku).ok_or_else(|| md_err(format!("unknown sku {}", line.sku)))?;
    let meter = meter_of(store, tenant, line)?;
    let mut rows = Vec::new();
    let mut windows = Vec::new();
    let mut event_ids = Vec::new();
    for row in period_windows(store, tenant, &line.customer, &meter, period)? {
        if row.window.events == 0 {
            continue;
        }
        let (row, ids) = window_with_events(store, tenant, &meter, row)?;
        windows.push(WindowRef {
            id: row.id.clone(),
            start: row.start,
            end: row.end,
            value: row.window.value,
            events: row.window.events,
        });
        event_ids.extend(ids);
        rows.push(row);
    }
    let quantity = window::total(&store.eventlog, tenant, &meter, &rows)?.value;
    event_ids.sort();
    let mut h = Sha256::new();
    for id in &event_ids {
        h.update(id.as_bytes());
        h.update([0]);
    }
    let usage = CanonicalUsage {
        tenant: tenant.into(),
        customer: customer.id.clone(),
        customer_erp_account: customer.erp_account.clone(),
        legal_entity: customer.legal_entity.clone(),
        contract_line: line.id.clone(),
        sku: sku.id.clone(),
        erp_item: sku.erp_item.clone(),
        meter: line.meter.clone(),
        currency: line.currency.clone(),
        period: period.clone(),
        quantity,
        dimensions: BTreeMap::new(),
        params: line.params.clone(),
        lineage: UsageLineage {
            event_count: event_ids.len() as u64,
            windows,
            event_ids_digest: hex::encode(h.finalize()),
            transformation_version: TRANSFORMATION_VERSION,
        },
    };
    Ok((usage, event_ids))
}

/// The windows of a meter of a customer within a period.
fn period_windows(
    store: &Store,
    tenant: &str,
    customer: &str,
    meter: &Meter,
    period: &Period,
) -> Result<Vec<WindowRow>, EnrichError> {
    let filter = WindowFilter {
        customer: Some(customer.to_string()),
        from: Some(period.start),
        to: Some(period.end),
        ..WindowFilter::default()
    };
    Ok(window::windows(&store.eventlog, tenant, meter, &filter)?)
}

/// The metered quantity of a contract line's meter over a period, as it stands now.
pub fn period_total(store: &Store, tenant: &str, line: &ContractLine, period: &Period) -> Result<Decimal, EnrichError> {
    let meter = meter_of(store, tenant, line)?;
    let rows = period_windows(store, tenant, &line.customer, &meter, period)?;
    Ok(window::total(&store.eventlog, tenant, &meter, &rows)?.value)
}

/// A window and its event ids, read consistently: an event indexed between
/// the two reads shows as a count mismatch, and the read is repeated.
fn window_with_events(
    store: &Store,
    tenant: &str,
    meter: &Meter,
    first: WindowRow,
) -> Result<(WindowRow, Vec<String>), EnrichError> {
    let mut row = first;
    for _ in 0..5 {
        let ids = window::window_event_ids(&store.eventlog, tenant, meter, &row)?;
        if ids.len() as u64 == row.window.events {
            return Ok((row, ids));
        }
        let filter = WindowFilter {
            customer: Some(row.customer.clone()),
            from: Some(row.start),
            to: Some(row.end),
            dimensions: row.dimensions.clone(),
        };
        let again = window::windows(&store.eventlog, tenant, meter, &filter)?;
        row = again.into_iter().find(|r| r.id == row.id).unwrap_or(WindowRow { window: Default::default(), ..row });
    }
    Err(EnrichError::Window { window: row.id, message: "window and its event index keep disagreeing".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_calendar_months() {
        let p = Period::parse("2026-12").unwrap();
        assert_eq!(p.start.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(p.end.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(p.last_day(), "2026-12-31");
        assert!(Period::parse("2026-13").is_err());
        assert!(Period::parse("26-1").is_err());
    }
}
