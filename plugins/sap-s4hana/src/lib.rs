//! SAP S/4HANA Cloud ERP mapper: a document becomes one billing document
//! request (BDR). S/4HANA has no OData create for BDRs, so interface 0.3.0
//! carries a two-step conversation:
//!
//! 1. the asynchronous SOAP inbound service `BDR_REQUEST_IN`
//!    (`BillingDocumentRequestBulkRequest`): one `BillableDocument` whose
//!    `ReferenceDocument` is the document id, from the configured logical
//!    system, one `BillableDocumentItem` per line (material, quantity and a
//!    `PPR0` price condition). S/4HANA answers 202 without a body; the
//!    message header's id is derived from the document id and the exact
//!    request content, so a resend of the same request is the same message
//!    and the SOAP runtime processes it once;
//! 2. the read-back through OData `API_BILLING_DOCUMENT_REQUEST_SRV`
//!    (`A_BillingDocumentRequest?$filter=ReferenceDocument eq '…'`): a BDR
//!    there is posted under its number; nothing yet means S/4HANA has not
//!    processed the message (transient: the read-back is retried, never the
//!    send); asynchronous failures — e.g. F5 201 "Posting period … is not
//!    open" — only show here, as the newest entry's `SAP__Messages`.
//!
//! The same read-back is the gateway's look-up after an ambiguous failure.
//!
//! Settings: `user` and `password` (HTTP Basic), `logical_system`,
//! `sales_organization`, `distribution_channel` (default `10`), `division`
//! (default `00`), `unit` (ISO unit code, default `EA`). The customer's ERP
//! account is the sold-to party, each line's ERP item the material.
//!
//! Answers: 202 → read back; a SOAP fault with 4xx is a synchronous
//! rejection (`validation`); 429 and 5xx are transient; 401 / 403
//! `unauthorized`. Read-back messages: F5 201 or "not open" is
//! `period-closed`, a material message `unknown-item`, a sold-to party
//! message `unknown-account`, the rest `validation`.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tollgate_sdk::mapper_v3::{
    ErpRequest, ErpResponse, Guest, LookupOutcome, PluginError, PostingDocument, Step, TargetConfig, basic_auth,
    http_error, priced_line, setting, transient_status,
};

pub struct SapS4Hana;

const SOAP_PATH: &str = "/sap/bc/srt/scs_ext/sap/billingdocumentrequest_in";
const ODATA_PATH: &str = "/sap/opu/odata/sap/API_BILLING_DOCUMENT_REQUEST_SRV/A_BillingDocumentRequest";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

fn required<'a>(target: &'a TargetConfig, key: &str) -> Result<&'a str, PluginError> {
    setting(target, key).ok_or_else(|| {
        PluginError::new("invalid-input", Some(&format!("settings.{key}")), "required by the SAP S/4HANA mapper")
    })
}

fn headers(target: &TargetConfig, content_type: &str) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_string(), content_type.to_string())];
    if let Some(user) = setting(target, "user") {
        let password = setting(target, "password").unwrap_or_default();
        h.push(("authorization".into(), basic_auth(user, password)));
    }
    h
}

/// A UUID-shaped message id: SHA-256 of the document id and the request
/// content, so the same request is the same message.
fn message_id(doc_id: &str, content: &str) -> String {
    let h = hex(&Sha256::digest(format!("{doc_id}\0{content}").as_bytes())[..16]);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SOAP request that sends the document.
fn bdr_request(doc: &PostingDocument, target: &TargetConfig) -> Result<ErpRequest, PluginError> {
    let unit = escape(setting(target, "unit").unwrap_or("EA"));
    let currency = escape(&doc.currency);
    let mut items = String::new();
    for (i, l) in doc.lines.iter().enumerate() {
        if l.erp_item.is_empty() {
            return Err(PluginError::new("invalid-input", Some(&format!("lines[{i}].erp_item")), "no material"));
        }
        let (quantity, price, description) = priced_line(l, i)?;
        items.push_str(&format!(
            "<BillableDocumentItem><ReferenceDocumentItem>{item}</ReferenceDocumentItem>\
             <Material>{material}</Material><BillableDocumentItemText>{text}</BillableDocumentItemText>\
             <BillingQuantity unitCode=\"{unit}\">{quantity}</BillingQuantity>\
             <PricingElement><ConditionType>PPR0</ConditionType>\
             <ConditionRateAmount currencyCode=\"{currency}\">{price}</ConditionRateAmount>\
             <ConditionQuantity unitCode=\"{unit}\">1</ConditionQuantity></PricingElement>\
             </BillableDocumentItem>",
            item = (i + 1) * 10,
            material = escape(&l.erp_item),
            text = escape(&description),
        ));
    }
    let content = format!(
        "<BillableDocument><ReferenceDocument>{reference}</ReferenceDocument>\
         <LogicalSystem>{system}</LogicalSystem><SalesOrganization>{org}</SalesOrganization>\
         <DistributionChannel>{channel}</DistributionChannel><Division>{division}</Division>\
         <SoldToParty>{party}</SoldToParty><BillingDocumentDate>{date}</BillingDocumentDate>\
         <TransactionCurrency>{currency}</TransactionCurrency>{items}</BillableDocument>",
        reference = escape(&doc.id),
        system = escape(required(target, "logical_system")?),
        org = escape(required(target, "sales_organization")?),
        channel = escape(setting(target, "distribution_channel").unwrap_or("10")),
        division = escape(setting(target, "division").unwrap_or("00")),
        party = escape(&doc.erp_account),
        date = escape(&doc.issue_date),
    );
    let id = message_id(&doc.id, &content);
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:sd=\"http://sap.com/xi/SAPSCORE/SD\"><soapenv:Header/><soapenv:Body>\
         <sd:BillingDocumentRequestBulkRequest><MessageHeader><ID>{id}</ID>\
         <CreationDateTime>{period_end}</CreationDateTime></MessageHeader>\
         <BillingDocumentRequest><MessageHeader><ID>{id}</ID></MessageHeader>{content}</BillingDocumentRequest>\
         </sd:BillingDocumentRequestBulkRequest></soapenv:Body></soapenv:Envelope>",
        period_end = escape(&doc.period_end),
    );
    Ok(ErpRequest {
        method: "POST".into(),
        path: SOAP_PATH.into(),
        headers: headers(target, "text/xml; charset=utf-8"),
        body,
    })
}

