//! The event log's own tests (admission, retry hints, dedup retention).

use super::index::Index;
use super::shared::{MAX_RETRY_AFTER_MS, MIN_RETRY_AFTER_MS, RETRY_AFTER_MS, next_pace, retry_hint_ms};
use super::{EventLog, LogError, LogOptions, StoredEvent, Verdict};
use super::{codec, query};
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The system clock, for these tests (the store itself reads no clock).
#[derive(Debug)]
struct WallClock;

impl tollgate_core::clock::Clock for WallClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

fn wall_clock() -> tollgate_core::clock::SharedClock {
    std::sync::Arc::new(WallClock)
}

fn event(id: &str, received_at: DateTime<Utc>) -> StoredEvent {
    let mut e = codec::tests_support::sample(id);
    e.revision = 0;
    e.received_at = received_at;
    e
}

async fn open(dir: &std::path::Path, retention: Option<chrono::Duration>) -> EventLog {
    let mut options = LogOptions::new(dir.join("wal"), wall_clock());
    options.dedup_retention = retention;
    options.sweep_every = Some(Duration::from_millis(100));
    EventLog::open(Index::open(&dir.join("index")).unwrap(), options).unwrap()
}

/// A log whose backlog holds 100 events, in a fresh directory.
fn small_log(name: &str, admission_wait: Duration) -> (PathBuf, EventLog) {
    let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = LogOptions::new(dir.join("wal"), wall_clock());
    options.max_unindexed_events = 100;
    options.admission_wait = admission_wait;
    let log = EventLog::open(Index::open(&dir.join("index")).unwrap(), options).unwrap();
    (dir, log)
}

/// Events `e<from>` … `e<from + n - 1>`, received now.
fn batch(from: usize, n: usize) -> Vec<StoredEvent> {
    let now = Utc::now();
    (from..from + n).map(|i| event(&format!("e{i}"), now)).collect()
}

