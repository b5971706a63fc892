//! Sluice: a sandboxed WebAssembly host for provider integration drivers.
//!
//! Drivers are WebAssembly components implementing the `sluice:driver` world (see `wit/`,
//! as Rust types in [`wit`]). This crate loads them into a wasmtime sandbox ([`runtime`])
//! with capability-scoped imports ([`capabilities`]) under the network policy ([`net`]),
//! turns provider webhooks into durable events ([`pipeline`]), renders them for consumers
//! ([`canonical`] records inside the [`output`] envelope) and serves all of it over HTTP
//! ([`server`]); persistence lives in `sluice-store`.
//!
//! The `sluice` binary ([`cli`]) runs the server and the operator commands.

pub mod auth;
pub mod canonical;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod drivers;
pub mod installations;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod net;
pub mod node;
pub mod output;
pub mod pipeline;
pub mod policy;
pub mod registry;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod services;
pub mod signing;
pub mod text;
pub mod time;
pub mod wit;
