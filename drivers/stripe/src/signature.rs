//! `Stripe-Signature` parsing and verification.
//!
//! Header: `t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=…]`. Each `v1` is the lowercase hex
//! HMAC-SHA256 of `"{t}." + raw body` keyed by the endpoint's whole `whsec_…` secret; any
//! `v1` may match (Stripe sends several while a secret is being rolled). `v0` and unknown
//! schemes are ignored. The HMAC itself is computed by an injected verifier: the component
//! asks the host (`secrets.verify-hmac`), native tests and benches pass a closure.
//!
//! Tolerance policy: a delivery is refused when `|now - t| > tolerance`, so timestamps too
//! far in the **future** are refused as well as stale ones (Stripe's own SDKs only check
//! age). Exactly `t + tolerance` is still accepted.

use std::fmt;

/// The header's name (compare case-insensitively).
pub const HEADER: &str = "Stripe-Signature";

/// Default tolerance, in seconds, between the signed timestamp and the host clock.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Length of an HMAC-SHA256 tag; other `v1` lengths can never match and are skipped.
const TAG_LEN: usize = 32;

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// The signed timestamp `t`, Unix seconds.
    pub timestamp: i64,
    /// Number of `v1` entries in the header, decodable or not.
    pub v1_entries: usize,
    /// The hex-decoded `v1` signatures (undecodable entries skipped).
    pub v1: Vec<Vec<u8>>,
}

/// Why a delivery's signature was refused. `E` is the verifier's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError<E> {
    /// No header, or an empty one.
    MissingHeader,
    /// The header is not a list of `key=value` items with one integer `t`.
    MalformedHeader(String),
    /// The header has no `v1` entry.
    NoV1Signature,
    /// `|now - t|` exceeds the tolerance.
    OutsideTolerance {
        /// The signed timestamp.
        timestamp: i64,
        /// The host's clock.
        now: i64,
        /// The tolerance in seconds.
        tolerance: u64,
    },
    /// No `v1` matches the body.
    NoMatch,
    /// The verifier failed (e.g. the secret is not configured).
    Verifier(E),
}

impl<E: fmt::Display> fmt::Display for SignatureError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingHeader => f.write_str("missing Stripe-Signature header"),
            Self::MalformedHeader(why) => write!(f, "malformed Stripe-Signature header: {why}"),
            Self::NoV1Signature => f.write_str("no v1 signature in Stripe-Signature header"),
            Self::OutsideTolerance {
                timestamp,
                now,
                tolerance,
            } => write!(
                f,
                "signature timestamp {timestamp} is outside the {tolerance}s tolerance (now {now})"
            ),
            Self::NoMatch => f.write_str("no v1 signature matches the payload"),
            Self::Verifier(e) => write!(f, "signature verification failed: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for SignatureError<E> {}

/// Parse a `Stripe-Signature` header.
///
/// Strict: every comma-separated item must be `key=value` with a non-empty key, and exactly
/// one `t` made of ASCII digits is required. `v1` values that are not 64 hex digits are kept
/// out of [`SignatureHeader::v1`] but counted in [`SignatureHeader::v1_entries`].
pub fn parse_header<E>(header: &str) -> Result<SignatureHeader, SignatureError<E>> {
    let header = header.trim();
    if header.is_empty() {
        return Err(SignatureError::MissingHeader);
    }
    let malformed = |why: &str| SignatureError::MalformedHeader(why.to_string());
    let mut timestamp = None;
    let mut v1_entries = 0;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("item without '='"))?;
        match key {
            "" => return Err(malformed("empty key")),
            "t" => {
                if timestamp.is_some() {
                    return Err(malformed("duplicate t"));
                }
                if value.is_empty()
                    || value.len() > 18
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(malformed("t is not a Unix timestamp"));
                }
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| malformed("t out of range"))?,
                );
            }
            "v1" => {
                v1_entries += 1;
                if let Ok(sig) = hex::decode(value)
                    && sig.len() == TAG_LEN
                {
                    v1.push(sig);
                }
            }
            _ => {} // v0 and future schemes
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed("no t"))?;
    Ok(SignatureHeader {
        timestamp,
        v1_entries,
        v1,
    })
}