#[test]
fn the_retry_hint_is_the_time_the_indexer_needs_to_make_room() {
    // Not measured yet: the default.
    assert_eq!(retry_hint_ms(5_000, 0), RETRY_AFTER_MS);
    // 100 000 records a second: room for 5 000 more in 50 ms.
    assert_eq!(retry_hint_ms(5_000, 100_000), 50);
    // Bounded both ways: never a busy loop, never minutes.
    assert_eq!(retry_hint_ms(10, 100_000), MIN_RETRY_AFTER_MS);
    assert_eq!(retry_hint_ms(1_000_000, 100), MAX_RETRY_AFTER_MS);
    // The pace: the first batch sets it, later ones move it by a quarter.
    let pace = next_pace(0, 10_000, Duration::from_millis(100));
    assert_eq!(pace, 100_000);
    assert_eq!(next_pace(pace, 10_000, Duration::from_millis(50)), 125_000);
    assert_eq!(next_pace(pace, 0, Duration::from_secs(1)), 75_000);
    assert!(next_pace(0, 0, Duration::ZERO) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_log_hints_at_the_time_its_measured_indexer_needs() {
    let (dir, log) = small_log("pace", LogOptions::new(PathBuf::new(), wall_clock()).admission_wait);
    // Before anything is indexed the pace is unknown: the default hint.
    log.hold_indexing(true);
    assert_eq!(log.append("t", batch(0, 80)).await.unwrap().len(), 80);
    match log.append("t", batch(80, 50)).await {
        Err(LogError::Saturated { retry_after_ms, .. }) => assert_eq!(retry_after_ms, RETRY_AFTER_MS),
        other => panic!("not saturated: {other:?}"),
    }
    // Once a batch is indexed, the hint is the time that pace needs for the excess.
    log.hold_indexing(false);
    log.sync().await.unwrap();
    let pace = log.shared.index_rate.load(Ordering::Relaxed);
    assert!(pace > 0, "the indexer's pace was not measured");
    log.hold_indexing(true);
    assert_eq!(log.append("t", batch(200, 80)).await.unwrap().len(), 80);
    match log.append("t", batch(280, 50)).await {
        Err(LogError::Saturated { queued, limit, retry_after_ms }) => {
            assert_eq!(retry_after_ms, retry_hint_ms(queued + 50 - limit, pace))
        }
        other => panic!("not saturated: {other:?}"),
    }
    log.hold_indexing(false);
    log.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_room_briefly_and_the_waiting_room_is_bounded() {
    // Long enough never to run out in this test: room comes from the indexer.
    let (dir, log) = small_log("admission", Duration::from_secs(60));
    log.hold_indexing(true);
    assert_eq!(log.append("t", batch(0, 80)).await.unwrap().len(), 80);
    // 80 + 50 > 100: this one waits for room instead of being refused.
    let waiter = tokio::spawn({
        let (log, events) = (log.clone(), batch(80, 50));
        async move { log.append("t", events).await }
    });
    while log.shared.admitting.load(Ordering::Acquire) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The waiting room holds at most a backlog's worth: 50 + 60 > 100 is refused at once.
    match log.append("t", batch(200, 60)).await {
        Err(LogError::Saturated { limit: 100, .. }) => {}
        other => panic!("not refused: {other:?}"),
    }
    assert!(!waiter.is_finished(), "the first request still waits");
    // A caller that gives up while waiting leaves the waiting room.
    let gives_up = tokio::spawn({
        let (log, events) = (log.clone(), batch(300, 40));
        async move { log.append("t", events).await }
    });
    while log.shared.admitting.load(Ordering::Acquire) != 90 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    gives_up.abort();
    assert!(gives_up.await.unwrap_err().is_cancelled());
    assert_eq!(log.shared.admitting.load(Ordering::Acquire), 50);
    // The indexer makes room: the waiting request is admitted and stored.
    log.hold_indexing(false);
    assert_eq!(waiter.await.unwrap().unwrap(), vec![Verdict::Accepted; 50]);
    assert_eq!(log.shared.admitting.load(Ordering::Acquire), 0);
    log.sync().await.unwrap();
    log.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_forgets_an_id_only_after_the_configured_retention() {
    let dir = std::env::temp_dir().join(format!("tollgate-retention-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let now = Utc::now();
    for (retention, resent) in [(None, Verdict::Duplicate), (Some(chrono::Duration::days(1)), Verdict::Accepted)] {
        let _ = std::fs::remove_dir_all(&dir);
        let log = open(&dir, retention).await;
        // Received two days ago; indexed before the resend is decided.
        assert_eq!(
            log.append("t", vec![event("e", now - chrono::Duration::days(2))]).await.unwrap(),
            [Verdict::Accepted]
        );
        log.sync().await.unwrap();
        assert_eq!(log.append("t", vec![event("e", now)]).await.unwrap(), [resent], "retention {retention:?}");
        // Within the retention an id is still a duplicate.
        log.sync().await.unwrap();
        assert_eq!(log.append("t", vec![event("e", now)]).await.unwrap(), [Verdict::Duplicate]);
        log.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_deletes_expired_dedup_entries_and_keeps_fresh_ones_and_the_events() {
    let dir = std::env::temp_dir().join(format!("tollgate-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let now = Utc::now();
    let log = open(&dir, Some(chrono::Duration::days(1))).await;
    let old = event("old", now - chrono::Duration::days(2));
    let fresh = event("fresh", now);
    assert_eq!(log.append("t", vec![old, fresh]).await.unwrap(), [Verdict::Accepted, Verdict::Accepted]);
    log.sync().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while query::event(log.index(), "t", "old").unwrap().is_some() {
        assert!(Instant::now() < deadline, "the expired dedup entry was never swept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(query::event(log.index(), "t", "fresh").unwrap().is_some());
    let page = query::events(log.index(), "t", &query::EventFilter::default(), 10, None).unwrap();
    let mut ids: Vec<_> = page.events.iter().map(|e| e.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["fresh", "old"]);
    log.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
