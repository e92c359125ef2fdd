//! Rater calls: one usage or a batch per fresh instance, checked answers in
//! exact decimals, and a warm instance for benchmarks.

use crate::bindings::rating as rwit;
use crate::bindings::types as wit;
use crate::bindings::v0_1::rater::Rater as RaterV1;
use crate::bindings::v0_2::rater::Rater as RaterV2;
use crate::bindings::v0_4::rater::{Rater as RaterV4, RaterPre as RaterV4Pre};
use crate::load::{Plugin, Pre};
use crate::runtime::{CallState, TICK};
use crate::{PluginError, Runtime, WitDecimal};
use tollgate_core::rating::Charge;
use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, TypedFunc};

/// Most usages a 0.4.0 rater rates in one call (one fresh instance).
pub const BATCH_INPUTS: usize = 32;

impl Runtime {
    /// Rates one canonical usage with a rater plugin; the charges come back
    /// checked (every field named on error) and in exact decimals.
    pub fn rate(&self, plugin: &Plugin, input: &rwit::Usage) -> Result<Vec<Charge>, PluginError> {
        self.rate_metered(plugin, input).0
    }

    /// [`Runtime::rate`], also telling how much fuel the call used (with a
    /// fuel error, the whole budget).
    pub fn rate_metered(&self, plugin: &Plugin, input: &rwit::Usage) -> (Result<Vec<Charge>, PluginError>, u64) {
        let (answers, fuel) = self.call_rater(plugin, std::slice::from_ref(input));
        (answers.and_then(single_answer).and_then(|lines| self.checked(lines)), fuel)
    }

    /// Rates several usages with one rater; answer `i` is exactly what
    /// [`Runtime::rate`] gives for `inputs[i]`. A 0.4.0 rater takes up to
    /// [`BATCH_INPUTS`] usages per call (one fresh instance, the limits of
    /// one call: a batch that stays within them means each usage would
    /// have); older raters take one per call. A batch that traps or exceeds
    /// a limit is rated again usage by usage, so only the offending usage
    /// fails, with its own error; after a batch runs out of fuel or time,
    /// the remaining usages go one by one too (this rule is costly).
    pub fn rate_batch(&self, plugin: &Plugin, inputs: &[rwit::Usage]) -> Vec<Result<Vec<Charge>, PluginError>> {
        if !matches!(plugin.pre, Pre::RaterV4(..)) {
            return inputs.iter().map(|input| self.rate(plugin, input)).collect();
        }
        let mut out = Vec::with_capacity(inputs.len());
        let mut batched = true;
        for chunk in inputs.chunks(BATCH_INPUTS) {
            if batched && chunk.len() > 1 {
                match self.call_rater(plugin, chunk).0 {
                    Ok(answers) if answers.len() == chunk.len() => {
                        out.extend(answers.into_iter().map(|a| a.and_then(|lines| self.checked(lines))));
                        continue;
                    }
                    Err(PluginError::FuelExhausted { .. } | PluginError::DeadlineExceeded { .. }) => batched = false,
                    _ => {}
                }
            }
            out.extend(chunk.iter().map(|input| self.rate(plugin, input)));
        }
        out
    }

    /// One call of a rater on a fresh instance: `inputs` in one batch (a
    /// 0.4.0 rater) or exactly one input (older ones). `Err` is a failure of
    /// the whole call (a trap or limit); `Ok` holds the rater's answer per
    /// input, unchecked. Also tells the fuel used.
    #[allow(clippy::type_complexity)]
    pub(crate) fn call_rater(
        &self,
        plugin: &Plugin,
        inputs: &[rwit::Usage],
    ) -> (Result<Vec<Result<Vec<rwit::ChargeLine>, PluginError>>, PluginError>, u64) {
        if matches!(plugin.pre, Pre::MapperV3(_) | Pre::MapperV1(_)) {
            return (Err(PluginError::IncompatibleInterface(format!("{} is not a rater", plugin.name))), 0);
        }
        let one = |r: Result<Vec<rwit::ChargeLine>, PluginError>| vec![r];
        let _slot = self.slots.acquire();
        let mut store = match self.store(plugin) {
            Ok(s) => s,
            Err(e) => return (Err(e), 0),
        };
        let result = match (&plugin.pre, inputs) {
            (Pre::RaterV4(pre, rate_batch), _) => call_rate_batch(&mut store, pre, rate_batch, inputs)
                .map(|answers| answers.into_iter().map(|a| a.map_err(PluginError::from)).collect()),
            (Pre::RaterV2(pre), [input]) => pre
                .instantiate(&mut store)
                .and_then(|i: RaterV2| i.tollgate_plugin_rating().call_rate(&mut store, input))
                .map(|r| one(r.map_err(PluginError::from))),
            (Pre::RaterV1(pre), [input]) => pre
                .instantiate(&mut store)
                .and_then(|i: RaterV1| i.call_rate(&mut store, &wit::Usage::from(input)))
                .map(|r| {
                    one(r.map(|lines| lines.into_iter().map(rwit::ChargeLine::from).collect()).map_err(Into::into))
                }),
            (Pre::RaterV2(_) | Pre::RaterV1(_), _) => unreachable!("older raters are called with one input"),
            (Pre::MapperV3(_) | Pre::MapperV1(_), _) => unreachable!("checked above"),
        };
        let fuel_used = self.limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        (result.map_err(|e| self.classify(e)), fuel_used)
    }

    /// A rater's answer for one input: within the output cap, converted to
    /// exact decimals (errors name the field).
    pub(crate) fn checked(&self, answer: Vec<rwit::ChargeLine>) -> Result<Vec<Charge>, PluginError> {
        let size: usize = answer.iter().map(|l| l.sku.len() + l.description.len() + l.explain.len() + 64).sum();
        self.check_output(size)?;
        charges_from_wit(answer)
    }

