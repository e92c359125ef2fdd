//! Hostile raters for the sandbox tests: each feature is one misbehaviour
//! (see `tests/components/README.md`). Built once per feature.
//!
//! A usage of customer `calm` is rated normally (one line of its quantity at
//! 1), so a batch can mix well-behaved inputs with the hostile one.

use tollgate_sdk::Decimal;
use tollgate_sdk::rater_v4::{ChargeLine, PluginError, Rater, Usage, WitDecimal};

pub struct Hostile;

#[allow(dead_code)]
fn line(description: String) -> ChargeLine {
    ChargeLine {
        sku: "X".into(),
        description,
        quantity: Decimal::ONE.into(),
        unit_price: Decimal::ONE.into(),
        amount: Decimal::ONE.into(),
        explain: String::new(),
    }
}

#[allow(dead_code, unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    core::hint::black_box(recurse(core::hint::black_box(n + 1))) + 1
}

impl Rater for Hostile {
    #[allow(unreachable_code, unused_variables)]
    fn rate(input: Usage) -> Result<Vec<ChargeLine>, PluginError> {
        if input.customer == "calm" {
            let q = input.quantity_decimal()?;
            return Ok(vec![input.charge("calm", q, Decimal::ONE, q, "quantity × 1")]);
        }
        #[cfg(feature = "spin")]
        {
            let mut i: u64 = 0;
            loop {
                i = core::hint::black_box(i.wrapping_add(1));
            }
        }
        #[cfg(feature = "grow")]
        {
            // 16384 pages of 64 KiB: 1 GiB, one page at a time.
            let mut grown = 0;
            for _ in 0..16384 {
                if core::arch::wasm32::memory_grow(0, 1) == usize::MAX {
                    break;
                }
                grown += 1;
            }
            return Ok(vec![line(format!("grew {grown} pages"))]);
        }
        #[cfg(feature = "recurse")]
        {
            return Ok(vec![line(recurse(0).to_string())]);
        }
        #[cfg(feature = "panic")]
        {
            panic!("hostile rater panicked on purpose");
        }
        #[cfg(feature = "oversize")]
        {
            let kib = "x".repeat(1024);
            return Ok((0..2048).map(|_| line(kib.clone())).collect());
        }
        #[cfg(feature = "refuse")]
        {
            return Err(PluginError::new("no-contract", Some("params.plan"), "plan \"gold\" is not priced"));
        }
        #[cfg(feature = "huge-memory")]
        {
            // 96 MiB of zeroed statics: the initial memory alone is above
            // the 64 MiB cap, so no instance can be made.
            struct Huge(core::cell::UnsafeCell<[u8; 96 << 20]>);
            // SAFETY: wasm32 guests are single-threaded.
            #[allow(unsafe_code)]
            unsafe impl Sync for Huge {}
            static HUGE: Huge = Huge(core::cell::UnsafeCell::new([0; 96 << 20]));
            return Ok(vec![line(format!("{:p}", core::hint::black_box(HUGE.0.get())))]);
        }
        #[cfg(feature = "stateful")]
        {
            // Remembers how many inputs it has rated: alone always 1, in a batch 1, 2, ...
            static SEEN: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
            let n = SEEN.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1;
            return Ok(vec![line(format!("input number {n} of this instance"))]);
        }
        #[cfg(feature = "bad-decimal")]
        {
            let mut l = line(String::new());
            l.amount = WitDecimal { mantissa_low: 1, mantissa_high: 0, negative: false, scale: 40 };
            return Ok(vec![l]);
        }
        let _ = WitDecimal::from(Decimal::ZERO);
        Ok(Vec::new())
    }
}

tollgate_sdk::export_rater_v4!(Hostile);
