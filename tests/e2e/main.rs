//! End-to-end tests: a real gateway (gRPC + HTTP on 127.0.0.1, sled on disk,
//! Wasm plugins) posting over real HTTP to the ERP simulator, driven only
//! through public interfaces.

mod amendments;
mod compat;
mod eventlog;
mod exceptions;
mod faults;
mod flow;
mod ingest;
mod isolation;
mod lookups;
mod masterdata;
mod metering;
mod openapi;
mod plugins;
mod posting;
mod tryton;
