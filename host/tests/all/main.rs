//! The host's integration tests, one binary (wasmtime's `tests/all` shape): every module
//! links the whole stack once.
//!
//! - [`runtime`]: bundled components in an in-process `Runtime`, against loopback fakes of
//!   the providers' APIs (polling, OAuth exchanges, the documented sales history).
//! - [`e2e`]: the real `sluice` binary as a child process on SQLite and PostgreSQL, driven
//!   over HTTP and through its CLI, per resource and provider.
//!
//! Run with `cargo xtask test` (which builds the drivers and sets the environment), or
//! `cargo nextest run -p sluice --test all` once the drivers are built.

mod e2e;
mod runtime;
