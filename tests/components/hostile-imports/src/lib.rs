//! Components that must be refused at load: they import a function, or
//! implement another world (or the right names with another signature).
//! One per feature (see `tests/components/README.md`).

// The generated bindings use `unsafe` for the canonical ABI.
#![allow(unsafe_code)]

#[cfg(feature = "wasi")]
mod bindings {
    wit_bindgen::generate!({ world: "wasi-importer", path: "wit", generate_all });
    struct P;
    impl Guest for P {
        fn rate(input: String) -> String {
            let t = wasi::clocks::wall_clock::now();
            format!("{input}@{}", t.seconds)
        }
    }
    export!(P);
}

#[cfg(feature = "host-call")]
mod bindings {
    wit_bindgen::generate!({ world: "host-importer", path: "wit" });
    struct P;
    impl Guest for P {
        fn rate(input: String) -> String {
            host_log(&input);
            input
        }
    }
    export!(P);
}

#[cfg(feature = "wrong-world")]
mod bindings {
    wit_bindgen::generate!({ world: "wrong-world", path: "wit" });
    struct P;
    impl Guest for P {
        fn rate(x: u32) -> u32 {
            x + 1
        }
    }
    export!(P);
}

#[cfg(feature = "wrong-signature")]
mod bindings {
    wit_bindgen::generate!({ world: "wrong-signature", path: "wit" });
    struct P;
    // Two versions of the package are in `wit/deps`, so the module names
    // carry the version.
    impl exports::tollgate::plugin0_4_0::rating::Guest for P {
        fn rate_batch(inputs: Vec<String>) -> Vec<String> {
            inputs
        }
    }
    export!(P);
}

#[cfg(feature = "wrong-signature-v0-2")]
mod bindings {
    wit_bindgen::generate!({ world: "wrong-signature-v0-2", path: "wit" });
    struct P;
    impl exports::tollgate::plugin0_2_0::rating::Guest for P {
        fn rate(input: String) -> String {
            input
        }
    }
    export!(P);
}

#[cfg(feature = "wrong-signature-mapper")]
mod bindings {
    wit_bindgen::generate!({ world: "wrong-signature-mapper", path: "wit" });
    struct P;
    impl exports::tollgate::plugin0_3_0::posting::Guest for P {
        fn map_document(document: String, _target: String) -> String {
            document
        }
        fn lookup_request(_document: String, _target: String) -> Option<String> {
            None
        }
        fn read_lookup(_document: String, _target: String, response: String) -> String {
            response
        }
        fn read_response(_document: String, _target: String, _request: String, response: String) -> String {
            response
        }
    }
    export!(P);
}
