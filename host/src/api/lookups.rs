//! Synchronous look-ups: customer accounts, entitlements, pricing.

use super::{AppState, HttpError, Tenant};
use crate::lookup::{self};
use axum::Json;
use axum::extract::{Path, State};

pub(super) async fn customer_account(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path(id): Path<String>,
) -> Result<Json<lookup::Account>, HttpError> {
    Ok(lookup::bounded(move || lookup::account(&*s.masterdata.get(&s.store, &t)?, &id)).await.map(Json)?)
}

pub(super) async fn customer_entitlement(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path((id, feature)): Path<(String, String)>,
) -> Result<Json<lookup::Entitlement>, HttpError> {
    let log = s.ingestor.log().clone();
    let tenant_id = t.clone();
    Ok(lookup::entitlement_now(&log, &tenant_id, move || {
        let md = s.masterdata.get(&s.store, &t)?;
        lookup::entitlement(&s.store, &md, &t, &id, &feature, s.clock.now())
    })
    .await
    .map(Json)?)
}

pub(super) async fn contract_line_pricing(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path(id): Path<String>,
) -> Result<Json<lookup::PricingReference>, HttpError> {
    Ok(lookup::bounded(move || {
        let md = s.masterdata.get(&s.store, &t)?;
        lookup::pricing(&s.store, &s.registry, &md, &t, &id, s.clock.now())
    })
    .await
    .map(Json)?)
}
