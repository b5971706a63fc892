//! Shared test helpers: the fixtures directory and a native HMAC-SHA256 verifier.

use std::path::PathBuf;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The vendored fixtures (`tests/fixtures`, or `$SLUICE_FIXTURES_DIR`).
pub fn fixtures_dir() -> PathBuf {
    sluice_testkit::fixtures::fixtures_dir()
}

/// The exact bytes of `stripe/<name>`.
pub fn stripe_fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join("stripe").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `stripe/<name>` parsed as JSON.
pub fn stripe_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&stripe_fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// HMAC-SHA256 of `message` keyed by `secret`.
pub fn hmac_sha256(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// A native stand-in for the host's `secrets.verify-hmac("webhook_secret", sha256, …)`.
pub fn native_verifier(secret: &str) -> impl FnMut(&[u8], &[Vec<u8>]) -> Result<bool, String> + '_ {
    move |message, candidates| {
        let tag = hmac_sha256(secret.as_bytes(), message);
        Ok(candidates.iter().fold(false, |found, c| {
            found | bool::from(c.as_slice().ct_eq(&tag))
        }))
    }
}
