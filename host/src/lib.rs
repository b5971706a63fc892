//! Sluice: a sandboxed WebAssembly host for provider integration drivers.
//!
//! Drivers are WebAssembly components implementing the `sluice:driver` world (see `wit/`).
//! This crate loads them into a wasmtime sandbox ([`runtime`]) with capability-scoped
//! imports ([`capabilities`]), routes provider webhooks through them ([`pipeline`]) and
//! serves the result over HTTP ([`server`]); persistence lives in `sluice-store`.
//!
//! The `sluice` binary ([`cli`]) runs the server and the operator commands.

pub mod canonical;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod pipeline;
pub mod registry;
pub mod runtime;
pub mod server;
