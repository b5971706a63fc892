//! JSON Web Token checks for `secrets.verify-jwt` (HS256 with a named secret) and
//! `secrets.verify-jwt-jwks` (RS256 / ES256 with a key from a JSON Web Key Set).
//!
//! Every check refuses what a lenient verifier would let through: `alg: none`, an algorithm
//! the key was not made for (an RSA or EC key is never used as an HMAC secret, and a JWK
//! whose `alg` or `use` says otherwise is not used), time claims that are not integers
//! (skipping them would accept a token that never expires), and claims that are not a JSON
//! object. Signatures are checked by `ring`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

use crate::crypto::{HmacAlgorithm, constant_time_eq, hmac as compute_hmac};

/// Most keys one set may hold that the host keeps (a provider publishes two or three).
const MAX_KEYS: usize = 32;

/// A compact JWS, split and decoded; its claims not yet trusted.
struct Token<'a> {
    alg: String,
    kid: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    signing_input: &'a str,
    signature: Vec<u8>,
    claims: Vec<u8>,
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
}

fn decode(part: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| format!("bad base64url: {e}"))
}

fn split(token: &str) -> Result<Token<'_>, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("a JWT has three dot-separated parts".into());
    };
    let parsed: Header =
        serde_json::from_slice(&decode(header)?).map_err(|e| format!("bad JWT header: {e}"))?;
    Ok(Token {
        alg: parsed.alg.unwrap_or_default(),
        kid: parsed.kid,
        signing_input: &token[..header.len() + 1 + payload.len()],
        signature: decode(signature)?,
        claims: decode(payload)?,
    })
}

/// The claims of a token whose signature verified, once its time claims hold at `now`
/// (seconds since the epoch).
fn checked_claims(claims: Vec<u8>, now: i64) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(&claims).map_err(|e| format!("bad JWT claims: {e}"))?;
    if !value.is_object() {
        return Err("JWT claims are not a JSON object".into());
    }
    let time_claim = |name: &str| match value.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("JWT claim {name:?} is not an integer NumericDate")),
    };
    if let Some(exp) = time_claim("exp")?
        && now >= exp
    {
        return Err("JWT has expired".into());
    }
    if let Some(nbf) = time_claim("nbf")?
        && now < nbf
    {
        return Err("JWT is not valid yet".into());
    }
    String::from_utf8(claims).map_err(|_| "JWT claims are not UTF-8".into())
}

/// Verify an HS256 JWT and return its claims. `now` is seconds since the epoch.
pub fn verify_hs256(key: &[u8], token: &str, now: i64) -> Result<String, String> {
    let token = split(token)?;
    if token.alg != "HS256" {
        return Err("only HS256 JWTs are supported".into());
    }
    let expected = compute_hmac(HmacAlgorithm::Sha256, key, token.signing_input.as_bytes());
    if !constant_time_eq(&expected, &token.signature) {
        return Err("JWT signature does not match".into());
    }
    checked_claims(token.claims, now)
}

/// A public key from a JWK that the host will verify with.
#[derive(Debug)]
enum PublicKey {
    /// RS256: modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// ES256: the uncompressed P-256 point, `04 || x || y`.
    P256(Vec<u8>),
}

#[derive(Debug)]
struct Key {
    kid: Option<String>,
    public: PublicKey,
}

/// The signing keys of one JSON Web Key Set (RFC 7517 §5), as far as they are RS256 or
/// ES256 keys for signatures. Other keys (symmetric, encryption, other curves) are left
/// out, so they can never be picked for a token.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<Key>,
}

#[derive(Deserialize)]
struct JwkSetDoc {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// Parse a JWK Set document.
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        let doc: JwkSetDoc =
            serde_json::from_slice(json).map_err(|e| format!("not a JWK Set: {e}"))?;
        let keys: Vec<Key> = doc
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter_map(Key::from_jwk)
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err("the JWK Set has no RS256 or ES256 signing key".into());
        }
        Ok(Self { keys })
    }

    /// Whether a key with this id is in the set.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Verify `token` with the key it names (`kid`), or with each key of its algorithm
    /// when it names none, and return its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<String, JwksFailure> {
        let token = split(token).map_err(JwksFailure::Invalid)?;
        let algorithm = match token.alg.as_str() {
            "RS256" | "ES256" => token.alg.as_str(),
            other => {
                return Err(JwksFailure::Invalid(format!(
                    "JWT algorithm {other:?} is not RS256 or ES256"
                )));
            }
        };
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| token.kid.is_none() || k.kid == token.kid)
            .filter(|k| k.algorithm() == algorithm)
            .peekable();
        if candidates.peek().is_none() {
            return Err(JwksFailure::NoKey(match &token.kid {
                Some(kid) => format!("no {algorithm} key {kid:?} in the JWK Set"),
                None => format!("no {algorithm} key in the JWK Set"),
            }));
        }
        let message = token.signing_input.as_bytes();
        if !candidates.any(|k| k.verifies(message, &token.signature)) {
            return Err(JwksFailure::Invalid("JWT signature does not verify".into()));
        }
        checked_claims(token.claims, now).map_err(JwksFailure::Invalid)
    }
}

