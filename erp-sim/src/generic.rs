//! The generic JSON API (what the `generic-json` mapper speaks), and the
//! field checks the other dialects share.

use crate::sim::{Fault, Invalid, Invoice, InvoiceLine, Shape, Sim, after_commit, body_field};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde_json::json;

pub(crate) fn error(status: StatusCode, code: &str, field: Option<&str>, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": { "code": code, "field": field, "message": message.into() } }))).into_response()
}

fn text(body: &serde_json::Value, field: &str) -> Result<String, Invalid> {
    body.get(field)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| Invalid { field: field.into(), message: "required string".into() })
}

fn decimal(v: &serde_json::Value, field: &str) -> Result<Decimal, Invalid> {
    let s = v.get(field.rsplit('.').next().unwrap_or(field)).and_then(|x| x.as_str()).ok_or_else(|| Invalid {
        field: field.into(),
        message: "required decimal string (JSON numbers are refused: they lose precision)".into(),
    })?;
    Decimal::from_str_exact(s).map_err(|e| Invalid { field: field.into(), message: format!("{s:?}: {e}") })
}

fn parse_invoice(body: &serde_json::Value, number: String, key: Option<String>) -> Result<Invoice, Invalid> {
    let lines = body
        .get("lines")
        .and_then(|l| l.as_array())
        .filter(|l| !l.is_empty())
        .ok_or_else(|| Invalid { field: "lines".into(), message: "at least one line is required".into() })?;
    let lines = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            Ok(InvoiceLine {
                sku: text(l, "sku").map_err(|e| Invalid { field: format!("lines[{i}].{}", e.field), ..e })?,
                item: text(l, "item").map_err(|e| Invalid { field: format!("lines[{i}].{}", e.field), ..e })?,
                description: text(l, "description").unwrap_or_default(),
                quantity: decimal(l, &format!("lines[{i}].quantity"))?,
                unit_price: decimal(l, &format!("lines[{i}].unit_price"))?,
                amount: decimal(l, &format!("lines[{i}].amount"))?,
            })
        })
        .collect::<Result<Vec<_>, Invalid>>()?;
    let total = decimal(body, "total")?;
    let sum: Decimal = lines.iter().map(|l| l.amount).sum();
    if sum != total {
        return Err(Invalid {
            field: "total".into(),
            message: format!("{total} is not the sum of the line amounts ({sum})"),
        });
    }
    Ok(Invoice {
        number,
        idempotency_key: key,
        document_id: text(body, "document_id")?,
        company: text(body, "company")?,
        customer: text(body, "customer")?,
        account: text(body, "account")?,
        currency: text(body, "currency")?,
        period_start: text(body, "period_start")?,
        period_end: text(body, "period_end")?,
        issue_date: text(body, "issue_date")?,
        lines,
        total,
    })
}

const GENERIC: Shape = Shape {
    transient: |status, message| error(status, "injected", None, message),
    business: |code, message| error(StatusCode::UNPROCESSABLE_ENTITY, code, None, message),
};

pub(crate) async fn create_invoice(State(sim): State<Sim>, headers: HeaderMap, body: String) -> Response {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let fault = sim.take_fault(key.as_deref());
    if let Some(answer) = sim.before_commit(&fault, body_field(&body, "/document_id"), &GENERIC).await {
        return answer;
    }
    let json: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid-json", None, e.to_string()),
    };
    let mut invoice = match commit(&sim, json, key) {
        Ok(invoice) => invoice,
        Err(answer) => return *answer,
    };
    if let Some(answer) = after_commit(&fault, &GENERIC).await {
        return answer;
    }
    if fault == Some(Fault::ReuseNumber) {
        let mut s = sim.lock();
        let n = s.invoices.len();
        if n >= 2 {
            invoice.number = s.invoices[n - 2].number.clone();
            s.invoices[n - 1].number = invoice.number.clone();
        }
    }
    (StatusCode::CREATED, Json(invoice)).into_response()
}

/// Stores the invoice unless the key replays an earlier one or the ERP
/// refuses it; `Err` is the answer to give.
fn commit(sim: &Sim, json: serde_json::Value, key: Option<String>) -> Result<Invoice, Box<Response>> {
    let mut s = sim.lock();
    if let Some(k) = &key
        && let Some((index, original)) = s.bodies.get(k)
    {
        if *original != json {
            return Err(Box::new(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                Some("Idempotency-Key"),
                format!("key {k} was used with a different body"),
            )));
        }
        let invoice = s.invoices[*index].clone();
        return Err(Box::new((StatusCode::OK, [("idempotent-replayed", "true")], Json(invoice)).into_response()));
    }
    let number = format!("INV-{:06}", s.numbered_before + s.invoices.len() + 1);
    let invoice = parse_invoice(&json, number, key.clone())
        .map_err(|e| Box::new(error(StatusCode::UNPROCESSABLE_ENTITY, "validation", Some(&e.field), e.message)))?;
    let period = invoice.issue_date.get(..7).unwrap_or_default();
    if s.closed_periods.contains(period) {
        return Err(Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "period-closed",
            Some("issue_date"),
            format!("Posting period {period} is not open"),
        )));
    }
    s.invoices.push(invoice.clone());
    if let Some(k) = key {
        let index = s.invoices.len() - 1;
        s.bodies.insert(k, (index, json));
    }
    Ok(invoice)
}

pub(crate) async fn list_invoices(State(sim): State<Sim>) -> Json<serde_json::Value> {
    Json(json!({ "invoices": sim.invoices() }))
}
