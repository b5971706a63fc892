//! Secret encryption at rest and master-key loading.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroize;

use crate::{InstallationId, StoreError};

/// Length of the random nonce stored in front of each ciphertext.
const NONCE_LEN: usize = 24;

/// Encrypts and decrypts secrets with XChaCha20-Poly1305 under one 32-byte master key.
///
/// Stored layout: a random 24-byte nonce followed by the ciphertext and tag. The associated
/// data is `installation_id + "\0" + name`, so a row copied to another installation or
/// another secret name fails to decrypt ([`StoreError::Crypto`]).
///
/// Cheap to clone (the key schedule is shared). `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretCipher {
    aead: Arc<XChaCha20Poly1305>,
}

impl SecretCipher {
    /// A cipher over the given master key (see [`MasterKey::load`]).
    pub fn new(key: [u8; 32]) -> Self {
        let mut key = key;
        let aead = XChaCha20Poly1305::new((&key).into());
        key.zeroize();
        Self {
            aead: Arc::new(aead),
        }
    }

    /// Encrypts `plaintext` for the slot (`installation_id`, `name`).
    pub fn encrypt(
        &self,
        installation_id: &InstallationId,
        name: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.seal(&aad(installation_id.as_str(), name), plaintext)
    }

    /// Encrypts `plaintext` bound to `aad` (which names its slot).
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| StoreError::Crypto)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts a value produced by [`SecretCipher::encrypt`] for the same slot.
    ///
    /// Fails with [`StoreError::Crypto`] on a wrong key, another slot, or altered bytes.
    pub fn decrypt(
        &self,
        installation_id: &InstallationId,
        name: &str,
        stored: &[u8],
    ) -> Result<SecretBytes, StoreError> {
        self.open(&aad(installation_id.as_str(), name), stored)
    }

    /// Decrypts what [`SecretCipher::seal`] sealed with the same `aad`.
    pub(crate) fn open(&self, aad: &[u8], stored: &[u8]) -> Result<SecretBytes, StoreError> {
        if stored.len() < NONCE_LEN {
            return Err(StoreError::Crypto);
        }
        let (nonce, ciphertext) = stored.split_at(NONCE_LEN);
        self.aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(SecretBytes::new)
            .map_err(|_| StoreError::Crypto)
    }
}

impl fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretCipher([redacted])")
    }
}

