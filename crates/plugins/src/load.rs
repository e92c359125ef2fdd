//! Loading a plugin: size and memory checks, compilation, no function
//! imports, and the type check of the world it implements.

use crate::bindings::posting as pwit;
use crate::bindings::rating as rwit;
use crate::bindings::v0_1::mapper::ErpMapperPre as MapperV1Pre;
use crate::bindings::v0_1::rater::RaterPre as RaterV1Pre;
use crate::bindings::v0_2::rater::RaterPre as RaterV2Pre;
use crate::bindings::v0_3::mapper::ErpMapperPre as MapperV3Pre;
use crate::bindings::v0_4::rater::RaterPre as RaterV4Pre;
use crate::engine::{ResetMode, initial_memory_bytes};
use crate::rater::{RateBatchParams, RateBatchResults};
use crate::runtime::CallState;
use crate::{PluginError, Runtime};
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, Linker};

/// A rater world the host serves, newest first.
pub(crate) const RATER_WORLDS: [&str; 3] =
    ["tollgate:plugin/rater@0.4.0", "tollgate:plugin/rater@0.2.0", "tollgate:plugin/rater@0.1.0"];
/// Worlds that still run but are no longer accepted for upload (see
/// `wit/README.md`: at most two live versions per world).
pub(crate) const DEPRECATED_WORLDS: [&str; 1] = ["tollgate:plugin/rater@0.1.0"];
/// An ERP mapper world the host serves, newest first.
pub(crate) const MAPPER_WORLDS: [&str; 2] = ["tollgate:plugin/erp-mapper@0.3.0", "tollgate:plugin/erp-mapper@0.1.0"];

/// Largest component accepted, bytes.
pub const MAX_COMPONENT_BYTES: usize = 16 << 20;

/// The world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Rater,
    ErpMapper,
}

impl Kind {
    /// The worlds a plugin of this kind may implement, newest first.
    pub fn worlds(self) -> &'static [&'static str] {
        match self {
            Kind::Rater => &RATER_WORLDS,
            Kind::ErpMapper => &MAPPER_WORLDS,
        }
    }
}

/// Whether a world still runs but is refused for new uploads.
pub fn is_deprecated(world: &str) -> bool {
    DEPRECATED_WORLDS.contains(&world)
}

/// A compiled, checked plugin, ready to instantiate.
pub struct Plugin {
    pub name: String,
    pub version: semver::Version,
    pub kind: Kind,
    /// SHA-256 of the component bytes: the plugin's identity.
    pub sha256: String,
    pub(crate) pre: Pre,
    /// The engine it was compiled for (see [`Runtime::engine_for`]).
    pub(crate) engine: Engine,
    pub(crate) reset: ResetMode,
    pub(crate) code_bytes: u64,
}

impl Plugin {
    /// Bytes of its compiled image (code and data) in memory.
    pub fn code_bytes(&self) -> u64 {
        self.code_bytes
    }

    /// How this plugin's memory is made fresh for the next call.
    pub fn reset_mode(&self) -> ResetMode {
        self.reset
    }

    /// The versioned world the component implements, e.g.
    /// `tollgate:plugin/rater@0.2.0`.
    pub fn world(&self) -> &'static str {
        match self.pre {
            Pre::RaterV4(..) => RATER_WORLDS[0],
            Pre::RaterV2(_) => RATER_WORLDS[1],
            Pre::RaterV1(_) => RATER_WORLDS[2],
            Pre::MapperV3(_) => MAPPER_WORLDS[0],
            Pre::MapperV1(_) => MAPPER_WORLDS[1],
        }
    }
}

pub(crate) enum Pre {
    RaterV4(RaterV4Pre<CallState>, ComponentExportIndex),
    RaterV2(RaterV2Pre<CallState>),
    RaterV1(RaterV1Pre<CallState>),
    MapperV3(MapperV3Pre<CallState>),
    MapperV1(MapperV1Pre<CallState>),
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{} ({:?}, sha256 {})", self.name, self.version, self.kind, self.sha256)
    }
}

