//! The close schedule (`posting.close_schedule`): each configured tenant's
//! previous month is closed by itself once the scheduled day and hour of
//! the next month have come, exactly as `POST /v1/periods/{period}/close`
//! would close it (everything acknowledged so far is metered first; a
//! period closed already is left alone). A close that fails (no contract
//! lines, a rater error) is logged and tried again at the next check.
//! With `interim_daily`, the previous day's interim documents
//! ([`super::interim`]) are built once for each tenant.

use super::{Poster, close_period};
use crate::clock::SharedClock;
use crate::config::{CloseSchedule, ErpTargetConfig};
use crate::enrich::Period;
use crate::eventlog::EventLog;
use crate::plugins::registry::Registry;
use crate::store::{self, Store};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The period due for closing at `now`: the previous month, once the
/// schedule's day and hour of the current month have passed.
pub fn due_period(now: DateTime<Utc>, schedule: &CloseSchedule) -> Option<Period> {
    let month = Period::containing(now, None);
    let due_at = month.start
        + chrono::Duration::days(i64::from(schedule.day.clamp(1, 28)) - 1)
        + chrono::Duration::hours(i64::from(schedule.hour.min(23)));
    (now >= due_at).then(|| Period::containing(month.start - chrono::Duration::seconds(1), None))
}

/// Everything a scheduled close needs.
pub struct Scheduler {
    pub store: Store,
    pub registry: Registry,
    pub targets: Arc<BTreeMap<String, ErpTargetConfig>>,
    pub log: EventLog,
    pub poster: Poster,
    pub tenants: Vec<String>,
    pub schedule: CloseSchedule,
    /// Business time: which month is over, which day is done.
    pub clock: SharedClock,
}

impl Scheduler {
    /// Checks every `check_every_s` until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.check(self.clock.now()).await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(self.schedule.check_every_s)) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    async fn check(&self, now: DateTime<Utc>) {
        if self.schedule.interim_daily {
            self.interim(now).await;
        }
        let Some(period) = due_period(now, &self.schedule) else { return };
        for tenant in &self.tenants {
            match self.store.get::<super::PeriodClose>(&self.store.periods, &store::key(&[tenant, &period.id])) {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(tenant, period = %period.id, error = %e, "scheduled close: reading the period");
                    continue;
                }
            }
            if let Err(e) = self.log.sync().await {
                tracing::error!(tenant, error = %e, "scheduled close: waiting for metering");
                continue;
            }
            match close_period(&self.store, &self.registry, &self.targets, tenant, &period.id, now).await {
                Ok(report) => {
                    tracing::info!(tenant, period = %period.id, documents = report.documents.len(), "scheduled close");
                    self.poster.wake();
                }
                Err(e) => {
                    tracing::warn!(tenant, period = %period.id, error = %e.message, "scheduled close failed; will retry")
                }
            }
        }
    }
}

impl Scheduler {
    /// Builds each tenant's interim documents of the day before `now`, once.
    async fn interim(&self, now: DateTime<Utc>) {
        let yesterday = now - chrono::Duration::days(1);
        let (period, day) = (Period::containing(yesterday, None), yesterday.date_naive().to_string());
        for tenant in &self.tenants {
            match super::interim::has_interim(&self.store, tenant, &period.id, &day) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(tenant, error = %e.message, "daily interim: reading the store");
                    continue;
                }
            }
            if let Err(e) = self.log.sync().await {
                tracing::error!(tenant, error = %e, "daily interim: waiting for metering");
                continue;
            }
            let built =
                super::interim::build_interim(&self.store, &self.registry, tenant, &period.id, Some(&day), now).await;
            if let Err(e) = built {
                tracing::warn!(tenant, period = %period.id, %day, error = %e.message, "daily interim failed; will retry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_month_is_due_from_the_scheduled_day_and_hour() {
        let s = CloseSchedule { day: 3, hour: 6, check_every_s: 60, interim_daily: false };
        let t = |x: &str| x.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(due_period(t("2026-12-03T05:59:59Z"), &s), None);
        assert_eq!(due_period(t("2026-12-03T06:00:00Z"), &s).map(|p| p.id), Some("2026-11".into()));
        assert_eq!(due_period(t("2027-01-20T00:00:00Z"), &s).map(|p| p.id), Some("2026-12".into()));
    }
}
