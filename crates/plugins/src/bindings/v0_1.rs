//! `tollgate:plugin@0.1.0` (`wit/since_v0.1.0`), and its conversions from
//! and into the newest types.

pub mod rater {
    wasmtime::component::bindgen!({ world: "rater", path: "../../wit/since_v0.1.0" });
}
pub mod mapper {
    wasmtime::component::bindgen!({
        world: "erp-mapper",
        path: "../../wit/since_v0.1.0",
        with: { "tollgate:plugin/types": super::rater::tollgate::plugin::types },
    });
}
pub use rater::tollgate::plugin::types;

use super::{posting as pwit, rating as rwit};
use crate::{PluginError, WitDecimal};
use types as wit;

impl From<wit::PluginError> for PluginError {
    fn from(e: wit::PluginError) -> Self {
        PluginError::Plugin { code: e.code, field: e.field, message: e.message }
    }
}

/// Newest → 0.1.0 input: an older rater does not see `related`.
impl From<&rwit::Usage> for wit::Usage {
    fn from(u: &rwit::Usage) -> Self {
        wit::Usage {
            tenant: u.tenant.clone(),
            customer: u.customer.clone(),
            contract_line: u.contract_line.clone(),
            sku: u.sku.clone(),
            meter: u.meter.clone(),
            currency: u.currency.clone(),
            period_start: u.period_start.clone(),
            period_end: u.period_end.clone(),
            quantity: u.quantity.convert(),
            dimensions: u.dimensions.clone(),
            params: u.params.clone(),
        }
    }
}

/// 0.1.0 → newest output.
impl From<wit::ChargeLine> for rwit::ChargeLine {
    fn from(l: wit::ChargeLine) -> Self {
        rwit::ChargeLine {
            sku: l.sku,
            description: l.description,
            quantity: l.quantity.convert(),
            unit_price: l.unit_price.convert(),
            amount: l.amount.convert(),
            explain: l.explain,
        }
    }
}

/// Newest → 0.1.0 mapper input: an older mapper does not see the target,
/// the posting period, the tax context nor the lines' dimensions and accounts.
impl From<&pwit::PostingDocument> for wit::PostingDocument {
    fn from(d: &pwit::PostingDocument) -> Self {
        wit::PostingDocument {
            id: d.id.clone(),
            tenant: d.tenant.clone(),
            legal_entity: d.legal_entity.clone(),
            erp_company: d.erp_company.clone(),
            customer: d.customer.clone(),
            erp_account: d.erp_account.clone(),
            currency: d.currency.clone(),
            period_start: d.period_start.clone(),
            period_end: d.period_end.clone(),
            issue_date: d.issue_date.clone(),
            lines: d
                .lines
                .iter()
                .map(|l| wit::DocumentLine {
                    sku: l.sku.clone(),
                    erp_item: l.erp_item.clone(),
                    description: l.description.clone(),
                    quantity: l.quantity.convert(),
                    unit_price: l.unit_price.convert(),
                    amount: l.amount.convert(),
                })
                .collect(),
            total: d.total.convert(),
        }
    }
}

impl From<&pwit::TargetConfig> for wit::TargetConfig {
    fn from(t: &pwit::TargetConfig) -> Self {
        wit::TargetConfig { name: t.name.clone(), settings: t.settings.clone() }
    }
}

impl From<&pwit::ErpResponse> for wit::ErpResponse {
    fn from(r: &pwit::ErpResponse) -> Self {
        wit::ErpResponse { status: r.status, headers: r.headers.clone(), body: r.body.clone() }
    }
}

impl From<wit::ErpRequest> for pwit::ErpRequest {
    fn from(r: wit::ErpRequest) -> Self {
        pwit::ErpRequest { method: r.method, path: r.path, headers: r.headers, body: r.body }
    }
}

impl From<wit::PluginError> for pwit::PluginError {
    fn from(e: wit::PluginError) -> Self {
        pwit::PluginError { code: e.code, field: e.field, message: e.message }
    }
}

/// A 0.1.0 mapper's outcome: every answer ends its (one-step) conversation.
impl From<wit::PostingOutcome> for pwit::Step {
    fn from(o: wit::PostingOutcome) -> Self {
        match o {
            wit::PostingOutcome::Posted(n) => pwit::Step::Posted(n),
            wit::PostingOutcome::Rejected(e) => pwit::Step::Rejected(e.into()),
            wit::PostingOutcome::Transient(m) => pwit::Step::Transient(m),
        }
    }
}
