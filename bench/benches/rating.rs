//! Rating benchmark: the graduated-tier rater as a Wasm component (a fresh
//! instance per call, as production runs it) against the very same crate
//! compiled natively, in the same run; plus a warm instance (reference only),
//! cold compile and cached load times, and a re-rating of 50k contract lines
//! through the rating stage.
//!
//! `cargo xtask bench` (builds the plugins, then `cargo bench -p tollgate-bench`).

use std::path::PathBuf;
use std::time::Instant;

/// The gateway's allocator (see `host/src/bin/tollgate.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tollgate::enrich::{CanonicalUsage, Period, UsageLineage};
use tollgate::plugins::registry::Registry;
use tollgate::plugins::{Kind, Limits, Runtime, bindings::rating as wit};
use tollgate::rating::{self, Charge, RuleRef};
use tollgate_bench::{per_second, percentile_us, time_calls};
use tollgate_plugin_graduated_tiers::GraduatedTiers;
use tollgate_sdk::rater_v4::Rater;

const CALLS: usize = 20_000;
const LINES: usize = 50_000;

fn params() -> serde_json::Value {
    serde_json::json!({ "description": "API calls", "tiers": [
        { "up_to": "1000", "unit_price": "0.010" },
        { "up_to": "10000", "unit_price": "0.008" },
        { "up_to": null, "unit_price": "0.005" }
    ]})
}

fn usage(i: usize) -> CanonicalUsage {
    let quantity = rust_decimal::Decimal::new(1_000_000 + (i as i64 * 7919) % 2_000_000, 2);
    let period = Period::parse("2026-10").expect("period");
    CanonicalUsage {
        tenant: "bench".into(),
        customer: format!("c{i}"),
        customer_erp_account: format!("A{i}"),
        customer_parent: None,
        subscription: None,
        legal_entity: "le".into(),
        erp_company: "1000".into(),
        erp_target: "erp".into(),
        tax_context: None,
        contract_line: format!("line-{i}"),
        contract_line_version: 1,
        part: String::new(),
        sku: "API".into(),
        erp_item: Some("ITEM".into()),
        revenue_category: None,
        gl_account: None,
        feature: None,
        meter: "api_calls".into(),
        pricing_plan: None,
        currency: "EUR".into(),
        from: period.start,
        to: period.end,
        period,
        quantity,
        dimensions: Default::default(),
        params: params(),
        lineage: UsageLineage {
            windows: vec![],
            event_count: 0,
            event_ids_digest: String::new(),
            transformation_version: 1,
        },
    }
}

/// The host's WIT usage as the SDK's (the native build's input type).
fn to_sdk(u: &wit::Usage) -> tollgate_sdk::rater_v4::Usage {
    tollgate_sdk::rater_v4::Usage {
        tenant: u.tenant.clone(),
        customer: u.customer.clone(),
        contract_line: u.contract_line.clone(),
        sku: u.sku.clone(),
        meter: u.meter.clone(),
        currency: u.currency.clone(),
        period_start: u.period_start.clone(),
        period_end: u.period_end.clone(),
        quantity: sdk_decimal(&u.quantity),
        dimensions: u.dimensions.clone(),
        params: u.params.clone(),
        related: u
            .related
            .iter()
            .map(|r| tollgate_sdk::rater_v4::RelatedCharge {
                contract_line: r.contract_line.clone(),
                sku: r.sku.clone(),
                description: r.description.clone(),
                amount: sdk_decimal(&r.amount),
                currency: r.currency.clone(),
            })
            .collect(),
    }
}

fn sdk_decimal(d: &wit::Decimal) -> tollgate_sdk::rater_v4::WitDecimal {
    tollgate_sdk::rater_v4::WitDecimal {
        mantissa_low: d.mantissa_low,
        mantissa_high: d.mantissa_high,
        negative: d.negative,
        scale: d.scale,
    }
}

/// The native build of the rule, with the same input and output checks.
fn native_rate(u: &wit::Usage) -> Result<Vec<Charge>, tollgate::plugins::PluginError> {
    let lines = GraduatedTiers::rate(to_sdk(u)).map_err(|e| tollgate::plugins::PluginError::Plugin {
        code: e.code,
        field: e.field,
        message: e.message,
    })?;
    Ok(lines
        .into_iter()
        .map(|l| Charge {
            quantity: l.quantity.to_decimal().expect("scale"),
            unit_price: l.unit_price.to_decimal().expect("scale"),
            amount: l.amount.to_decimal().expect("scale"),
            sku: l.sku,
            description: l.description,
            explain: l.explain,
        })
        .collect())
}

