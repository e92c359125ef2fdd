//! ERP simulator: an HTTP server on 127.0.0.1 that takes invoices the way a
//! real ERP does, so Tollgate's posting is tested over real HTTP.
//!
//! Generic JSON API (what the `generic-json` mapper speaks):
//! - `POST /generic/invoices` with an optional `Idempotency-Key` header.
//!   Creates an invoice and answers 201 `{number, ...}`. A repeated key with
//!   the same body answers 200 with the original invoice (header
//!   `Idempotent-Replayed: true`); with another body, 422
//!   `idempotency-key-reused`. Without a key every POST creates an invoice,
//!   as in most ERPs. Amounts must be decimal strings; the total must equal
//!   the sum of the line amounts; errors are 422 `{error: {code, field, message}}`.
//! - `GET /generic/invoices`: every stored invoice.
//!
//! NetSuite (SuiteTalk REST record API, what the `netsuite` mapper speaks):
//! - `PUT /services/rest/record/v1/invoice/eid:{externalId}`: upsert by
//!   external id; 204 with `Location: /services/rest/record/v1/invoice/{id}`;
//!   the same external id again updates the same record. `quantity`, `rate`
//!   and `amount` are JSON numbers, read exactly. Errors are 400
//!   `{"o:errorDetails": [{detail, o:errorCode, o:errorPath}]}`; a closed
//!   period (of `tranDate`) is `USER_ERROR` "The accounting period … is closed".
//!
//! Business Central (API v2.0, what the `business-central` mapper speaks):
//! - `POST /api/v2.0/companies({id})/salesInvoices` with `salesInvoiceLines`
//!   (deep insert): 201 `{id, number, externalDocumentNumber}`. Like the real
//!   one it has no idempotency: every POST creates an invoice. Line amounts
//!   are quantity × unit price, rounded to cents. Errors are `{"error":
//!   {code, message}}`; a closed period (of `invoiceDate`) is "The Posting
//!   Date is not within your range of allowed posting dates."
//! - `GET /api/v2.0/companies({id})/salesInvoices?$filter=externalDocumentNumber eq '…'`:
//!   `{"value": [...]}`, how a client finds an earlier posting.
//!
//! Odoo (JSON-2 API, what the `odoo` mapper speaks; `Authorization:
//! bearer` and `X-Odoo-Database` required, else 401):
//! - `POST /json/2/account.move/create` `{"vals_list": [{move_type, partner_id,
//!   ref, invoice_date, invoice_line_ids: [[0, 0, {product_id, name, quantity,
//!   price_unit}]]}]}`: `[id]`; no idempotency (`ref` is not unique). Closed
//!   periods answer 422 `UserError` "You cannot add/modify entries prior to
//!   and inclusive of the lock date …".
//! - `POST /json/2/account.move/search_read` `{"domain": [["ref", "=", X], ...]}`.
//!
//! SAP S/4HANA Cloud (what the `sap-s4hana` mapper speaks; HTTP Basic
//! required, else 401):
//! - `POST /sap/bc/srt/scs_ext/sap/billingdocumentrequest_in`: the
//!   asynchronous SOAP service `BDR_REQUEST_IN`
//!   (`BillingDocumentRequestBulkRequest`, one `BillableDocument` with
//!   `ReferenceDocument`, `SoldToParty`, `BillingDocumentDate`,
//!   `TransactionCurrency` and `BillableDocumentItem`s with `Material`,
//!   `BillingQuantity` and a `ConditionRateAmount`): 202 without a body. A
//!   message id already received is not processed again (as SAP's SOAP
//!   runtime). Processing is asynchronous as far as the client can tell
//!   (here it happens at once): a closed period (of `BillingDocumentDate`)
//!   fails it, visible only on the read-back. A malformed request gets a
//!   SOAP fault, 400.
//! - `GET /sap/opu/odata/sap/API_BILLING_DOCUMENT_REQUEST_SRV/A_BillingDocumentRequest?$filter=ReferenceDocument eq '…'`:
//!   `{"d": {"results": [{BillingDocumentRequest, ReferenceDocument,
//!   BillingDocumentDate, TotalNetAmount, TransactionCurrency,
//!   SAP__Messages}]}}` in the order received; a failed processing has an
//!   empty `BillingDocumentRequest` and its error in `SAP__Messages`
//!   (`{code: "F5/201", message: "Posting period 005 2025 is not open"}`).
//!
//! Control API:
//! - `POST /_sim/faults`: queue faults, consumed one per invoice request:
//!   `{"kind": "status", "status": 503, "retry_after": 1}` (fails before
//!   committing), `{"kind": "error_after_commit", "status": 503}` (commits,
//!   then fails: the ambiguous case), `{"kind": "delay", "ms": 2000}`
//!   (answers late), `{"kind": "timeout_after_commit", "ms": 3000}` (commits,
//!   then answers only after `ms`: past the client's timeout, the other
//!   ambiguous case), `{"kind": "reject", "code": "period-closed", "message": ".."}`,
//!   `{"kind": "reuse_number"}` (generic JSON: commits, but gives the invoice
//!   the number of the one before it, as a broken ERP number sequence does).
//! - `PUT /_sim/closed-periods` `["2025-05", ...]`: accounting periods
//!   (`YYYY-MM` of the invoice's `issue_date`) the ERP refuses to post into,
//!   with 422 `period-closed` "Posting period … is not open", as a real ERP
//!   does after its period close.
//! - `POST /_sim/chaos` `{"rate_percent": 30, "seed": 7, "faults": [..]}`:
//!   from then on a share of requests meets a fault drawn from the list.
//! - `GET /_sim/stats`: `{requests, invoices, faults_pending,
//!   faults_injected: {kind: n}, rejected_documents: {document id: code}}`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    pub sku: String,
    pub item: String,
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub number: String,
    pub idempotency_key: Option<String>,
    pub document_id: String,
    pub company: String,
    pub customer: String,
    pub account: String,
    pub currency: String,
    pub period_start: String,
    pub period_end: String,
    pub issue_date: String,
    pub lines: Vec<InvoiceLine>,
    pub total: Decimal,
}

