//! NetSuite's SuiteTalk REST record API: upsert by external id.

use crate::sim::{Invalid, Invoice, InvoiceLine, Shape, Sim, after_commit};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

fn netsuite_error(status: StatusCode, code: &str, path: Option<&str>, detail: impl Into<String>) -> Response {
    let detail = json!({ "detail": detail.into(), "o:errorCode": code, "o:errorPath": path });
    (status, Json(json!({ "status": status.as_u16(), "o:errorDetails": [detail] }))).into_response()
}

#[derive(Deserialize)]
struct NsRef {
    id: String,
}

#[derive(Deserialize)]
struct NsLine {
    item: NsRef,
    #[serde(default)]
    description: String,
    quantity: Box<serde_json::value::RawValue>,
    rate: Box<serde_json::value::RawValue>,
    amount: Box<serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct NsItems {
    items: Vec<NsLine>,
}

#[derive(Deserialize)]
struct NsCurrency {
    #[serde(rename = "refName")]
    ref_name: String,
}

#[derive(Deserialize)]
struct NsInvoice {
    #[serde(rename = "externalId")]
    external_id: String,
    entity: NsRef,
    subsidiary: NsRef,
    #[serde(rename = "tranDate")]
    tran_date: String,
    currency: NsCurrency,
    item: NsItems,
}

/// A NetSuite body as an invoice (numbers read exactly), or the invalid
/// field's path and why (answered as 400 `INVALID_FLD_VALUE`).
fn netsuite_invoice(body: &str, external_id: &str) -> Result<Invoice, Invalid> {
    let bad = |path: &str, detail: String| Invalid::at(path, detail);
    let ns: NsInvoice = serde_json::from_str(body).map_err(|e| bad("", format!("Invalid request body: {e}")))?;
    if ns.external_id != external_id {
        return Err(bad("externalId", format!("{} differs from eid:{external_id}", ns.external_id)));
    }
    let exact = |raw: &serde_json::value::RawValue, path: String| {
        Decimal::from_str_exact(raw.get()).map_err(|e| bad(&path, format!("{}: {e}", raw.get())))
    };
    let mut lines = Vec::new();
    for (i, l) in ns.item.items.iter().enumerate() {
        lines.push(InvoiceLine {
            sku: l.item.id.clone(),
            item: l.item.id.clone(),
            description: l.description.clone(),
            quantity: exact(&l.quantity, format!("item.items[{i}].quantity"))?,
            unit_price: exact(&l.rate, format!("item.items[{i}].rate"))?,
            amount: exact(&l.amount, format!("item.items[{i}].amount"))?,
        });
    }
    if lines.is_empty() {
        return Err(bad("item.items", "at least one line is required".into()));
    }
    Ok(Invoice {
        number: String::new(),
        idempotency_key: Some(format!("eid:{external_id}")),
        document_id: ns.external_id,
        company: ns.subsidiary.id,
        customer: ns.entity.id.clone(),
        account: ns.entity.id,
        currency: ns.currency.ref_name,
        period_start: String::new(),
        period_end: String::new(),
        issue_date: ns.tran_date,
        total: lines.iter().map(|l| l.amount).sum(),
        lines,
    })
}

const NETSUITE: Shape = Shape {
    transient: |status, message| netsuite_error(status, "UNEXPECTED_ERROR", None, message),
    business: |_, message| netsuite_error(StatusCode::BAD_REQUEST, "USER_ERROR", None, message),
};

pub(crate) async fn netsuite_upsert(
    State(sim): State<Sim>,
    axum::extract::Path(eid): axum::extract::Path<String>,
    body: String,
) -> Response {
    let Some(external_id) = eid.strip_prefix("eid:").map(str::to_string) else {
        return netsuite_error(StatusCode::NOT_FOUND, "NONEXISTENT_ID", None, format!("no record {eid}"));
    };
    let key = format!("eid:{external_id}");
    let fault = sim.take_fault(Some(&key));
    if let Some(answer) = sim.before_commit(&fault, Some(external_id.clone()), &NETSUITE).await {
        return answer;
    }
    let mut invoice = match netsuite_invoice(&body, &external_id) {
        Ok(i) => i,
        Err(Invalid { field, message }) => {
            return netsuite_error(StatusCode::BAD_REQUEST, "INVALID_FLD_VALUE", Some(&field), message);
        }
    };
    {
        let mut s = sim.lock();
        let period = invoice.issue_date.get(..7).unwrap_or_default().to_string();
        if s.closed_periods.contains(&period) {
            let detail = format!("The accounting period {period} is closed.");
            return netsuite_error(StatusCode::BAD_REQUEST, "USER_ERROR", Some("tranDate"), detail);
        }
        let value = serde_json::Value::String(body.clone());
        match s.bodies.get(&key).map(|(index, _)| *index) {
            Some(index) => {
                invoice.number = s.invoices[index].number.clone();
                s.invoices[index] = invoice.clone();
                s.bodies.insert(key, (index, value));
            }
            None => {
                invoice.number = format!("{}", 1000 + s.invoices.len() + 1);
                s.invoices.push(invoice.clone());
                let index = s.invoices.len() - 1;
                s.bodies.insert(key, (index, value));
            }
        }
    }
    if let Some(answer) = after_commit(&fault, &NETSUITE).await {
        return answer;
    }
    let location = format!("/services/rest/record/v1/invoice/{}", invoice.number);
    (StatusCode::NO_CONTENT, [("location", location)]).into_response()
}