/// The signed message: `"{t}."` followed by the raw body bytes.
pub fn signed_message(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let prefix = format!("{timestamp}.");
    let mut message = Vec::with_capacity(prefix.len() + body.len());
    message.extend_from_slice(prefix.as_bytes());
    message.extend_from_slice(body);
    message
}

/// Verify a delivery.
///
/// `header` is the `Stripe-Signature` value (`None` when absent), `now` the host clock in Unix
/// seconds and `tolerance` the allowed `|now - t|` (`None` disables the check; only for
/// replaying recorded fixtures). `verifier(message, candidates)` must return whether the
/// HMAC-SHA256 of `message` equals any candidate, compared in constant time; it is not
/// called when there is nothing that could match.
pub fn verify<E>(
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance: Option<u64>,
    mut verifier: impl FnMut(&[u8], &[Vec<u8>]) -> Result<bool, E>,
) -> Result<(), SignatureError<E>> {
    let parsed = parse_header(header.ok_or(SignatureError::MissingHeader)?)?;
    if parsed.v1_entries == 0 {
        return Err(SignatureError::NoV1Signature);
    }
    if let Some(tolerance) = tolerance
        && now.abs_diff(parsed.timestamp) > tolerance
    {
        return Err(SignatureError::OutsideTolerance {
            timestamp: parsed.timestamp,
            now,
            tolerance,
        });
    }
    if parsed.v1.is_empty() {
        return Err(SignatureError::NoMatch);
    }
    let message = signed_message(parsed.timestamp, body);
    match verifier(&message, &parsed.v1) {
        Ok(true) => Ok(()),
        Ok(false) => Err(SignatureError::NoMatch),
        Err(e) => Err(SignatureError::Verifier(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type E = SignatureError<()>;

    #[test]
    fn parses_docs_example() {
        let h = parse_header::<()>(
            "t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39",
        )
        .unwrap();
        assert_eq!(h.timestamp, 1492774577);
        assert_eq!(h.v1_entries, 1);
        assert_eq!(
            hex::encode(&h.v1[0]),
            "5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "t",
            "t=",
            "v1,t=1",
            "t=1,,v1=aa",
            "t=-5,v1=aa",
            "t=1,t=2",
            "v1=aa",
            "=x,t=1",
        ] {
            assert!(
                matches!(parse_header::<()>(bad), Err(E::MalformedHeader(_))),
                "{bad}"
            );
        }
        assert_eq!(parse_header::<()>("  "), Err(E::MissingHeader));
    }

    #[test]
    fn tolerance_is_symmetric_and_inclusive() {
        let header = format!("t=1000,v1={}", "ab".repeat(32));
        let ok = |_: &[u8], _: &[Vec<u8>]| Ok::<_, ()>(true);
        assert_eq!(verify(Some(&header), b"", 1300, Some(300), ok), Ok(()));
        assert_eq!(verify(Some(&header), b"", 700, Some(300), ok), Ok(()));
        assert!(matches!(
            verify(Some(&header), b"", 1301, Some(300), ok),
            Err(E::OutsideTolerance { .. })
        ));
        assert!(matches!(
            verify(Some(&header), b"", 699, Some(300), ok),
            Err(E::OutsideTolerance { .. })
        ));
        assert_eq!(verify(Some(&header), b"", i64::MAX, None, ok), Ok(()));
    }

    #[test]
    fn verifier_sees_message_and_candidates() {
        let header = format!("t=42,v1={},v1=zz,v1={}", "01".repeat(32), "02".repeat(32));
        let mut seen = None;
        let r = verify(Some(&header), b"{}", 42, Some(300), |m, c| {
            seen = Some((m.to_vec(), c.to_vec()));
            Ok::<_, ()>(false)
        });
        assert_eq!(r, Err(E::NoMatch));
        let (m, c) = seen.unwrap();
        assert_eq!(m, b"42.{}");
        assert_eq!(c, vec![vec![1u8; 32], vec![2u8; 32]]);
        assert_eq!(
            verify(Some(&header), b"", 42, None, |_, _| Err("boom")),
            Err(SignatureError::Verifier("boom"))
        );
        assert_eq!(
            verify(None, b"", 0, None, |_, _| Ok::<_, ()>(true)),
            Err(E::MissingHeader)
        );
    }
}
