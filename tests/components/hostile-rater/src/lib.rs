//! Hostile raters for the sandbox tests: each feature is one misbehaviour
//! (see `tests/components/README.md`). Built once per feature.

use tollgate_sdk::Decimal;
use tollgate_sdk::rater::{ChargeLine, Guest, PluginError, Usage, WitDecimal};

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

impl Guest for Hostile {
    #[allow(unreachable_code, unused_variables)]
    fn rate(input: Usage) -> Result<Vec<ChargeLine>, PluginError> {
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

tollgate_sdk::rater::export_rater!(Hostile);
