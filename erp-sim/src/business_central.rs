//! Business Central API v2.0: sales invoices by deep insert, found by
//! external document number.

use crate::sim::{Invalid, Invoice, InvoiceLine, Shape, Sim, after_commit, body_field};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;

fn bc_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": { "code": code, "message": message.into() } }))).into_response()
}

/// `companies(1000)` → `1000`.
fn bc_company(segment: &str) -> Option<String> {
    segment.strip_prefix("companies(")?.strip_suffix(')').map(str::to_string)
}

#[derive(Deserialize)]
struct BcLine {
    #[serde(rename = "lineObjectNumber")]
    item: String,
    #[serde(default)]
    description: String,
    quantity: Box<serde_json::value::RawValue>,
    #[serde(rename = "unitPrice")]
    unit_price: Box<serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct BcInvoice {
    #[serde(rename = "externalDocumentNumber")]
    external: String,
    #[serde(rename = "customerNumber")]
    customer: String,
    #[serde(rename = "invoiceDate")]
    date: String,
    #[serde(rename = "currencyCode")]
    currency: String,
    #[serde(rename = "salesInvoiceLines")]
    lines: Vec<BcLine>,
}

fn bc_invoice(body: &str, company: String) -> Result<Invoice, Invalid> {
    let bc: BcInvoice = serde_json::from_str(body).map_err(|e| Invalid::body(format!("Invalid request body: {e}")))?;
    let mut lines = Vec::new();
    for (i, l) in bc.lines.iter().enumerate() {
        let exact = |raw: &serde_json::value::RawValue, name: &str| {
            Decimal::from_str_exact(raw.get())
                .map_err(|e| Invalid::at(format!("salesInvoiceLines[{i}].{name}"), e.to_string()))
        };
        let (quantity, unit_price) = (exact(&l.quantity, "quantity")?, exact(&l.unit_price, "unitPrice")?);
        let amount = quantity
            .checked_mul(unit_price)
            .ok_or_else(|| Invalid::at(format!("salesInvoiceLines[{i}]"), "amount overflows"))?
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        lines.push(InvoiceLine {
            sku: l.item.clone(),
            item: l.item.clone(),
            description: l.description.clone(),
            quantity,
            unit_price,
            amount,
        });
    }
    if lines.is_empty() {
        return Err(Invalid::at("salesInvoiceLines", "at least one line is required"));
    }
    Ok(Invoice {
        number: String::new(),
        idempotency_key: None,
        document_id: bc.external,
        company,
        customer: bc.customer.clone(),
        account: bc.customer,
        currency: bc.currency,
        period_start: String::new(),
        period_end: String::new(),
        issue_date: bc.date,
        total: lines.iter().map(|l| l.amount).sum(),
        lines,
    })
}

const BC: Shape = Shape {
    transient: |status, message| bc_error(status, "Internal_ServerError", message),
    business: |_, message| bc_error(StatusCode::BAD_REQUEST, "Application_DialogException", message),
};

pub(crate) async fn bc_create(
    State(sim): State<Sim>,
    axum::extract::Path(segment): axum::extract::Path<String>,
    body: String,
) -> Response {
    let Some(company) = bc_company(&segment) else {
        return bc_error(StatusCode::NOT_FOUND, "BadRequest_NotFound", format!("no {segment}"));
    };
    let external = body_field(&body, "/externalDocumentNumber");
    let fault = sim.take_fault(external.as_deref());
    if let Some(answer) = sim.before_commit(&fault, external, &BC).await {
        return answer;
    }
    let mut invoice = match bc_invoice(&body, company) {
        Ok(i) => i,
        Err(e) => return bc_error(StatusCode::BAD_REQUEST, "BadRequest_InvalidBody", e.to_string()),
    };
    {
        let mut s = sim.lock();
        let period = invoice.issue_date.get(..7).unwrap_or_default().to_string();
        if s.closed_periods.contains(&period) {
            let message = "The Posting Date is not within your range of allowed posting dates.";
            return bc_error(StatusCode::BAD_REQUEST, "Application_DialogException", message);
        }
        invoice.number = format!("S-INV-{}", 1000 + s.invoices.len() + 1);
        s.invoices.push(invoice.clone());
    }
    if let Some(answer) = after_commit(&fault, &BC).await {
        return answer;
    }
    let answer = json!({
        "id": format!("00000000-0000-0000-0000-{:012}", invoice.number.trim_start_matches("S-INV-")),
        "number": invoice.number,
        "externalDocumentNumber": invoice.document_id,
    });
    (StatusCode::CREATED, Json(answer)).into_response()
}

pub(crate) async fn bc_find(
    State(sim): State<Sim>,
    axum::extract::Path(segment): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let Some(company) = bc_company(&segment) else {
        return bc_error(StatusCode::NOT_FOUND, "BadRequest_NotFound", format!("no {segment}"));
    };
    let filter = q.get("$filter").map(String::as_str).unwrap_or_default();
    let Some(wanted) = filter
        .strip_prefix("externalDocumentNumber eq '")
        .and_then(|r| r.strip_suffix('\''))
        .map(|v| v.replace("''", "'"))
    else {
        return bc_error(StatusCode::BAD_REQUEST, "BadRequest_InvalidFilter", format!("unsupported filter {filter:?}"));
    };
    let s = sim.lock();
    let value: Vec<_> = s
        .invoices
        .iter()
        .filter(|i| i.company == company && i.document_id == wanted && i.number.starts_with("S-INV-"))
        .map(|i| json!({ "number": i.number, "externalDocumentNumber": i.document_id, "totalAmountIncludingTax": i.total }))
        .collect();
    Json(json!({ "value": value })).into_response()
}
