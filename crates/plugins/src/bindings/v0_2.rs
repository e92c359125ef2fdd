//! `tollgate:plugin@0.2.0` (`wit/since_v0.2.0`): the newest rating types
//! (unchanged in 0.4.0), and the domain's rater input converted into them.

pub mod rater {
    wasmtime::component::bindgen!({ world: "rater", path: "../../wit/since_v0.2.0" });
}
pub use rater::tollgate::plugin::types;

use crate::{PluginError, to_wit};
use types as rwit;

impl From<rwit::PluginError> for PluginError {
    fn from(e: rwit::PluginError) -> Self {
        PluginError::Plugin { code: e.code, field: e.field, message: e.message }
    }
}

/// Domain → newest input (moved, not copied).
impl From<tollgate_core::rating::RaterInput> for rwit::Usage {
    fn from(u: tollgate_core::rating::RaterInput) -> Self {
        rwit::Usage {
            tenant: u.tenant,
            customer: u.customer,
            contract_line: u.contract_line,
            sku: u.sku,
            meter: u.meter,
            currency: u.currency,
            period_start: u.period_start,
            period_end: u.period_end,
            quantity: to_wit(u.quantity),
            dimensions: u.dimensions,
            params: u.params,
            related: u
                .related
                .into_iter()
                .map(|r| rwit::RelatedCharge {
                    contract_line: r.contract_line,
                    sku: r.sku,
                    description: r.description,
                    amount: to_wit(r.amount),
                    currency: r.currency,
                })
                .collect(),
        }
    }
}
