//! Interim documents for reconciliation: what a period's documents would
//! hold if it closed at the end of a given day (period to date), built
//! exactly as a close builds them — same enrichment, rating and grouping —
//! but never posted (no outbox entry, status `interim`) and never final.
//! Each day's set is kept as a snapshot (`tenant·period·day` in the
//! `interim` tree), so finance can follow a period day by day and spot a
//! surprise before the close. `POST /v1/periods/{period}/interim[?date=]`
//! builds one; `posting.interim_daily` builds yesterday's every day.

use super::close::{rate_usages, usages_of_period};
use super::document::{self, Document, PostingStatus};
use super::line_exceptions::LineFailure;
use crate::enrich::Period;
use crate::error::{ApiError, ErrorCode};
use crate::masterdata;
use crate::plugins::registry::Registry;
use crate::rating::ChargeRecord;
use crate::store::{self, Store};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// One day's interim documents of a period.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InterimReport {
    pub tenant: String,
    pub period: String,
    /// The day the usage runs to (inclusive), `YYYY-MM-DD`.
    pub as_of: String,
    pub generated_at: DateTime<Utc>,
    pub documents: Vec<Document>,
    /// Lines these documents leave out because they could not be enriched
    /// or rated (a close would put each in the exception queue).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LineFailure>,
}

/// The day an interim runs to: `date` if given (it must lie in the
/// period), else today while the period runs, else its last day.
fn as_of_day(period: &Period, date: Option<&str>, now: DateTime<Utc>) -> Result<NaiveDate, ApiError> {
    let bad = |m: String| ApiError::field(ErrorCode::InvalidArgument, "date", m);
    let day = match date {
        Some(d) => {
            NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| bad(format!("{d:?} is not a date like 2026-11-05")))?
        }
        None if now < period.end => now.date_naive(),
        None => (period.end - chrono::Duration::days(1)).date_naive(),
    };
    let start = day.and_time(chrono::NaiveTime::MIN).and_utc();
    if start < period.start || start >= period.end {
        return Err(bad(format!("{day} is not a day of period {}", period.id)));
    }
    Ok(day)
}

/// Builds and stores the interim documents of `period_id` up to the end of
/// the day `date` (see `as_of_day`).
pub async fn build_interim(
    store: &Store,
    registry: &Registry,
    tenant: &str,
    period_id: &str,
    date: Option<&str>,
    now: DateTime<Utc>,
) -> Result<InterimReport, ApiError> {
    let period = Period::parse(period_id)?;
    let day = as_of_day(&period, date, now)?;
    let until = (day + chrono::Duration::days(1)).and_time(chrono::NaiveTime::MIN).and_utc();
    let (store2, registry2, tenant2) = (store.clone(), registry.clone(), tenant.to_string());
    let (documents, left_out) =
        tokio::task::spawn_blocking(move || -> Result<(Vec<Document>, Vec<LineFailure>), ApiError> {
            let history = masterdata::history::load(&store2, &tenant2)?;
            let failed = |m: String| ApiError::new(ErrorCode::FailedPrecondition, format!("no interim documents: {m}"));
            let (units, mut left_out) =
                usages_of_period(&store2, &history, &tenant2, &period, Some(until), now, |_| true)?;
            let (records, rating_failures) = rate_usages(&store2, &registry2, &tenant2, units, now);
            left_out.extend(rating_failures);
            let md = history.as_of(until - chrono::Duration::nanoseconds(1), now).map_err(ApiError::internal)?;
            let records: Vec<ChargeRecord> = records.into_iter().map(|(r, _)| r).collect();
            let mut docs =
                document::build_documents(&tenant2, &md, &period, 1, &records).map_err(|e| failed(e.to_string()))?;
            for d in &mut docs {
                d.id = interim_id(&d.id, &day);
                d.state.status = PostingStatus::Interim;
            }
            Ok((docs, left_out))
        })
        .await
        .map_err(ApiError::internal)??;
    let report = InterimReport {
        tenant: tenant.into(),
        period: period_id.into(),
        as_of: day.to_string(),
        generated_at: now,
        documents,
        left_out,
    };
    store.put(&store.interim, &store::key(&[tenant, period_id, &report.as_of]), &report)?;
    store.flush().await?;
    tracing::info!(tenant, period = period_id, as_of = %report.as_of, documents = report.documents.len(), "interim documents");
    Ok(report)
}

/// An interim document's id: `TGI-` and the digest of the final document's
/// id and the day, so it can never be taken for a posted document.
fn interim_id(final_id: &str, day: &NaiveDate) -> String {
    let id = document::document_id(final_id, &day.to_string(), "", "", "interim", 0);
    format!("TGI-{}", &id[3..])
}

/// Every stored interim of `period_id`, oldest day first.
pub fn list_interim(store: &Store, tenant: &str, period_id: &str) -> Result<Vec<InterimReport>, ApiError> {
    Period::parse(period_id)?;
    let mut prefix = store::key(&[tenant, period_id]);
    prefix.push(0);
    Ok(store.scan::<InterimReport>(&store.interim, &prefix)?.into_iter().map(|(_, r)| r).collect())
}

/// Whether the interim of `day` is stored.
pub fn has_interim(store: &Store, tenant: &str, period_id: &str, day: &str) -> Result<bool, ApiError> {
    Ok(store.interim.contains_key(store::key(&[tenant, period_id, day])).map_err(crate::store::StoreError::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_must_lie_in_the_period_and_defaults_to_today_or_its_last_day() {
        let may = Period::parse("2025-05").unwrap();
        let t = |x: &str| x.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(as_of_day(&may, None, t("2025-05-10T12:00:00Z")).unwrap().to_string(), "2025-05-10");
        assert_eq!(as_of_day(&may, None, t("2025-07-01T00:00:00Z")).unwrap().to_string(), "2025-05-31");
        assert_eq!(as_of_day(&may, Some("2025-05-01"), t("2025-07-01T00:00:00Z")).unwrap().to_string(), "2025-05-01");
        let e = as_of_day(&may, Some("2025-06-01"), t("2025-07-01T00:00:00Z")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("date"));
        assert!(as_of_day(&may, Some("31/05/2025"), t("2025-07-01T00:00:00Z")).is_err());
        assert_ne!(
            interim_id("TG-1", &NaiveDate::from_ymd_opt(2025, 5, 1).unwrap()),
            interim_id("TG-1", &NaiveDate::from_ymd_opt(2025, 5, 2).unwrap())
        );
    }
}
