//! Shared test helpers: the fixtures directory and native HMAC-SHA256.

use std::path::PathBuf;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The vendored fixtures (`tests/fixtures`, or `$SLUICE_FIXTURES_DIR`).
pub fn fixtures_dir() -> PathBuf {
    sluice_testkit::fixtures::fixtures_dir()
}

/// The exact bytes of `shopify/<name>`.
pub fn shopify_fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join("shopify").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `shopify/<name>` parsed as JSON.
pub fn shopify_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&shopify_fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// HMAC-SHA256 of `message` keyed by `secret`.
pub fn hmac_sha256(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Standard base64 with padding.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A native stand-in for `secrets.verify-hmac(<secret>, sha256, message, candidates)`.
pub fn native_verifier(secret: &str) -> impl FnMut(&[u8], &[Vec<u8>]) -> Result<bool, String> + '_ {
    move |message, candidates| {
        let tag = hmac_sha256(secret.as_bytes(), message);
        Ok(candidates.iter().fold(false, |found, c| {
            found | bool::from(c.as_slice().ct_eq(&tag))
        }))
    }
}

/// A native stand-in for `sluice_sdk::verify::hmac_sha256_base64(<secret>, body, header, …)`:
/// decodes the header with the SDK's decoder and compares natively.
pub fn native_base64_check(
    secret: &str,
) -> impl FnOnce(&[u8], Option<&str>) -> Result<(), String> + '_ {
    move |body, header| {
        let decoded: Vec<Vec<u8>> = header
            .and_then(sluice_sdk::verify::decode_base64)
            .into_iter()
            .collect();
        if decoded.is_empty() {
            return Err("malformed".into());
        }
        if native_verifier(secret)(body, &decoded)? {
            Ok(())
        } else {
            Err("no match".into())
        }
    }
}
