//! The host's cryptographic primitives, in one leaf every layer may use: HMAC over the
//! algorithms providers sign with, constant-time comparison, and length-prefixed MACs for
//! the host's own tags (the compiled-code cache).
//!
//! Nothing here knows about secrets' storage or the sandbox: callers hand in key bytes
//! (`sluice_store::SecretBytes::expose`) and get bytes back. Encryption of secrets at rest
//! is the store's (`sluice_store::SecretCipher`).

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// The hash an HMAC is computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// HMAC of `message` keyed by `key` (any length).
pub fn hmac(algorithm: HmacAlgorithm, key: &[u8], message: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        HmacAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, message),
        HmacAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, message),
        HmacAlgorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, message),
    }
}

/// HMAC-SHA256 over `parts`, each prefixed with its length so that no two different
/// lists of parts are signed alike (`["ab", "c"]` and `["a", "bc"]`).
pub fn tag(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time equality (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Whether any of `candidates` equals `expected`, comparing every one of them so the time
/// taken does not tell which matched.
pub fn any_equal(expected: &[u8], candidates: &[Vec<u8>]) -> bool {
    candidates
        .iter()
        .fold(false, |found, c| constant_time_eq(expected, c) | found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_stripe_node_vectors() {
        // tests/fixtures/stripe/stripe_webhook_cases.json, "stripe-node/crypto-provider-hmac".
        let cases = [
            (
                "",
                "f7f9bd47fb987337b5796fdc1fdb9ba221d0d5396814bfcaf9521f43fd8927fd",
            ),
            (
                "{\"obj1\":\"hello\",\"obj2\":\"world\"}",
                "bebb1a643997f419b315ddba19e6f5411e1ce7f810ba6d3617ce72823092f363",
            ),
            (
                "😀",
                "837da296d05c4fe31f61d5d7ead035099d9585a5bcde87de952012a78f0b0c43",
            ),
        ];
        for (message, expected) in cases {
            let mac = hmac(HmacAlgorithm::Sha256, b"test_secret", message.as_bytes());
            assert_eq!(hex::encode(mac), expected, "message {message:?}");
        }
    }

    #[test]
    fn rfc_4231_case_2_for_sha256_and_sha512() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        let data = b"what do ya want for nothing?";
        assert_eq!(
            hex::encode(hmac(HmacAlgorithm::Sha256, b"Jefe", data)),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac(HmacAlgorithm::Sha512, b"Jefe", data)),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    #[test]
    fn tags_do_not_let_parts_shift_into_each_other() {
        assert_ne!(tag(b"k", &[b"ab", b"c"]), tag(b"k", &[b"a", b"bc"]));
        assert_eq!(tag(b"k", &[b"ab", b"c"]), tag(b"k", &[b"ab", b"c"]));
    }

    #[test]
    fn constant_time_eq_requires_equal_length_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(any_equal(b"abc", &[b"x".to_vec(), b"abc".to_vec()]));
        assert!(!any_equal(b"abc", &[]));
    }
}
