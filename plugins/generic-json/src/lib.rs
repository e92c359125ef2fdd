//! Generic JSON ERP mapper: posts a document as one JSON invoice to
//! `POST {path}` (setting `path`, default `/generic/invoices`) with the
//! document id as `Idempotency-Key`, so the receiver answers a repeat with the
//! original invoice instead of creating another.
//!
//! Request body: `{document_id, tenant, legal_entity, company, customer,
//! account, currency, period_start, period_end, issue_date, lines: [{sku,
//! item, description, quantity, unit_price, amount}], total}`, every number
//! an exact decimal string. The response carries the ERP's `number`.

use serde::Deserialize;
use serde_json::json;
use tollgate_sdk::mapper::{
    ErpRequest, ErpResponse, Guest, PluginError, PostingDocument, PostingOutcome, TargetConfig, WitDecimal, exact,
    http_error, setting, transient_status,
};

pub struct GenericJson;

fn dec(d: &WitDecimal, field: &str) -> Result<String, PluginError> {
    exact(d, field).map(|d| d.to_string())
}

#[derive(Deserialize)]
struct Answer {
    number: Option<String>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    field: Option<String>,
    message: String,
}

impl Guest for GenericJson {
    fn map_document(doc: PostingDocument, target: TargetConfig) -> Result<ErpRequest, PluginError> {
        let lines = doc
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                Ok(json!({
                    "sku": l.sku,
                    "item": l.erp_item,
                    "description": l.description,
                    "quantity": dec(&l.quantity, &format!("lines[{i}].quantity"))?,
                    "unit_price": dec(&l.unit_price, &format!("lines[{i}].unit_price"))?,
                    "amount": dec(&l.amount, &format!("lines[{i}].amount"))?,
                }))
            })
            .collect::<Result<Vec<_>, PluginError>>()?;
        let body = json!({
            "document_id": doc.id,
            "tenant": doc.tenant,
            "legal_entity": doc.legal_entity,
            "company": doc.erp_company,
            "customer": doc.customer,
            "account": doc.erp_account,
            "currency": doc.currency,
            "period_start": doc.period_start,
            "period_end": doc.period_end,
            "issue_date": doc.issue_date,
            "lines": lines,
            "total": dec(&doc.total, "total")?,
        });
        Ok(ErpRequest {
            method: "POST".into(),
            path: setting(&target, "path").unwrap_or("/generic/invoices").to_string(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("idempotency-key".into(), doc.id.clone()),
            ],
            body: body.to_string(),
        })
    }

    fn lookup_request(_doc: PostingDocument, _target: TargetConfig) -> Option<ErpRequest> {
        // The receiver deduplicates by Idempotency-Key itself.
        None
    }

    fn read_lookup(_response: ErpResponse) -> Result<Option<String>, PluginError> {
        Ok(None)
    }

    fn read_response(r: ErpResponse) -> PostingOutcome {
        if let Some(t) = transient_status(&r) {
            return t;
        }
        let answer: Option<Answer> = tollgate_sdk::json::from_str(&r.body).ok();
        match r.status {
            200..=299 => match answer.and_then(|a| a.number) {
                Some(n) if !n.is_empty() => PostingOutcome::Posted(n),
                _ => PostingOutcome::Transient(format!("HTTP {} without an invoice number", r.status)),
            },
            status => {
                let err = answer.and_then(|a| a.error);
                PostingOutcome::Rejected(match err {
                    Some(e) => PluginError { code: e.code, field: e.field, message: e.message },
                    None => http_error(status, &r.body),
                })
            }
        }
    }
}

tollgate_sdk::mapper::export_erp_mapper!(GenericJson);
