//! The provider fixtures, vendored byte for byte in `tests/fixtures` (sources in its
//! `PROVENANCE.md`). `SLUICE_FIXTURES_DIR` points the tests at another copy.

use std::path::PathBuf;

use serde_json::Value;

/// The fixtures directory.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("SLUICE_FIXTURES_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => crate::paths::workspace_root().join("tests/fixtures"),
    }
}

/// A fixture file, e.g. `fixture("stripe/stripe_webhook_cases.json")`.
pub fn fixture(relative: &str) -> PathBuf {
    let path = fixtures_dir().join(relative);
    assert!(path.is_file(), "fixture {} not found", path.display());
    path
}

/// The raw bytes of a fixture file.
pub fn fixture_bytes(relative: &str) -> Vec<u8> {
    let path = fixture(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A fixture file parsed as JSON.
pub fn fixture_json(relative: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(relative))
        .unwrap_or_else(|e| panic!("fixture {relative} is not JSON: {e}"))
}

/// The Stripe charge fixture (`stripe_event_charge_succeeded.json`), raw bytes.
pub fn stripe_charge_payload() -> Vec<u8> {
    fixture_bytes("stripe/stripe_event_charge_succeeded.json")
}

/// A copy of the Stripe charge fixture with a new event id, charge id, currency and amount.
pub fn stripe_charge_variant(
    event_id: &str,
    charge_id: &str,
    currency: &str,
    amount: i64,
) -> Vec<u8> {
    let mut event: Value =
        serde_json::from_slice(&stripe_charge_payload()).expect("fixture is JSON");
    event["id"] = serde_json::json!(event_id);
    let charge = &mut event["data"]["object"];
    charge["id"] = serde_json::json!(charge_id);
    charge["currency"] = serde_json::json!(currency);
    charge["amount"] = serde_json::json!(amount);
    charge["amount_captured"] = serde_json::json!(amount);
    serde_json::to_vec_pretty(&event).expect("serialising")
}
