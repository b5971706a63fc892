//! The services every subsystem shares, handed down explicitly.
//!
//! One [`Services`] is built per process (`node`) and cloned into each subsystem that needs
//! it — the webhook pipeline, the authorization lifecycle, the scheduler, the driver
//! catalog, the server — so each depends on the services it uses and none reaches another
//! subsystem through a third. Cloning is cheap: every field is a handle.

use std::sync::Arc;
use std::time::Duration;

use sluice_store::{Installation, Store};

use crate::installations::Installations;
use crate::registry::DriverRegistry;
use crate::runtime::{LoadedDriver, Runtime};
use crate::wit::types::CallContext;

/// The store, the sandbox, the loaded drivers and the installation cache.
#[derive(Clone)]
pub struct Services {
    /// Everything durable.
    pub store: Store,
    /// The sandbox: engine, capabilities, policy, limits.
    pub runtime: Arc<Runtime>,
    /// The driver versions loaded in this process, and the active one of each.
    pub drivers: Arc<DriverRegistry>,
    /// Installations as the webhook path sees them; invalidate after changing one.
    pub installations: Arc<Installations>,
}

impl Services {
    /// The services over `store` and `runtime`, with no driver loaded yet; cached
    /// installations are trusted for `installation_ttl`.
    pub fn new(store: Store, runtime: Arc<Runtime>, installation_ttl: Duration) -> Self {
        let installations = Arc::new(Installations::new(
            store.clone(),
            runtime.policy().clone(),
            installation_ttl,
        ));
        // A secret changed through this process is never served from the cache again, and
        // the change is dropped from it before the store's call that made it returns.
        let cache = Arc::downgrade(&installations);
        store.watch_secret_changes(move |id| {
            if let Some(cache) = cache.upgrade() {
                cache.invalidate(id);
            }
        });
        Self {
            installations,
            drivers: Arc::new(DriverRegistry::default()),
            store,
            runtime,
        }
    }

    /// The version `installation` runs: the one it is pinned to, else its driver's active
    /// one; `None` when that version is not loaded here.
    pub fn driver_for(&self, installation: &Installation) -> Option<Arc<LoadedDriver>> {
        self.drivers.for_installation(
            installation.driver_id.as_str(),
            installation.driver_sha256.as_deref(),
        )
    }

    /// What a driver call for `installation` is told: its id and its settings over the
    /// operator's `app_settings`.
    pub fn call_context(&self, installation: &Installation) -> CallContext {
        let settings = self
            .runtime
            .policy()
            .effective_settings(installation.driver_id.as_str(), &installation.settings);
        CallContext {
            installation_id: installation.id.to_string(),
            settings: settings.to_string(),
        }
    }

    /// Now, from the host's clock (pinned in tests and replays), since the Unix epoch.
    pub fn now(&self) -> Duration {
        self.runtime.capabilities().clock.now()
    }

    /// Now as Unix seconds.
    pub fn now_secs(&self) -> i64 {
        i64::try_from(self.now().as_secs()).unwrap_or(i64::MAX)
    }

    /// Now as Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        i64::try_from(self.now().as_millis()).unwrap_or(i64::MAX)
    }
}
