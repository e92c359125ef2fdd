//! Raters of the older interfaces, one per variant: `v0-1` implements the
//! deprecated rater 0.1.0 (plugins uploaded before 0.4.0 must keep running,
//! while new uploads of it are refused), `v0-2` rater 0.2.0. Both price
//! every unit at 0.01; the 0.2.0 one names how many related charges it saw.

#[cfg(feature = "v0-1")]
mod v0_1 {
    use tollgate_sdk::Decimal;
    use tollgate_sdk::rater::{ChargeLine, Guest, PluginError, Usage, mul};

    pub struct Legacy;

    impl Guest for Legacy {
        fn rate(input: Usage) -> Result<Vec<ChargeLine>, PluginError> {
            let q = input.quantity_decimal()?;
            let price = Decimal::new(1, 2);
            let amount = mul(q, price, "quantity")?;
            Ok(vec![input.charge("usage", q, price, amount, format!("{q} × {price}"))])
        }
    }

    tollgate_sdk::rater::export_rater!(Legacy);
}

#[cfg(feature = "v0-2")]
mod v0_2 {
    use tollgate_sdk::Decimal;
    use tollgate_sdk::rater_v2::{ChargeLine, Guest, PluginError, Usage, mul};

    pub struct Legacy;

    impl Guest for Legacy {
        fn rate(input: Usage) -> Result<Vec<ChargeLine>, PluginError> {
            let q = input.quantity_decimal()?;
            let price = Decimal::new(1, 2);
            let amount = mul(q, price, "quantity")?;
            let description = format!("usage ({} related)", input.related.len());
            Ok(vec![input.charge(description, q, price, amount, format!("{q} × {price}"))])
        }
    }

    tollgate_sdk::rater_v2::export_rater_v2!(Legacy);
}
