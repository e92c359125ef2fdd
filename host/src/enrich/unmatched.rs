//! Unmatched usage: metered usage that no contract line can bill yet, with
//! the reason and the team that can fix it. Nothing is dropped: the events
//! and windows stay, and the queue is computed from the current master
//! data and meters, so usage leaves it — and is rated at the next close —
//! as soon as the missing piece exists.

use super::{EnrichError, Period};
use crate::masterdata::history::History;
use crate::metering::MeterState;
use crate::metering::window::{self, WindowFilter};
use crate::store::Store;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Why usage cannot be billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Events of a type no meter reads.
    NoMeter,
    /// A customer id the master data does not know.
    UnknownCustomer,
    /// A known customer with usage on a meter none of its contract lines prices.
    NoContractLine,
    /// A contract line's SKU has no ERP item yet.
    SkuWithoutErpItem,
    /// The meter stopped counting after its stored windows could not take
    /// an event (damaged data); its events are kept.
    MeterFailed,
}

/// Who fixes it (`../shared/DESIGN.md`: product owns meters, finance owns
/// customers and contracts, the ERP team owns ERP item mappings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    Product,
    Finance,
    Erp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmatched {
    pub reason: Reason,
    pub owner: Owner,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract_line: Option<String>,
    /// Events waiting (for `no-meter`: over the whole log).
    pub events: u64,
    /// Windows waiting in the period.
    pub windows: u64,
}

/// The usage of `period` (calendar month) that no contract line bills, and
/// events no meter reads. A customer counts as known, and a meter as priced,
/// when the master data says so at any time during the period.
pub fn unmatched(
    store: &Store,
    history: &History,
    tenant: &str,
    period: &Period,
    now: DateTime<Utc>,
) -> Result<Vec<Unmatched>, EnrichError> {
    let index = &store.eventlog;
    let segments = super::segments(history, period.start, period.end, now)?;
    let known = |customer: &str| segments.iter().any(|s| s.data.customer(customer).is_some());
    let priced = |customer: &str, meter: &str| {
        segments.iter().any(|s| s.data.contract_lines.iter().any(|l| l.customer == customer && l.meter == meter))
    };
    let mut out = Vec::new();
    for (event_type, events) in window::unmetered(index, tenant).map_err(super::read)? {
        out.push(Unmatched {
            reason: Reason::NoMeter,
            owner: Owner::Product,
            message: format!("no meter reads events of type {event_type:?}; define one with POST /v1/meters"),
            customer: None,
            meter: None,
            event_type: Some(event_type),
            contract_line: None,
            events,
            windows: 0,
        });
    }
    let filter = WindowFilter { from: Some(period.start), to: Some(period.end), ..WindowFilter::default() };
    for meter in window::load_meters(index, tenant).map_err(super::read)? {
        if meter.state == MeterState::Failed {
            out.push(Unmatched {
                reason: Reason::MeterFailed,
                owner: Owner::Product,
                message: format!(
                    "meter {:?} stopped counting: {}; its events are kept, contract lines on it are not billed",
                    meter.id,
                    meter.failure.as_deref().unwrap_or("no reason recorded")
                ),
                customer: None,
                meter: Some(meter.id.clone()),
                event_type: Some(meter.event_type.clone()),
                contract_line: None,
                events: 0,
                windows: 0,
            });
        }
        if meter.state != MeterState::Active {
            continue;
        }
        let mut by_customer: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for row in window::windows(index, tenant, &meter, &filter).map_err(super::read)? {
            if row.window.events > 0 {
                let c = by_customer.entry(row.customer).or_default();
                c.0 += row.window.events;
                c.1 += 1;
            }
        }
        for (customer, (events, windows)) in by_customer {
            let (reason, message) = if !known(&customer) {
                (Reason::UnknownCustomer, format!("customer {customer:?} is not in the master data"))
            } else if !priced(&customer, &meter.id) {
                (Reason::NoContractLine, format!("no contract line of {customer:?} prices meter {:?}", meter.id))
            } else {
                continue;
            };
            out.push(Unmatched {
                reason,
                owner: Owner::Finance,
                message,
                customer: Some(customer),
                meter: Some(meter.id.clone()),
                event_type: Some(meter.event_type.clone()),
                contract_line: None,
                events,
                windows,
            });
        }
    }
    // Priced usage whose SKU the ERP cannot take yet.
    let mut seen = BTreeSet::new();
    for segment in &segments {
        for line in &segment.data.contract_lines {
            let Some(sku) = segment.data.sku(&line.sku) else { continue };
            if sku.erp_item.is_some() || !seen.insert(line.id.clone()) {
                continue;
            }
            let Some(meter) = window::load_meter(index, tenant, &line.meter).map_err(super::read)? else { continue };
            let filter = WindowFilter { customer: Some(line.customer.clone()), ..filter.clone() };
            let rows: Vec<_> = window::windows(index, tenant, &meter, &filter)
                .map_err(super::read)?
                .into_iter()
                .filter(|r| r.window.events > 0)
                .collect();
            if rows.is_empty() {
                continue;
            }
            out.push(Unmatched {
                reason: Reason::SkuWithoutErpItem,
                owner: Owner::Erp,
                message: format!(
                    "SKU {:?} of contract line {:?} has no ERP item; set skus[].erp_item",
                    sku.id, line.id
                ),
                customer: Some(line.customer.clone()),
                meter: Some(line.meter.clone()),
                event_type: Some(meter.event_type.clone()),
                contract_line: Some(line.id.clone()),
                events: rows.iter().map(|r| r.window.events).sum(),
                windows: rows.len() as u64,
            });
        }
    }
    Ok(out)
}
