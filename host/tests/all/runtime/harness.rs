//! Shared harness for runtime tests: bundled components in a real `Runtime` (compiled once
//! per test run through the shared cache), calls scoped to fixed secrets and state, and
//! loopback fakes for the providers they call.

use std::collections::HashMap;
use std::sync::Arc;

use sluice::capabilities::{CallScope, CapabilityConfig, DataSource, FixedData, SecretValue};
use sluice::limits::SandboxConfig;
use sluice::net::OriginPattern;
use sluice::policy::{DriverDefaults, Policy};
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
    // The bundled driver's own default policy, beside it as the build leaves it.
    let wasm = sluice_testkit::paths::bundled_driver(name);
    let policy = Policy::with_defaults(DriverDefaults::read_beside(&wasm).unwrap());
    let config = CapabilityConfig {
        limits,
        policy,
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

/// Everything the in-process runtimes of this test binary log, at `trace`, for the secrets
/// sweep: a test that hands a runtime secrets, or has it capture tokens, checks that none of
/// them is in here ([`assert_not_logged`]). Installed once, as the process's subscriber.
fn trace_log() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOG: std::sync::OnceLock<&'static std::sync::Mutex<Vec<u8>>> =
        std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static std::sync::Mutex<Vec<u8>> = Box::leak(Box::default());
        let writer = move || TraceWriter(log);
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("sluice=trace")
            .with_writer(writer)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("the runtime tests' subscriber is the process's only one");
        log
    })
}

struct TraceWriter(&'static std::sync::Mutex<Vec<u8>>);

impl std::io::Write for TraceWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Start recording the runtimes' trace log (call before the runtime is used).
pub fn record_trace() {
    trace_log();
}

/// Assert that no secret value in `values` appears in anything logged so far, and that the
/// log is not empty (so the sweep looked at something).
pub fn assert_not_logged(values: &[&str]) {
    let log = trace_log().lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        !log.is_empty(),
        "nothing was logged at trace: the sweep saw nothing"
    );
    let text = String::from_utf8_lossy(&log);
    for value in values {
        assert!(!text.contains(value), "secret value {value:?} was logged");
    }
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
        DataSource::Fixed(Arc::new(FixedData {
            secrets,
            state,
            ..FixedData::default()
        })),
    )
}
