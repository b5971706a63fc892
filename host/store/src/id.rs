//! Typed identifiers, with one scheme for every id Sluice generates:
//! `<prefix>_<26 characters>`, the characters being a 128-bit value in lower-case Crockford
//! base32 (`0-9a-z` without `i l o u`). The value is ULID-shaped: 48 bits of milliseconds
//! since the Unix epoch, then 80 random bits, so generated ids of one kind sort by creation
//! time as text and never collide in practice.
//!
//! Each kind is its own type, so an event id cannot be passed where an installation id is
//! expected. Parsing validates; a value of these types is always safe in a URL path, a SQL
//! parameter and a log line.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize};

use crate::StoreError;

/// Lower-case Crockford base32.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Characters after the prefix of a generated id (128 bits, 5 bits a character, rounded up).
pub const ID_BODY_LEN: usize = 26;

/// A fresh 26-character id body: milliseconds since the epoch, then randomness.
pub fn generate_body() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        & ((1 << 48) - 1);
    let mut random = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut random);
    let mut value = u128::from(millis) << 80;
    for (i, b) in random.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    // 26 characters carry 130 bits; the top two are always zero.
    (0..ID_BODY_LEN)
        .rev()
        .map(|i| ALPHABET[((value >> (5 * i)) & 31) as usize] as char)
        .collect()
}

/// Declares a generated id type `$name` with `$prefix`.
macro_rules! generated_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix, with its underscore.
            pub const PREFIX: &'static str = concat!($prefix, "_");

            /// A fresh id.
            pub fn generate() -> Self {
                Self(format!("{}{}", Self::PREFIX, generate_body()))
            }

            /// Validates `s`: the prefix and 26 characters of the id alphabet.
            pub fn parse(s: &str) -> Result<Self, StoreError> {
                let ok = s.strip_prefix(Self::PREFIX).is_some_and(|body| {
                    body.len() == ID_BODY_LEN && body.bytes().all(|b| ALPHABET.contains(&b))
                });
                if ok {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(StoreError::InvalidId {
                        kind: stringify!($name),
                        value: s.chars().take(80).collect(),
                    })
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Wraps a value read back from the database, where it was validated on the way in.
            #[allow(dead_code)]
            pub(crate) fn from_db(s: String) -> Self {
                Self(s)
            }
        }

        common_impls!($name);
    };
}

/// `Display`, `AsRef<str>`, `FromStr` and validating `Deserialize` for an id type.
macro_rules! common_impls {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = StoreError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

generated_id!(
    /// A normalized event's id (`evt_…`): the CloudEvent `id`, unique across all events, and
    /// the `webhook-id` / `Nats-Msg-Id` consumers deduplicate on.
    EventId,
    "evt"
);

generated_id!(
    /// An outbound webhook endpoint's id (`ep_…`).
    EndpointId,
    "ep"
);

/// The id of an installation.
///
/// Operators may choose their own (1 to 64 characters of `[A-Za-z0-9_-]`, e.g. `inst_demo`);
/// [`InstallationId::generate`] gives `inst_` and 26 characters of the common scheme.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct InstallationId(String);

impl InstallationId {
    /// Validates `s` as an installation id.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(StoreError::InvalidId {
                kind: "InstallationId",
                value: s.chars().take(80).collect(),
            })
        }
    }

    /// A fresh id: `inst_` and 26 characters of the common scheme.
    pub fn generate() -> Self {
        Self(format!("inst_{}", generate_body()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a value read back from the database, where it was validated on the way in.
    pub(crate) fn from_db(s: String) -> Self {
        Self(s)
    }
}

common_impls!(InstallationId);

/// The id a driver gives itself in its metadata: `[a-z][a-z0-9_-]{0,31}`, e.g. `stripe`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DriverId(String);

impl DriverId {
    /// Validates `s` as a driver id.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let mut bytes = s.bytes();
        let ok = s.len() <= 32
            && matches!(bytes.next(), Some(b'a'..=b'z'))
            && bytes
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(StoreError::InvalidId {
                kind: "DriverId",
                value: s.chars().take(80).collect(),
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a value read back from the database, where it was validated on the way in.
    pub(crate) fn from_db(s: String) -> Self {
        Self(s)
    }
}

common_impls!(DriverId);

/// Maps keyed by driver id can be looked up with the text of one (a path segment, a
/// configuration table's name).
impl std::borrow::Borrow<str> for DriverId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for DriverId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for DriverId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installation_ids_parse_and_generate() {
        assert!(InstallationId::parse("inst_shop_42").is_ok());
        assert!(InstallationId::parse("A-z_0").is_ok());
        assert!(InstallationId::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "a/b", "é", "a b"] {
            assert!(InstallationId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(InstallationId::parse(&"a".repeat(65)).is_err());
        let id = InstallationId::generate();
        assert_eq!(id.as_str().len(), 5 + ID_BODY_LEN);
        assert!(id.as_str().starts_with("inst_"));
        assert_eq!(InstallationId::parse(id.as_str()).unwrap(), id);
        assert_ne!(id, InstallationId::generate());
    }

    #[test]
    fn event_ids_share_the_scheme_and_sort_by_time() {
        let a = EventId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = EventId::generate();
        assert!(a < b, "{a} then {b}");
        assert_eq!(EventId::parse(a.as_str()).unwrap(), a);
        let inst = InstallationId::generate();
        // The same alphabet after the prefix.
        assert!(inst.as_str()[5..].bytes().all(|c| ALPHABET.contains(&c)));
        assert!(a.as_str()[4..].bytes().all(|c| ALPHABET.contains(&c)));
        for bad in [
            "evt_",
            "evt_0123456789abcdefghjkmnpqrI",
            "inst_0123456789abcdefghjkmnpqrs",
            "evt_0123456789abcdefghjkmnpqr",
        ] {
            assert!(EventId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_time_prefix_is_the_clock() {
        // The first 10 characters carry bits 80..130: the 48-bit millisecond timestamp.
        let body = generate_body();
        let millis = body[..10].bytes().fold(0u64, |acc, c| {
            acc * 32 + ALPHABET.iter().position(|&a| a == c).unwrap() as u64
        });
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now.abs_diff(millis) < 5_000, "{millis} vs {now}");
    }

    #[test]
    fn driver_ids() {
        assert!(DriverId::parse("stripe").is_ok());
        assert!(DriverId::parse("my-driver_2").is_ok());
        for bad in ["Stripe", "2stripe", "", "a/b", &"a".repeat(33)] {
            assert!(DriverId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_validates() {
        let id: InstallationId = serde_json::from_str("\"inst_x\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"inst_x\"");
        assert!(serde_json::from_str::<InstallationId>("\"bad id\"").is_err());
        assert!(serde_json::from_str::<EventId>("\"inst_x\"").is_err());
    }
}