/// The slot a sealed value is bound to: its owner (an installation id, or `endpoint:` and
/// an endpoint id — no installation id has a colon), a NUL, its name.
pub(crate) fn aad(owner: &str, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(owner.len() + 1 + name.len());
    aad.extend_from_slice(owner.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// A decrypted secret. The bytes are overwritten with zeros when the value is dropped, and
/// `Debug` prints `[redacted]`, so a secret cannot leak through a log line by accident.
#[derive(Clone)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps `bytes` (taking ownership, so no unzeroed copy is left behind by this call).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret's bytes. Keep the borrow short and do not copy them into long-lived values.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Loading of the 32-byte master key that encrypts every secret.
pub struct MasterKey;

impl MasterKey {
    /// Returns the master key.
    ///
    /// - `env_value` (e.g. `SLUICE_MASTER_KEY`), when present and not blank, is the key:
    ///   standard base64 of 32 bytes, or 64 hex characters.
    /// - Otherwise `key_file` is read (same formats, surrounding whitespace ignored); a file
    ///   group or others can read or write is refused.
    /// - If the file does not exist, 32 random bytes are written to it as base64, with mode
    ///   0600, creating its parent directories with mode 0700. Creation uses `create_new`, so two processes
    ///   racing end up with the same key.
    ///
    /// The key itself never appears in an error or a log line.
    pub fn load(env_value: Option<&str>, key_file: &Path) -> Result<[u8; 32], StoreError> {
        if let Some(value) = env_value.filter(|v| !v.trim().is_empty()) {
            return Self::parse(value);
        }
        match read_key_file(key_file) {
            Ok(text) => return Self::parse_file(&text, key_file),
            Err(KeyFileError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(parent) = key_file.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent)?;
        }
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(key_file) {
            Ok(mut file) => {
                let mut text = BASE64.encode(key);
                text.push('\n');
                let written = file
                    .write_all(text.as_bytes())
                    .and_then(|()| file.sync_all());
                text.zeroize();
                written?;
                tracing::info!(path = %key_file.display(), "created a new master key file");
                Ok(key)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Another process created it first: use theirs.
                key.zeroize();
                let text = read_key_file(key_file)?;
                Self::parse_file(&text, key_file)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Parses a key given as standard base64 of 32 bytes or as 64 hex characters.
    pub fn parse(value: &str) -> Result<[u8; 32], StoreError> {
        let value = value.trim();
        let mut bytes = if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(value).map_err(|_| invalid_key_format())?
        } else {
            BASE64.decode(value).map_err(|_| invalid_key_format())?
        };
        let key: Result<[u8; 32], _> = bytes.as_slice().try_into();
        bytes.zeroize();
        key.map_err(|_| invalid_key_format())
    }

    fn parse_file(text: &str, path: &Path) -> Result<[u8; 32], StoreError> {
        Self::parse(text).map_err(|_| {
            StoreError::InvalidMasterKey(format!(
                "{} does not hold 32 bytes as base64 or 64 hex characters",
                path.display()
            ))
        })
    }
}

fn invalid_key_format() -> StoreError {
    StoreError::InvalidMasterKey("expected 32 bytes as standard base64 or 64 hex characters".into())
}

/// Creates `path` and its missing parents with mode 0700 (owner only): the data directory
/// holds the master key, the admin token, the database and compiled driver code. An
/// existing directory is left as it is.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Reads the key file, refusing one that group or others may read or write: a key anyone
/// else on the machine can read decrypts every secret, so the host does not start on it.
fn read_key_file(path: &Path) -> Result<String, KeyFileError> {
    let mut file = fs::File::open(path).map_err(KeyFileError::Io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(KeyFileError::Io)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Loose(StoreError::InvalidMasterKey(format!(
                "{} has mode {:o}: group or others can reach it; run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ))));
        }
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(KeyFileError::Io)?;
    Ok(text)
}

enum KeyFileError {
    Io(io::Error),
    Loose(StoreError),
}

impl From<KeyFileError> for StoreError {
    fn from(e: KeyFileError) -> Self {
        match e {
            KeyFileError::Io(e) => e.into(),
            KeyFileError::Loose(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> InstallationId {
        InstallationId::parse(s).unwrap()
    }

    #[test]
    fn roundtrip_and_binding() {
        let cipher = SecretCipher::new([7; 32]);
        let blob = cipher.encrypt(&id("a"), "n", b"hello").unwrap();
        assert_eq!(blob.len(), 24 + 5 + 16);
        assert_eq!(
            cipher.decrypt(&id("a"), "n", &blob).unwrap().expose(),
            b"hello"
        );
        assert!(matches!(
            cipher.decrypt(&id("a"), "m", &blob),
            Err(StoreError::Crypto)
        ));
        assert!(matches!(
            cipher.decrypt(&id("b"), "n", &blob),
            Err(StoreError::Crypto)
        ));
        assert!(matches!(
            SecretCipher::new([8; 32]).decrypt(&id("a"), "n", &blob),
            Err(StoreError::Crypto)
        ));
        assert!(matches!(
            cipher.decrypt(&id("a"), "n", &blob[..10]),
            Err(StoreError::Crypto)
        ));
        assert_ne!(blob, cipher.encrypt(&id("a"), "n", b"hello").unwrap());
    }

    #[test]
    fn debug_is_redacted() {
        let s = SecretBytes::new(b"topsecret".to_vec());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(
            format!("{:?}", SecretCipher::new([1; 32])),
            "SecretCipher([redacted])"
        );
    }

    #[test]
    fn parse_formats() {
        let key = [0xabu8; 32];
        assert_eq!(MasterKey::parse(&BASE64.encode(key)).unwrap(), key);
        assert_eq!(MasterKey::parse(&hex::encode(key)).unwrap(), key);
        assert_eq!(
            MasterKey::parse(&format!(" {}\n", hex::encode_upper(key))).unwrap(),
            key
        );
        assert!(matches!(
            MasterKey::parse("short"),
            Err(StoreError::InvalidMasterKey(_))
        ));
        assert!(MasterKey::parse(&BASE64.encode([1u8; 31])).is_err());
        assert!(MasterKey::parse(&hex::encode([1u8; 33])).is_err());
    }
}
