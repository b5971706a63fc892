//! The drivers this process can run: every loaded version by sha256, and which one of
//! each driver id is active.
//!
//! Activation is a swap of one `Arc` under a lock: a call looks its driver up once and
//! holds that `Arc` to its end, so calls in flight finish on the version they started
//! with and new calls get the new one; nothing waits for the swap and nothing fails
//! because of it. What is kept and activated durably is the catalog's business
//! (`crate::drivers`); this is its in-memory face.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use sluice_store::DriverId;

use crate::runtime::LoadedDriver;

#[derive(Default)]
struct Loaded {
    /// Active version of each driver id.
    active: BTreeMap<DriverId, Arc<LoadedDriver>>,
    /// Every loaded version, active or not (pinned ones, the previous one), by sha256.
    versions: HashMap<String, Arc<LoadedDriver>>,
}

/// Loaded drivers, shared by the server, the pipeline and the catalog.
#[derive(Default)]
pub struct DriverRegistry {
    loaded: RwLock<Loaded>,
}

impl DriverRegistry {
    /// The active version of a driver.
    pub fn get(&self, id: &str) -> Option<Arc<LoadedDriver>> {
        self.read().active.get(id).cloned()
    }

    /// The version an installation of `driver_id` runs: the one it is pinned to, else the
    /// active one. `None` when that version is not loaded here (yet): the caller answers
    /// "unavailable" rather than run another version than the operator chose.
    pub fn for_installation(
        &self,
        driver_id: &str,
        pinned: Option<&str>,
    ) -> Option<Arc<LoadedDriver>> {
        let loaded = self.read();
        match pinned {
            Some(sha) => loaded
                .versions
                .get(sha)
                .filter(|d| d.info.id == driver_id)
                .cloned(),
            None => loaded.active.get(driver_id).cloned(),
        }
    }

    /// A loaded version by sha256.
    pub fn version(&self, sha256: &str) -> Option<Arc<LoadedDriver>> {
        self.read().versions.get(sha256).cloned()
    }

    /// Every active driver, ordered by id.
    pub fn list(&self) -> Vec<Arc<LoadedDriver>> {
        self.read().active.values().cloned().collect()
    }

    /// Keep a loaded version (not active until [`DriverRegistry::activate`]).
    pub fn insert(&self, driver: Arc<LoadedDriver>) {
        self.write()
            .versions
            .insert(driver.info.sha256.clone(), driver);
    }

    /// Make a loaded version its driver's active one. Returns the version it replaced;
    /// `None` when `sha256` is not loaded (nothing changes).
    pub fn activate(&self, sha256: &str) -> Option<Option<Arc<LoadedDriver>>> {
        let mut loaded = self.write();
        let driver = loaded.versions.get(sha256)?.clone();
        Some(loaded.active.insert(driver.info.id.clone(), driver))
    }

    /// Forget the versions not in `keep` and not active (memory of versions nobody
    /// runs any more; they stay in the store).
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        let mut loaded = self.write();
        let active: Vec<String> = loaded
            .active
            .values()
            .map(|d| d.info.sha256.clone())
            .collect();
        loaded
            .versions
            .retain(|sha, _| keep(sha) || active.contains(sha));
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        // Every change is a single map operation: a panic elsewhere cannot leave the maps
        // half-updated, so a poisoned lock is still safe to use.
        self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Loaded> {
        self.loaded.write().unwrap_or_else(|p| p.into_inner())
    }
}
