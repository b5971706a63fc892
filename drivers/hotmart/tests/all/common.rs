//! Shared test helpers: the fixtures directory.

use std::path::PathBuf;

/// The vendored fixtures (`tests/fixtures`, or `$SLUICE_FIXTURES_DIR`).
pub fn fixtures_dir() -> PathBuf {
    sluice_testkit::fixtures::fixtures_dir()
}

/// The exact bytes of `hotmart/<name>`.
pub fn hotmart_fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join("hotmart").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `hotmart/<name>` parsed as JSON.
pub fn hotmart_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&hotmart_fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every file name in `hotmart/` starting with `prefix`, sorted.
pub fn hotmart_files(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir().join("hotmart"))
        .expect("hotmart fixtures dir")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".json"))
        .collect();
    names.sort();
    names
}
