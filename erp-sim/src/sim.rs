//! The simulator's state (invoices, faults, chaos, closed periods), its
//! router, the fault handling every dialect shares, and the control API
//! (`/_sim/...`).

use crate::{business_central as bc, generic, netsuite, odoo, sap};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
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
pub(crate) struct SimState {
    pub(crate) invoices: Vec<Invoice>,
    pub(crate) bodies: HashMap<String, (usize, serde_json::Value)>,
    pub(crate) faults: VecDeque<Fault>,
    pub(crate) requests: u64,
    pub(crate) closed_periods: std::collections::BTreeSet<String>,
    pub(crate) chaos: Option<(Chaos, u64)>,
    pub(crate) injected: std::collections::BTreeMap<String, u64>,
    /// Documents refused with a business rejection, and the code.
    pub(crate) rejected: std::collections::BTreeMap<String, String>,
    /// SAP: message ids received, and the processed requests in order.
    pub(crate) sap_messages: std::collections::BTreeSet<String>,
    pub(crate) sap_entries: Vec<serde_json::Value>,
    /// Generic invoices numbered before this simulator started (an ERP
    /// that already holds invoices): the first one it creates is the next.
    pub(crate) numbered_before: usize,
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
            // Held: a body stored under the key, or an invoice of the document.
            let committed = key.is_some_and(|k| {
                self.bodies.contains_key(k)
                    || self.invoices.iter().any(|i| i.document_id == k || i.idempotency_key.as_deref() == Some(k))
            });
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
            .route("/generic/invoices", post(generic::create_invoice).get(generic::list_invoices))
            .route("/_sim/faults", post(add_faults))
            .route("/_sim/closed-periods", put(set_closed_periods))
            .route("/_sim/chaos", post(set_chaos))
            .route("/services/rest/record/v1/invoice/{eid}", put(netsuite::netsuite_upsert))
            .route("/api/v2.0/{company}/salesInvoices", post(bc::bc_create).get(bc::bc_find))
            .route("/json/2/account.move/create", post(odoo::odoo_create))
            .route("/json/2/account.move/search_read", post(odoo::odoo_search))
            .route("/sap/bc/srt/scs_ext/sap/billingdocumentrequest_in", post(sap::sap_bdr_request))
            .route(
                "/sap/opu/odata/sap/API_BILLING_DOCUMENT_REQUEST_SRV/A_BillingDocumentRequest",
                get(sap::sap_read_back),
            )
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

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A request a dialect refuses: the field (or none, for the whole body)
/// and why; shown as `field: message`, or the message alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub(crate) struct Invalid {
    pub(crate) field: String,
    pub(crate) message: String,
}

impl Invalid {
    pub(crate) fn at(field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid { field: field.into(), message: message.into() }
    }

    /// About the whole request, or worded without a field prefix.
    pub(crate) fn body(message: impl Into<String>) -> Invalid {
        Invalid::at("", message)
    }
}

/// How one ERP's API words its errors.
pub(crate) struct Shape {
    /// A passing failure (injected 5xx / 429).
    pub(crate) transient: fn(StatusCode, String) -> Response,
    /// A business rejection with its code.
    pub(crate) business: fn(&str, String) -> Response,
}

impl Sim {
    /// Counts a request and takes its fault, if any; `key` names the document
    /// (its idempotency key or reference), so a drawn business rejection
    /// never hits a document the ERP already holds.
    pub(crate) fn take_fault(&self, key: Option<&str>) -> Option<Fault> {
        let mut s = self.lock();
        s.requests += 1;
        s.next_fault(key)
    }

    /// The part of a fault that comes before anything is stored: an answer
    /// that ends the request (5xx, 429, business rejection of `document`),
    /// or a delay.
    pub(crate) async fn before_commit(
        &self,
        fault: &Option<Fault>,
        document: Option<String>,
        shape: &Shape,
    ) -> Option<Response> {
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
pub(crate) async fn after_commit(fault: &Option<Fault>, shape: &Shape) -> Option<Response> {
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
pub(crate) fn body_field(body: &str, pointer: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body).ok()?.pointer(pointer)?.as_str().map(str::to_string)
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
