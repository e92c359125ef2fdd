//! Golden fixtures for raters, run exactly as production runs a plugin
//! (same engine configuration, same limits).
//!
//! A fixture directory holds pairs `<case>.input.json` and
//! `<case>.expected.json`. The input is the rater's usage, with defaults for
//! what a case does not care about:
//!
//! ```json
//! { "quantity": "1500", "params": { "tiers": [...] },
//!   "dimensions": { "region": "eu-west" }, "currency": "EUR", "period": "2026-01",
//!   "related": [ { "contract_line": "cl-api", "amount": "120.50" } ] }
//! ```
//!
//! `related` (charges of the customer's other lines, seen by raters of
//! interface 0.2.0) takes `sku`, `description` and `currency` as optional
//! fields; the currency defaults to the input's.
//!
//! The expected output is `{"charges": [{sku, description, quantity,
//! unit_price, amount, explain}]}` or `{"error": {code, plugin_code, field,
//! message}}`. Decimals (`quantity`, `unit_price`, `amount`) compare by exact
//! value, everything else by equality. Blessing rewrites the expected files
//! from what the plugin produced.
//!
//! For an ERP mapper, the input is a posting document (defaults for what a
//! case does not care about), the target's settings and, optionally, ERP
//! answers to read:
//!
//! ```json
//! { "document": { "id": "TG-1", "erp_account": "C-1", "period": "2026-10",
//!                 "lines": [ { "sku": "API", "erp_item": "86", "quantity": "10",
//!                              "unit_price": "0.5", "amount": "5.00" } ] },
//!   "target": { "name": "netsuite", "settings": { "subsidiary": "1" } },
//!   "response": { "status": 422, "body": "{...}" },
//!   "lookup_response": { "status": 200, "body": "{...}" } }
//! ```
//!
//! (documents also take `tax_context`, `posting_period` and, per line,
//! `contract_line`, `usage_from`, `usage_to`, `dimensions`,
//! `revenue_category`, `gl_account`). A
//! mapper that posts in several requests is tested with `"conversation":
//! [answer, answer, ...]`: the first answers the mapped request, each next
//! one the request the mapper asked for after the previous answer.
//!
//! The expected output is `{"request": {method, path, headers, body},
//! "lookup_request": .. | null, "outcome": <step>, "conversation": [<step>,
//! ...], "lookup": n | null | {"next": request}}` where a step is
//! `{"posted": n}`, `{"rejected": {code, field, message}}`, `{"transient":
//! ..}` or `{"next": request}` — a JSON request body is compared as JSON
//! (decimals by value), any other as text.

use crate::bindings::{posting as mwit, rating as wit};
use crate::{Kind, Plugin, PluginError, Runtime, to_wit};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tollgate_core::period::Period;
use tollgate_core::rating::Charge;

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: no fixtures (expected <case>.input.json files)")]
    Empty(PathBuf),
}

/// A fixture value that cannot be used, naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BadField {
    pub field: String,
    pub message: String,
}

fn bad_field(field: impl Into<String>, message: impl std::fmt::Display) -> BadField {
    BadField { field: field.into(), message: message.to_string() }
}

fn d_currency() -> String {
    "EUR".into()
}
fn d_sku() -> String {
    "SKU".into()
}
fn d_meter() -> String {
    "usage".into()
}
fn d_period() -> String {
    "2026-01".into()
}
fn d_name() -> String {
    "fixture".into()
}

/// A fixture's input, with defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureInput {
    pub quantity: Decimal,
    pub params: Value,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    #[serde(default = "d_currency")]
    pub currency: String,
    #[serde(default = "d_sku")]
    pub sku: String,
    #[serde(default = "d_meter")]
    pub meter: String,
    #[serde(default = "d_period")]
    pub period: String,
    #[serde(default = "d_name")]
    pub customer: String,
    #[serde(default)]
    pub related: Vec<FixtureRelated>,
}

/// A related charge in a fixture.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureRelated {
    pub contract_line: String,
    pub amount: Decimal,
    #[serde(default = "d_sku")]
    pub sku: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub currency: Option<String>,
}

