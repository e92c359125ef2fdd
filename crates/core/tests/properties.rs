//! Properties of the pure rules, over generated input (proptest).
//!
//! Windows: the same events — sent in any order, some twice, with
//! corrections and retractions interleaved — give the same windows for
//! every aggregation as counting only each event's last revision once.
//! The log's decision per event is the core's [`event::decide`]; a window
//! update is [`window::add`] / [`window::remove`], as in the store.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use tollgate_core::event::{self, EventInput, StoredEvent, Verdict};
use tollgate_core::meter::{Meter, MeterSpec};
use tollgate_core::window::{self, MemoryMembers, MeterWindow};

/// One revision of one event as a client sends it.
#[derive(Debug, Clone)]
struct Revision {
    id: usize,
    revision: u32,
    retract: bool,
    customer: usize,
    cents: u64,
    user: usize,
    region: usize,
}

fn base() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
}

impl Revision {
    /// Every (id, revision) has its own time: `latest` has no ties, so its
    /// answer does not depend on the order of arrival.
    fn stored(&self) -> StoredEvent {
        let time = base() + Duration::minutes(7 * (self.id as i64 * 8 + i64::from(self.revision)));
        let input = EventInput {
            id: format!("e{}", self.id),
            revision: self.revision,
            retract: self.retract,
            customer: format!("c{}", self.customer),
            meter: "calls".into(),
            time: Some((time.timestamp(), 0)),
            quantity: format!("{}.{:02}", self.cents / 100, self.cents % 100),
            dimensions: HashMap::from([
                ("user".to_string(), format!("u{}", self.user)),
                ("region".to_string(), format!("r{}", self.region)),
            ]),
            source: String::new(),
        };
        event::validate(input, base() + Duration::days(400)).expect("generated events are valid").0
    }
}

fn meters() -> Vec<Meter> {
    [
        ("sum", "quantity"),
        ("count", "count"),
        ("min", "quantity"),
        ("max", "quantity"),
        ("latest", "quantity"),
        ("unique_count", "dimensions.user"),
    ]
    .into_iter()
    .map(|(aggregation, value)| {
        let spec: MeterSpec = serde_json::from_value(serde_json::json!({
            "id": aggregation, "event_type": "calls", "aggregation": aggregation, "value": value,
            "group_by": ["region"],
        }))
        .unwrap();
        spec.validate(base()).unwrap()
    })
    .collect()
}

type WindowKey = (String, DateTime<Utc>, Vec<String>);

/// What a window shows and keeps, without the lsns (which follow the
/// order of arrival).
type Comparable = (u64, u64, String, Option<u64>, BTreeMap<Vec<u8>, u64>, Vec<(u64, String)>);

/// A meter's windows as the store keeps them: the window and its members.
#[derive(Default)]
struct Windows(BTreeMap<WindowKey, (MeterWindow, MemoryMembers)>);

impl Windows {
    fn count(&mut self, m: &Meter, e: &StoredEvent, add: bool) {
        let key = (e.customer.clone(), m.window.start_of(e.time), m.group(e).into_iter().map(String::from).collect());
        let (w, members) = self.0.entry(key).or_default();
        let done = if add { window::add(w, m, e, members) } else { window::remove(w, m, e, members) };
        done.expect("no window of generated events fails");
    }

    fn comparable(&self) -> BTreeMap<WindowKey, Comparable> {
        self.0
            .iter()
            .filter(|(_, (w, _))| w.events > 0 || w.skipped > 0)
            .map(|(k, (w, m))| {
                let latest = m.latest.iter().map(|((at, _), v)| (*at, v.normalize().to_string())).collect();
                (k.clone(), (w.events, w.skipped, w.value.to_string(), w.latest.map(|l| l.0), m.values.clone(), latest))
            })
            .collect()
    }
}

