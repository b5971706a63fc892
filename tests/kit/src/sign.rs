//! Webhook signatures: native (HMAC over `hmac`/`sha2`, independent of the host's own
//! code) and by the providers' official libraries as real peers.

use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::server::TempDir;

/// HMAC-SHA256 of `message` keyed by `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// A `Stripe-Signature` header (`t=…,v1=…`) computed natively.
pub fn stripe_header(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let signed = [format!("{timestamp}.").as_bytes(), payload].concat();
    format!(
        "t={timestamp},v1={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &signed))
    )
}

/// The `X-Shopify-Hmac-Sha256` of `body` under `secret`: base64 HMAC-SHA256.
pub fn shopify_hmac(secret: &str, body: &[u8]) -> String {
    STANDARD.encode(hmac_sha256(secret.as_bytes(), body))
}

/// A Standard Webhooks `webhook-signature` value (`v1,<base64>`) over `id.timestamp.body`,
/// keyed by the base64-decoded secret after `whsec_`.
pub fn standard_webhooks_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .expect("a whsec_ secret is base64");
    let signed = [format!("{id}.{timestamp}.").as_bytes(), body].concat();
    format!("v1,{}", STANDARD.encode(hmac_sha256(&key, &signed)))
}

/// A `Stripe-Signature` header for `payload`, computed by the official `stripe` Node
/// library (`tests/peers/sign.js`). `timestamp` defaults to now. `None` when Node or the
/// peers are missing (see [`crate::require`]).
pub fn stripe_signature(payload: &[u8], secret: &str, timestamp: Option<i64>) -> Option<String> {
    crate::require::node()?;
    let peers = crate::paths::workspace_root().join("tests/peers");
    let dir = TempDir::new("sluice-sign");
    let payload_file = dir.path().join("payload");
    std::fs::write(&payload_file, payload).expect("writing payload");
    let mut cmd = Command::new("node");
    cmd.arg(peers.join("sign.js"))
        .arg("--payload-file")
        .arg(&payload_file)
        .args(["--secret", secret]);
    if let Some(t) = timestamp {
        cmd.args(["--timestamp", &t.to_string()]);
    }
    let out = cmd.output().expect("running node");
    assert!(
        out.status.success(),
        "sign.js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("sign.js prints UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_signers_reproduce_provider_vectors() {
        // stripe-dotnet EventUtilityTest (tests/fixtures/stripe/stripe_webhook_cases.json).
        let body = crate::fixture_bytes("stripe/stripe_dotnet_event_test_signature.json");
        assert_eq!(
            stripe_header(&body, "webhook_secret", 1_533_204_620),
            "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7"
        );
        // shopify-app-js validate.test.ts (tests/fixtures/shopify/shopify_hmac_cases.json).
        assert_eq!(
            shopify_hmac("test_secret_key", br#"{"foo": "bar"}"#),
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="
        );
        // standard-webhooks libraries' test_sign (tests/fixtures/standard-webhooks).
        assert_eq!(
            standard_webhooks_signature(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
