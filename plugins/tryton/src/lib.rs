//! Tryton ERP mapper (JSON-RPC, Tryton 8.x, `account_invoice`): a document
//! becomes one posted customer invoice (`account.invoice`, type `out`) whose
//! `reference` is the document id. Interface 0.3.0: posting is a
//! conversation, each request sent to `POST /<database>/rpc/`:
//!
//! 1. `account.invoice.search_read` on the reference — Tryton has no
//!    idempotency key and no uniqueness on `reference`, so every
//!    conversation (and the gateway's look-up after an ambiguous failure)
//!    starts by finding an earlier posting: posted or paid → done under its
//!    number; a draft (e.g. left by a rejected post into a closed period)
//!    with the document's content (a digest kept in its `comment`) → its
//!    invoice date is brought to the document's, then it is posted; a
//!    draft with other content (the lines changed since, e.g. a retry after
//!    a master-data fix) → deleted, and the conversation starts over;
//!    nothing (or only cancelled ones) → go on;
//! 2. `party.address.search`: the customer's invoice address;
//! 3. `account.invoice.create` with the lines;
//! 4. `account.invoice.post`; a user warning the target acknowledges (by
//!    default only `invoice_payment_term`: a due date already past, normal
//!    for a closed billing period) is acknowledged with
//!    `res.user.warning.skip`, as Tryton's own client does, and the post
//!    repeated; any other warning is a rejection;
//! 5. `account.invoice.read`: the invoice number, once posted.
//!
//! Each request carries the invoice id in its JSON-RPC `id` (0 before the
//! invoice exists), so the answer to any step can be read from the request
//! it answers.
//!
//! **Tryton on SQLite needs `max_concurrency = 1` on its target**: SQLite's
//! table lock is a no-op in Tryton, so invoices posted concurrently can get
//! the same number (three concurrent posts were all numbered "1"). The
//! gateway holds a document answered with a number the target gave another
//! document as an exception (`duplicate-erp-number`, naming both) instead of
//! recording it; PostgreSQL-backed Tryton numbers concurrent posts correctly.
//!
//! Settings: `database` (default `erp`), `user` and `password` (HTTP Basic),
//! `journal`, `receivable_account`, `revenue_account` (lines without a GL
//! account of their own), `unit`, optional `payment_term`, `company`
//! (default: the document's ERP company), `acknowledge_warnings` (comma
//! separated warning names), `quantity_digits` (default 0, the unit's
//! rounding) and `price_digits` (default 4). The customer's ERP account, each
//! line's ERP item and GL account are Tryton record ids.
//!
//! Answers: Tryton answers 200 with `{"result": ..}` or `{"error": [kind,
//! args]}`. `UserError`s are business rejections: a closed period ("reopen
//! the period") is `period-closed`, an invoice dated before invoices
//! already numbered `date-out-of-sequence`, an invalid product `unknown-item`, an
//! invalid party or address `unknown-account`, the rest `validation`;
//! `ConcurrencyException`, server errors, 429 and 5xx are transient; 401 /
//! 403 and login errors are `unauthorized`.

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tollgate_sdk::Decimal;
use tollgate_sdk::mapper_v3::{
    DocumentLine, ErpRequest, ErpResponse, Guest, LookupOutcome, PluginError, PostingDocument, Step, TargetConfig,
    basic_auth, exact, http_error, json_number, setting, transient_status,
};

pub struct Tryton;

const SEARCH: &str = "model.account.invoice.search_read";
const ADDRESS: &str = "model.party.address.search";
const CREATE: &str = "model.account.invoice.create";
const WRITE: &str = "model.account.invoice.write";
const DELETE: &str = "model.account.invoice.delete";
const POST: &str = "model.account.invoice.post";
const SKIP: &str = "model.res.user.warning.skip";
const READ: &str = "model.account.invoice.read";

