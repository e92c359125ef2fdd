//! `tollgate:plugin@0.3.0` (`wit/since_v0.3.0`): the ERP mapper as a
//! conversation; the newest posting types, and the domain's posting
//! document converted into them.

pub mod mapper {
    wasmtime::component::bindgen!({ world: "erp-mapper", path: "../../wit/since_v0.3.0" });
}
pub use mapper::tollgate::plugin::types;

use crate::{PluginError, to_wit};
use tollgate_core::document::Document;
use types as pwit;

impl From<pwit::PluginError> for PluginError {
    fn from(e: pwit::PluginError) -> Self {
        PluginError::Plugin { code: e.code, field: e.field, message: e.message }
    }
}

/// A document as the mapper plugin sees it.
impl From<&Document> for pwit::PostingDocument {
    fn from(d: &Document) -> Self {
        let ts = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        pwit::PostingDocument {
            id: d.id.clone(),
            tenant: d.tenant.clone(),
            legal_entity: d.legal_entity.clone(),
            erp_company: d.erp_company.clone(),
            tax_context: d.tax_context.clone(),
            customer: d.customer.clone(),
            erp_account: d.erp_account.clone(),
            target: d.erp_target.clone(),
            currency: d.currency.clone(),
            period_start: ts(d.period.start),
            period_end: ts(d.period.end),
            posting_period: d.posting_period.clone().unwrap_or_else(|| d.period.id.clone()),
            issue_date: d.issue_date.clone(),
            lines: d
                .lines
                .iter()
                .map(|l| pwit::DocumentLine {
                    contract_line: l.contract_line.clone(),
                    sku: l.sku.clone(),
                    erp_item: l.erp_item.clone(),
                    description: l.description.clone(),
                    quantity: to_wit(l.quantity),
                    unit_price: to_wit(l.unit_price),
                    amount: to_wit(l.amount),
                    usage_from: ts(l.usage_from.unwrap_or(d.period.start)),
                    usage_to: ts(l.usage_to.unwrap_or(d.period.end)),
                    dimensions: l.dimensions.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    revenue_category: l.revenue_category.clone(),
                    gl_account: l.gl_account.clone(),
                })
                .collect(),
            total: to_wit(d.total),
        }
    }
}
