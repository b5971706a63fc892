//! The set of loaded drivers, by id.
//!
//! Loading is all-or-nothing per component: a component that fails to load is reported
//! and skipped, and the drivers already in the registry keep serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::runtime::{LoadError, LoadedDriver, Runtime};

/// Why a file was not added to the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{path}: {source}")]
    Load { path: PathBuf, source: LoadError },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: driver id {id:?} is already loaded from another file")]
    Duplicate { path: PathBuf, id: String },
}

/// Loaded drivers, shared by the server and the pipeline.
#[derive(Default)]
pub struct DriverRegistry {
    drivers: RwLock<BTreeMap<String, Arc<LoadedDriver>>>,
}

impl DriverRegistry {
    pub fn get(&self, id: &str) -> Option<Arc<LoadedDriver>> {
        self.read().get(id).cloned()
    }

    /// Every loaded driver, ordered by id.
    pub fn list(&self) -> Vec<Arc<LoadedDriver>> {
        self.read().values().cloned().collect()
    }

    /// Load one component file and add it.
    pub async fn load_file(
        &self,
        runtime: &Runtime,
        path: &Path,
    ) -> Result<Arc<LoadedDriver>, RegistryError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| RegistryError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let driver = runtime
            .load_driver(&bytes)
            .await
            .map_err(|source| RegistryError::Load {
                path: path.to_path_buf(),
                source,
            })?;
        let driver = Arc::new(driver);
        let mut drivers = self.drivers.write().unwrap_or_else(|p| p.into_inner());
        if drivers.contains_key(&driver.info.id) {
            return Err(RegistryError::Duplicate {
                path: path.to_path_buf(),
                id: driver.info.id.clone(),
            });
        }
        drivers.insert(driver.info.id.clone(), driver.clone());
        Ok(driver)
    }

    /// Load every `*.wasm` in `dir` (sorted by name). Returns the failures; the others
    /// are loaded. A missing directory loads nothing.
    pub async fn load_dir(
        &self,
        runtime: &Runtime,
        dir: &Path,
    ) -> std::io::Result<Vec<RegistryError>> {
        let mut paths = Vec::new();
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "wasm") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut failures = Vec::new();
        for path in paths {
            match self.load_file(runtime, &path).await {
                Ok(driver) => tracing::info!(
                    driver = %driver.info.id,
                    version = %driver.info.version,
                    sha256 = %driver.info.sha256,
                    path = %path.display(),
                    "driver loaded"
                ),
                Err(e) => failures.push(e),
            }
        }
        Ok(failures)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<LoadedDriver>>> {
        // A panic while holding the lock cannot leave the map half-updated (inserts are
        // single operations), so a poisoned lock is still safe to read.
        self.drivers.read().unwrap_or_else(|p| p.into_inner())
    }
}