/// A JSON-RPC call of the conversation: `invoice` travels as the call's id.
fn call(target: &TargetConfig, method: &str, invoice: u64, params: Value) -> ErpRequest {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(user) = setting(target, "user") {
        let password = setting(target, "password").unwrap_or_default();
        headers.push(("authorization".into(), basic_auth(user, password)));
    }
    let database = setting(target, "database").unwrap_or("erp");
    ErpRequest {
        method: "POST".into(),
        path: format!("/{database}/rpc/"),
        headers,
        body: json!({ "id": invoice, "method": method, "params": params }).to_string(),
    }
}

/// A Tryton record id from the document or a setting, or an error naming it.
fn id(value: &str, field: &str) -> Result<u64, PluginError> {
    value.parse().map_err(|_| PluginError::new("invalid-input", Some(field), format!("{value:?} is not a Tryton id")))
}

fn required(target: &TargetConfig, key: &str) -> Result<u64, PluginError> {
    let value = setting(target, key).ok_or_else(|| {
        PluginError::new("invalid-input", Some(&format!("settings.{key}")), "required by the Tryton mapper")
    })?;
    id(value, &format!("settings.{key}"))
}

fn company(doc: &PostingDocument, target: &TargetConfig) -> Result<u64, PluginError> {
    match setting(target, "company") {
        Some(c) => id(c, "settings.company"),
        None => id(&doc.erp_company, "erp_company"),
    }
}

fn context(doc: &PostingDocument, target: &TargetConfig) -> Result<Value, PluginError> {
    Ok(json!({ "company": company(doc, target)? }))
}

fn tryton_decimal(d: Decimal) -> Value {
    json!({ "__class__": "Decimal", "decimal": d.to_string() })
}

fn digits(target: &TargetConfig, key: &str, default: u32) -> Result<u32, PluginError> {
    match setting(target, key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            PluginError::new("invalid-input", Some(&format!("settings.{key}")), format!("{v:?} is not a digit count"))
        }),
    }
}

/// `(quantity, unit price, description)` of a line as Tryton can hold it:
/// Tryton rounds quantities to the unit's digits and prices to its price
/// digits and computes amounts itself, so a line that does not fit goes as
/// one unit at its amount, the real quantity and price in the description.
fn line_terms(line: &DocumentLine, i: usize, target: &TargetConfig) -> Result<(Decimal, Decimal, String), PluginError> {
    let field = |name: &str| format!("lines[{i}].{name}");
    let q = exact(&line.quantity, &field("quantity"))?;
    let p = exact(&line.unit_price, &field("unit_price"))?;
    let a = exact(&line.amount, &field("amount"))?;
    let fits = q.normalize().scale() <= digits(target, "quantity_digits", 0)?
        && p.normalize().scale() <= digits(target, "price_digits", 4)?
        && q.checked_mul(p) == Some(a);
    Ok(if fits {
        (q.normalize(), p, line.description.clone())
    } else {
        (Decimal::ONE, a, format!("{} ({q} × {p})", line.description))
    })
}

fn search(doc: &PostingDocument, target: &TargetConfig) -> Result<ErpRequest, PluginError> {
    let domain = json!([["reference", "=", doc.id], ["type", "=", "out"], ["company", "=", company(doc, target)?]]);
    let fields = json!(["number", "state", "invoice_date", "comment"]);
    Ok(call(target, SEARCH, 0, json!([domain, 0, null, [["id", "ASC"]], fields, context(doc, target)?])))
}

/// The invoice lines Tryton gets for the document.
fn lines_json(doc: &PostingDocument, target: &TargetConfig) -> Result<Vec<Value>, PluginError> {
    let unit = required(target, "unit")?;
    doc.lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (quantity, price, mut description) = line_terms(l, i, target)?;
            // A line billing part of the period (an amendment, an anchor
            // day) says which part.
            if (&l.usage_from, &l.usage_to) != (&doc.period_start, &doc.period_end) {
                let day = |t: &str| t.get(..10).unwrap_or(t).to_string();
                description = format!("{description} [{} – {})", day(&l.usage_from), day(&l.usage_to));
            }
            let account = match &l.gl_account {
                Some(a) => id(a, &format!("lines[{i}].gl_account"))?,
                None => required(target, "revenue_account")?,
            };
            Ok(json!({
                "product": id(&l.erp_item, &format!("lines[{i}].erp_item"))?,
                "description": description,
                "quantity": json_number(quantity),
                "unit": unit,
                "unit_price": tryton_decimal(price),
                "account": account,
            }))
        })
        .collect()
}

