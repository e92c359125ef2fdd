//! Microsoft Dynamics 365 Business Central ERP mapper (API v2.0): a
//! document becomes one sales invoice created with its lines in one call
//! (deep insert) —
//! `POST /api/v2.0/companies({company})/salesInvoices` — carrying the
//! document id as `externalDocumentNumber`. Business Central has no
//! idempotency of its own, so after an ambiguous failure the gateway first
//! runs this mapper's look-up,
//! `GET …/salesInvoices?$filter=externalDocumentNumber eq '{id}'`, and only
//! resends when nothing was found.
//!
//! Business Central computes each line's amount as quantity × unit price.
//! A line whose amount is exactly that is sent as it is; a line whose rule
//! rounded (tiers, minimums) is sent as quantity 1 at its amount, with the
//! real quantity and price in the description, so the ERP's total equals
//! the document's to the cent. Quantities and prices are JSON numbers
//! written from the exact decimals.
//!
//! Settings: `company_id` (default: the legal entity's ERP company code),
//! `base_path` (default `/api/v2.0`).
//!
//! Answers: 201 with the invoice's `number` is posted; 429 and 5xx are
//! transient; `{"error": {code, message}}` is a business rejection,
//! classified `period-closed` ("not within your range of allowed posting
//! dates"), `unknown-account`, `unknown-item` or `validation`.

use serde::Deserialize;
use serde_json::json;
use tollgate_sdk::mapper::{
    ErpRequest, ErpResponse, Guest, PluginError, PostingDocument, PostingOutcome, TargetConfig, http_error,
    json_number, priced_line, setting, transient_status,
};

pub struct BusinessCentral;

fn collection(doc: &PostingDocument, target: &TargetConfig) -> String {
    let base = setting(target, "base_path").unwrap_or("/api/v2.0").trim_end_matches('/');
    let company = setting(target, "company_id").unwrap_or(&doc.erp_company);
    format!("{base}/companies({company})/salesInvoices")
}

#[derive(Deserialize)]
struct Invoice {
    number: Option<String>,
}

#[derive(Deserialize)]
struct Found {
    #[serde(default)]
    value: Vec<Invoice>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

fn rejection(status: u16, body: &str) -> PluginError {
    let Ok(ErrorAnswer { error }) = tollgate_sdk::json::from_str::<ErrorAnswer>(body) else {
        return http_error(status, body);
    };
    let m = error.message.to_ascii_lowercase();
    let code = if m.contains("allowed posting dates") || m.contains("posting date is not within") {
        "period-closed"
    } else if m.contains("customer") && (m.contains("does not exist") || m.contains("not found")) {
        "unknown-account"
    } else if m.contains("item") && (m.contains("does not exist") || m.contains("not found")) {
        "unknown-item"
    } else {
        "validation"
    };
    PluginError::new(code, None, format!("{} ({})", error.message, error.code))
}

impl Guest for BusinessCentral {
    fn map_document(doc: PostingDocument, target: TargetConfig) -> Result<ErpRequest, PluginError> {
        let lines = doc
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (quantity, price, description) = priced_line(l, i)?;
                Ok(json!({
                    "lineType": "Item",
                    "lineObjectNumber": l.erp_item,
                    "description": description,
                    "quantity": json_number(quantity),
                    "unitPrice": json_number(price),
                }))
            })
            .collect::<Result<Vec<_>, PluginError>>()?;
        let body = json!({
            "externalDocumentNumber": doc.id,
            "customerNumber": doc.erp_account,
            "invoiceDate": doc.issue_date,
            "currencyCode": doc.currency,
            "salesInvoiceLines": lines,
        });
        Ok(ErpRequest {
            method: "POST".into(),
            path: collection(&doc, &target),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        })
    }

    fn lookup_request(doc: PostingDocument, target: TargetConfig) -> Option<ErpRequest> {
        // OData string literal: quotes doubled; the query URL-encoded.
        let filter = format!("externalDocumentNumber eq '{}'", doc.id.replace('\'', "''"));
        let encoded: String = filter
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        Some(ErpRequest {
            method: "GET".into(),
            path: format!("{}?$filter={encoded}", collection(&doc, &target)),
            headers: vec![("accept".into(), "application/json".into())],
            body: String::new(),
        })
    }

    fn read_lookup(r: ErpResponse) -> Result<Option<String>, PluginError> {
        if r.status != 200 {
            return Err(PluginError::new("lookup-failed", None, format!("HTTP {}", r.status)));
        }
        let found: Found = tollgate_sdk::json::from_str(&r.body)
            .map_err(|e| PluginError::new("lookup-failed", Some("value"), e.to_string()))?;
        Ok(found.value.into_iter().find_map(|i| i.number))
    }

    fn read_response(r: ErpResponse) -> PostingOutcome {
        if let Some(t) = transient_status(&r) {
            return t;
        }
        match r.status {
            200 | 201 => match tollgate_sdk::json::from_str::<Invoice>(&r.body).ok().and_then(|i| i.number) {
                Some(n) if !n.is_empty() => PostingOutcome::Posted(n),
                _ => PostingOutcome::Transient(format!("HTTP {} without an invoice number", r.status)),
            },
            status => PostingOutcome::Rejected(rejection(status, &r.body)),
        }
    }
}

tollgate_sdk::mapper::export_erp_mapper!(BusinessCentral);