impl Runtime {
    /// Compiles and checks a component: size, no function imports, the world
    /// of `kind` (its exports' names and signatures; the 0.1.0 worlds' are
    /// type-checked by the bindings' `new`, the others' by `typed_export`),
    /// and the pooling allocator's limits (checked when it is compiled).
    pub fn load(&self, name: &str, version: semver::Version, kind: Kind, bytes: &[u8]) -> Result<Plugin, PluginError> {
        if bytes.len() > MAX_COMPONENT_BYTES {
            return Err(PluginError::TooLarge(format!("{} bytes; at most {MAX_COMPONENT_BYTES}", bytes.len())));
        }
        let initial_memory = initial_memory_bytes(bytes);
        if let Some(initial) = initial_memory.filter(|n| *n > self.limits.memory_mib << 20) {
            return Err(PluginError::TooLarge(format!(
                "linear memory starts at {} KiB; the cap is {} MiB (plugins.memory_limit_mib)",
                initial >> 10,
                self.limits.memory_mib
            )));
        }
        let sha256 = tollgate_core::sha256_hex(bytes);
        let (engine, reset) = self.engine_for(initial_memory);
        let component = self.compile(engine, bytes, &sha256)?;
        let image = component.image_range();
        let code_bytes = (image.end as usize).saturating_sub(image.start as usize) as u64;
        check_imports(engine, &component)?;
        let linker: Linker<CallState> = Linker::new(engine);
        let pre =
            linker.instantiate_pre(&component).map_err(|e| PluginError::IncompatibleInterface(format!("{e:#}")))?;
        let refused = |errors: Vec<(&str, wasmtime::Error)>| {
            let why: Vec<String> = errors.iter().map(|(world, e)| format!("{world}: {e:#}")).collect();
            PluginError::IncompatibleInterface(format!(
                "implements none of the supported worlds {} ({})",
                kind.worlds().join(", "),
                why.join("; ")
            ))
        };
        let pre = match kind {
            Kind::Rater => match RaterV4Pre::new(pre.clone()).and_then(|p| {
                let rate_batch = typed_export::<RateBatchParams<'_>, RateBatchResults>(
                    p.instance_pre(),
                    "tollgate:plugin/rating@0.4.0",
                    "rate-batch",
                )?;
                Ok(Pre::RaterV4(p, rate_batch))
            }) {
                Ok(p) => p,
                Err(e4) => match RaterV2Pre::new(pre.clone()).and_then(|p| {
                    typed_export::<(&rwit::Usage,), (Result<Vec<rwit::ChargeLine>, rwit::PluginError>,)>(
                        p.instance_pre(),
                        "tollgate:plugin/rating@0.2.0",
                        "rate",
                    )?;
                    Ok(p)
                }) {
                    Ok(p) => Pre::RaterV2(p),
                    Err(e2) => match RaterV1Pre::new(pre) {
                        Ok(p) => Pre::RaterV1(p),
                        Err(e1) => {
                            return Err(refused(vec![
                                (RATER_WORLDS[0], e4),
                                (RATER_WORLDS[1], e2),
                                (RATER_WORLDS[2], e1),
                            ]));
                        }
                    },
                },
            },
            Kind::ErpMapper => match MapperV3Pre::new(pre.clone()).and_then(|p| {
                check_mapper_v3(p.instance_pre())?;
                Ok(p)
            }) {
                Ok(p) => Pre::MapperV3(p),
                Err(e3) => match MapperV1Pre::new(pre) {
                    Ok(p) => Pre::MapperV1(p),
                    Err(e1) => return Err(refused(vec![(MAPPER_WORLDS[0], e3), (MAPPER_WORLDS[1], e1)])),
                },
            },
        };
        Ok(Plugin { name: name.to_string(), version, kind, sha256, pre, engine: engine.clone(), reset, code_bytes })
    }
}

/// The export `name` of the exported instance `interface`, type-checked
/// against parameters `P` and results `R`. The bindings' `Pre::new` only
/// looks an interface's exports up by name (their `instantiate` type-checks,
/// on every instance), so load checks each export here, once.
pub(crate) fn typed_export<P, R>(
    pre: &wasmtime::component::InstancePre<CallState>,
    interface: &str,
    name: &str,
) -> wasmtime::Result<ComponentExportIndex>
where
    P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower,
    R: wasmtime::component::ComponentNamedList + wasmtime::component::Lift,
{
    let component = pre.component();
    let (_, instance) = component
        .get_export(None, interface)
        .ok_or_else(|| wasmtime::format_err!("no exported instance `{interface}`"))?;
    let (item, index) = component
        .get_export(Some(&instance), name)
        .ok_or_else(|| wasmtime::format_err!("no export `{name}` in `{interface}`"))?;
    match item {
        // The check the bindings make when they load an instance
        // (`typecheck` is public but hidden from the docs for them).
        ComponentItem::ComponentFunc(func) => func
            .typecheck::<P, R>(&pre.instance_type())
            .map_err(|e| e.context(format!("type-checking export func `{name}`")))?,
        _ => return Err(wasmtime::format_err!("export `{name}` of `{interface}` is not a function")),
    }
    Ok(index)
}

/// Type-checks the four functions of an ERP mapper 0.3.0.
pub(crate) fn check_mapper_v3(pre: &wasmtime::component::InstancePre<CallState>) -> wasmtime::Result<()> {
    use pwit::{ErpRequest, ErpResponse, LookupOutcome, PluginError, PostingDocument, Step, TargetConfig};
    const POSTING: &str = "tollgate:plugin/posting@0.3.0";
    typed_export::<(&PostingDocument, &TargetConfig), (Result<ErpRequest, PluginError>,)>(
        pre,
        POSTING,
        "map-document",
    )?;
    typed_export::<(&PostingDocument, &TargetConfig), (Option<ErpRequest>,)>(pre, POSTING, "lookup-request")?;
    typed_export::<(&PostingDocument, &TargetConfig, &ErpResponse), (Result<LookupOutcome, PluginError>,)>(
        pre,
        POSTING,
        "read-lookup",
    )?;
    typed_export::<(&PostingDocument, &TargetConfig, &ErpRequest, &ErpResponse), (Step,)>(
        pre,
        POSTING,
        "read-response",
    )?;
    Ok(())
}

/// Refuses any import that is not a types-only instance, naming it.
pub(crate) fn check_imports(engine: &Engine, component: &Component) -> Result<(), PluginError> {
    let ty = component.component_type();
    for (name, import) in ty.imports(engine) {
        match &import.ty {
            ComponentItem::ComponentInstance(instance) => {
                for (export, item) in instance.exports(engine) {
                    if !matches!(item.ty, ComponentItem::Type(_)) {
                        return Err(PluginError::IncompatibleInterface(format!(
                            "imports `{name}` with `{export}`; plugins may import no functions (no WASI, no host calls)"
                        )));
                    }
                }
            }
            ComponentItem::Type(_) => {}
            _ => {
                return Err(PluginError::IncompatibleInterface(format!(
                    "imports `{name}`; plugins may import no functions (no WASI, no host calls)"
                )));
            }
        }
    }
    Ok(())
}
