//! Host-side bindings for the `sluice:driver` world, generated from `wit/`.
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
