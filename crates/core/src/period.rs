//! Billing periods: calendar months in UTC (`2026-11`), optionally
//! anchored on another day of the month.

use crate::error::{ApiError, ErrorCode};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// A calendar-month billing period in UTC, e.g. `2026-11`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub timezone: String,
}

impl Period {
    /// The billing period holding `t`: the month (UTC) starting on
    /// `anchor_day` (default 1) in which `t` falls.
    pub fn containing(t: DateTime<Utc>, anchor_day: Option<u32>) -> Period {
        let month = |y: i32, m: u32| Period::parse(&format!("{y:04}-{m:02}")).map(|p| p.anchored(anchor_day));
        let fallback = || Period { id: String::new(), start: t, end: t, timezone: "UTC".into() };
        match month(t.year(), t.month()) {
            Ok(p) if p.start <= t => p,
            Ok(_) if t.month() == 1 => month(t.year() - 1, 12).unwrap_or_else(|_| fallback()),
            Ok(_) => month(t.year(), t.month() - 1).unwrap_or_else(|_| fallback()),
            Err(_) => fallback(),
        }
    }

    /// Parses `YYYY-MM`: the calendar month in UTC.
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

    /// The period of the same id for a line whose periods start on
    /// `anchor_day`: `2026-11` anchored on the 15th runs from 15 November
    /// to 15 December.
    pub fn anchored(&self, anchor_day: Option<u32>) -> Period {
        let shift = chrono::Duration::days(i64::from(anchor_day.unwrap_or(1).clamp(1, 28)) - 1);
        Period { start: self.start + shift, end: self.end + shift, ..self.clone() }
    }

    /// The last day of the period, `YYYY-MM-DD`: the invoice date.
    pub fn last_day(&self) -> String {
        let d = (self.end - chrono::Duration::days(1)).date_naive();
        format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    }
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
        let anchored = p.anchored(Some(15));
        assert_eq!(anchored.start.to_rfc3339(), "2026-12-15T00:00:00+00:00");
        assert_eq!(anchored.end.to_rfc3339(), "2027-01-15T00:00:00+00:00");
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(Period::containing(t("2027-01-10T00:00:00Z"), Some(15)).id, "2026-12");
        assert_eq!(Period::containing(t("2027-01-15T00:00:00Z"), Some(15)).id, "2027-01");
        assert_eq!(Period::containing(t("2027-01-15T00:00:00Z"), None).id, "2027-01");
    }
}