/// What the invoice says about its content, kept in its `comment`: a draft
/// found later is posted only if it still holds exactly what the document
/// now holds (a retry after a master-data fix may change the lines).
fn content_tag(doc: &PostingDocument, target: &TargetConfig) -> Result<String, PluginError> {
    content_tag_of(doc, target, &lines_json(doc, target)?)
}

/// [`content_tag`] of lines already built.
fn content_tag_of(doc: &PostingDocument, target: &TargetConfig, lines: &[Value]) -> Result<String, PluginError> {
    let content = json!([doc.erp_account, required(target, "receivable_account")?, lines]);
    let digest = Sha256::digest(content.to_string().as_bytes());
    Ok(format!("tollgate-content:{}", digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>()))
}

fn create(doc: &PostingDocument, target: &TargetConfig, address: u64) -> Result<ErpRequest, PluginError> {
    let lines = lines_json(doc, target)?;
    let mut invoice = json!({
        "type": "out",
        "company": company(doc, target)?,
        "journal": required(target, "journal")?,
        "party": id(&doc.erp_account, "erp_account")?,
        "invoice_address": address,
        "account": required(target, "receivable_account")?,
        "reference": doc.id,
        "invoice_date": doc.issue_date,
        "description": format!("Tollgate usage {} – {}", doc.period_start, doc.period_end),
        "comment": content_tag_of(doc, target, &lines)?,
        "lines": [["create", lines]],
    });
    if let Some(term) = setting(target, "payment_term") {
        invoice["payment_term"] = json!(id(term, "settings.payment_term")?);
    }
    Ok(call(target, CREATE, 0, json!([[invoice], context(doc, target)?])))
}

#[derive(Deserialize)]
struct Found {
    id: u64,
    #[serde(default)]
    number: Option<String>,
    state: String,
    #[serde(default)]
    invoice_date: Option<Value>,
    #[serde(default)]
    comment: Option<String>,
}

/// Tryton sends dates as `{"__class__": "date", "year": .., "month": .., "day": ..}`.
fn tryton_date(v: &Value) -> Option<String> {
    let part = |k: &str| v.get(k).and_then(Value::as_u64);
    Some(format!("{:04}-{:02}-{:02}", part("year")?, part("month")?, part("day")?))
}

