//! Shared harness for runtime tests: bundled components in a real `Runtime` (compiled once
//! per test run through the shared cache), calls scoped to fixed secrets and state, and
//! loopback fakes for the providers they call.

use std::collections::HashMap;
use std::sync::Arc;

use sluice::capabilities::{CallScope, CapabilityConfig, DataSource, FixedData, SecretValue};
use sluice::config::SandboxConfig;
use sluice::net::OriginPattern;
use sluice::runtime::{CodeCache, LoadedDriver, Runtime};
use sluice_store::InstallationId;

pub use sluice_testkit::fake::serve;
pub use sluice_testkit::fixture_bytes;

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
        .map(|g| OriginPattern::parse(g).unwrap())
        .collect();
    let config = CapabilityConfig {
        limits,
        ..CapabilityConfig::new(grants)
    };
    // The suite's key, so these runtimes share the compile cache with the servers.
    let key = sluice_store::MasterKey::parse(sluice_testkit::TEST_MASTER_KEY).unwrap();
    let cache = CodeCache::new(sluice_testkit::paths::compile_cache(), &key);
    let runtime = Runtime::new(config, Some(cache)).unwrap();
    let driver = runtime
        .load_driver(&sluice_testkit::paths::driver_wasm(name))
        .await
        .unwrap();
    (runtime, driver)
}

/// A test-only driver (`tests/drivers`) in a runtime with the given sandbox limits.
pub async fn load_test_driver_with(name: &str, limits: SandboxConfig) -> (Runtime, LoadedDriver) {
    let config = CapabilityConfig {
        limits,
        ..CapabilityConfig::new(Vec::new())
    };
    let key = sluice_store::MasterKey::parse(sluice_testkit::TEST_MASTER_KEY).unwrap();
    let cache = CodeCache::new(sluice_testkit::paths::compile_cache(), &key);
    let runtime = Runtime::new(config, Some(cache)).unwrap();
    let path = sluice_testkit::paths::test_driver(name);
    let bytes = std::fs::read(&path).unwrap();
    let driver = runtime.load_driver(&bytes).await.unwrap();
    (runtime, driver)
}

/// A call scope for `installation` with the given secrets and state.
pub fn fixed_scope(
    driver: &LoadedDriver,
    installation: &str,
    secrets: HashMap<String, SecretValue>,
    state: HashMap<String, Vec<u8>>,
) -> CallScope {
    driver.scope(
        &InstallationId::parse(installation).unwrap(),
        DataSource::Fixed(Arc::new(FixedData { secrets, state })),
    )
}
