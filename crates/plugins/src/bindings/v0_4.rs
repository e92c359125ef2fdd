//! `tollgate:plugin@0.4.0` (`wit/since_v0.4.0`): the rater in batches. Its
//! types are those of 0.2.0 (the component model compares types by
//! structure), so the host uses the 0.2.0 Rust types for both: nothing to
//! convert.

pub mod rater {
    wasmtime::component::bindgen!({
        world: "rater",
        path: "../../wit/since_v0.4.0",
        with: { "tollgate:plugin/types": super::super::v0_2::types },
    });
}
