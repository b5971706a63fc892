//! Master key loading: environment value, key file, and key file creation.

use std::path::Path;

use base64::Engine as _;
use sluice_store::{MasterKey, StoreError};

fn b64(key: [u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[test]
fn key_file_is_created_0600_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("dir").join("master.key");
    let key = MasterKey::load(None, &path).unwrap();
    assert_ne!(key, [0; 32]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim(), b64(key));
    assert_eq!(MasterKey::load(None, &path).unwrap(), key);
    // A blank environment value counts as absent.
    assert_eq!(MasterKey::load(Some("  "), &path).unwrap(), key);
}

#[test]
fn environment_value_wins_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let key = [0x5a; 32];
    assert_eq!(MasterKey::load(Some(&b64(key)), &path).unwrap(), key);
    assert_eq!(
        MasterKey::load(Some(&hex::encode(key)), &path).unwrap(),
        key
    );
    assert!(!path.exists());
    let bad = MasterKey::load(Some("c2hvcnQ="), &path);
    assert!(
        matches!(bad, Err(StoreError::InvalidMasterKey(_))),
        "{bad:?}"
    );
}

#[test]
fn bad_key_file_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    write_private(&path, "not-a-key-SENSITIVE");
    let err = MasterKey::load(None, &path).unwrap_err();
    assert!(matches!(err, StoreError::InvalidMasterKey(_)), "{err:?}");
    assert!(err.to_string().contains("does not hold 32 bytes"), "{err}");
    assert!(!err.to_string().contains("SENSITIVE"));
    // A hex key in the file is accepted too.
    write_private(&path, &format!("{}\n", hex::encode([9u8; 32])));
    assert_eq!(MasterKey::load(None, &path).unwrap(), [9; 32]);
}

/// Writes `text` to `path` with mode 0600, as an operator's key file should be.
fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let key = hex::encode([9u8; 32]);
    for mode in [0o644, 0o640, 0o604, 0o660, 0o606] {
        std::fs::write(&path, &key).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = MasterKey::load(None, &path).unwrap_err();
        assert!(matches!(err, StoreError::InvalidMasterKey(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&format!("has mode {mode:o}")), "{text}");
        assert!(text.contains("chmod 600"), "{text}");
        assert!(!text.contains(&key), "{text}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(MasterKey::load(None, &path).unwrap(), [9; 32]);
}

#[test]
fn unreadable_location_is_an_io_error() {
    let err = MasterKey::load(None, Path::new("/proc/definitely/not/here/master.key")).unwrap_err();
    assert!(matches!(err, StoreError::Io(_)), "{err:?}");
}
