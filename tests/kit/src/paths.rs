//! Where the things under test are: the workspace, the `sluice` binary, built drivers and
//! the compile cache every test shares.
//!
//! Environment (set by `cargo xtask test`; the defaults point into this workspace):
//! `SLUICE_BIN` (default `target/debug/sluice`), `SLUICE_DRIVERS` (`target/drivers`),
//! `SLUICE_TEST_DRIVERS` (`target/test-drivers`), `SLUICE_TEST_CACHE` (`target/test-cache`),
//! `SLUICE_TEST_SCAFFOLD_TARGET` (`target/scaffold`).

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/kit sits two levels below the workspace root")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

fn env_path(var: &str, default: impl FnOnce() -> PathBuf) -> PathBuf {
    match std::env::var_os(var) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => default(),
    }
}

/// The `sluice` binary under test.
pub fn sluice_bin() -> PathBuf {
    let bin = env_path("SLUICE_BIN", || {
        target_dir()
            .join("debug")
            .join(format!("sluice{}", std::env::consts::EXE_SUFFIX))
    });
    assert!(
        bin.is_file(),
        "sluice binary not found at {} (run `cargo xtask test`, or set SLUICE_BIN)",
        bin.display()
    );
    bin
}

/// A bundled driver component, e.g. `bundled_driver("stripe")`.
pub fn bundled_driver(name: &str) -> PathBuf {
    let path =
        env_path("SLUICE_DRIVERS", || target_dir().join("drivers")).join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "driver {} not built (run `cargo xtask build-drivers`, or set SLUICE_DRIVERS)",
        path.display()
    );
    path
}

/// A test-only driver component, e.g. `test_driver("faulty")`.
pub fn test_driver(name: &str) -> PathBuf {
    let path = env_path("SLUICE_TEST_DRIVERS", || target_dir().join("test-drivers"))
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "test driver {} not built (run `cargo xtask build-drivers`, or set SLUICE_TEST_DRIVERS)",
        path.display()
    );
    path
}

/// The bytes of a driver component from [`bundled_driver`].
pub fn driver_wasm(name: &str) -> Vec<u8> {
    let path = bundled_driver(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The compiled-code cache shared by every server and runtime of a test run, so each
/// component is compiled once per run, not once per test.
pub fn compile_cache() -> PathBuf {
    env_path("SLUICE_TEST_CACHE", || target_dir().join("test-cache"))
}

/// The cargo target directory every build of a scaffolded driver crate shares (`sluice
/// driver new` in a fresh directory each run): its dependencies are compiled once, not
/// once per run.
pub fn scaffold_target() -> PathBuf {
    env_path("SLUICE_TEST_SCAFFOLD_TARGET", || {
        target_dir().join("scaffold")
    })
}
