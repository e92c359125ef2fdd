//! Odoo ERP mapper (JSON-2 API, Odoo 19+): a document becomes one customer
//! invoice (`account.move`, `move_type: out_invoice`) created as a draft
//! for finance to validate in Odoo —
//! `POST /json/2/account.move/create` with `Authorization: bearer <key>`
//! and `X-Odoo-Database` — its `ref` the document id. `ref` is not unique
//! in Odoo, so after an ambiguous failure the gateway first runs this
//! mapper's look-up (`POST /json/2/account.move/search_read` on `ref`) and
//! only resends when nothing was found.
//!
//! The customer's ERP account and each line's ERP item are Odoo record ids
//! (`partner_id`, `product_id`: integers). Odoo computes line subtotals
//! itself, so a line whose rule rounded goes as one unit at its amount
//! (see `tollgate_sdk::mapper::priced_line`). Settings: `database`,
//! `api_key`.
//!
//! Answers: 200 with `[id]` is posted under the record id; 429 and 5xx are
//! transient; other errors (`{name, message}`) are business rejections:
//! the lock date ("prior to and inclusive of the lock date") is
//! `period-closed`, a missing partner or product `unknown-account` /
//! `unknown-item`, the rest `validation`.

use serde::Deserialize;
use serde_json::json;
use tollgate_sdk::mapper::{
    ErpRequest, ErpResponse, Guest, PluginError, PostingDocument, PostingOutcome, TargetConfig, http_error,
    json_number, priced_line, setting, transient_status,
};

pub struct Odoo;

fn record_id(value: &str, field: &str) -> Result<u64, PluginError> {
    value.parse().map_err(|_| PluginError::new("invalid-input", Some(field), format!("{value:?} is not an Odoo id")))
}

fn request(method: &str, target: &TargetConfig, body: serde_json::Value) -> ErpRequest {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(db) = setting(target, "database") {
        headers.push(("x-odoo-database".into(), db.into()));
    }
    if let Some(key) = setting(target, "api_key") {
        headers.push(("authorization".into(), format!("bearer {key}")));
    }
    ErpRequest {
        method: "POST".into(),
        path: format!("/json/2/account.move/{method}"),
        headers,
        body: body.to_string(),
    }
}

#[derive(Deserialize)]
struct Found {
    id: u64,
}

#[derive(Deserialize)]
struct OdooError {
    #[serde(default)]
    name: String,
    #[serde(default)]
    message: String,
}

fn rejection(status: u16, body: &str) -> PluginError {
    let Ok(e) = tollgate_sdk::json::from_str::<OdooError>(body) else {
        return http_error(status, body);
    };
    let m = e.message.to_ascii_lowercase();
    let code = if m.contains("lock date") {
        "period-closed"
    } else if m.contains("partner") || m.contains("customer") {
        "unknown-account"
    } else if m.contains("product") {
        "unknown-item"
    } else {
        "validation"
    };
    PluginError::new(code, None, format!("{} ({})", e.message, e.name))
}

impl Guest for Odoo {
    fn map_document(doc: PostingDocument, target: TargetConfig) -> Result<ErpRequest, PluginError> {
        let lines = doc
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (quantity, price, description) = priced_line(l, i)?;
                let product = record_id(&l.erp_item, &format!("lines[{i}].erp_item"))?;
                Ok(json!([0, 0, {
                    "product_id": product,
                    "name": description,
                    "quantity": json_number(quantity),
                    "price_unit": json_number(price),
                }]))
            })
            .collect::<Result<Vec<_>, PluginError>>()?;
        let invoice = json!({
            "move_type": "out_invoice",
            "partner_id": record_id(&doc.erp_account, "erp_account")?,
            "ref": doc.id,
            "invoice_date": doc.issue_date,
            "narration": format!("Tollgate usage {} – {}", doc.period_start, doc.period_end),
            "invoice_line_ids": lines,
        });
        Ok(request("create", &target, json!({ "vals_list": [invoice] })))
    }

    fn lookup_request(doc: PostingDocument, target: TargetConfig) -> Option<ErpRequest> {
        let body = json!({
            "domain": [["ref", "=", doc.id], ["move_type", "=", "out_invoice"]],
            "fields": ["id", "name", "state"],
        });
        Some(request("search_read", &target, body))
    }

    fn read_lookup(r: ErpResponse) -> Result<Option<String>, PluginError> {
        if r.status != 200 {
            return Err(PluginError::new("lookup-failed", None, format!("HTTP {}", r.status)));
        }
        let found: Vec<Found> = tollgate_sdk::json::from_str(&r.body)
            .map_err(|e| PluginError::new("lookup-failed", None, e.to_string()))?;
        Ok(found.first().map(|f| f.id.to_string()))
    }

    fn read_response(r: ErpResponse) -> PostingOutcome {
        if let Some(t) = transient_status(&r) {
            return t;
        }
        match r.status {
            200 | 201 => {
                match tollgate_sdk::json::from_str::<Vec<u64>>(&r.body).ok().and_then(|ids| ids.first().copied()) {
                    Some(id) => PostingOutcome::Posted(id.to_string()),
                    None => PostingOutcome::Transient(format!("HTTP {} without a record id", r.status)),
                }
            }
            status => PostingOutcome::Rejected(rejection(status, &r.body)),
        }
    }
}

tollgate_sdk::mapper::export_erp_mapper!(Odoo);
