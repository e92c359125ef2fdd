//! The plugin sandbox against hostile components (`tests/components/`): each
//! misbehaviour gets its typed error and the runtime keeps serving.

use crate::{built, plugins_dir};
use std::time::Duration;
use tollgate::plugins::{
    Kind, Limits, MemoryReset, Plugin, PluginError, ResetMode, Runtime, bindings::rating as wit, host_can_swap, to_wit,
};

fn bytes(name: &str) -> Vec<u8> {
    let path = built("test-components", "TOLLGATE_TEST_COMPONENTS_DIR").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask test`)", path.display()))
}

fn bundled(name: &str) -> Vec<u8> {
    std::fs::read(plugins_dir().join(format!("{name}-0.1.0.wasm"))).unwrap()
}

fn limits() -> Limits {
    Limits { fuel: 20_000_000, deadline_ms: 2_000, memory_mib: 64, max_output_bytes: 1 << 20, ..Limits::default() }
}

fn load(rt: &Runtime, name: &str, b: &[u8], kind: Kind) -> Result<Plugin, PluginError> {
    rt.load(name, semver::Version::new(0, 1, 0), kind, b)
}

fn usage(quantity: &str) -> wit::Usage {
    wit::Usage {
        tenant: "t".into(),
        customer: "c".into(),
        contract_line: "l".into(),
        sku: "API".into(),
        meter: "api_calls".into(),
        currency: "EUR".into(),
        period_start: "2026-10-01T00:00:00Z".into(),
        period_end: "2026-11-01T00:00:00Z".into(),
        quantity: to_wit(rust_decimal::Decimal::from_str_exact(quantity).unwrap()),
        dimensions: vec![],
        params: r#"{"tiers":[{"up_to":"100","unit_price":"0.1"},{"up_to":null,"unit_price":"0.01"}]}"#.into(),
        related: vec![],
    }
}

fn good(rt: &Runtime) -> Plugin {
    load(rt, "graduated-tiers", &bundled("graduated-tiers"), Kind::Rater).unwrap()
}

fn assert_good_call(rt: &Runtime, p: &Plugin) {
    let charges = rt.rate(p, &usage("150")).unwrap();
    let total: rust_decimal::Decimal = charges.iter().map(|c| c.amount).sum();
    assert_eq!(total.to_string(), "10.50");
}

/// Each hostile rater and the error code it must get.
const HOSTILE_RATERS: [(&str, &str); 7] = [
    ("hostile-rater-spin", "fuel-exhausted"),
    ("hostile-rater-grow", "memory-limit"),
    ("hostile-rater-recurse", "trap"),
    ("hostile-rater-panic", "trap"),
    ("hostile-rater-oversize", "too-large"),
    ("hostile-rater-refuse", "plugin-error"),
    ("hostile-rater-bad-decimal", "invalid-output"),
];

#[test]
fn every_misbehaviour_gets_its_typed_error_and_the_runtime_keeps_serving() {
    let rt = Runtime::new(limits(), None).unwrap();
    let ok = good(&rt);
    for (name, code) in HOSTILE_RATERS {
        let p = load(&rt, name, &bytes(name), Kind::Rater).unwrap();
        let err = rt.rate(&p, &usage("1")).unwrap_err();
        assert_eq!(err.code(), code, "{name}: {err}");
        match (&err, name) {
            (PluginError::FuelExhausted { budget }, _) => assert_eq!(*budget, 20_000_000),
            (PluginError::MemoryLimit { mib }, _) => assert_eq!(*mib, 64),
            (PluginError::Trap { backtrace, .. }, "hostile-rater-panic") => {
                assert!(backtrace.contains("wasm backtrace") || backtrace.contains("0x"), "{backtrace}")
            }
            (PluginError::Plugin { code, field, message }, _) => {
                assert_eq!((code.as_str(), field.as_deref()), ("no-contract", Some("params.plan")));
                assert!(message.contains("gold"));
            }
            (PluginError::InvalidOutput { field, .. }, _) => assert_eq!(field, "lines[0].amount"),
            _ => {}
        }
        // After every failure the same runtime still rates correctly.
        assert_good_call(&rt, &ok);
    }
}

#[test]
fn a_loop_with_fuel_to_spare_is_stopped_by_the_deadline() {
    let rt = Runtime::new(Limits { fuel: u64::MAX / 2, deadline_ms: 50, ..limits() }, None).unwrap();
    let p = load(&rt, "spin", &bytes("hostile-rater-spin"), Kind::Rater).unwrap();
    let err = rt.rate(&p, &usage("1")).unwrap_err();
    assert_eq!(err, PluginError::DeadlineExceeded { ms: 50 });
}

#[test]
fn a_runaway_call_does_not_stop_a_concurrent_well_behaved_one() {
    let rt = Runtime::new(Limits { fuel: u64::MAX / 2, deadline_ms: 1_500, ..limits() }, None).unwrap();
    let spin = load(&rt, "spin", &bytes("hostile-rater-spin"), Kind::Rater).unwrap();
    let ok = good(&rt);
    let (rt2, done) = (rt.clone(), std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)));
    let done2 = done.clone();
    let runaway = std::thread::spawn(move || {
        let r = rt2.rate(&spin, &usage("1"));
        done2.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    });
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..20 {
        assert_good_call(&rt, &ok);
    }
    assert!(!done.load(std::sync::atomic::Ordering::SeqCst), "the good calls finished while the runaway still ran");
    assert_eq!(runaway.join().unwrap().unwrap_err().code(), "deadline-exceeded");
}

#[test]
fn components_that_import_anything_or_implement_another_world_are_refused_at_load() {
    let rt = Runtime::new(limits(), None).unwrap();
    let err = load(&rt, "wasi", &bytes("hostile-imports-wasi"), Kind::Rater).unwrap_err();
    assert_eq!(err.code(), "incompatible-interface");
    assert!(err.to_string().contains("wasi:clocks/wall-clock@0.2.0"), "{err}");
    let err = load(&rt, "host", &bytes("hostile-imports-host-call"), Kind::Rater).unwrap_err();
    assert!(err.to_string().contains("host-log"), "{err}");
    let err = load(&rt, "wrong", &bytes("hostile-imports-wrong-world"), Kind::Rater).unwrap_err();
    assert_eq!(err.code(), "incompatible-interface");
    assert_names_every_rater_world(&err);
    // The right interface name with another `rate-batch`: refused at load,
    // not accepted to fail on every call.
    let err = load(&rt, "sig", &bytes("hostile-imports-wrong-signature"), Kind::Rater).unwrap_err();
    assert_names_every_rater_world(&err);
    for (component, kind, says) in [
        ("hostile-imports-wrong-signature", Kind::Rater, "rater@0.4.0: type-checking export func `rate-batch`"),
        ("hostile-imports-wrong-signature-v0-2", Kind::Rater, "rater@0.2.0: type-checking export func `rate`"),
        (
            "hostile-imports-wrong-signature-mapper",
            Kind::ErpMapper,
            "erp-mapper@0.3.0: type-checking export func `map-document`",
        ),
    ] {
        let err = load(&rt, "sig", &bytes(component), kind).unwrap_err();
        assert_eq!(err.code(), "incompatible-interface", "{component}");
        assert!(err.to_string().contains(says), "{component}: {err}");
    }
    // An initial memory above the cap: refused at upload, not at every call.
    let err = load(&rt, "huge", &bytes("hostile-rater-huge-memory"), Kind::Rater).unwrap_err();
    assert_eq!(err.code(), "too-large", "{err}");
    assert!(err.to_string().contains("the cap is 64 MiB (plugins.memory_limit_mib)"), "{err}");
    let err = load(&rt, "mapper", &bundled("generic-json"), Kind::Rater).unwrap_err();
    assert_names_every_rater_world(&err);
    let err = load(&rt, "rater", &bundled("graduated-tiers"), Kind::ErpMapper).unwrap_err();
    assert!(err.to_string().contains("tollgate:plugin/erp-mapper@0.1.0"), "{err}");
    let err = load(&rt, "junk", b"\0asm\x0d\0\x01\0garbage", Kind::Rater).unwrap_err();
    assert!(err.to_string().contains("not a valid WebAssembly component"), "{err}");
    let err = load(&rt, "huge", &vec![0u8; 17 << 20], Kind::Rater).unwrap_err();
    assert_eq!(err.code(), "too-large");
    // Bundled plugins pass the same checks.
    load(&rt, "generic-json", &bundled("generic-json"), Kind::ErpMapper).unwrap();
}

fn assert_names_every_rater_world(err: &PluginError) {
    assert_eq!(err.code(), "incompatible-interface");
    let s = err.to_string();
    for world in ["tollgate:plugin/rater@0.4.0: ", "tollgate:plugin/rater@0.2.0: ", "tollgate:plugin/rater@0.1.0: "] {
        assert!(s.contains(world), "{world} in {s}");
    }
}

#[test]
fn raters_of_interface_0_1_0_2_and_0_4_run_side_by_side_and_only_newer_ones_see_related_charges() {
    let rt = Runtime::new(limits(), None).unwrap();
    let tiers = good(&rt);
    let fee = load(&rt, "percentage-fee", &bundled("percentage-fee"), Kind::Rater).unwrap();
    let v1 = load(&rt, "legacy-v1", &bytes("legacy-rater-v0-1"), Kind::Rater).unwrap();
    let v2 = load(&rt, "legacy-v2", &bytes("legacy-rater-v0-2"), Kind::Rater).unwrap();
    assert_eq!(tiers.world(), "tollgate:plugin/rater@0.4.0");
    assert_eq!(fee.world(), "tollgate:plugin/rater@0.4.0");
    assert_eq!(v2.world(), "tollgate:plugin/rater@0.2.0");
    assert_eq!(v1.world(), "tollgate:plugin/rater@0.1.0");
    let related = |amount: &str| wit::RelatedCharge {
        contract_line: "cl-api".into(),
        sku: "API".into(),
        description: "API calls".into(),
        amount: to_wit(rust_decimal::Decimal::from_str_exact(amount).unwrap()),
        currency: "EUR".into(),
    };
    let mut input = usage("150");
    input.related = vec![related("1000.00"), related("234.10")];
    let charges = rt.rate(&tiers, &input).unwrap();
    assert_eq!(charges.iter().map(|c| c.amount).sum::<rust_decimal::Decimal>().to_string(), "10.50");
    // The 0.2.0 rater sees the related charges; the 0.1.0 one gets the same
    // input converted (without them).
    let legacy = |p: &Plugin| {
        let c = rt.rate(p, &input).unwrap();
        assert_eq!(c.len(), 1);
        (c[0].description.clone(), c[0].amount.to_string())
    };
    assert_eq!(legacy(&v2), ("usage (2 related)".to_string(), "1.50".to_string()));
    assert_eq!(legacy(&v1), ("usage".to_string(), "1.50".to_string()));
    input.params = r#"{"percent":"2.5"}"#.into();
    let charges = rt.rate(&fee, &input).unwrap();
    assert_eq!(charges.len(), 1);
    assert_eq!((charges[0].quantity.to_string(), charges[0].amount.to_string()), ("1234.10".into(), "30.85".into()));
    // All keep working, interleaved, on the same engine and pool, alone or
    // in batches (older raters are called once per input).
    for _ in 0..3 {
        assert_good_call(&rt, &tiers);
        assert_eq!(rt.rate(&fee, &input).unwrap(), charges);
        for p in [&v1, &v2] {
            let batch = rt.rate_batch(p, &[input.clone(), usage("7")]);
            assert_eq!(batch, vec![rt.rate(p, &input), rt.rate(p, &usage("7"))]);
        }
    }
}

fn calm(quantity: &str) -> wit::Usage {
    wit::Usage { customer: "calm".into(), ..usage(quantity) }
}

#[test]
fn a_batch_answers_as_each_input_alone_and_only_the_hostile_input_fails() {
    let rt = Runtime::new(limits(), None).unwrap();
    for (name, code) in HOSTILE_RATERS {
        let p = load(&rt, name, &bytes(name), Kind::Rater).unwrap();
        let calm_alone = rt.rate(&p, &calm("3")).unwrap();
        assert_eq!(calm_alone[0].amount.to_string(), "3", "{name}");
        let batch = rt.rate_batch(&p, &[calm("3"), usage("1"), calm("4"), calm("3")]);
        assert_eq!(batch.len(), 4, "{name}");
        assert_eq!(batch[0].as_ref().unwrap(), &calm_alone, "{name}");
        assert_eq!(batch[1].as_ref().unwrap_err().code(), code, "{name}: {:?}", batch[1]);
        assert_eq!(batch[1].as_ref().unwrap_err(), &rt.rate(&p, &usage("1")).unwrap_err(), "{name}: same error alone");
        assert_eq!(batch[2].as_ref().unwrap()[0].amount.to_string(), "4", "{name}");
        assert_eq!(batch[3].as_ref().unwrap(), &calm_alone, "{name}");
    }
    // More inputs than one call takes: several batches, each answer as alone.
    let tiers = good(&rt);
    let inputs: Vec<wit::Usage> = (0..150).map(|i| usage(&(i * 7).to_string())).collect();
    let alone: Vec<_> = inputs.iter().map(|u| rt.rate(&tiers, u)).collect();
    assert!(alone.iter().all(Result::is_ok));
    assert_eq!(rt.rate_batch(&tiers, &inputs), alone);
    // A rater that keeps state across inputs answers differently in a batch:
    // what `tollgate plugin test` checks for (see the fixtures tests).
    let stateful = load(&rt, "stateful", &bytes("hostile-rater-stateful"), Kind::Rater).unwrap();
    let batch = rt.rate_batch(&stateful, &[usage("1"), usage("1")]);
    assert_eq!(batch[0], rt.rate(&stateful, &usage("1")));
    assert_ne!(batch[1], rt.rate(&stateful, &usage("1")));
}

#[test]
fn every_call_sees_fresh_memory_whichever_way_memory_is_reset() {
    // The bundled raters' memory (192 KiB) is rewritten in full; with a lower
    // threshold only written pages are reset, if this host cannot swap (with
    // swap, a page swapped out between write and reset would keep the call's
    // data: Wasmtime 48 resets only present pages); `full` never does that.
    let small = Limits::default().rewrite_max;
    let scan_if_safe = if host_can_swap() { ResetMode::Full } else { ResetMode::DirtyPages };
    let cases = [
        (limits(), ResetMode::Full),
        (Limits { rewrite_max: 0, ..limits() }, scan_if_safe),
        (Limits { rewrite_max: 192 << 10, ..limits() }, ResetMode::Full),
        (Limits { rewrite_max: 0, memory_reset: MemoryReset::Full, ..limits() }, ResetMode::Full),
    ];
    assert!(small >= 192 << 10);
    for (limits, mode) in cases {
        let what = format!("rewrite_max {} {:?}", limits.rewrite_max, limits.memory_reset);
        let rt = Runtime::new(limits, None).unwrap();
        let ok = good(&rt);
        assert_eq!(ok.reset_mode(), mode, "{what}");
        // Statics: a rater counting its inputs in a static sees 1 every call.
        let stateful = load(&rt, "stateful", &bytes("hostile-rater-stateful"), Kind::Rater).unwrap();
        assert_eq!(stateful.reset_mode(), mode, "{what}");
        for _ in 0..3 {
            let lines = rt.rate(&stateful, &usage("1")).unwrap();
            assert_eq!(lines[0].description, "input number 1 of this instance", "{what}");
        }
        // Growth: memory grown to the cap is back to its initial size next call.
        let grow = load(&rt, "grow", &bytes("hostile-rater-grow"), Kind::Rater).unwrap();
        for _ in 0..2 {
            assert_eq!(rt.rate(&grow, &usage("1")).unwrap_err().code(), "memory-limit", "{what}");
            assert_good_call(&rt, &ok);
        }
    }
}

#[test]
fn compiled_components_are_cached_on_disk_and_a_bad_cache_file_is_recompiled() {
    let dir = std::env::temp_dir().join(format!("tollgate-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = Runtime::new(limits(), Some(dir.clone())).unwrap();
    let p = good(&rt);
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&p.sha256) && name.ends_with(".cwasm"), "{name}");
    // A restarted runtime loads it from the cache and rates the same.
    let rt2 = Runtime::new(limits(), Some(dir.clone())).unwrap();
    assert_good_call(&rt2, &good(&rt2));
    // A damaged cache file is ignored and replaced.
    std::fs::write(&files[0], b"not a compiled component").unwrap();
    let rt3 = Runtime::new(limits(), Some(dir.clone())).unwrap();
    assert_good_call(&rt3, &good(&rt3));
    assert!(std::fs::read(&files[0]).unwrap().len() > 1000);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The input digest is over the usage, not over the interface a rater
/// speaks: a 0.4.0, a 0.2.0 and a 0.1.0 rater given the same usage record
/// the same input digest (each its own output).
#[test]
fn raters_of_every_interface_record_the_same_input_digest_for_the_same_usage() {
    use tollgate::rating::{self, RelatedCharge, RuleRef};
    let rt = Runtime::new(limits(), None).unwrap();
    let usage: tollgate::enrich::CanonicalUsage = serde_json::from_value(serde_json::json!({
        "tenant": "t", "customer": "c", "customer_erp_account": "A", "legal_entity": "e", "erp_company": "1000",
        "erp_target": "erp", "contract_line": "l", "contract_line_version": 1, "sku": "API", "meter": "api_calls",
        "currency": "EUR",
        "period": { "id": "2026-10", "start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z", "timezone": "UTC" },
        "from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z", "quantity": "150",
        "dimensions": { "region": "eu" },
        "params": { "tiers": [ { "up_to": "100", "unit_price": "0.1" }, { "up_to": null, "unit_price": "0.01" } ] },
        "lineage": { "windows": [], "event_count": 2, "event_ids_digest": "", "transformation_version": 1 }
    }))
    .unwrap();
    let related = vec![RelatedCharge {
        contract_line: "other".into(),
        sku: "FEE".into(),
        description: "fee".into(),
        amount: rust_decimal::Decimal::new(1250, 2),
        currency: "EUR".into(),
    }];
    let raters = [
        ("graduated-tiers", bundled("graduated-tiers")),
        ("legacy-v2", bytes("legacy-rater-v0-2")),
        ("legacy-v1", bytes("legacy-rater-v0-1")),
    ];
    let mut records = Vec::new();
    for (name, code) in raters {
        let p = load(&rt, name, &code, Kind::Rater).unwrap();
        let rule = RuleRef { plugin: name.into(), version: "1.0.0".into(), sha256: p.sha256.clone() };
        let now = chrono::Utc::now();
        let mut rated = rating::rate_many_with(vec![(usage.clone(), related.clone())], rule, now, |inputs| {
            let inputs: Vec<wit::Usage> = inputs.into_iter().map(wit::Usage::from).collect();
            rt.rate_batch(&p, &inputs)
        });
        records.push((p.world().to_string(), rated.remove(0).unwrap()));
    }
    let worlds: Vec<&str> = records.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(worlds, ["tollgate:plugin/rater@0.4.0", "tollgate:plugin/rater@0.2.0", "tollgate:plugin/rater@0.1.0"]);
    let expected = rating::digest_input(&rating::rater_input(&usage, &related));
    for (world, r) in &records {
        assert_eq!(r.input_digest, expected, "{world}");
    }
    assert_ne!(records[0].1.output_digest, records[1].1.output_digest, "different rules, different charges");
}