/// What an earlier posting found by reference means: done, to be finished
/// (a draft, dated as the document now is), or nothing usable.
fn read_found(doc: &PostingDocument, target: &TargetConfig, found: Vec<Found>) -> Result<LookupOutcome, PluginError> {
    if let Some(f) = found.iter().find(|f| matches!(f.state.as_str(), "posted" | "paid")) {
        return Ok(LookupOutcome::Found(f.number.clone().unwrap_or_else(|| f.id.to_string())));
    }
    let Some(draft) = found.iter().find(|f| matches!(f.state.as_str(), "draft" | "validated")) else {
        return Ok(LookupOutcome::Absent);
    };
    let ctx = context(doc, target)?;
    if draft.comment.as_deref() != Some(content_tag(doc, target)?.as_str()) {
        // Stale (the lines changed since): remove it, then start over.
        return Ok(LookupOutcome::Next(call(target, DELETE, draft.id, json!([[draft.id], ctx]))));
    }
    if draft.invoice_date.as_ref().and_then(tryton_date).as_deref() == Some(doc.issue_date.as_str()) {
        return Ok(LookupOutcome::Next(call(target, POST, draft.id, json!([[draft.id], ctx]))));
    }
    let values = json!({ "invoice_date": doc.issue_date });
    Ok(LookupOutcome::Next(call(target, WRITE, draft.id, json!([[draft.id], values, ctx]))))
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

/// Why an answer has no result.
enum Failure {
    Step(Step),
    /// A Tryton user warning: `name` is `<hash>.<kind>`.
    Warning {
        name: String,
        message: String,
    },
}

/// The answer's result, or why there is none.
fn result(r: &ErpResponse) -> Result<Value, Failure> {
    if let Some(t) = transient_status(r) {
        return Err(Failure::Step(t));
    }
    if matches!(r.status, 401 | 403) {
        return Err(Failure::Step(Step::Rejected(PluginError::new(
            "unauthorized",
            None,
            format!("HTTP {}", r.status),
        ))));
    }
    let answer: Answer = match tollgate_sdk::json::from_str(&r.body) {
        Ok(a) if r.status == 200 => a,
        _ => return Err(Failure::Step(Step::Rejected(http_error(r.status, &r.body)))),
    };
    let Some(e) = answer.error else {
        return Ok(answer.result.unwrap_or(Value::Null));
    };
    let kind = e.get(0).and_then(Value::as_str).unwrap_or_default();
    let args = e.get(1).cloned().unwrap_or(Value::Null);
    Err(match kind {
        "UserError" => {
            let message = text(args.get(0).unwrap_or(&Value::Null));
            let m = message.to_ascii_lowercase();
            let code = if m.contains("reopen the period") || (m.contains("period") && m.contains("closed")) {
                "period-closed"
            } else if m.contains("must set an invoice date after") {
                "date-out-of-sequence"
            } else if m.contains("\"product\"") {
                "unknown-item"
            } else if m.contains("\"party\"") || m.contains("address") {
                "unknown-account"
            } else {
                "validation"
            };
            Failure::Step(Step::Rejected(PluginError::new(code, None, message)))
        }
        "UserWarning" => Failure::Warning {
            name: args.get(0).and_then(Value::as_str).unwrap_or_default().to_string(),
            message: text(args.get(1).unwrap_or(&Value::Null)),
        },
        "LoginException" => Failure::Step(Step::Rejected(PluginError::new("unauthorized", None, text(&args)))),
        "ConcurrencyException" => Failure::Step(Step::Transient(format!("Tryton: {}", text(&args)))),
        other => Failure::Step(Step::Transient(format!("Tryton server error: {}", text(&Value::from(other))))),
    })
}

fn text(v: &Value) -> String {
    let s = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    s.chars().take(300).collect()
}

/// Whether the target acknowledges warning `name` (Tryton's warning names
/// are `<hash>.<kind>`).
fn acknowledged(target: &TargetConfig, name: &str) -> bool {
    let kinds = setting(target, "acknowledge_warnings").unwrap_or("invoice_payment_term");
    let kind = name.rsplit_once('.').map_or(name, |(_, k)| k);
    kinds.split(',').map(str::trim).any(|k| !k.is_empty() && k == kind)
}

/// The invoice id a request of the conversation carries (its JSON-RPC id).
fn request_invoice(request: &ErpRequest) -> u64 {
    tollgate_sdk::json::from_str::<Value>(&request.body)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_u64))
        .unwrap_or(0)
}

