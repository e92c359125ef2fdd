//! Odoo's JSON-2 API: `account.move` create and search_read.

use crate::sim::{Invalid, Invoice, InvoiceLine, Shape, Sim, after_commit, body_field};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

fn odoo_error(status: StatusCode, name: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({ "name": name, "message": message.into(), "arguments": [], "context": {} }))).into_response()
}

fn odoo_authorized(headers: &HeaderMap) -> bool {
    let has = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).is_some_and(|v| !v.trim().is_empty());
    has("x-odoo-database")
        && headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("bearer "))
}

#[derive(Deserialize)]
struct OdooLine {
    product_id: u64,
    #[serde(default)]
    name: String,
    quantity: Box<serde_json::value::RawValue>,
    price_unit: Box<serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct OdooMove {
    move_type: String,
    partner_id: u64,
    #[serde(rename = "ref")]
    reference: String,
    invoice_date: String,
    invoice_line_ids: Vec<(u8, u8, OdooLine)>,
}

#[derive(Deserialize)]
struct OdooCreate {
    vals_list: Vec<OdooMove>,
}

fn odoo_invoice(body: &str) -> Result<Invoice, Invalid> {
    let create: OdooCreate = serde_json::from_str(body).map_err(|e| Invalid::body(format!("invalid body: {e}")))?;
    let [m] =
        <[OdooMove; 1]>::try_from(create.vals_list).map_err(|_| Invalid::at("vals_list", "one invoice per call"))?;
    if m.move_type != "out_invoice" {
        return Err(Invalid::body(format!("move_type {:?}: only out_invoice here", m.move_type)));
    }
    let mut lines = Vec::new();
    for (i, (_, _, l)) in m.invoice_line_ids.iter().enumerate() {
        let exact = |raw: &serde_json::value::RawValue, name: &str| {
            Decimal::from_str_exact(raw.get())
                .map_err(|e| Invalid::at(format!("invoice_line_ids[{i}].{name}"), e.to_string()))
        };
        let (quantity, unit_price) = (exact(&l.quantity, "quantity")?, exact(&l.price_unit, "price_unit")?);
        let amount = quantity
            .checked_mul(unit_price)
            .ok_or_else(|| Invalid::at(format!("invoice_line_ids[{i}]"), "subtotal overflows"))?
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        let item = l.product_id.to_string();
        lines.push(InvoiceLine { sku: item.clone(), item, description: l.name.clone(), quantity, unit_price, amount });
    }
    if lines.is_empty() {
        return Err(Invalid::at("invoice_line_ids", "at least one line"));
    }
    Ok(Invoice {
        number: String::new(),
        idempotency_key: None,
        document_id: m.reference,
        company: String::new(),
        customer: m.partner_id.to_string(),
        account: m.partner_id.to_string(),
        currency: String::new(),
        period_start: String::new(),
        period_end: String::new(),
        issue_date: m.invoice_date,
        total: lines.iter().map(|l| l.amount).sum(),
        lines,
    })
}

const ODOO: Shape = Shape {
    transient: |status, message| odoo_error(status, "werkzeug.exceptions.ServiceUnavailable", message),
    business: |_, message| odoo_error(StatusCode::UNPROCESSABLE_ENTITY, "odoo.exceptions.UserError", message),
};

pub(crate) async fn odoo_create(State(sim): State<Sim>, headers: HeaderMap, body: String) -> Response {
    if !odoo_authorized(&headers) {
        return odoo_error(
            StatusCode::UNAUTHORIZED,
            "werkzeug.exceptions.Unauthorized",
            "bearer key and database required",
        );
    }
    let reference = body_field(&body, "/vals_list/0/ref");
    let fault = sim.take_fault(reference.as_deref());
    if let Some(answer) = sim.before_commit(&fault, reference, &ODOO).await {
        return answer;
    }
    let mut invoice = match odoo_invoice(&body) {
        Ok(i) => i,
        Err(e) => {
            return odoo_error(StatusCode::UNPROCESSABLE_ENTITY, "odoo.exceptions.ValidationError", e.to_string());
        }
    };
    let id = {
        let mut s = sim.lock();
        let period = invoice.issue_date.get(..7).unwrap_or_default().to_string();
        if s.closed_periods.contains(&period) {
            let message = format!(
                "You cannot add/modify entries prior to and inclusive of the lock date {period} (closed period)."
            );
            return odoo_error(StatusCode::UNPROCESSABLE_ENTITY, "odoo.exceptions.UserError", message);
        }
        let id = 100 + s.invoices.len() + 1;
        invoice.number = id.to_string();
        s.invoices.push(invoice);
        id
    };
    if let Some(answer) = after_commit(&fault, &ODOO).await {
        return answer;
    }
    Json(json!([id])).into_response()
}

pub(crate) async fn odoo_search(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Json(q): Json<serde_json::Value>,
) -> Response {
    if !odoo_authorized(&headers) {
        return odoo_error(
            StatusCode::UNAUTHORIZED,
            "werkzeug.exceptions.Unauthorized",
            "bearer key and database required",
        );
    }
    let reference = q["domain"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c[0] == "ref" && c[1] == "=")
        .and_then(|c| c[2].as_str().map(str::to_string));
    let Some(reference) = reference else {
        return odoo_error(StatusCode::UNPROCESSABLE_ENTITY, "odoo.exceptions.ValidationError", "domain needs ref =");
    };
    let s = sim.lock();
    let found: Vec<_> = s
        .invoices
        .iter()
        .filter(|i| i.document_id == reference && i.company.is_empty() && i.number.parse::<u64>().is_ok())
        .map(|i| json!({ "id": i.number.parse::<u64>().unwrap_or_default(), "name": "/", "state": "draft" }))
        .collect();
    Json(json!(found)).into_response()
}
