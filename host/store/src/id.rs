//! Typed identifiers.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize};

use crate::StoreError;

/// The id of an installation: 1 to 64 characters of `[A-Za-z0-9_-]`.
///
/// Construct with [`InstallationId::parse`] (validates) or [`InstallationId::generate`]
/// (`inst_` + 26 random lowercase base32 characters, 130 bits). Deserialising validates too,
/// so a value of this type is always well formed and safe in URLs and log lines.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct InstallationId(String);

/// Lowercase RFC 4648 base32 alphabet.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

impl InstallationId {
    /// Validates `s` as an installation id.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(StoreError::InvalidId(s.chars().take(80).collect()))
        }
    }

    /// A fresh random id: `inst_` followed by 26 lowercase base32 characters.
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        let mut s = String::with_capacity(31);
        s.push_str("inst_");
        for _ in 0..26 {
            s.push(BASE32[rng.gen_range(0..32)] as char);
        }
        Self(s)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a value read back from the database, where it was validated on the way in.
    pub(crate) fn from_db(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for InstallationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for InstallationId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for InstallationId {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for InstallationId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_and_rejects() {
        assert!(InstallationId::parse("inst_shop_42").is_ok());
        assert!(InstallationId::parse("A-z_0").is_ok());
        assert!(InstallationId::parse(&"a".repeat(64)).is_ok());
        assert!(InstallationId::parse(&"a".repeat(65)).is_err());
        assert!(InstallationId::parse("").is_err());
        assert!(InstallationId::parse("a/b").is_err());
        assert!(InstallationId::parse("é").is_err());
        assert!(InstallationId::parse("a b").is_err());
    }

    #[test]
    fn generate_shape() {
        let id = InstallationId::generate();
        let s = id.as_str();
        assert_eq!(s.len(), 31);
        assert!(s.starts_with("inst_"));
        assert!(s[5..].bytes().all(|b| BASE32.contains(&b)));
        assert_ne!(id, InstallationId::generate());
        assert_eq!(InstallationId::parse(s).unwrap(), id);
    }

    #[test]
    fn serde_validates() {
        let id: InstallationId = serde_json::from_str("\"inst_x\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"inst_x\"");
        assert!(serde_json::from_str::<InstallationId>("\"bad id\"").is_err());
    }
}