fn main() {
    let plugins = std::env::var_os("TOLLGATE_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    let bytes =
        std::fs::read(plugins.join("graduated-tiers-0.1.0.wasm")).expect("run `cargo xtask bench`: plugins not built");
    let version = semver::Version::new(0, 1, 0);

    // Cold compile and cached load.
    let cache = std::env::temp_dir().join(format!("tollgate-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let mut compile_ms = Vec::new();
    for _ in 0..3 {
        let rt = Runtime::new(Limits::default(), None).expect("runtime");
        let t = Instant::now();
        rt.load("graduated-tiers", version.clone(), Kind::Rater, &bytes).expect("load");
        compile_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Runtime::new(Limits::default(), Some(cache.clone()))
        .expect("runtime")
        .load("graduated-tiers", version.clone(), Kind::Rater, &bytes)
        .expect("load");
    let mut cached_ms = Vec::new();
    for _ in 0..5 {
        let rt = Runtime::new(Limits::default(), Some(cache.clone())).expect("runtime");
        let t = Instant::now();
        rt.load("graduated-tiers", version.clone(), Kind::Rater, &bytes).expect("load");
        cached_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    compile_ms.sort_by(f64::total_cmp);
    cached_ms.sort_by(f64::total_cmp);
    let _ = std::fs::remove_dir_all(&cache);

    let runtime = Runtime::new(Limits::default(), None).expect("runtime");
    let registry = Registry::new(runtime.clone());
    let plugin = registry
        .register(tollgate::plugins::registry::Owner::Bundled, "graduated-tiers", version.clone(), Kind::Rater, &bytes)
        .expect("register");
    let input = wit::Usage::from(rating::rater_input(&usage(1), &[]));
    // Profiling aid: `TOLLGATE_BENCH_PROFILE=fresh|warm|native|batch` loops one
    // kind of call only (with `TOLLGATE_PERFMAP=1`, perf names Wasm frames).
    if let Ok(mode) = std::env::var("TOLLGATE_BENCH_PROFILE") {
        if mode == "batch" {
            let inputs: Vec<wit::Usage> =
                (0..LINES).map(|i| wit::Usage::from(rating::rater_input(&usage(i), &[]))).collect();
            for _ in 0..6 {
                let t = Instant::now();
                drop(std::hint::black_box(runtime.rate_batch(&plugin, &inputs)));
                eprintln!("batch: {:.2} µs per input", t.elapsed().as_secs_f64() * 1e6 / LINES as f64);
            }
            return;
        }
        let mut warm = runtime.warm_rater(&plugin).expect("warm instance");
        for _ in 0..300_000 {
            match mode.as_str() {
                "warm" => drop(std::hint::black_box(warm.rate(&input))),
                "native" => drop(std::hint::black_box(native_rate(&input))),
                _ => drop(std::hint::black_box(runtime.rate(&plugin, &input))),
            }
        }
        return;
    }

    // Same answer both ways, or the comparison means nothing.
    let wasm_out = runtime.rate(&plugin, &input).expect("wasm rate");
    assert_eq!(wasm_out, native_rate(&input).expect("native rate"), "Wasm and native disagree");
    assert_eq!(wasm_out.len(), 3, "the bench input reaches all three tiers");

    // Warm-up, then interleaved rounds so both see the same machine state.
    let _ = time_calls(2_000, || drop(runtime.rate(&plugin, &input)));
    let _ = time_calls(2_000, || drop(native_rate(&input)));
    let mut warm = runtime.warm_rater(&plugin).expect("warm instance");
    let (mut wasm, mut native, mut warm_t) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..4 {
        wasm.extend(time_calls(CALLS / 4, || drop(std::hint::black_box(runtime.rate(&plugin, &input)))));
        native.extend(time_calls(CALLS / 4, || drop(std::hint::black_box(native_rate(&input)))));
        warm_t.extend(time_calls(CALLS / 4, || drop(std::hint::black_box(warm.rate(&input)))));
    }
    let (wasm_ps, native_ps, warm_ps) = (per_second(&wasm), per_second(&native), per_second(&warm_t));
    // For reference, afterwards: the same fresh call with the other way of
    // resetting memory (only the written pages, if this host allows it).
    let other_rt = Runtime::new(Limits { rewrite_max: 0, ..Limits::default() }, None).expect("runtime");
    let other_plugin = other_rt.load("graduated-tiers", version.clone(), Kind::Rater, &bytes).expect("load");
    assert_eq!(other_rt.rate(&other_plugin, &input).expect("other reset"), wasm_out);
    let _ = time_calls(2_000, || drop(other_rt.rate(&other_plugin, &input)));
    let other = time_calls(CALLS / 2, || drop(std::hint::black_box(other_rt.rate(&other_plugin, &input))));
    let (fuel_result, fuel) = runtime.rate_metered(&plugin, &input);
    fuel_result.expect("metered");

    // Re-rating: 50k contract lines through the rating stage.
    let now = chrono::Utc::now();
    let rule = RuleRef { plugin: "graduated-tiers".into(), version: "0.1.0".into(), sha256: plugin.sha256.clone() };
    let usages: Vec<CanonicalUsage> = (0..LINES).map(usage).collect();
    let total = |records: Vec<Result<rating::ChargeRecord, _>>| {
        let mut sum = rust_decimal::Decimal::ZERO;
        for r in records {
            sum += r.expect("rerate").charges.iter().map(|c| c.amount).sum::<rust_decimal::Decimal>();
        }
        sum
    };
    let items = || usages.iter().cloned().map(|u| (u, Vec::new())).collect::<Vec<_>>();
    // A warm-up round (the first run of either side pays for growing the
    // process heap), then three interleaved rounds; the median of each side.
    let (mut wasm_runs, mut native_runs) = (Vec::new(), Vec::new());
    let mut wasm_total = rust_decimal::Decimal::ZERO;
    for round in 0..4 {
        let (wasm_items, native_items) = (items(), items());
        let t = Instant::now();
        wasm_total = total(rating::rate_many(&registry, &plugin, wasm_items, now));
        let wasm_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let native_total = total(rating::rate_many_with(native_items, rule.clone(), now, |inputs| {
            // Through the same conversion into the plugin interface as the Wasm path.
            inputs.into_iter().map(|i| native_rate(&wit::Usage::from(i))).collect()
        }));
        let native_s = t.elapsed().as_secs_f64();
        assert_eq!(wasm_total, native_total, "re-rating totals differ");
        if round > 0 {
            wasm_runs.push(wasm_s);
            native_runs.push(native_s);
        }
    }
    wasm_runs.sort_by(f64::total_cmp);
    native_runs.sort_by(f64::total_cmp);
    let (wasm_s, native_s) = (wasm_runs[1], native_runs[1]);

    println!("graduated-tier rating, {CALLS} calls each (interleaved rounds; memory reset: {:?})", plugin.reset_mode());
    println!(
        "  wasm, fresh instance per call: {wasm_ps:>10.0} calls/s  p50 {:>6.2} µs  p99 {:>6.2} µs",
        percentile_us(&wasm, 50.0),
        percentile_us(&wasm, 99.0)
    );
    println!(
        "  native (same crate):           {native_ps:>10.0} calls/s  p50 {:>6.2} µs  p99 {:>6.2} µs",
        percentile_us(&native, 50.0),
        percentile_us(&native, 99.0)
    );
    println!("  wasm, warm instance (ref.):    {warm_ps:>10.0} calls/s  p50 {:>6.2} µs", percentile_us(&warm_t, 50.0));
    println!(
        "  wasm, fresh, reset {:<11}{:>10.0} calls/s  p50 {:>6.2} µs  (ref., afterwards)",
        format!("{:?}:", other_plugin.reset_mode()),
        per_second(&other),
        percentile_us(&other, 50.0)
    );
    println!("  fuel per call: {fuel}");
    println!(
        "  cold compile: {:.1} ms (median of 3); cached load: {:.2} ms (median of 5)",
        compile_ms[1], cached_ms[2]
    );
    println!(
        "re-rating {LINES} contract lines through the rating stage (median of 3): total {wasm_total} EUR both ways; \
         wasm {:.2} µs, native {:.2} µs per line",
        wasm_s * 1e6 / LINES as f64,
        native_s * 1e6 / LINES as f64
    );
    println!(
        "rating: wasm_per_s={wasm_ps:.0} native_per_s={native_ps:.0} ratio={:.3} p50_us={:.2}",
        wasm_ps / native_ps,
        percentile_us(&wasm, 50.0)
    );
    println!("rerate: lines={LINES} wasm_s={wasm_s:.3} native_s={native_s:.3} ratio={:.3}", native_s / wasm_s);
}
