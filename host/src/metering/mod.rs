//! Metering: hourly windows per (tenant, customer, meter), pure functions.
//!
//! A window is the exact sum and count of its events. Windows are updated in
//! the same atomic index batch that indexes an event (see `crate::eventlog`),
//! so a window never disagrees with the event log; a late event simply
//! updates its own hour, whatever its age, and a correction or retraction
//! takes the replaced revision out of its window. Sums are order-independent
//! (tested below).

use crate::money::{self, DecimalError};
use chrono::{DateTime, Timelike, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The aggregate of one hour of one meter of one customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub sum: Decimal,
    pub count: u64,
}

impl Window {
    /// Adds one event's quantity, exactly.
    pub fn apply(&self, quantity: Decimal) -> Result<Window, DecimalError> {
        Ok(Window { sum: money::exact_add(self.sum, quantity)?, count: self.count + 1 })
    }

    /// Takes out one event's quantity (it was corrected or retracted).
    pub fn remove(&self, quantity: Decimal) -> Result<Window, DecimalError> {
        Ok(Window { sum: money::exact_sub(self.sum, quantity)?, count: self.count.saturating_sub(1) })
    }
}

/// The hour bucket of an instant, as `YYYY-MM-DDTHH:00Z` (sorts by time).
pub fn hour_of(t: DateTime<Utc>) -> String {
    let h = t.with_minute(0).and_then(|t| t.with_second(0)).and_then(|t| t.with_nanosecond(0)).unwrap_or(t);
    h.format("%Y-%m-%dT%H:00Z").to_string()
}

/// The hour bucket's start.
pub fn hour_start(hour: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&hour.replace(":00Z", ":00:00Z")).ok().map(|t| t.with_timezone(&Utc))
}

/// A window's id in lineage: `customer/meter/hour`.
pub fn window_id(customer: &str, meter: &str, hour: &str) -> String {
    format!("{customer}/{meter}/{hour}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::str::FromStr;

    fn windows(events: &[(&str, &str)]) -> BTreeMap<String, Window> {
        let mut m: BTreeMap<String, Window> = BTreeMap::new();
        for (time, q) in events {
            let t = DateTime::parse_from_rfc3339(time).unwrap().with_timezone(&Utc);
            let w = m.entry(hour_of(t)).or_default();
            *w = w.apply(Decimal::from_str(q).unwrap()).unwrap();
        }
        m
    }

    #[test]
    fn buckets_by_utc_hour() {
        let t = DateTime::parse_from_rfc3339("2026-11-03T14:59:59.999+01:00").unwrap().with_timezone(&Utc);
        assert_eq!(hour_of(t), "2026-11-03T13:00Z");
        assert_eq!(hour_start("2026-11-03T13:00Z").unwrap().to_rfc3339(), "2026-11-03T13:00:00+00:00");
    }

    #[test]
    fn order_does_not_change_windows() {
        let events = [
            ("2026-11-03T10:05:00Z", "1.5"),
            ("2026-11-03T10:55:00Z", "2.25"),
            ("2026-11-03T11:00:00Z", "7"),
            ("2026-11-01T00:00:00Z", "0.000000000001"),
            ("2026-11-03T10:30:00Z", "100"),
        ];
        let forward = windows(&events);
        // Every rotation and the reversal give the same windows.
        for r in 0..events.len() {
            let mut e = events.to_vec();
            e.rotate_left(r);
            assert_eq!(windows(&e), forward);
            e.reverse();
            assert_eq!(windows(&e), forward);
        }
        assert_eq!(forward["2026-11-03T10:00Z"], Window { sum: Decimal::from_str("103.75").unwrap(), count: 3 });
        let w = &forward["2026-11-03T10:00Z"];
        assert_eq!(
            w.remove(Decimal::from_str("100").unwrap()).unwrap(),
            Window { sum: Decimal::from_str("3.75").unwrap(), count: 2 }
        );
    }
}