/// A fault to inject into the next invoice request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    Status {
        status: u16,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    ErrorAfterCommit {
        status: u16,
    },
    Delay {
        ms: u64,
    },
    Reject {
        code: String,
        message: String,
    },
    TimeoutAfterCommit {
        ms: u64,
    },
    /// Commits, but numbers the invoice like the one before it (a broken
    /// number sequence, as Tryton on SQLite gives concurrent posts).
    ReuseNumber,
}

/// Random faults on a share of requests (`POST /_sim/chaos`), drawn from a
/// seeded generator so a run can be repeated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chaos {
    /// Share of invoice requests that meet a fault, in percent.
    pub rate_percent: u64,
    pub seed: u64,
    /// The faults to draw from, uniformly. A business rejection is only
    /// drawn for a document the ERP does not hold yet (a real ERP does not
    /// refuse its own invoice on a resend).
    pub faults: Vec<Fault>,
}

#[derive(Default)]
struct SimState {
    invoices: Vec<Invoice>,
    bodies: HashMap<String, (usize, serde_json::Value)>,
    faults: VecDeque<Fault>,
    requests: u64,
    closed_periods: std::collections::BTreeSet<String>,
    chaos: Option<(Chaos, u64)>,
    injected: std::collections::BTreeMap<String, u64>,
    /// Documents refused with a business rejection, and the code.
    rejected: std::collections::BTreeMap<String, String>,
    /// SAP: message ids received, and the processed requests in order.
    sap_messages: std::collections::BTreeSet<String>,
    sap_entries: Vec<serde_json::Value>,
    /// Generic invoices numbered before this simulator started (an ERP
    /// that already holds invoices): the first one it creates is the next.
    numbered_before: usize,
}

