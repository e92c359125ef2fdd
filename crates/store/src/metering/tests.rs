//! Metering's own tests: windows under updates, corrections and builds.

use super::meter::MeterSpec;
use super::update::Overlay;
use super::*;
use crate::eventlog::index::Index;
use crate::eventlog::{StoredEvent, codec, keys};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::str::FromStr;

fn meter(agg: &str, value: Option<&str>) -> Meter {
    let mut spec = serde_json::json!({"id": "m", "event_type": "t", "aggregation": agg});
    if let Some(v) = value {
        spec["value"] = v.into();
    }
    let mut m = serde_json::from_value::<MeterSpec>(spec).unwrap().validate(Utc::now()).unwrap();
    m.state = MeterState::Active;
    m
}

fn event(lsn: u64, minute: u32, q: &str, user: &str) -> StoredEvent {
    let mut e = codec::tests_support::sample(&format!("e{lsn}"));
    e.lsn = lsn;
    e.customer = "c".into();
    e.meter = "t".into();
    e.time = DateTime::parse_from_rfc3339(&format!("2026-11-03T10:{minute:02}:00Z")).unwrap().with_timezone(&Utc);
    e.quantity = Decimal::from_str(q).unwrap();
    e.dimensions = [("user".to_string(), user.to_string())].into();
    e
}

/// Applies (event, add?) steps, each in its own batch, and reads the window.
fn run(index: &Index, m: &Meter, steps: &[(&StoredEvent, bool)]) -> MeterWindow {
    for (e, add) in steps {
        let mut ov = Overlay::new(index);
        ov.update("t", m, e, *add).unwrap();
        let mut b = index.batch();
        ov.write(&mut b).unwrap();
        b.commit().unwrap();
    }
    let rows = window::windows(index, "t", m, &WindowFilter::default()).unwrap();
    assert_eq!(rows.len(), 1);
    rows[0].window.clone()
}

#[test]
fn every_aggregation_adds_and_takes_out_exactly_in_any_order() {
    let dir = std::env::temp_dir().join(format!("tollgate-metering-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let index = Index::open(&dir).unwrap();
    let a = event(1, 5, "2.5", "ann");
    let b = event(2, 50, "7", "bob");
    let c = event(3, 20, "2.50", "ann");
    let d = event(4, 10, "1", "dan");
    let e = event(5, 40, "4", "eve");
    // (aggregation, value path, value with all five, then after taking
    // out b, then d, then a: each removal of an extreme or of the latest
    // must find the next one among what is left)
    let cases = [
        // Values read back normalised, however they were accumulated.
        ("sum", None, ["17", "10", "9", "6.5"]),
        ("count", None, ["5", "4", "3", "2"]),
        ("min", None, ["1", "1", "2.5", "2.5"]),
        ("max", None, ["7", "4", "4", "4"]),
        ("unique_count", Some("dimensions.user"), ["4", "3", "2", "2"]),
        ("unique_count", Some("quantity"), ["4", "3", "2", "2"]),
        ("latest", None, ["7", "4", "4", "4"]),
    ];
    for (i, (agg, value, expected)) in cases.into_iter().enumerate() {
        let mut m = meter(agg, value);
        m.id = format!("m{i}");
        for order in [[&a, &b, &c, &d, &e], [&e, &d, &c, &b, &a], [&c, &a, &e, &b, &d]] {
            let steps: Vec<_> = order.iter().map(|e| (*e, true)).collect();
            let w = run(&index, &m, &steps);
            assert_eq!((w.value.to_string(), w.events), (expected[0].to_string(), 5), "{agg} {value:?} all");
            for (n, gone) in [&b, &d, &a].into_iter().enumerate() {
                let w = run(&index, &m, &[(gone, false)]);
                assert_eq!(
                    (w.value.to_string(), w.events),
                    (expected[n + 1].to_string(), 4 - n as u64),
                    "{agg} {value:?} without {}",
                    gone.id
                );
            }
            let w = run(&index, &m, &[(&c, false), (&e, false)]);
            assert_eq!((w.value, w.events, w.latest), (crate::money::Quantity::ZERO, 0, None), "{agg} emptied");
            // Nothing of the window's members is left behind.
            let members = index.prefix(&keys::meter_members_prefix("t", &m.id)).count();
            assert_eq!(members, 0, "{agg} members left");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