/// The OData read-back by reference document.
fn read_back(doc: &PostingDocument, target: &TargetConfig) -> ErpRequest {
    // OData string literal: single quotes doubled; then percent-encoded.
    let filter = format!("ReferenceDocument eq '{}'", doc.id.replace('\'', "''"));
    ErpRequest {
        method: "GET".into(),
        path: format!("{ODATA_PATH}?$filter={}&$format=json", percent(&filter)),
        headers: headers(target, "application/json"),
        body: String::new(),
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Deserialize)]
struct ODataMessage {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "BillingDocumentRequest", default)]
    number: String,
    #[serde(rename = "SAP__Messages", default)]
    messages: Vec<ODataMessage>,
}

#[derive(Deserialize)]
struct Results {
    results: Vec<Entry>,
}

#[derive(Deserialize)]
struct ReadBack {
    d: Results,
}

fn classify(m: &ODataMessage) -> PluginError {
    let text = m.message.to_ascii_lowercase();
    let code = if m.code == "F5/201" || text.contains("is not open") {
        "period-closed"
    } else if text.contains("material") {
        "unknown-item"
    } else if text.contains("sold-to") || text.contains("customer") {
        "unknown-account"
    } else {
        "validation"
    };
    PluginError::new(code, None, format!("{} ({})", m.message, m.code))
}

/// What the read-back says: posted, failed (its newest entry carries
/// error messages), or not processed yet.
fn read_entries(r: &ErpResponse) -> Result<Result<Option<String>, PluginError>, Step> {
    if let Some(t) = transient_status(r) {
        return Err(t);
    }
    if matches!(r.status, 401 | 403) {
        return Err(Step::Rejected(PluginError::new("unauthorized", None, format!("HTTP {}", r.status))));
    }
    if r.status != 200 {
        return Err(Step::Rejected(http_error(r.status, &r.body)));
    }
    let d = match tollgate_sdk::json::from_str::<ReadBack>(&r.body) {
        Ok(v) => v.d,
        Err(e) => return Err(Step::Transient(format!("read-back: unreadable answer: {e}"))),
    };
    if let Some(posted) = d.results.iter().find(|e| !e.number.is_empty()) {
        return Ok(Ok(Some(posted.number.clone())));
    }
    match d.results.last().and_then(|e| e.messages.first()) {
        Some(m) => Ok(Err(classify(m))),
        None => Ok(Ok(None)),
    }
}

impl Guest for SapS4Hana {
    fn map_document(doc: PostingDocument, target: TargetConfig) -> Result<ErpRequest, PluginError> {
        bdr_request(&doc, &target)
    }

    fn lookup_request(doc: PostingDocument, target: TargetConfig) -> Option<ErpRequest> {
        Some(read_back(&doc, &target))
    }

    fn read_lookup(doc: PostingDocument, target: TargetConfig, r: ErpResponse) -> Result<LookupOutcome, PluginError> {
        match read_entries(&r) {
            Ok(Ok(Some(number))) => Ok(LookupOutcome::Found(number)),
            Ok(Ok(None)) => Ok(LookupOutcome::Absent),
            // A failed processing: read back again as a step, which rejects it.
            Ok(Err(_)) => Ok(LookupOutcome::Next(read_back(&doc, &target))),
            Err(Step::Rejected(e)) => Err(e),
            Err(Step::Transient(m)) => Err(PluginError::new("lookup-failed", None, m)),
            Err(_) => Err(PluginError::new("lookup-failed", None, "unexpected answer")),
        }
    }

    fn read_response(doc: PostingDocument, target: TargetConfig, request: ErpRequest, r: ErpResponse) -> Step {
        if request.method == "GET" {
            return match read_entries(&r) {
                Ok(Ok(Some(number))) => Step::Posted(number),
                Ok(Ok(None)) => Step::Transient("S/4HANA has not processed the billing document request yet".into()),
                Ok(Err(e)) => Step::Rejected(e),
                Err(step) => step,
            };
        }
        if let Some(t) = transient_status(&r) {
            return t;
        }
        match r.status {
            200 | 202 => Step::Next(read_back(&doc, &target)),
            401 | 403 => Step::Rejected(PluginError::new("unauthorized", None, format!("HTTP {}", r.status))),
            status => {
                let fault = r
                    .body
                    .split_once("<faultstring>")
                    .and_then(|(_, rest)| rest.split_once("</faultstring>"))
                    .map(|(text, _)| text.to_string());
                match fault {
                    Some(text) => Step::Rejected(PluginError::new("validation", None, text)),
                    None => Step::Rejected(http_error(status, &r.body)),
                }
            }
        }
    }
}

tollgate_sdk::mapper_v3::export_erp_mapper_v3!(SapS4Hana);
