//! The `sluice:driver` WIT world as Rust types: the one home of everything that crosses the
//! sandbox boundary. Generated from `wit/`; capabilities, the runtime, the canonical
//! renderer and the pipeline all import it, and it imports nothing of theirs.
//!
//! Every import is `async` (host capabilities may touch the network or the database) and
//! `trappable`: a host-side failure such as a database error traps the call instead of
//! handing the guest a half-truth, so the delivery fails whole and the provider retries.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sluice:driver/driver",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use exports::sluice::driver::{auth, ingest, metadata};
pub use sluice::driver::{canonical, clock, http, log, secrets, state, types};

/// The version of the `sluice:driver` package this host implements.
pub const WIT_VERSION: &str = "0.6.0";
