//! Shared harness for runtime tests: bundled components in a real `Runtime`, and loopback
//! fakes for the providers they call.

#![allow(dead_code)] // each test file uses part of it

use std::path::PathBuf;

use sluice::capabilities::{Capabilities, Clock, HostPattern};
use sluice::config::SandboxConfig;
use sluice::runtime::{LoadedDriver, Runtime};

/// The built component of a bundled driver (`cargo xtask build-drivers`).
pub fn driver_wasm(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("SLUICE_DRIVERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/drivers"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask build-drivers`", path.display()))
}

/// A file of the shared provider fixtures (`SLUICE_FIXTURES_DIR`, else `../shared/fixtures`
/// beside the repository), byte for byte.
pub fn fixture_bytes(relative: &str) -> Vec<u8> {
    let dir = std::env::var_os("SLUICE_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    let path = dir.join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A runtime with the given operator grants and the named driver loaded into it.
pub async fn load(name: &str, grants: &[&str]) -> (Runtime, LoadedDriver) {
    load_with(name, grants, SandboxConfig::default()).await
}

/// [`load`] with other sandbox limits.
pub async fn load_with(
    name: &str,
    grants: &[&str],
    limits: SandboxConfig,
) -> (Runtime, LoadedDriver) {
    let grants = grants
        .iter()
        .map(|g| HostPattern::parse(g).unwrap())
        .collect();
    let runtime = Runtime::new(
        limits,
        Capabilities::new(grants, Clock::System).unwrap(),
        None,
    )
    .unwrap();
    let driver = runtime.load_driver(&driver_wasm(name)).await.unwrap();
    (runtime, driver)
}

/// Serve `app` on a free loopback port until the test's runtime ends; returns its base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}