impl SimState {
    /// The fault for the next request: a queued one, else perhaps a drawn one.
    fn next_fault(&mut self, key: Option<&str>) -> Option<Fault> {
        let fault = self.faults.pop_front().or_else(|| {
            let (chaos, state) = self.chaos.as_mut()?;
            let mut draw = || {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                *state
            };
            if chaos.faults.is_empty() || draw() % 100 >= chaos.rate_percent {
                return None;
            }
            let f = chaos.faults[(draw() % chaos.faults.len() as u64) as usize].clone();
            let committed = key.is_some_and(|k| self.bodies.contains_key(k));
            (!(committed && matches!(f, Fault::Reject { .. }))).then_some(f)
        })?;
        let kind = serde_json::to_value(&fault).ok().and_then(|v| v["kind"].as_str().map(str::to_string));
        *self.injected.entry(kind.unwrap_or_default()).or_default() += 1;
        Some(fault)
    }
}

/// The simulator's state; cheap to clone.
#[derive(Clone, Default)]
pub struct Sim {
    state: Arc<Mutex<SimState>>,
}

impl Sim {
    pub fn new() -> Sim {
        Sim::default()
    }

    /// A simulator whose generic invoice numbers go on after `n` invoices
    /// it does not hold (as an ERP that was there before a test started).
    pub fn numbered_after(n: usize) -> Sim {
        let sim = Sim::default();
        sim.lock().numbered_before = n;
        sim
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/generic/invoices", post(create_invoice).get(list_invoices))
            .route("/_sim/faults", post(add_faults))
            .route("/_sim/closed-periods", axum::routing::put(set_closed_periods))
            .route("/_sim/chaos", post(set_chaos))
            .route("/services/rest/record/v1/invoice/{eid}", axum::routing::put(netsuite_upsert))
            .route("/api/v2.0/{company}/salesInvoices", post(bc_create).get(bc_find))
            .route("/json/2/account.move/create", post(odoo_create))
            .route("/json/2/account.move/search_read", post(odoo_search))
            .route("/sap/bc/srt/scs_ext/sap/billingdocumentrequest_in", post(sap_bdr_request))
            .route("/sap/opu/odata/sap/API_BILLING_DOCUMENT_REQUEST_SRV/A_BillingDocumentRequest", get(sap_read_back))
            .route("/_sim/stats", get(stats))
            .with_state(self.clone())
    }

    /// Serves on `listener` until the future is dropped, with TCP_NODELAY
    /// on every connection (as a production HTTP server would: answers are
    /// not held back until the client's delayed ACK).
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, self.router()).await
    }

    pub fn invoices(&self) -> Vec<Invoice> {
        self.lock().invoices.clone()
    }

    pub fn push_fault(&self, f: Fault) {
        self.lock().faults.push_back(f);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn error(status: StatusCode, code: &str, field: Option<&str>, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": { "code": code, "field": field, "message": message.into() } }))).into_response()
}

#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
struct Invalid {
    field: String,
    message: String,
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

/// How one ERP's API words its errors.
struct Shape {
    /// A passing failure (injected 5xx / 429).
    transient: fn(StatusCode, String) -> Response,
    /// A business rejection with its code.
    business: fn(&str, String) -> Response,
}

impl Sim {
    /// Counts a request and takes its fault, if any.
    fn take_fault(&self, key: Option<&str>) -> Option<Fault> {
        let mut s = self.lock();
        s.requests += 1;
        s.next_fault(key)
    }

    /// The part of a fault that comes before anything is stored: an answer
    /// that ends the request (5xx, 429, business rejection of `document`),
    /// or a delay.
    async fn before_commit(&self, fault: &Option<Fault>, document: Option<String>, shape: &Shape) -> Option<Response> {
        match fault {
            Some(Fault::Status { status, retry_after }) => {
                let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                let mut r = (shape.transient)(code, format!("injected HTTP {status}"));
                if let Some(s) = retry_after {
                    r.headers_mut().insert("retry-after", s.to_string().parse().expect("digits are a valid header"));
                }
                Some(r)
            }
            Some(Fault::Delay { ms }) => {
                tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
                None
            }
            Some(Fault::Reject { code, message }) => {
                self.lock().rejected.insert(document.unwrap_or_default(), code.clone());
                Some((shape.business)(code, message.clone()))
            }
            _ => None,
        }
    }
}

/// The part of a fault that comes after the invoice is stored: a late
/// answer, or an error although the invoice exists (the ambiguous cases).
async fn after_commit(fault: &Option<Fault>, shape: &Shape) -> Option<Response> {
    match fault {
        Some(Fault::TimeoutAfterCommit { ms }) => {
            tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
            None
        }
        Some(Fault::ErrorAfterCommit { status }) => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            Some((shape.transient)(code, format!("injected HTTP {status} after committing")))
        }
        _ => None,
    }
}

/// A JSON string field of a request body, if it parses.
fn body_field(body: &str, pointer: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body).ok()?.pointer(pointer)?.as_str().map(str::to_string)
}

