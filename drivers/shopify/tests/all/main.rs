//! The shopify driver's native tests, one binary: its logic against the vendored provider
//! fixtures, with the host's secret checks stood in for natively.

#[allow(dead_code)] // each module uses part of it
mod common;
mod enrichment;
mod hmac_cases;
mod normalize_fixtures;
