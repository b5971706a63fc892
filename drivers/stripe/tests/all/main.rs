//! The stripe driver's native tests, one binary: its logic against the vendored provider
//! fixtures, with the host's secret checks stood in for natively.

#[allow(dead_code)] // each module uses part of it
mod common;
mod connect_cases;
mod enrichment;
mod normalize_fixtures;
mod webhook_cases;
