//! The sandbox: wasmtime engine, driver loading and per-call instances.
//!
//! One [`Runtime`] per process owns the engine (pooling allocator, epoch interruption),
//! the linker with Sluice's capabilities, and the limits. Each loaded driver keeps one
//! `InstancePre`; every call gets a fresh `Store` holding only that installation's
//! capabilities ([`Session`]), so nothing leaks between calls or installations.

mod cache;
mod driver;
mod exports;
mod session;
mod world;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use crate::metadata::{ACCOUNT_KEY_ANNOTATION, DriverInfo, SecretSpec};
pub use cache::CodeCache;
pub use driver::{LoadError, LoadedDriver, SettingsViolation};
pub use session::{CallError, Session, describe as describe_driver_error};

use crate::capabilities::{CallState, Capabilities, CapabilityConfig};
use crate::limits::SandboxConfig;
use crate::wit;

/// How often the epoch advances; deadlines are checked at this granularity.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The process-wide sandbox.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    limits: SandboxConfig,
    cache: Option<CodeCache>,
    permits: Arc<Semaphore>,
    capabilities: Capabilities,
    policy: crate::policy::Policy,
    /// Where driver code runs: threads of its own, not the ones serving HTTP.
    guests: Option<tokio::runtime::Runtime>,
    guest_handle: tokio::runtime::Handle,
    ticker_stop: Arc<AtomicBool>,
}

/// Failure to build the engine (bad limits for this platform).
#[derive(Debug, thiserror::Error)]
#[error("cannot start the wasm runtime: {0}")]
pub struct RuntimeError(String);

impl Runtime {
    /// Build the engine, the linker and every capability. `cache` keeps compiled code
    /// across restarts.
    pub fn new(config: CapabilityConfig, cache: Option<CodeCache>) -> Result<Self, RuntimeError> {
        let err = |e: wasmtime::Error| RuntimeError(format!("{e:#}"));
        let capabilities =
            Capabilities::new(&config).map_err(|e| RuntimeError(format!("{e:#}")))?;
        let limits = config.limits;
        let policy = config.policy;
        let instances = limits.max_concurrent_instances;
        let mut pool = PoolingAllocationConfig::default();
        // A Rust component has a handful of core instances, one memory and a few tables.
        // The totals are the per-component maxima times the instance count, so
        // `max_concurrent_instances` instances fit however large each is: one driver at
        // its maxima cannot use up slots the others are counted on.
        const CORE_INSTANCES: u32 = 8;
        const MEMORIES: u32 = 2;
        const TABLES: u32 = 8;
        pool.total_component_instances(instances)
            .total_core_instances(instances * CORE_INSTANCES)
            .total_memories(instances * MEMORIES)
            .total_tables(instances * TABLES)
            .max_memory_size(limits.max_memory_bytes)
            .max_core_instances_per_component(CORE_INSTANCES)
            .max_memories_per_component(MEMORIES)
            .max_tables_per_component(TABLES)
            // A fresh instance per delivery: reset a slot's memory and tables with `memset`
            // (only the pages it touched, where the kernel can say which) instead of
            // `madvise`, so the next instance in the slot takes no page faults and the
            // host no TLB shootdowns.
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // `SLUICE_WASM_PERFMAP=1` names guest functions for `perf` (/tmp/perf-<pid>.map).
        if std::env::var_os("SLUICE_WASM_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(err)?;

        let mut linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
        wit::types::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |s| s).map_err(err)?;
        wit::canonical::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |s| s).map_err(err)?;
        Capabilities::add_to_linker(&mut linker).map_err(err)?;

        let guests = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.guest_threads())
            .thread_name("sluice-guest")
            // Timers for deadlines, IO for the http capability's requests.
            .enable_all()
            .build()
            .map_err(|e| RuntimeError(format!("cannot start the guest threads: {e}")))?;
        let guest_handle = guests.handle().clone();
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone())
            .map_err(|e| RuntimeError(format!("cannot start the epoch thread: {e}")))?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(instances as usize)),
            engine,
            linker,
            limits,
            cache,
            capabilities,
            policy,
            guests: Some(guests),
            guest_handle,
            ticker_stop,
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &SandboxConfig {
        &self.limits
    }

    /// The host capabilities shared by all calls (HTTP clients, grants, clock).
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Run `work` (driver calls) on the guest threads and wait for it. If the caller is
    /// dropped, the work still runs to its end (its deadline bounds it) and its result is
    /// discarded.
    pub async fn on_guest_threads<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, CallError> {
        self.guest_handle
            .spawn(work)
            .await
            .map_err(|e| CallError::Trap(format!("the guest task failed: {e}")))
    }

    /// The operator's driver policy.
    pub fn policy(&self) -> &crate::policy::Policy {
        &self.policy
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn linker(&self) -> &Linker<CallState> {
        &self.linker
    }

    pub(crate) fn permits(&self) -> &Arc<Semaphore> {
        &self.permits
    }

    pub(crate) fn cache(&self) -> Option<&CodeCache> {
        self.cache.as_ref()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        // Dropping a tokio runtime blocks, which is not allowed inside another one;
        // calls still running end at their deadlines anyway.
        if let Some(guests) = self.guests.take() {
            guests.shutdown_background();
        }
    }
}

/// Advance the engine's epoch on a plain thread so deadlines hold even when every tokio
/// worker is busy running guest code.
fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .map(drop)
}
