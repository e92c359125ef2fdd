//! The HTTP admin API (JSON). Every route takes the tenant from
//! `authorization: Bearer <api key>`.
//!
//! Described by OpenAPI 3 at `GET /openapi.json` (`api/openapi.json`),
//! which a test keeps equal to [`endpoints`].
//!
//! - `GET  /healthz`
//! - `POST /v1/events`: usage as CloudEvents 1.0, one
//!   (`application/cloudevents+json`) or a batch
//!   (`application/cloudevents-batch+json`); per-event results (see
//!   `ingest::cloudevents` for the attribute mapping)
//! - `GET  /v1/events?customer=C&meter=M&from=T&to=T&limit=N&after=CURSOR`:
//!   live events (current revisions) by customer, meter and event-time range
//!   (`from` inclusive, `to` exclusive, RFC 3339), in (customer, meter, time)
//!   order; `next` is the cursor of the following page
//! - `GET  /v1/events/{id}`: one event's current revision and the revisions
//!   it replaced
//! - `POST /v1/meters`: define a meter ([`crate::metering::MeterSpec`]);
//!   its windows are built from the events stored so far before it answers
//!   (201; 200 when the same definition exists; 409 for a different one)
//! - `GET  /v1/meters`: the tenant's meters and the live events of types no
//!   meter reads (`unmetered`); `GET /v1/meters/{id}`: one meter
//! - `GET  /v1/customers/{id}`: account look-up (ERP account, legal entity,
//!   contract lines); `GET /v1/customers/{id}/entitlements/{feature}`:
//!   allowed, used this period, remaining; `GET
//!   /v1/contract-lines/{id}/pricing`: the rule pricing a line now. Served
//!   from master data indexed in memory, each bounded by 50 ms
//! - `GET  /v1/unmatched?period=YYYY-MM`: usage no contract line bills yet
//!   (unknown customer, no contract line for the meter) and events no
//!   meter reads, with the reason and the owning team
//! - `GET  /v1/windows?meter=M[&customer=C][&from=T][&to=T][&dimensions.K=V…]`:
//!   a meter's windows (window start in `[from, to)`), optionally of one
//!   customer and one value of a group-by dimension, with their total
//! - `POST /v1/api-keys` `{name, tenant?}`: a new API key, shown once (a
//!   tenant's key makes keys for its tenant; the operator key for any tenant)
//! - `GET  /v1/api-keys[?tenant=T]`: keys without secrets
//! - `DELETE /v1/api-keys/{id}`: revoke a key
//! - `POST /v1/tenants` `{id, name}`, `GET /v1/tenants`: the operator
//!   creates a tenant explicitly (keys are only made for existing tenants)
//! - `GET  /v1/plugins`: the plugins the tenant can use (its own and bundled)
//! - `POST /v1/plugins?name=N&version=V&kind=rater|erp-mapper`: upload a
//!   component (body: the `.wasm` bytes); validated, compiled, immutable
//! - `POST /v1/activations`: `{contract_line, plugin, version, effective_from}`
//! - `GET  /v1/activations/{contract_line}`: the activation history
//! - `/v1/masterdata…`: effective-dated master data, "as of" reads and
//!   history (see `api::masterdata`)
//! - `POST /v1/periods/{period}/interim[?date=YYYY-MM-DD]`, `GET …/interim`:
//!   interim documents (period to date, never posted) for reconciliation
//! - `POST /v1/periods/{period}/close[?wait_ms=N]`: close a billing period
//!   (`YYYY-MM`); with `wait_ms`, answer once every document is posted or
//!   rejected, or after N ms
//! - `GET  /v1/documents/{id}`: a posting document and its state
//! - `GET  /v1/lineage/documents/{erp_document_number}[?target=T]`
//! - `GET  /v1/lineage/events/{id}`: the charges an event counts in and the
//!   documents (per ERP target) and ERP numbers that bill them
//! - `GET  /v1/targets`: the ERP targets, each with its circuit breaker and
//!   the tenant's documents waiting in its outbox
//! - `GET  /v1/exceptions[?all=true]`: documents an ERP rejected for a
//!   business reason, with the reason, owner and suggested action (with
//!   `all`, also those an action resolved)
//! - `POST /v1/exceptions/{document_id}/actions` `{"action": "retry"}` |
//!   `{"action": "reroute", "period"?: "YYYY-MM"}` | `{"action": "cancel",
//!   "reason": ".."}`

mod error;
mod events;
mod lookups;
mod masterdata;
mod meters;
mod periods;
mod plugins;
mod router;
mod tenants;
#[cfg(test)]
mod tests;

pub use error::HttpError;
pub use router::{AppState, DEFAULT_BODY_LIMIT, Endpoint, MAX_MASTERDATA_BYTES, OPENAPI, Tenant, endpoints, router};
