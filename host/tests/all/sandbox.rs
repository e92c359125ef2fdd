//! The plugin sandbox against hostile components (`tests/components/`): each
//! misbehaviour gets its typed error and the runtime keeps serving.

use crate::{built, plugins_dir};
use std::time::Duration;
use tollgate::rating::runtime::{Kind, Limits, Plugin, PluginError, Runtime, bindings::rating as wit, to_wit};

fn bytes(name: &str) -> Vec<u8> {
    let path = built("test-components", "TOLLGATE_TEST_COMPONENTS_DIR").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask test`)", path.display()))
}

fn bundled(name: &str) -> Vec<u8> {
    std::fs::read(plugins_dir().join(format!("{name}-0.1.0.wasm"))).unwrap()
}

fn limits() -> Limits {
    Limits { fuel: 20_000_000, deadline_ms: 2_000, memory_mib: 64, max_output_bytes: 1 << 20 }
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

#[test]
fn every_misbehaviour_gets_its_typed_error_and_the_runtime_keeps_serving() {
    let rt = Runtime::new(limits(), None).unwrap();
    let ok = good(&rt);
    let cases = [
        ("hostile-rater-spin", "fuel-exhausted"),
        ("hostile-rater-grow", "memory-limit"),
        ("hostile-rater-recurse", "trap"),
        ("hostile-rater-panic", "trap"),
        ("hostile-rater-oversize", "too-large"),
        ("hostile-rater-refuse", "plugin-error"),
        ("hostile-rater-bad-decimal", "invalid-output"),
    ];
    for (name, code) in cases {
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
    assert_names_both_rater_worlds(&err);
    let err = load(&rt, "mapper", &bundled("generic-json"), Kind::Rater).unwrap_err();
    assert_names_both_rater_worlds(&err);
    let err = load(&rt, "rater", &bundled("graduated-tiers"), Kind::ErpMapper).unwrap_err();
    assert!(err.to_string().contains("tollgate:plugin/erp-mapper@0.1.0"), "{err}");
    let err = load(&rt, "junk", b"\0asm\x0d\0\x01\0garbage", Kind::Rater).unwrap_err();
    assert!(err.to_string().contains("not a valid WebAssembly component"), "{err}");
    let err = load(&rt, "huge", &vec![0u8; 17 << 20], Kind::Rater).unwrap_err();
    assert_eq!(err.code(), "too-large");
    // Bundled plugins pass the same checks.
    load(&rt, "generic-json", &bundled("generic-json"), Kind::ErpMapper).unwrap();
}

fn assert_names_both_rater_worlds(err: &PluginError) {
    assert_eq!(err.code(), "incompatible-interface");
    let s = err.to_string();
    assert!(s.contains("tollgate:plugin/rater@0.2.0: ") && s.contains("tollgate:plugin/rater@0.1.0: "), "{s}");
}

#[test]
fn raters_of_interface_0_1_and_0_2_run_side_by_side_and_only_0_2_sees_related_charges() {
    let rt = Runtime::new(limits(), None).unwrap();
    let tiers = good(&rt);
    let fee = load(&rt, "percentage-fee", &bundled("percentage-fee"), Kind::Rater).unwrap();
    assert_eq!(tiers.world(), "tollgate:plugin/rater@0.1.0");
    assert_eq!(fee.world(), "tollgate:plugin/rater@0.2.0");
    let related = |amount: &str| wit::RelatedCharge {
        contract_line: "cl-api".into(),
        sku: "API".into(),
        description: "API calls".into(),
        amount: to_wit(rust_decimal::Decimal::from_str_exact(amount).unwrap()),
        currency: "EUR".into(),
    };
    let mut input = usage("150");
    input.related = vec![related("1000.00"), related("234.10")];
    // The 0.1.0 rater gets the same input converted (without `related`).
    let charges = rt.rate(&tiers, &input).unwrap();
    assert_eq!(charges.iter().map(|c| c.amount).sum::<rust_decimal::Decimal>().to_string(), "10.50");
    input.params = r#"{"percent":"2.5"}"#.into();
    let charges = rt.rate(&fee, &input).unwrap();
    assert_eq!(charges.len(), 1);
    assert_eq!((charges[0].quantity.to_string(), charges[0].amount.to_string()), ("1234.10".into(), "30.85".into()));
    // Both keep working, interleaved, on the same engine and pool.
    for _ in 0..3 {
        assert_good_call(&rt, &tiers);
        assert_eq!(rt.rate(&fee, &input).unwrap(), charges);
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