/// Why a token did not verify against a key set.
#[derive(Debug, PartialEq, Eq)]
pub enum JwksFailure {
    /// The set has no key the token could be checked with (it may have rotated).
    NoKey(String),
    /// The token is malformed, its signature does not verify, or its time claims fail.
    Invalid(String),
}

impl Key {
    fn from_jwk(jwk: Jwk) -> Option<Self> {
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let b64 = |v: Option<String>| v.and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
        let public = match (jwk.kty.as_str(), jwk.alg.as_deref()) {
            ("RSA", None | Some("RS256")) => PublicKey::Rsa {
                n: b64(jwk.n)?,
                e: b64(jwk.e)?,
            },
            ("EC", None | Some("ES256")) if jwk.crv.as_deref() == Some("P-256") => {
                let (x, y) = (b64(jwk.x)?, b64(jwk.y)?);
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                PublicKey::P256(point)
            }
            _ => return None,
        };
        Some(Self {
            kid: jwk.kid,
            public,
        })
    }

    fn algorithm(&self) -> &'static str {
        match self.public {
            PublicKey::Rsa { .. } => "RS256",
            PublicKey::P256(_) => "ES256",
        }
    }

    fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.public {
            // 2048 to 8192 bits: ring refuses shorter moduli.
            PublicKey::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            // JWS ES256 signatures are R || S, 64 bytes (RFC 7518 §3.4).
            PublicKey::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7515 appendix A.2: the RS256 example's key and token.
    const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    const A2_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
    /// RFC 7515 appendix A.3: the ES256 example's public key and token.
    const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    const A3_TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
    /// The examples' claims (with the RFC's CRLFs), and a moment before their `exp`.
    const CLAIMS: &str =
        "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
    const BEFORE_EXP: i64 = 1_300_819_379;

    fn set(keys: serde_json::Value) -> KeySet {
        KeySet::parse(serde_json::json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    fn rsa() -> serde_json::Value {
        serde_json::json!({"kty": "RSA", "kid": "2010-12-29", "n": A2_N, "e": "AQAB"})
    }

    fn ec() -> serde_json::Value {
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": A3_X, "y": A3_Y})
    }

    #[test]
    fn rfc_7515_rs256_and_es256_examples_verify() {
        let keys = set(serde_json::json!([rsa(), ec()]));
        assert_eq!(keys.verify(A2_TOKEN, BEFORE_EXP).unwrap(), CLAIMS);
        assert_eq!(keys.verify(A3_TOKEN, BEFORE_EXP).unwrap(), CLAIMS);
        // At `exp` they have expired.
        for token in [A2_TOKEN, A3_TOKEN] {
            assert_eq!(
                keys.verify(token, BEFORE_EXP + 1),
                Err(JwksFailure::Invalid("JWT has expired".into()))
            );
        }
    }

    #[test]
    fn a_changed_token_or_another_key_does_not_verify() {
        let keys = set(serde_json::json!([rsa(), ec()]));
        // The RS256 signature over other claims.
        let (head, rest) = A2_TOKEN.split_once('.').unwrap();
        let signature = rest.split_once('.').unwrap().1;
        let forged = format!(
            "{head}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(br#"{"iss":"mallory","exp":1300819380}"#)
        );
        let invalid = Err(JwksFailure::Invalid("JWT signature does not verify".into()));
        assert_eq!(keys.verify(&forged, BEFORE_EXP), invalid);
        // The ES256 token against a set whose only EC key is another point (x and y swapped).
        let other = set(serde_json::json!([{"kty": "EC", "crv": "P-256", "x": A3_Y, "y": A3_X}]));
        assert_eq!(other.verify(A3_TOKEN, BEFORE_EXP), invalid);
        // A key id the set does not have, and an algorithm it has no key for.
        let rsa_only = set(serde_json::json!([rsa()]));
        assert!(matches!(
            rsa_only.verify(A3_TOKEN, BEFORE_EXP),
            Err(JwksFailure::NoKey(_))
        ));
        let renamed = A2_TOKEN.replacen(
            "eyJhbGciOiJSUzI1NiJ9",
            &URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"2011-01-01"}"#),
            1,
        );
        assert_eq!(
            rsa_only.verify(&renamed, BEFORE_EXP),
            Err(JwksFailure::NoKey(
                "no RS256 key \"2011-01-01\" in the JWK Set".into()
            ))
        );
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        let keys = set(serde_json::json!([rsa()]));
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        // `none`, and HS256 "signed" with the public modulus as the HMAC key.
        let none = format!("{}.{claims}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#));
        let hs_head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let input = format!("{hs_head}.{claims}");
        let mac = compute_hmac(HmacAlgorithm::Sha256, A2_N.as_bytes(), input.as_bytes());
        let hs = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac));
        for token in [none, hs] {
            assert!(
                matches!(keys.verify(&token, 0), Err(JwksFailure::Invalid(m)) if m.contains("is not RS256 or ES256")),
                "{token}"
            );
        }
        // An RS256 token never meets the EC key, nor an ES256 token the RSA key.
        let ec_only = set(serde_json::json!([ec()]));
        assert!(matches!(
            ec_only.verify(A2_TOKEN, BEFORE_EXP),
            Err(JwksFailure::NoKey(_))
        ));
    }

    #[test]
    fn keys_not_for_rs256_or_es256_signatures_are_left_out() {
        // Encryption keys, keys for another algorithm, symmetric keys, other curves.
        let unusable = serde_json::json!([
            {"kty": "RSA", "use": "enc", "n": A2_N, "e": "AQAB"},
            {"kty": "RSA", "alg": "RS512", "n": A2_N, "e": "AQAB"},
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-384", "x": A3_X, "y": A3_Y},
            {"kty": "OKP", "crv": "Ed25519", "x": A3_X},
        ]);
        let doc = serde_json::json!({ "keys": unusable }).to_string();
        assert_eq!(
            KeySet::parse(doc.as_bytes()).unwrap_err(),
            "the JWK Set has no RS256 or ES256 signing key"
        );
        let mut mixed = unusable.as_array().unwrap().clone();
        mixed.push(rsa());
        let keys = set(serde_json::Value::Array(mixed));
        assert_eq!(keys.keys.len(), 1);
        assert!(keys.has_kid("2010-12-29"));
        assert!(KeySet::parse(b"{\"keys\":\"no\"}").is_err());
        assert!(KeySet::parse(b"[]").is_err());
    }

    #[test]
    fn hs256_is_verified_and_time_checked() {
        let key = b"jwt-key";
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"x","exp":2000,"nbf":1000}"#);
        let signed = format!("{header}.{claims}");
        let sig =
            URL_SAFE_NO_PAD.encode(compute_hmac(HmacAlgorithm::Sha256, key, signed.as_bytes()));
        let token = format!("{signed}.{sig}");
        assert_eq!(
            verify_hs256(key, &token, 1500).unwrap(),
            r#"{"sub":"x","exp":2000,"nbf":1000}"#
        );
        assert!(
            verify_hs256(key, &token, 2000)
                .unwrap_err()
                .contains("expired")
        );
        assert!(
            verify_hs256(key, &token, 999)
                .unwrap_err()
                .contains("not valid yet")
        );
        assert!(
            verify_hs256(b"other", &token, 1500)
                .unwrap_err()
                .contains("signature")
        );
        let none = format!("{}.{claims}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#));
        assert!(verify_hs256(key, &none, 1500).is_err());
    }

    #[test]
    fn time_claims_must_be_integers() {
        let key = b"jwt-key";
        let sign = |claims: &str| {
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let sig = compute_hmac(HmacAlgorithm::Sha256, key, signed.as_bytes());
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
        };
        for claims in [
            r#"{"exp":"2000"}"#,
            r#"{"exp":2000.5}"#,
            r#"{"exp":null}"#,
            r#"{"exp":1e30}"#,
            r#"{"nbf":"1000"}"#,
            r#"[1,2]"#,
        ] {
            let err = verify_hs256(key, &sign(claims), 1500).unwrap_err();
            assert!(
                err.contains("not an integer") || err.contains("not a JSON object"),
                "{claims}: {err}"
            );
        }
        assert!(verify_hs256(key, &sign(r#"{"sub":"x"}"#), 1500).is_ok());
    }
}