/// The log and the meters: each event decided against the current revision
/// of its id, a replaced revision counted out, the new one counted in.
fn through_the_log(arrivals: &[StoredEvent], meters: &[Meter]) -> Vec<Windows> {
    let mut current: HashMap<String, StoredEvent> = HashMap::new();
    let mut windows: Vec<Windows> = meters.iter().map(|_| Windows::default()).collect();
    for (lsn, e) in arrivals.iter().enumerate() {
        let stored = current.get(&e.id);
        if event::decide(stored.map(|c| (c.revision, c.digest.as_str())), e) != Verdict::Accepted {
            continue;
        }
        let e = StoredEvent { lsn: lsn as u64 + 1, ..e.clone() };
        for (m, w) in meters.iter().zip(&mut windows) {
            if let Some(old) = stored.filter(|old| !old.retracted) {
                w.count(m, old, false);
            }
            if !e.retracted {
                w.count(m, &e, true);
            }
        }
        current.insert(e.id.clone(), e);
    }
    windows
}

fn histories() -> impl Strategy<Value = Vec<Revision>> {
    let revision = (0usize..3, 0u64..100_000, 0usize..4, 0usize..2, any::<bool>());
    proptest::collection::vec(proptest::collection::vec(revision, 1..4), 1..10).prop_map(|ids| {
        ids.into_iter()
            .enumerate()
            .flat_map(|(id, revisions)| {
                revisions.into_iter().enumerate().map(move |(rev, (customer, cents, user, region, retract))| Revision {
                    id,
                    revision: rev as u32,
                    // The original is never a retraction.
                    retract: retract && rev > 0,
                    customer,
                    cents,
                    user,
                    region,
                })
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn windows_do_not_depend_on_order_duplicates_or_superseded_revisions(
        (revisions, arrivals) in histories().prop_flat_map(|revisions| {
            // Every revision is sent once or twice, in any order.
            let sent = (Just(revisions.clone()), proptest::collection::vec(any::<bool>(), revisions.len()));
            sent.prop_flat_map(|(revisions, twice)| {
                let mut sends: Vec<Revision> = revisions.clone();
                sends.extend(revisions.iter().zip(&twice).filter(|(_, t)| **t).map(|(r, _)| r.clone()));
                (Just(revisions), Just(sends).prop_shuffle())
            })
        })
    ) {
        let meters = meters();
        let arrivals: Vec<StoredEvent> = arrivals.iter().map(Revision::stored).collect();
        let got = through_the_log(&arrivals, &meters);

        // Each id's last revision, counted once, unless it is a retraction.
        let mut last: BTreeMap<usize, &Revision> = BTreeMap::new();
        for r in &revisions {
            if last.get(&r.id).is_none_or(|l| l.revision < r.revision) {
                last.insert(r.id, r);
            }
        }
        let live: Vec<StoredEvent> = last.values().filter(|r| !r.retract).map(|r| r.stored()).collect();
        let want = through_the_log(&live, &meters);

        for ((m, got), want) in meters.iter().zip(&got).zip(&want) {
            prop_assert_eq!(got.comparable(), want.comparable(), "meter {}", m.id);
        }
    }

    #[test]
    fn counting_an_event_in_and_out_again_leaves_the_window_as_it_was(
        revisions in histories(), extra in (0u64..100_000, 0usize..4)
    ) {
        let meters = meters();
        let events: Vec<StoredEvent> = revisions.iter().filter(|r| !r.retract).map(Revision::stored).collect();
        let one = Revision { id: 99, revision: 0, retract: false, customer: 0, cents: extra.0, user: extra.1, region: 0 };
        let e = StoredEvent { lsn: 10_000, ..one.stored() };
        for m in &meters {
            let mut w = Windows::default();
            for (i, x) in events.iter().enumerate() {
                w.count(m, &StoredEvent { lsn: i as u64 + 1, ..x.clone() }, true);
            }
            let before = w.comparable();
            w.count(m, &e, true);
            w.count(m, &e, false);
            prop_assert_eq!(w.comparable(), before, "meter {}", m.id);
        }
    }
}

mod documents {
    //! Documents: charge records in any order build the same documents
    //! (ids, lines in order, totals).

    use super::*;
    use rust_decimal::Decimal;
    use tollgate_core::document::build_documents;
    use tollgate_core::enrich::{CanonicalUsage, Period, UsageLineage};
    use tollgate_core::masterdata::MasterData;
    use tollgate_core::rating::{Charge, ChargeRecord, RuleRef};

    fn master_data() -> MasterData {
        serde_json::from_value(serde_json::json!({
            "legal_entities": [
                { "id": "eu", "name": "EU", "currency": "EUR", "erp_company": "1000", "erp_target": "erp" },
                { "id": "us", "name": "US", "currency": "EUR", "erp_company": "2000", "erp_target": "erp",
                  "coexisting_targets": ["legacy"] }
            ],
            "skus": [
                { "id": "API", "name": "API", "erp_item": "I-API" },
                { "id": "FEE", "name": "Fee", "erp_item": "I-FEE", "gl_account": "4000" }
            ]
        }))
        .unwrap()
    }

    /// Record `n` of a customer and entity, with charges of these cents.
    fn record(n: usize, customer: usize, entity: usize, part: bool, cents: &[i64]) -> ChargeRecord {
        let period = Period::parse("2026-10").unwrap();
        let sku = if n.is_multiple_of(2) { "API" } else { "FEE" };
        let usage = CanonicalUsage {
            tenant: "t".into(),
            customer: format!("c{customer}"),
            customer_erp_account: format!("A-{customer}"),
            customer_parent: None,
            subscription: None,
            legal_entity: ["eu", "us"][entity].into(),
            erp_company: ["1000", "2000"][entity].into(),
            erp_target: "erp".into(),
            tax_context: None,
            contract_line: format!("line-{n}"),
            contract_line_version: 1,
            part: if part { "2026-10-15T00:00:00Z".into() } else { String::new() },
            sku: sku.into(),
            erp_item: None,
            revenue_category: None,
            gl_account: None,
            feature: None,
            meter: "m".into(),
            pricing_plan: None,
            currency: "EUR".into(),
            from: period.start,
            to: period.end,
            period,
            quantity: Decimal::ONE,
            dimensions: BTreeMap::new(),
            params: serde_json::json!({}),
            lineage: UsageLineage {
                windows: Vec::new(),
                event_count: 0,
                event_ids_digest: String::new(),
                transformation_version: 1,
            },
        };
        let charges = cents
            .iter()
            .enumerate()
            .map(|(i, c)| Charge {
                sku: sku.into(),
                description: format!("charge {i}"),
                quantity: Decimal::ONE,
                unit_price: Decimal::new(*c, 2),
                amount: Decimal::new(*c, 2),
                explain: String::new(),
            })
            .collect();
        ChargeRecord {
            usage,
            related: Vec::new(),
            rule: RuleRef { plugin: "p".into(), version: "1.0.0".into(), sha256: String::new() },
            input_digest: String::new(),
            output_digest: String::new(),
            charges,
            rated_at: base(),
        }
    }

    fn records() -> impl Strategy<Value = Vec<ChargeRecord>> {
        let one = (0usize..3, 0usize..2, any::<bool>(), proptest::collection::vec(-5_000i64..500_000, 0..3));
        proptest::collection::vec(one, 1..12).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(n, (customer, entity, part, cents))| record(n, customer, entity, part, &cents))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn documents_do_not_depend_on_the_order_of_the_charge_records(
            (records, shuffled) in records().prop_flat_map(|r| (Just(r.clone()), Just(r).prop_shuffle()))
        ) {
            let (md, period) = (master_data(), Period::parse("2026-10").unwrap());
            let built = build_documents("t", &md, &period, 0, &records).unwrap();
            prop_assert_eq!(&build_documents("t", &md, &period, 0, &shuffled).unwrap(), &built);
            // Every charge is on exactly one document per target of its entity.
            let charges: usize = records
                .iter()
                .map(|r| r.charges.len() * if r.usage.legal_entity == "us" { 2 } else { 1 })
                .sum();
            prop_assert_eq!(built.iter().map(|d| d.lines.len()).sum::<usize>(), charges);
            for d in &built {
                prop_assert_eq!(d.total, d.lines.iter().map(|l| l.amount).sum::<Decimal>());
            }
        }
    }
}
