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

mod business_central;
mod generic;
mod netsuite;
mod odoo;
mod sap;
mod sim;

pub use sim::{Chaos, Fault, Invoice, InvoiceLine, Sim};
