//! ERP mapper calls: the posting conversation (map, look up, read answers)
//! on a fresh instance, with the requests and document numbers checked.

use crate::bindings::posting as pwit;
use crate::bindings::v0_1::mapper::ErpMapper as MapperV1;
use crate::bindings::v0_3::mapper::ErpMapper as MapperV3;
use crate::load::{Plugin, Pre};
use crate::runtime::CallState;
use crate::{PluginError, Runtime};
use wasmtime::Store;

impl Runtime {
    /// Runs `f` on a fresh instance of an ERP mapper, of whichever version
    /// it implements, also telling how much fuel the call used.
    pub(crate) fn with_mapper_metered<R>(
        &self,
        plugin: &Plugin,
        f: impl FnOnce(MapperInstance<'_>, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> (Result<R, PluginError>, u64) {
        if matches!(plugin.pre, Pre::RaterV1(_) | Pre::RaterV2(_) | Pre::RaterV4(..)) {
            return (Err(PluginError::IncompatibleInterface(format!("{} is not an erp-mapper", plugin.name))), 0);
        }
        let _slot = self.slots.acquire();
        let mut store = match self.store(plugin) {
            Ok(s) => s,
            Err(e) => return (Err(e), 0),
        };
        let result = match &plugin.pre {
            Pre::MapperV3(pre) => pre.instantiate(&mut store).and_then(|i| f(MapperInstance::V3(&i), &mut store)),
            Pre::MapperV1(pre) => pre.instantiate(&mut store).and_then(|i| f(MapperInstance::V1(&i), &mut store)),
            Pre::RaterV1(_) | Pre::RaterV2(_) | Pre::RaterV4(..) => unreachable!("checked above"),
        };
        let fuel_used = self.limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        (result.map_err(|e| self.classify(e)), fuel_used)
    }

    pub(crate) fn with_mapper<R>(
        &self,
        plugin: &Plugin,
        f: impl FnOnce(MapperInstance<'_>, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.with_mapper_metered(plugin, f).0
    }

    /// Checks a request a mapper produced: size and shape.
    pub(crate) fn checked_request(&self, req: pwit::ErpRequest) -> Result<pwit::ErpRequest, PluginError> {
        self.check_output(
            req.body.len() + req.path.len() + req.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
        )?;
        check_request(&req)?;
        Ok(req)
    }

    /// Maps a posting document to the first request of its ERP conversation.
    pub fn map_document(
        &self,
        plugin: &Plugin,
        doc: &pwit::PostingDocument,
        target: &pwit::TargetConfig,
    ) -> Result<pwit::ErpRequest, PluginError> {
        self.map_document_metered(plugin, doc, target).0
    }

    /// [`Runtime::map_document`], also telling how much fuel the call used.
    pub fn map_document_metered(
        &self,
        plugin: &Plugin,
        doc: &pwit::PostingDocument,
        target: &pwit::TargetConfig,
    ) -> (Result<pwit::ErpRequest, PluginError>, u64) {
        let (result, fuel) = self.with_mapper_metered(plugin, |m, s| match m {
            MapperInstance::V3(i) => i.tollgate_plugin_posting().call_map_document(s, doc, target),
            MapperInstance::V1(i) => i
                .call_map_document(s, &doc.into(), &target.into())
                .map(|r| r.map(Into::into).map_err(pwit::PluginError::from)),
        });
        let checked = result.and_then(|r| r.map_err(PluginError::from)).and_then(|req| self.checked_request(req));
        (checked, fuel)
    }

    /// The request that finds an earlier posting, if the ERP needs one.
    pub fn lookup_request(
        &self,
        plugin: &Plugin,
        doc: &pwit::PostingDocument,
        target: &pwit::TargetConfig,
    ) -> Result<Option<pwit::ErpRequest>, PluginError> {
        let req = self.with_mapper(plugin, |m, s| match m {
            MapperInstance::V3(i) => i.tollgate_plugin_posting().call_lookup_request(s, doc, target),
            MapperInstance::V1(i) => i.call_lookup_request(s, &doc.into(), &target.into()).map(|r| r.map(Into::into)),
        })?;
        req.map(|r| self.checked_request(r)).transpose()
    }

    /// Reads a look-up answer: nothing there, posted under a number, or a
    /// request to finish an earlier posting.
    pub fn read_lookup(
        &self,
        plugin: &Plugin,
        doc: &pwit::PostingDocument,
        target: &pwit::TargetConfig,
        response: &pwit::ErpResponse,
    ) -> Result<pwit::LookupOutcome, PluginError> {
        let outcome = self.with_mapper(plugin, |m, s| match m {
            MapperInstance::V3(i) => i.tollgate_plugin_posting().call_read_lookup(s, doc, target, response),
            MapperInstance::V1(i) => i.call_read_lookup(s, &response.into()).map(|r| {
                r.map(|found| found.map_or(pwit::LookupOutcome::Absent, pwit::LookupOutcome::Found))
                    .map_err(pwit::PluginError::from)
            }),
        })??;
        match outcome {
            pwit::LookupOutcome::Next(r) => Ok(pwit::LookupOutcome::Next(self.checked_request(r)?)),
            pwit::LookupOutcome::Found(n) => Ok(pwit::LookupOutcome::Found(check_number(n)?)),
            other => Ok(other),
        }
    }

    /// Reads the ERP's answer `response` to `request`, a request of the
    /// conversation posting `doc`.
    pub fn read_response(
        &self,
        plugin: &Plugin,
        doc: &pwit::PostingDocument,
        target: &pwit::TargetConfig,
        request: &pwit::ErpRequest,
        response: &pwit::ErpResponse,
    ) -> Result<pwit::Step, PluginError> {
        let step = self.with_mapper(plugin, |m, s| match m {
            MapperInstance::V3(i) => i.tollgate_plugin_posting().call_read_response(s, doc, target, request, response),
            MapperInstance::V1(i) => i.call_read_response(s, &response.into()).map(Into::into),
        })?;
        match step {
            pwit::Step::Next(r) => Ok(pwit::Step::Next(self.checked_request(r)?)),
            pwit::Step::Posted(n) => Ok(pwit::Step::Posted(check_number(n)?)),
            other => Ok(other),
        }
    }
}

/// A fresh ERP mapper instance, of the version its component implements.
pub(crate) enum MapperInstance<'a> {
    V3(&'a MapperV3),
    V1(&'a MapperV1),
}

/// Most bytes of an ERP document number.
pub const MAX_ERP_NUMBER_BYTES: usize = 256;

/// An ERP document number a mapper read from an answer: it identifies a
/// posted document for good, so it must be text one can show and look up
/// (the fuzzed NetSuite mapper once read a `Location: \r` as number "\r").
pub(crate) fn check_number(n: String) -> Result<String, PluginError> {
    let invalid = |message: String| PluginError::InvalidOutput { field: "erp_document_number".into(), message };
    if n.trim().is_empty() {
        return Err(invalid(format!("{n:?} is empty or only white space; the ERP answer names no document")));
    }
    if n.len() > MAX_ERP_NUMBER_BYTES || n.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{:?}{} is not a document number (control characters, or over {MAX_ERP_NUMBER_BYTES} bytes)",
            n.chars().take(64).collect::<String>(),
            if n.len() > 64 { "…" } else { "" }
        )));
    }
    Ok(n)
}

/// An ERP request must have an HTTP method token and a path starting with '/'.
pub(crate) fn check_request(req: &pwit::ErpRequest) -> Result<(), PluginError> {
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase());
    if !token(&req.method) {
        return Err(PluginError::InvalidOutput {
            field: "method".into(),
            message: format!("{:?} is not an HTTP method (GET, POST, PUT, PATCH, ...)", req.method),
        });
    }
    if !req.path.starts_with('/') {
        return Err(PluginError::InvalidOutput {
            field: "path".into(),
            message: format!("{:?} must start with '/'", req.path),
        });
    }
    Ok(())
}
