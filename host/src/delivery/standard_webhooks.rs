//! Standard Webhooks signatures (the symmetric `v1` scheme), for outbound deliveries.
//!
//! A secret is `whsec_` + base64 of the key (padding optional, as the reference libraries
//! accept). The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the
//! `webhook-signature` header is a space-separated list of `v1,<base64 HMAC-SHA256>` — one
//! per secret in force, so a receiver keeps verifying while a secret is rotated.

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

use crate::crypto::{HmacAlgorithm, hmac as compute_hmac};

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Base64 that accepts keys with or without `=` padding, and unpadded text whose last
/// character carries unused bits (as Python's `b64decode` of the reference library does).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A signing key, decoded from its `whsec_…` text.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

/// A secret that is not base64 (with or without the `whsec_` prefix), or is empty.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a Standard Webhooks secret is `whsec_` and the key in base64")]
pub struct InvalidSecret;

impl SigningKey {
    /// The key of `secret` (`whsec_` + base64; the prefix may be left out).
    pub fn parse(secret: &str) -> Result<Self, InvalidSecret> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        let key = LENIENT.decode(encoded).map_err(|_| InvalidSecret)?;
        if key.is_empty() {
            return Err(InvalidSecret);
        }
        Ok(Self(key))
    }

    /// A fresh random key (24 bytes, as the reference libraries make them).
    pub fn generate() -> Self {
        Self(rand::random::<[u8; 24]>().to_vec())
    }

    /// The `whsec_…` text of the key, shown to the operator once.
    pub fn to_secret(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// A key from its bytes (as kept sealed in the store).
    pub fn from_bytes(key: Vec<u8>) -> Self {
        Self(key)
    }

    /// The key's bytes, for sealing in the store; never logged.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// `v1,<base64>`: this key's signature of one delivery.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut content = Vec::with_capacity(msg_id.len() + body.len() + 24);
        content.extend_from_slice(msg_id.as_bytes());
        content.push(b'.');
        content.extend_from_slice(timestamp.to_string().as_bytes());
        content.push(b'.');
        content.extend_from_slice(body);
        let mac = compute_hmac(HmacAlgorithm::Sha256, &self.0, &content);
        format!("v1,{}", STANDARD.encode(mac))
    }
}

/// The `webhook-signature` header value: one signature per key (the current key first,
/// then one being retired).
pub fn signature_header(keys: &[&SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| k.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tests/fixtures/standard-webhooks/standard_webhooks_cases.json`, `official_verbatim`:
    /// the reference libraries' own sign vectors.
    #[test]
    fn official_vectors() {
        let cases = [
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                r#"{"test": 2432232314}"#,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
            (
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                r#"{"email":"test@example.com","username":"test_user"}"#,
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
        ];
        for (secret, id, ts, body, expected) in cases {
            let key = SigningKey::parse(secret).unwrap();
            assert_eq!(key.sign(id, ts, body.as_bytes()), expected);
            assert_eq!(key.to_secret(), secret, "round trip");
        }
    }

    /// The fixture's `derived` unpadded-secret case.
    #[test]
    fn unpadded_secrets_are_accepted() {
        let key = SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS").unwrap();
        assert_eq!(
            key.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,LVOXivKoo4FWasi/IaHvzhE/u+7/cu2AME+zS/nXqzk="
        );
    }

    #[test]
    fn headers_list_every_key_and_bad_secrets_are_refused() {
        let new = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let old = SigningKey::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let header = signature_header(&[&new, &old], "msg_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            parts,
            [new.sign("msg_1", 1, b"{}"), old.sign("msg_1", 1, b"{}")]
        );
        assert!(SigningKey::parse("whsec_not base64!").is_err());
        assert!(SigningKey::parse("whsec_").is_err());
        let fresh = SigningKey::generate();
        assert_eq!(SigningKey::parse(&fresh.to_secret()).unwrap().0, fresh.0);
        assert!(!format!("{fresh:?}").contains(&fresh.to_secret()[6..]));
    }
}
