//! NetSuite ERP mapper (SuiteTalk REST record API): a document becomes one
//! invoice, upserted by external id —
//! `PUT /services/rest/record/v1/invoice/eid:{document id}` — so a resend
//! after an ambiguous failure updates the same record instead of creating a
//! second one (NetSuite's recommended duplicate prevention; its idempotency
//! header only applies to asynchronous requests). No look-up is needed.
//!
//! Body: `{externalId, entity: {id: <erp account>}, subsidiary: {id}, tranDate,
//! currency: {refName}, memo, item: {items: [{item: {id: <erp item>},
//! description, quantity, rate, amount}]}}`; quantities and money are JSON
//! numbers written from the exact decimals (never through a float).
//! Settings: `subsidiary` (default: the legal entity's ERP company code),
//! `base_path` (default `/services/rest/record/v1`).
//!
//! Answers: 204 (or 200/201) with `Location: …/invoice/{internal id}` is
//! posted under that id; 429 and 5xx are transient; other errors carry
//! `o:errorDetails` `[{detail, o:errorCode, o:errorPath}]` and are business
//! rejections, classified as `period-closed`, `unknown-item`,
//! `unknown-account` or `validation`.

use serde::Deserialize;
use serde_json::json;
use tollgate_sdk::mapper::{
    ErpRequest, ErpResponse, Guest, PluginError, PostingDocument, PostingOutcome, TargetConfig, exact, header,
    http_error, json_number, setting, transient_status,
};

pub struct NetSuite;

#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(rename = "o:errorDetails", default)]
    details: Vec<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    detail: String,
    #[serde(rename = "o:errorCode", default)]
    code: String,
    #[serde(rename = "o:errorPath", default)]
    path: Option<String>,
}

/// A NetSuite error as a business rejection with a stable code.
fn rejection(status: u16, body: &str) -> PluginError {
    let Some(d) = tollgate_sdk::json::from_str::<ErrorAnswer>(body).ok().and_then(|a| a.details.into_iter().next())
    else {
        return http_error(status, body);
    };
    let detail = d.detail.to_ascii_lowercase();
    let path = d.path.clone().unwrap_or_default();
    let code = if detail.contains("period") && (detail.contains("closed") || detail.contains("locked")) {
        "period-closed"
    } else if d.code == "INVALID_KEY_OR_REF" && path.contains("item") {
        "unknown-item"
    } else if d.code == "INVALID_KEY_OR_REF" && path.starts_with("entity") {
        "unknown-account"
    } else {
        "validation"
    };
    PluginError::new(code, d.path.as_deref(), format!("{} ({})", d.detail, d.code))
}

impl Guest for NetSuite {
    fn map_document(doc: PostingDocument, target: TargetConfig) -> Result<ErpRequest, PluginError> {
        let items = doc
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                Ok(json!({
                    "item": { "id": l.erp_item },
                    "description": l.description,
                    "quantity": json_number(exact(&l.quantity, &format!("lines[{i}].quantity"))?),
                    "rate": json_number(exact(&l.unit_price, &format!("lines[{i}].unit_price"))?),
                    "amount": json_number(exact(&l.amount, &format!("lines[{i}].amount"))?),
                }))
            })
            .collect::<Result<Vec<_>, PluginError>>()?;
        let subsidiary = setting(&target, "subsidiary").unwrap_or(&doc.erp_company);
        let body = json!({
            "externalId": doc.id,
            "entity": { "id": doc.erp_account },
            "subsidiary": { "id": subsidiary },
            "tranDate": doc.issue_date,
            "currency": { "refName": doc.currency },
            "memo": format!("Tollgate {} usage {} – {}", doc.id, doc.period_start, doc.period_end),
            "item": { "items": items },
        });
        let base = setting(&target, "base_path").unwrap_or("/services/rest/record/v1");
        Ok(ErpRequest {
            method: "PUT".into(),
            path: format!("{}/invoice/eid:{}", base.trim_end_matches('/'), doc.id),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        })
    }

    fn lookup_request(_doc: PostingDocument, _target: TargetConfig) -> Option<ErpRequest> {
        // An upsert by external id finds the earlier record itself.
        None
    }

    fn read_lookup(_response: ErpResponse) -> Result<Option<String>, PluginError> {
        Ok(None)
    }

    fn read_response(r: ErpResponse) -> PostingOutcome {
        if let Some(t) = transient_status(&r) {
            return t;
        }
        match r.status {
            200 | 201 | 204 => {
                match header(&r, "location").and_then(|l| l.rsplit('/').next()).filter(|id| !id.is_empty()) {
                    Some(id) => PostingOutcome::Posted(id.to_string()),
                    None => PostingOutcome::Transient(format!("HTTP {} without a Location", r.status)),
                }
            }
            status => PostingOutcome::Rejected(rejection(status, &r.body)),
        }
    }
}

tollgate_sdk::mapper::export_erp_mapper!(NetSuite);