    /// One rater instance reused across calls, for benchmarks and tools only:
    /// production rating always takes a fresh instance per call.
    pub fn warm_rater(&self, plugin: &Plugin) -> Result<WarmRater, PluginError> {
        let mut store = self.store(plugin)?;
        let instance = match &plugin.pre {
            Pre::RaterV4(pre, _) => WarmInstance::V4(pre.instantiate(&mut store).map_err(|e| self.classify(e))?),
            Pre::RaterV2(pre) => WarmInstance::V2(pre.instantiate(&mut store).map_err(|e| self.classify(e))?),
            Pre::RaterV1(pre) => WarmInstance::V1(pre.instantiate(&mut store).map_err(|e| self.classify(e))?),
            Pre::MapperV3(_) | Pre::MapperV1(_) => {
                return Err(PluginError::IncompatibleInterface(format!("{} is not a rater", plugin.name)));
            }
        };
        Ok(WarmRater { runtime: self.clone(), store, instance })
    }
}

/// A rater instance kept across calls (see [`Runtime::warm_rater`]).
pub struct WarmRater {
    pub(crate) runtime: Runtime,
    pub(crate) store: Store<CallState>,
    pub(crate) instance: WarmInstance,
}

pub(crate) enum WarmInstance {
    V4(RaterV4),
    V1(RaterV1),
    V2(RaterV2),
}

impl WarmRater {
    /// Calls `rate` again on the same instance, with a refilled budget.
    pub fn rate(&mut self, input: &rwit::Usage) -> Result<Vec<Charge>, PluginError> {
        let rt = &self.runtime;
        self.store.set_fuel(rt.limits.fuel).map_err(|e| rt.classify(e))?;
        self.store.set_epoch_deadline(rt.limits.deadline_ms.div_ceil(TICK.as_millis() as u64).max(1));
        let lines = match &self.instance {
            WarmInstance::V4(i) => single_answer(
                i.tollgate_plugin_rating()
                    .call_rate_batch(&mut self.store, std::slice::from_ref(input))
                    .map_err(|e| rt.classify(e))?
                    .into_iter()
                    .map(|a| a.map_err(PluginError::from))
                    .collect(),
            )?,
            WarmInstance::V2(i) => {
                i.tollgate_plugin_rating().call_rate(&mut self.store, input).map_err(|e| rt.classify(e))??
            }
            WarmInstance::V1(i) => i
                .call_rate(&mut self.store, &wit::Usage::from(input))
                .map_err(|e| rt.classify(e))??
                .into_iter()
                .map(rwit::ChargeLine::from)
                .collect(),
        };
        charges_from_wit(lines)
    }
}

/// Parameters and results of a 0.4.0 rater's `rate-batch`.
pub(crate) type RateBatchParams<'a> = (&'a [rwit::Usage],);
pub(crate) type RateBatchResults = (Vec<Result<Vec<rwit::ChargeLine>, rwit::PluginError>>,);

/// `rate-batch` of a fresh instance of a 0.4.0 rater: the bindings'
/// `instantiate` + `call_rate_batch`, without type-checking the export anew
/// for every instance (about 1 % of a fresh call).
#[allow(unsafe_code)]
pub(crate) fn call_rate_batch(
    store: &mut Store<CallState>,
    pre: &RaterV4Pre<CallState>,
    rate_batch: &ComponentExportIndex,
    inputs: &[rwit::Usage],
) -> wasmtime::Result<Vec<Result<Vec<rwit::ChargeLine>, rwit::PluginError>>> {
    let instance = pre.instance_pre().instantiate(&mut *store)?;
    let func = instance
        .get_func(&mut *store, rate_batch)
        .ok_or_else(|| wasmtime::format_err!("no export `rate-batch` found"))?;
    // SAFETY: `typed_export` type-checked this export of this component
    // against exactly these parameters and results when the plugin
    // was loaded (a plugin failing the check is refused), and every instance
    // of a component has the component's types.
    let typed: TypedFunc<RateBatchParams<'_>, RateBatchResults> = unsafe { TypedFunc::new_unchecked(func) };
    Ok(typed.call(&mut *store, (inputs,))?.0)
}

/// The one answer a rater gave for one input.
pub(crate) fn single_answer(
    mut answers: Vec<Result<Vec<rwit::ChargeLine>, PluginError>>,
) -> Result<Vec<rwit::ChargeLine>, PluginError> {
    match answers.len() {
        1 => answers.pop().expect("one answer"),
        n => Err(PluginError::InvalidOutput {
            field: "results".into(),
            message: format!("{n} answers for 1 input; a rater answers once per input"),
        }),
    }
}

/// Checks a rater's output and converts it to exact decimals; errors name
/// the offending field (`lines[2].amount`).
pub(crate) fn charges_from_wit(lines: Vec<rwit::ChargeLine>) -> Result<Vec<Charge>, PluginError> {
    lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            // Field names are only written out for an error: this runs on every call.
            let f = |name: &str| format!("lines[{i}].{name}");
            let exact = |d: &rwit::Decimal, name: &str| {
                tollgate_sdk::decimal::from_parts(d.parts()).ok_or_else(|| PluginError::InvalidOutput {
                    field: f(name),
                    message: format!("decimal scale {} is above 28", d.scale),
                })
            };
            if l.sku.is_empty() {
                return Err(PluginError::InvalidOutput { field: f("sku"), message: "empty".into() });
            }
            Ok(Charge {
                quantity: exact(&l.quantity, "quantity")?,
                unit_price: exact(&l.unit_price, "unit_price")?,
                amount: exact(&l.amount, "amount")?,
                sku: l.sku,
                description: l.description,
                explain: l.explain,
            })
        })
        .collect()
}