impl FixtureInput {
    /// The rater input of this fixture (tenant and contract line `fixture`).
    pub(crate) fn to_usage(&self) -> Result<wit::Usage, BadField> {
        let period = Period::parse(&self.period).map_err(|e| bad_field("period", e.message))?;
        let ts = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Ok(wit::Usage {
            tenant: "fixture".into(),
            customer: self.customer.clone(),
            contract_line: "fixture".into(),
            sku: self.sku.clone(),
            meter: self.meter.clone(),
            currency: self.currency.clone(),
            period_start: ts(period.start),
            period_end: ts(period.end),
            quantity: to_wit(self.quantity),
            dimensions: self.dimensions.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            params: self.params.to_string(),
            related: self
                .related
                .iter()
                .map(|r| wit::RelatedCharge {
                    contract_line: r.contract_line.clone(),
                    sku: r.sku.clone(),
                    description: r.description.clone(),
                    amount: to_wit(r.amount),
                    currency: r.currency.clone().unwrap_or_else(|| self.currency.clone()),
                })
                .collect(),
        })
    }
}

/// How one case went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// Field-level differences, one line each: `path: expected X, got Y`.
    Failed(Vec<String>),
    /// The expected file was (re)written.
    Blessed,
}

#[derive(Debug, Clone)]
pub struct CaseReport {
    pub name: String,
    pub outcome: Outcome,
    pub fuel_used: u64,
    pub fuel_budget: u64,
}

/// The JSON form of a rating result, as expected files hold it.
pub fn result_json(result: &Result<Vec<Charge>, PluginError>) -> Value {
    match result {
        Ok(charges) => json!({ "charges": charges }),
        Err(PluginError::Plugin { code, field, message }) => {
            json!({ "error": { "code": "plugin-error", "plugin_code": code, "field": field, "message": message } })
        }
        Err(e) => json!({ "error": { "code": e.code(), "message": e.to_string() } }),
    }
}

const DECIMAL_KEYS: [&str; 3] = ["quantity", "unit_price", "amount"];

/// Differences between expected and actual JSON, decimal fields by value.
pub fn diff(expected: &Value, actual: &Value, path: &str, out: &mut Vec<String>) {
    let key = path.rsplit('.').next().unwrap_or(path);
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match a.get(k) {
                    Some(av) => diff(ev, av, &p, out),
                    None => out.push(format!("{p}: expected {ev}, missing")),
                }
            }
            for k in a.keys().filter(|k| !e.contains_key(*k)) {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                out.push(format!("{p}: unexpected {}", a[k]));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                out.push(format!("{path}: expected {} items, got {}", e.len(), a.len()));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff(ev, av, &format!("{path}[{i}]"), out);
            }
        }
        (Value::String(e), Value::String(a)) if DECIMAL_KEYS.contains(&key) => {
            match (Decimal::from_str_exact(e), Decimal::from_str_exact(a)) {
                (Ok(x), Ok(y)) if x == y => {}
                _ => out.push(format!("{path}: expected {e}, got {a}")),
            }
        }
        (e, a) if e != a => out.push(format!("{path}: expected {e}, got {a}")),
        _ => {}
    }
}

fn read_json(path: &Path) -> Result<Value, FixtureError> {
    let text = std::fs::read(path).map_err(|source| FixtureError::Io { path: path.into(), source })?;
    serde_json::from_slice(&text).map_err(|e| FixtureError::Input { path: path.into(), message: e.to_string() })
}

/// A mapper fixture's posting document, with defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureDocument {
    #[serde(default = "d_doc_id")]
    pub id: String,
    #[serde(default = "d_name")]
    pub tenant: String,
    #[serde(default = "d_name")]
    pub legal_entity: String,
    #[serde(default = "d_company")]
    pub erp_company: String,
    #[serde(default)]
    pub tax_context: Option<String>,
    #[serde(default = "d_name")]
    pub customer: String,
    pub erp_account: String,
    #[serde(default = "d_currency")]
    pub currency: String,
    #[serde(default = "d_period")]
    pub period: String,
    /// Default: `period`.
    #[serde(default)]
    pub posting_period: Option<String>,
    /// Default: the period's last day.
    #[serde(default)]
    pub issue_date: Option<String>,
    pub lines: Vec<FixtureLine>,
    /// Default: the sum of the line amounts.
    #[serde(default)]
    pub total: Option<Decimal>,
}

