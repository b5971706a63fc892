//! Shopify test support shared by `shopify_*.rs`: the built component and webhook signing
//! (HMAC-SHA256 over `sha2`, standard base64), as Shopify signs deliveries.
#![allow(dead_code)]

use sha2::{Digest, Sha256};

/// The built Shopify component (`$SLUICE_DRIVERS/shopify.wasm`).
pub fn shopify_driver() -> std::path::PathBuf {
    let dir = std::env::var_os("SLUICE_DRIVERS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/drivers")
        });
    let path = dir.join("shopify.wasm");
    assert!(path.is_file(), "{} not built", path.display());
    path
}

/// The component's bytes.
pub fn shopify_wasm() -> Vec<u8> {
    std::fs::read(shopify_driver()).expect("reading shopify.wasm")
}

/// HMAC-SHA256 (RFC 2104) over `sha2`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(message.iter().copied())
        .collect();
    let inner = Sha256::digest(&inner);
    let outer: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(inner.iter().copied())
        .collect();
    Sha256::digest(&outer).to_vec()
}

pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `X-Shopify-Hmac-Sha256` of `body` under `secret`.
pub fn shopify_hmac(secret: &str, body: &[u8]) -> String {
    base64(&hmac_sha256(secret.as_bytes(), body))
}
