//! Fuzz harnesses for every decoder of the gateway that takes bytes from
//! outside (see `harnesses.rs` and TESTING.md). The crate has no code of
//! its own: the harnesses are its tests.

#[cfg(test)]
mod harnesses;