fn d_doc_id() -> String {
    "TG-000000000000000000000001".into()
}
fn d_company() -> String {
    "1000".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureLine {
    #[serde(default = "d_contract_line")]
    pub contract_line: String,
    #[serde(default = "d_sku")]
    pub sku: String,
    pub erp_item: String,
    #[serde(default)]
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub amount: Decimal,
    /// Default: the document's period.
    #[serde(default)]
    pub usage_from: Option<String>,
    #[serde(default)]
    pub usage_to: Option<String>,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    #[serde(default)]
    pub revenue_category: Option<String>,
    #[serde(default)]
    pub gl_account: Option<String>,
}

fn d_contract_line() -> String {
    "cl-1".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureTarget {
    #[serde(default = "d_name")]
    pub name: String,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

impl From<&FixtureResponse> for mwit::ErpResponse {
    fn from(r: &FixtureResponse) -> mwit::ErpResponse {
        mwit::ErpResponse {
            status: r.status,
            headers: r.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            body: r.body.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapperFixture {
    pub document: FixtureDocument,
    #[serde(default)]
    pub target: FixtureTarget,
    #[serde(default)]
    pub response: Option<FixtureResponse>,
    #[serde(default)]
    pub lookup_response: Option<FixtureResponse>,
    /// Answers to a conversation, in turn.
    #[serde(default)]
    pub conversation: Vec<FixtureResponse>,
}

impl MapperFixture {
    /// A mapper fixture from its JSON text.
    pub fn parse(text: &str) -> Result<MapperFixture, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The fixture's document and target as a mapper sees them in production.
    pub fn to_wit(&self) -> Result<(mwit::PostingDocument, mwit::TargetConfig), BadField> {
        let target = mwit::TargetConfig {
            name: self.target.name.clone(),
            settings: self.target.settings.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        Ok((self.document.to_wit(&self.target.name)?, target))
    }
}

impl FixtureDocument {
    /// The document as the gateway would post it to `target`, seen by the
    /// mapper exactly as production shows it (`From<&Document>`).
    fn to_wit(&self, target: &str) -> Result<mwit::PostingDocument, BadField> {
        use tollgate_core::document::{Document, DocumentLine, PostingState};
        let period = Period::parse(&self.period).map_err(|e| bad_field("period", e.message))?;
        let total = match self.total {
            Some(t) => t,
            None => tollgate_core::money::exact_sum(self.lines.iter().map(|l| l.amount))
                .map_err(|e| bad_field("total", e))?,
        };
        let instant = |v: &Option<String>, field: String| {
            v.as_deref()
                .map(|t| {
                    t.parse::<chrono::DateTime<chrono::Utc>>().map_err(|e| bad_field(field, format!("{t:?}: {e}")))
                })
                .transpose()
        };
        let lines = self
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                Ok(DocumentLine {
                    contract_line: l.contract_line.clone(),
                    part: String::new(),
                    charge_index: i,
                    sku: l.sku.clone(),
                    erp_item: l.erp_item.clone(),
                    description: l.description.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    amount: l.amount,
                    usage_from: instant(&l.usage_from, format!("lines[{i}].usage_from"))?,
                    usage_to: instant(&l.usage_to, format!("lines[{i}].usage_to"))?,
                    dimensions: l.dimensions.clone(),
                    revenue_category: l.revenue_category.clone(),
                    gl_account: l.gl_account.clone(),
                })
            })
            .collect::<Result<Vec<_>, BadField>>()?;
        let doc = Document {
            id: self.id.clone(),
            tenant: self.tenant.clone(),
            legal_entity: self.legal_entity.clone(),
            erp_company: self.erp_company.clone(),
            tax_context: self.tax_context.clone(),
            erp_target: target.to_string(),
            customer: self.customer.clone(),
            erp_account: self.erp_account.clone(),
            currency: self.currency.clone(),
            issue_date: self.issue_date.clone().unwrap_or_else(|| period.last_day()),
            posting_period: self.posting_period.clone(),
            period,
            revision: 1,
            lines,
            total,
            state: PostingState::pending(),
        };
        Ok(mwit::PostingDocument::from(&doc))
    }
}

/// A request as expected files hold it. A JSON body is held as JSON (and
/// compared as JSON) only when every number in it survives serde_json's
/// `f64` exactly; otherwise as its text, so money is never compared through
/// a float.
fn request_json(r: &mwit::ErpRequest) -> Value {
    let body = match serde_json::from_str::<Value>(&r.body) {
        Ok(v) if (v.is_object() || v.is_array()) && inexact_numbers(&r.body).is_empty() => json!({ "json": v }),
        _ => json!({ "text": r.body }),
    };
    json!({ "method": r.method, "path": r.path, "headers": r.headers, "body": body })
}

/// The number tokens of a JSON text whose value is not exactly the value
/// serde_json reads them as (an `f64`): more significant digits than a
/// float holds.
pub fn inexact_numbers(text: &str) -> Vec<String> {
    let (mut out, mut in_string, mut escaped) = (Vec::new(), false, false);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                i += 1;
            }
            let token = &text[start..i];
            let exact = Decimal::from_str_exact(token).or_else(|_| Decimal::from_scientific(token)).ok();
            let read =
                token.parse::<f64>().ok().and_then(|f| Decimal::from_str_exact(&serde_json::to_string(&f).ok()?).ok());
            if exact.is_none() || exact != read {
                out.push(token.to_string());
            }
            continue;
        }
        i += 1;
    }
    out
}

fn error_json(e: &PluginError) -> Value {
    match e {
        PluginError::Plugin { code, field, message } => {
            json!({ "error": { "code": "plugin-error", "plugin_code": code, "field": field, "message": message } })
        }
        e => json!({ "error": { "code": e.code(), "message": e.to_string() } }),
    }
}

fn step_json(step: &Result<mwit::Step, PluginError>) -> Value {
    match step {
        Ok(mwit::Step::Posted(n)) => json!({ "posted": n }),
        Ok(mwit::Step::Rejected(e)) => {
            json!({ "rejected": { "code": e.code, "field": e.field, "message": e.message } })
        }
        Ok(mwit::Step::Transient(m)) => json!({ "transient": m }),
        Ok(mwit::Step::Next(r)) => json!({ "next": request_json(r) }),
        Err(e) => error_json(e),
    }
}

/// What a mapper makes of a fixture, as expected files hold it, and the
/// fuel `map-document` used.
fn mapper_json(runtime: &Runtime, plugin: &Plugin, case: &MapperFixture) -> Result<(Value, u64), BadField> {
    let (doc, target) = case.to_wit()?;
    let (request, fuel) = runtime.map_document_metered(plugin, &doc, &target);
    let mut out = json!({
        "request": request.as_ref().map_or_else(error_json, request_json),
        "lookup_request": match runtime.lookup_request(plugin, &doc, &target) {
            Ok(r) => r.as_ref().map_or(Value::Null, request_json),
            Err(e) => error_json(&e),
        },
    });
    if let (Some(r), Ok(first)) = (&case.response, &request) {
        out["outcome"] = step_json(&runtime.read_response(plugin, &doc, &target, first, &r.into()));
    }
    if let (false, Ok(first)) = (case.conversation.is_empty(), &request) {
        let mut current = Some(first.clone());
        let mut steps = Vec::new();
        for answer in &case.conversation {
            let Some(req) = current.take() else {
                return Err(bad_field("conversation", "has more answers than the mapper asked for"));
            };
            let step = runtime.read_response(plugin, &doc, &target, &req, &answer.into());
            if let Ok(mwit::Step::Next(next)) = &step {
                current = Some(next.clone());
            }
            steps.push(step_json(&step));
        }
        out["conversation"] = Value::Array(steps);
    }
    if let Some(r) = &case.lookup_response {
        out["lookup"] = match runtime.read_lookup(plugin, &doc, &target, &r.into()) {
            Ok(mwit::LookupOutcome::Absent) => Value::Null,
            Ok(mwit::LookupOutcome::Found(n)) => json!(n),
            Ok(mwit::LookupOutcome::Next(r)) => json!({ "next": request_json(&r) }),
            Err(e) => error_json(&e),
        };
    }
    Ok((out, fuel))
}

/// Runs every case in `dir`; with `bless`, rewrites the expected files.
pub fn run(runtime: &Runtime, plugin: &Plugin, dir: &Path, bless: bool) -> Result<Vec<CaseReport>, FixtureError> {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| FixtureError::Io { path: dir.into(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".input.json"))
        .collect();
    inputs.sort();
    if inputs.is_empty() {
        return Err(FixtureError::Empty(dir.into()));
    }
    let mut reports = Vec::new();
    // Each rater case's input and answer, to rate them again in one batch.
    let mut singles: Vec<(usize, wit::Usage, Value)> = Vec::new();
    for input_path in inputs {
        let file = input_path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let name = file.trim_end_matches(".input.json").to_string();
        let bad = |message: String| FixtureError::Input { path: input_path.clone(), message };
        let (actual, fuel_used) = match plugin.kind {
            Kind::Rater => {
                let input: FixtureInput =
                    serde_json::from_value(read_json(&input_path)?).map_err(|e| bad(e.to_string()))?;
                let usage = input.to_usage().map_err(|e| bad(e.to_string()))?;
                let (result, fuel_used) = runtime.rate_metered(plugin, &usage);
                singles.push((reports.len(), usage, result_json(&result)));
                (result_json(&result), fuel_used)
            }
            Kind::ErpMapper => {
                let case: MapperFixture =
                    serde_json::from_value(read_json(&input_path)?).map_err(|e| bad(e.to_string()))?;
                mapper_json(runtime, plugin, &case).map_err(|e| bad(e.to_string()))?
            }
        };
        let expected_path = dir.join(format!("{name}.expected.json"));
        let outcome = if bless {
            let mut text = serde_json::to_string_pretty(&actual).unwrap_or_default();
            text.push('\n');
            std::fs::write(&expected_path, text)
                .map_err(|source| FixtureError::Io { path: expected_path.clone(), source })?;
            Outcome::Blessed
        } else if !expected_path.exists() {
            Outcome::Failed(vec![format!("no {name}.expected.json (run with --bless to write it)")])
        } else {
            let mut diffs = Vec::new();
            let text = std::fs::read_to_string(&expected_path)
                .map_err(|source| FixtureError::Io { path: expected_path.clone(), source })?;
            for n in inexact_numbers(&text) {
                diffs.push(format!("{n}: a JSON number with more digits than a float holds; write it as a string"));
            }
            diff(&read_json(&expected_path)?, &actual, "", &mut diffs);
            if diffs.is_empty() { Outcome::Passed } else { Outcome::Failed(diffs) }
        };
        reports.push(CaseReport { name, outcome, fuel_used, fuel_budget: runtime.limits().fuel });
    }
    check_batches(runtime, plugin, &singles, &mut reports);
    Ok(reports)
}

/// Production rates many usages per call (a rater of 0.4.0 takes batches):
/// every case is rated again with all the others in one batch, forwards and
/// backwards, and must answer exactly as alone. A rater that keeps state
/// between inputs, or reads the other inputs, fails here.
fn check_batches(
    runtime: &Runtime,
    plugin: &Plugin,
    singles: &[(usize, wit::Usage, Value)],
    reports: &mut [CaseReport],
) {
    if singles.len() < 2 {
        return;
    }
    for backwards in [false, true] {
        let mut order: Vec<&(usize, wit::Usage, Value)> = singles.iter().collect();
        if backwards {
            order.reverse();
        }
        let usages: Vec<wit::Usage> = order.iter().map(|(_, u, _)| u.clone()).collect();
        for ((report, _, alone), answer) in order.into_iter().zip(runtime.rate_batch(plugin, &usages)) {
            let mut diffs = Vec::new();
            diff(alone, &result_json(&answer), "", &mut diffs);
            if diffs.is_empty() {
                continue;
            }
            let which = if backwards { "backwards" } else { "in file order" };
            let mut lines = vec![format!(
                "rated in one batch with the other cases ({which}), the answer differs from rating it alone \
                              (an answer must depend on its own input only):"
            )];
            lines.extend(diffs.into_iter().map(|d| format!("  {d}")));
            match &mut reports[*report].outcome {
                Outcome::Failed(existing) => existing.extend(lines),
                other => *other = Outcome::Failed(lines),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_beyond_a_float_are_found_outside_strings_only() {
        let text = r#"{"a": 0.0125, "b": 12345678901234567.89, "c": "99999999999999999.99", "d": [1e2, -3, 10.630]}"#;
        assert_eq!(inexact_numbers(text), vec!["12345678901234567.89".to_string()]);
        assert!(inexact_numbers(r#"{"s": "say \"1.00000000000000000001\""}"#).is_empty());
        let r = mwit::ErpRequest {
            method: "POST".into(),
            path: "/".into(),
            headers: vec![],
            body: r#"{"amount": 12345678901234567.89}"#.into(),
        };
        assert!(request_json(&r)["body"]["text"].is_string(), "held as text, compared exactly");
    }

    #[test]
    fn decimals_compare_by_value_and_other_fields_exactly() {
        let e = json!({"charges": [{"amount": "10.0", "description": "a"}]});
        let mut out = Vec::new();
        diff(&e, &json!({"charges": [{"amount": "10.00", "description": "a"}]}), "", &mut out);
        assert!(out.is_empty(), "{out:?}");
        diff(&e, &json!({"charges": [{"amount": "10.01", "description": "b"}]}), "", &mut out);
        assert_eq!(
            out,
            ["charges[0].amount: expected 10.0, got 10.01", "charges[0].description: expected \"a\", got \"b\""]
        );
        out.clear();
        diff(&e, &json!({"charges": []}), "", &mut out);
        assert_eq!(out, ["charges: expected 1 items, got 0"]);
    }
}