const GENERIC: Shape = Shape {
    transient: |status, message| error(status, "injected", None, message),
    business: |code, message| error(StatusCode::UNPROCESSABLE_ENTITY, code, None, message),
};

async fn create_invoice(State(sim): State<Sim>, headers: HeaderMap, body: String) -> Response {
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

async fn list_invoices(State(sim): State<Sim>) -> Json<serde_json::Value> {
    Json(json!({ "invoices": sim.invoices() }))
}

async fn add_faults(State(sim): State<Sim>, Json(faults): Json<Vec<Fault>>) -> Json<serde_json::Value> {
    let n = faults.len();
    for f in faults {
        sim.push_fault(f);
    }
    Json(json!({ "queued": n }))
}

async fn set_closed_periods(State(sim): State<Sim>, Json(periods): Json<Vec<String>>) -> Json<serde_json::Value> {
    let mut s = sim.lock();
    s.closed_periods = periods.into_iter().collect();
    Json(json!({ "closed_periods": s.closed_periods }))
}

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
fn netsuite_invoice(body: &str, external_id: &str) -> Result<Invoice, (String, String)> {
    let bad = |path: &str, detail: String| (path.to_string(), detail);
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

async fn netsuite_upsert(
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
        Err((path, detail)) => {
            return netsuite_error(StatusCode::BAD_REQUEST, "INVALID_FLD_VALUE", Some(&path), detail);
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

fn bc_invoice(body: &str, company: String) -> Result<Invoice, String> {
    let bc: BcInvoice = serde_json::from_str(body).map_err(|e| format!("Invalid request body: {e}"))?;
    let mut lines = Vec::new();
    for (i, l) in bc.lines.iter().enumerate() {
        let exact = |raw: &serde_json::value::RawValue, name: &str| {
            Decimal::from_str_exact(raw.get()).map_err(|e| format!("salesInvoiceLines[{i}].{name}: {e}"))
        };
        let (quantity, unit_price) = (exact(&l.quantity, "quantity")?, exact(&l.unit_price, "unitPrice")?);
        let amount = quantity
            .checked_mul(unit_price)
            .ok_or_else(|| format!("salesInvoiceLines[{i}]: amount overflows"))?
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
        return Err("salesInvoiceLines: at least one line is required".into());
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

async fn bc_create(
    State(sim): State<Sim>,
    axum::extract::Path(segment): axum::extract::Path<String>,
    body: String,
) -> Response {
    let Some(company) = bc_company(&segment) else {
        return bc_error(StatusCode::NOT_FOUND, "BadRequest_NotFound", format!("no {segment}"));
    };
    let fault = sim.take_fault(None);
    if let Some(answer) = sim.before_commit(&fault, body_field(&body, "/externalDocumentNumber"), &BC).await {
        return answer;
    }
    let mut invoice = match bc_invoice(&body, company) {
        Ok(i) => i,
        Err(message) => return bc_error(StatusCode::BAD_REQUEST, "BadRequest_InvalidBody", message),
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

async fn bc_find(
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

fn odoo_invoice(body: &str) -> Result<Invoice, String> {
    let create: OdooCreate = serde_json::from_str(body).map_err(|e| format!("invalid body: {e}"))?;
    let [m] = <[OdooMove; 1]>::try_from(create.vals_list).map_err(|_| "one invoice per call".to_string())?;
    if m.move_type != "out_invoice" {
        return Err(format!("move_type {:?}: only out_invoice here", m.move_type));
    }
    let mut lines = Vec::new();
    for (i, (_, _, l)) in m.invoice_line_ids.iter().enumerate() {
        let exact = |raw: &serde_json::value::RawValue, name: &str| {
            Decimal::from_str_exact(raw.get()).map_err(|e| format!("invoice_line_ids[{i}].{name}: {e}"))
        };
        let (quantity, unit_price) = (exact(&l.quantity, "quantity")?, exact(&l.price_unit, "price_unit")?);
        let amount = quantity
            .checked_mul(unit_price)
            .ok_or_else(|| format!("invoice_line_ids[{i}]: subtotal overflows"))?
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        let item = l.product_id.to_string();
        lines.push(InvoiceLine { sku: item.clone(), item, description: l.name.clone(), quantity, unit_price, amount });
    }
    if lines.is_empty() {
        return Err("invoice_line_ids: at least one line".into());
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

async fn odoo_create(State(sim): State<Sim>, headers: HeaderMap, body: String) -> Response {
    if !odoo_authorized(&headers) {
        return odoo_error(
            StatusCode::UNAUTHORIZED,
            "werkzeug.exceptions.Unauthorized",
            "bearer key and database required",
        );
    }
    let fault = sim.take_fault(None);
    if let Some(answer) = sim.before_commit(&fault, body_field(&body, "/vals_list/0/ref"), &ODOO).await {
        return answer;
    }
    let mut invoice = match odoo_invoice(&body) {
        Ok(i) => i,
        Err(message) => {
            return odoo_error(StatusCode::UNPROCESSABLE_ENTITY, "odoo.exceptions.ValidationError", message);
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

async fn odoo_search(State(sim): State<Sim>, headers: HeaderMap, Json(q): Json<serde_json::Value>) -> Response {
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
fn sap_invoice(xml: &str) -> Result<Invoice, String> {
    let field = |name: &str| xml_text(xml, name).ok_or_else(|| format!("{name} is missing"));
    let mut lines = Vec::new();
    for (i, item) in xml.split("<BillableDocumentItem>").skip(1).enumerate() {
        let get =
            |name: &str| xml_text(item, name).ok_or_else(|| format!("BillableDocumentItem[{i}]: {name} is missing"));
        let number = |name: &str| {
            get(name).and_then(|v| {
                Decimal::from_str_exact(v.trim()).map_err(|e| format!("BillableDocumentItem[{i}]: {name}: {e}"))
            })
        };
        let (quantity, unit_price) = (number("BillingQuantity")?, number("ConditionRateAmount")?);
        let amount = quantity
            .checked_mul(unit_price)
            .ok_or_else(|| format!("BillableDocumentItem[{i}]: net amount overflows"))?
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        let material = get("Material")?;
        let description = xml_text(item, "BillableDocumentItemText").unwrap_or_default();
        lines.push(InvoiceLine { sku: material.clone(), item: material, description, quantity, unit_price, amount });
    }
    if lines.is_empty() {
        return Err("BillableDocumentItem: at least one item".into());
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

async fn sap_bdr_request(State(sim): State<Sim>, headers: HeaderMap, body: String) -> Response {
    if !basic_authorized(&headers) {
        return soap_fault(StatusCode::UNAUTHORIZED, "authentication required");
    }
    let fault = sim.take_fault(None);
    if let Some(answer) = sim.before_commit(&fault, xml_text(&body, "ReferenceDocument"), &SAP).await {
        return answer;
    }
    let Some(message_id) = xml_text(&body, "ID") else {
        return soap_fault(StatusCode::BAD_REQUEST, "MessageHeader/ID is missing");
    };
    let mut invoice = match sap_invoice(&body) {
        Ok(i) => i,
        Err(message) => return soap_fault(StatusCode::BAD_REQUEST, message),
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

async fn sap_read_back(
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

async fn set_chaos(State(sim): State<Sim>, Json(chaos): Json<Chaos>) -> Json<serde_json::Value> {
    let seed = chaos.seed.max(1);
    sim.lock().chaos = Some((chaos, seed));
    Json(json!({ "chaos": true }))
}

async fn stats(State(sim): State<Sim>) -> Json<serde_json::Value> {
    let s = sim.lock();
    Json(json!({
        "requests": s.requests,
        "invoices": s.invoices.len(),
        "faults_pending": s.faults.len(),
        "faults_injected": s.injected,
        "rejected_documents": s.rejected,
    }))
}
