//! Webhook authenticity checks computed by the host over named secrets.
//!
//! The secret's bytes never enter the sandbox: these helpers decode what the provider sent
//! and ask the host (`secrets` import) to compare it, in constant time, with what the named
//! secret produces. Off-wasm the host calls are stubs, so keep these in the component glue
//! and test the decoding natively through [`decode_base64`] / [`decode_hex`].

use crate::bindings::sluice::driver::secrets::{self, HmacAlgorithm};
use crate::{DriverError, error};

/// Decode standard base64 (with padding), as Shopify sends `X-Shopify-Hmac-Sha256`.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    const INVALID: u8 = 0xff;
    let mut table = [INVALID; 256];
    for (i, c) in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        .iter()
        .enumerate()
    {
        table[usize::from(*c)] = i as u8;
    }
    let text = text.trim().as_bytes();
    if text.is_empty() || !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (index, chunk) in text.chunks(4).enumerate() {
        let last = index == text.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n: u32 = 0;
        for &c in &chunk[..4 - pad] {
            let v = table[usize::from(c)];
            if v == INVALID {
                return None;
            }
            n = (n << 6) | u32::from(v);
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// Decode lower- or upper-case hex.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Map a `secrets` failure: a missing secret is the operator's to fix, not a forgery.
fn secret_error(secret: &str, e: secrets::Error) -> DriverError {
    match e {
        secrets::Error::NotFound(_) => {
            error::invalid_settings(format!("the installation has no {secret} secret"))
        }
        other => error::internal(format!("secrets call failed: {other:?}")),
    }
}

/// Check that `signature` (already decoded) is the HMAC of `message` under `secret`.
/// `Err(unauthorized)` when it is not.
pub fn hmac(
    secret: &str,
    algorithm: HmacAlgorithm,
    message: &[u8],
    signatures: &[Vec<u8>],
    what: &str,
) -> Result<(), DriverError> {
    if signatures.is_empty() {
        return Err(error::unauthorized(format!(
            "{what} is missing or malformed"
        )));
    }
    match secrets::verify_hmac(secret, algorithm, message, signatures) {
        Ok(true) => Ok(()),
        Ok(false) => Err(error::unauthorized(format!(
            "{what} does not match the payload"
        ))),
        Err(e) => Err(secret_error(secret, e)),
    }
}

/// Check a base64 HMAC-SHA256 of `message` (Shopify-style).
pub fn hmac_sha256_base64(
    secret: &str,
    message: &[u8],
    header: Option<&str>,
    what: &str,
) -> Result<(), DriverError> {
    let decoded: Vec<Vec<u8>> = header.and_then(decode_base64).into_iter().collect();
    hmac(secret, HmacAlgorithm::Sha256, message, &decoded, what)
}

/// Check a hex HMAC-SHA256 of `message`.
pub fn hmac_sha256_hex(
    secret: &str,
    message: &[u8],
    header: Option<&str>,
    what: &str,
) -> Result<(), DriverError> {
    let decoded: Vec<Vec<u8>> = header.and_then(decode_hex).into_iter().collect();
    hmac(secret, HmacAlgorithm::Sha256, message, &decoded, what)
}

/// Check a static token (Hotmart's hottok) against the named secret, in constant time.
/// A missing token is refused.
pub fn token(secret: &str, presented: Option<&str>, what: &str) -> Result<(), DriverError> {
    let Some(presented) = presented.filter(|p| !p.is_empty()) else {
        return Err(error::unauthorized(format!("missing {what}")));
    };
    match secrets::equals(secret, presented.as_bytes()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(error::unauthorized(format!("{what} does not match"))),
        Err(e) => Err(secret_error(secret, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_shopify_vector() {
        let d = decode_base64("B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=").unwrap();
        assert_eq!(d.len(), 32);
        assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGVsbG8h"), Some(b"hello!".to_vec()));
        assert_eq!(decode_base64("aGk="), Some(b"hi".to_vec()));
        for bad in ["", "abc", "a===", "ab=c", "a$bc", "aGk=aGk="] {
            assert_eq!(decode_base64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hex_decodes_either_case() {
        assert_eq!(decode_hex("00ffAb"), Some(vec![0, 255, 0xab]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