/// The JSON-RPC method a request of the conversation calls.
fn request_method(request: &ErpRequest) -> String {
    tollgate_sdk::json::from_str::<Value>(&request.body)
        .ok()
        .and_then(|v| v.get("method").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

fn next_step(
    doc: &PostingDocument,
    target: &TargetConfig,
    request: &ErpRequest,
    r: &ErpResponse,
) -> Result<Step, PluginError> {
    let method = request_method(request);
    let ctx = context(doc, target)?;
    let invoice = request_invoice(request);
    let value = match result(r) {
        Ok(value) => value,
        Err(Failure::Warning { name, .. }) if method == POST && acknowledged(target, &name) => {
            // Acknowledge the warning as Tryton's client does, then post again.
            return Ok(Step::Next(call(target, SKIP, invoice, json!([name, false, ctx]))));
        }
        Err(Failure::Warning { name, message }) => {
            return Ok(Step::Rejected(PluginError::new("erp-warning", None, format!("{message} (warning {name})"))));
        }
        Err(Failure::Step(Step::Rejected(e))) if method == POST && e.message.contains("can not call \"post\"") => {
            // Posted already (by an earlier attempt whose answer was lost): read it.
            return Ok(Step::Next(call(target, READ, invoice, json!([[invoice], ["number", "state"], ctx]))));
        }
        Err(Failure::Step(step)) => return Ok(step),
    };
    let bad = |what: &str| Step::Transient(format!("unexpected answer to {method}: {what}: {}", text(&value)));
    Ok(match method.as_str() {
        SEARCH => {
            let found: Vec<Found> = match serde_json::from_value(value.clone()) {
                Ok(f) => f,
                Err(e) => return Ok(bad(&e.to_string())),
            };
            match read_found(doc, target, found)? {
                LookupOutcome::Found(n) => Step::Posted(n),
                LookupOutcome::Next(req) => Step::Next(req),
                LookupOutcome::Absent => {
                    let party = id(&doc.erp_account, "erp_account")?;
                    let domain = json!([["party", "=", party]]);
                    Step::Next(call(
                        target,
                        ADDRESS,
                        0,
                        json!([domain, 0, 1, [["sequence", "ASC"], ["id", "ASC"]], ctx]),
                    ))
                }
            }
        }
        ADDRESS => match value.as_array().and_then(|a| a.first()).and_then(Value::as_u64) {
            Some(address) => Step::Next(create(doc, target, address)?),
            None => Step::Rejected(PluginError::new(
                "unknown-account",
                Some("erp_account"),
                format!("Tryton party {} has no address to invoice", doc.erp_account),
            )),
        },
        CREATE => match value.as_array().and_then(|a| a.first()).and_then(Value::as_u64) {
            Some(created) => Step::Next(call(target, POST, created, json!([[created], ctx]))),
            None => bad("no invoice id"),
        },
        WRITE | SKIP => Step::Next(call(target, POST, invoice, json!([[invoice], ctx]))),
        DELETE => Step::Next(search(doc, target)?),
        POST => Step::Next(call(target, READ, invoice, json!([[invoice], ["number", "state"], ctx]))),
        READ => match value.get(0).map(|v| serde_json::from_value::<Found>(v.clone())) {
            Some(Ok(f)) if matches!(f.state.as_str(), "posted" | "paid") => {
                Step::Posted(f.number.unwrap_or_else(|| f.id.to_string()))
            }
            Some(Ok(f)) => Step::Transient(format!("invoice {} is {}, not posted yet", f.id, f.state)),
            _ => bad("no invoice"),
        },
        other => Step::Rejected(PluginError::new(
            "invalid-input",
            Some("request"),
            format!("not a request of this mapper's conversation: {other:?}"),
        )),
    })
}

impl Guest for Tryton {
    fn map_document(doc: PostingDocument, target: TargetConfig) -> Result<ErpRequest, PluginError> {
        // Check everything the conversation will need before the first request.
        create(&doc, &target, 0)?;
        search(&doc, &target)
    }

    fn lookup_request(doc: PostingDocument, target: TargetConfig) -> Option<ErpRequest> {
        search(&doc, &target).ok()
    }

    fn read_lookup(doc: PostingDocument, target: TargetConfig, r: ErpResponse) -> Result<LookupOutcome, PluginError> {
        let failed = |m: String| PluginError::new("lookup-failed", None, m);
        match result(&r) {
            Ok(value) => read_found(&doc, &target, serde_json::from_value(value).map_err(|e| failed(e.to_string()))?),
            Err(Failure::Step(Step::Rejected(e))) => Err(e),
            Err(Failure::Step(Step::Transient(m))) => Err(failed(m)),
            Err(Failure::Warning { message, .. }) => Err(failed(message)),
            Err(Failure::Step(Step::Posted(_) | Step::Next(_))) => Err(failed("unexpected answer".into())),
        }
    }

    fn read_response(doc: PostingDocument, target: TargetConfig, request: ErpRequest, r: ErpResponse) -> Step {
        next_step(&doc, &target, &request, &r).unwrap_or_else(Step::Rejected)
    }
}

tollgate_sdk::mapper_v3::export_erp_mapper_v3!(Tryton);
