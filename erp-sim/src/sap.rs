//! SAP S/4HANA Cloud: the asynchronous SOAP billing document request and
//! its OData read-back.

use crate::sim::{Invalid, Invoice, InvoiceLine, Shape, Sim, after_commit};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::HashMap;

/// The text of the first `<name>` (or `<name …>`) element in `xml`, unescaped.
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>")).or_else(|| xml.find(&format!("<{name} ")))?;
    let open_end = start + xml[start..].find('>')? + 1;
    let end = open_end + xml[open_end..].find(&format!("</{name}>"))?;
    let text = &xml[open_end..end];
    Some(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

fn soap_fault(status: StatusCode, message: impl Into<String>) -> Response {
    let body = format!(
        "<soap-env:Envelope xmlns:soap-env=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap-env:Body>\
         <soap-env:Fault><faultcode>soap-env:Client</faultcode><faultstring>{}</faultstring></soap-env:Fault>\
         </soap-env:Body></soap-env:Envelope>",
        message.into().replace('&', "&amp;").replace('<', "&lt;")
    );
    (status, [("content-type", "text/xml; charset=utf-8")], body).into_response()
}

fn basic_authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("basic ") && v.len() > 6)
}

/// A billing document request as the simulator stores it.
fn sap_invoice(xml: &str) -> Result<Invoice, Invalid> {
    let field = |name: &str| xml_text(xml, name).ok_or_else(|| Invalid::body(format!("{name} is missing")));
    let mut lines = Vec::new();
    for (i, item) in xml.split("<BillableDocumentItem>").skip(1).enumerate() {
        let get = |name: &str| {
            xml_text(item, name)
                .ok_or_else(|| Invalid::at(format!("BillableDocumentItem[{i}]"), format!("{name} is missing")))
        };
        let number = |name: &str| {
            get(name).and_then(|v| {
                Decimal::from_str_exact(v.trim())
                    .map_err(|e| Invalid::at(format!("BillableDocumentItem[{i}]"), format!("{name}: {e}")))
            })
        };
        let (quantity, unit_price) = (number("BillingQuantity")?, number("ConditionRateAmount")?);
        let amount = quantity
            .checked_mul(unit_price)
            .ok_or_else(|| Invalid::at(format!("BillableDocumentItem[{i}]"), "net amount overflows"))?
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        let material = get("Material")?;
        let description = xml_text(item, "BillableDocumentItemText").unwrap_or_default();
        lines.push(InvoiceLine { sku: material.clone(), item: material, description, quantity, unit_price, amount });
    }
    if lines.is_empty() {
        return Err(Invalid::at("BillableDocumentItem", "at least one item"));
    }
    Ok(Invoice {
        number: String::new(),
        idempotency_key: None,
        document_id: field("ReferenceDocument")?,
        company: field("SalesOrganization")?,
        customer: field("SoldToParty")?,
        account: field("SoldToParty")?,
        currency: field("TransactionCurrency")?,
        period_start: String::new(),
        period_end: String::new(),
        issue_date: field("BillingDocumentDate")?,
        total: lines.iter().map(|l| l.amount).sum(),
        lines,
    })
}

const SAP: Shape = Shape {
    transient: |status, message| soap_fault(status, message),
    business: |_, message| soap_fault(StatusCode::BAD_REQUEST, message),
};

pub(crate) async fn sap_bdr_request(State(sim): State<Sim>, headers: HeaderMap, body: String) -> Response {
    if !basic_authorized(&headers) {
        return soap_fault(StatusCode::UNAUTHORIZED, "authentication required");
    }
    let reference = xml_text(&body, "ReferenceDocument");
    let fault = sim.take_fault(reference.as_deref());
    if let Some(answer) = sim.before_commit(&fault, reference, &SAP).await {
        return answer;
    }
    let Some(message_id) = xml_text(&body, "ID") else {
        return soap_fault(StatusCode::BAD_REQUEST, "MessageHeader/ID is missing");
    };
    let mut invoice = match sap_invoice(&body) {
        Ok(i) => i,
        Err(e) => return soap_fault(StatusCode::BAD_REQUEST, e.to_string()),
    };
    {
        let mut s = sim.lock();
        if s.sap_messages.insert(message_id) {
            let (year, month) = (invoice.issue_date.get(..4).unwrap_or_default(), invoice.issue_date.get(5..7));
            let mut entry = json!({
                "BillingDocumentRequest": "",
                "ReferenceDocument": invoice.document_id,
                "BillingDocumentDate": invoice.issue_date,
                "TotalNetAmount": invoice.total.to_string(),
                "TransactionCurrency": invoice.currency,
                "SAP__Messages": [],
            });
            if s.closed_periods.contains(invoice.issue_date.get(..7).unwrap_or_default()) {
                let message = format!("Posting period 0{} {year} is not open", month.unwrap_or_default());
                entry["SAP__Messages"] = json!([{ "code": "F5/201", "message": message, "severity": "error" }]);
                s.rejected.insert(invoice.document_id.clone(), "period-closed".into());
            } else {
                invoice.number = format!("9{:08}", s.invoices.len() + 1);
                entry["BillingDocumentRequest"] = json!(invoice.number);
                s.invoices.push(invoice);
            }
            s.sap_entries.push(entry);
        }
    }
    if let Some(answer) = after_commit(&fault, &SAP).await {
        return answer;
    }
    StatusCode::ACCEPTED.into_response()
}

pub(crate) async fn sap_read_back(
    State(sim): State<Sim>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    if !basic_authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "authentication required").into_response();
    }
    let filter = q.get("$filter").map(String::as_str).unwrap_or_default();
    let Some(reference) =
        filter.strip_prefix("ReferenceDocument eq '").and_then(|r| r.strip_suffix('\'')).map(|r| r.replace("''", "'"))
    else {
        let error = json!({ "error": { "code": "400", "message": { "lang": "en", "value": "$filter must be ReferenceDocument eq '…'" } } });
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    };
    let s = sim.lock();
    let results: Vec<_> =
        s.sap_entries.iter().filter(|e| e["ReferenceDocument"] == reference.as_str()).cloned().collect();
    Json(json!({ "d": { "results": results } })).into_response()
}
