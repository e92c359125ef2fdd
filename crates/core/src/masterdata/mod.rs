//! Master data: legal entities, customers, subscriptions, SKUs, features
//! and contract lines, per tenant, effective-dated ([`history`]). Written
//! from a file at start-up (`tenants[].masterdata_file`), through `PUT
//! /v1/masterdata` (a whole snapshot, from an effective time) and through
//! `POST /v1/masterdata/{collection}/{id}/versions` (one entity's
//! amendment); every write is checked by [`MasterData::validate`], which
//! names the offending field, at each instant the write affects ([`plan`]).
//! The store keeps the versions (the gateway's `masterdata` module).

pub mod history;
mod model;

pub use model::{
    BillingPeriod, ContractLine, Customer, Feature, LegalEntity, LegalEntitySplit, MasterData, Planned, PluginRef,
    References, Sku, Subscription, plan, snap_to_windows,
};
