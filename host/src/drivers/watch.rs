//! The drivers directory, watched by scanning: every `*.wasm` file is a driver, one file
//! per driver id. A file that is new, or whose content changed, is an arrival: it is
//! validated and, when its sha256 was never kept before, kept and activated. A file whose
//! content was kept before (a restart, a file put back) is not activated again, so the
//! operator's later choices (a rollback, an upload) stand — unless the store has no
//! active version of its driver at all. Deleting a file changes nothing: versions stay
//! kept. A file refused for giving the id another file gives is looked at again once a
//! file is removed.
//!
//! Scanning (size and modification time, then sha256 of what changed) instead of inotify:
//! it works on every filesystem, including network and container mounts, and a file still
//! being written is simply refused until its next change. Writers should still rename a
//! complete file into place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use sluice_store::{ActivationReason, DriverId, DriverSource};

use super::{Activation, AddOptions, DriverCatalog};

/// What the last scan saw of each file.
#[derive(Default)]
pub(super) struct Seen {
    files: HashMap<PathBuf, SeenFile>,
}

struct SeenFile {
    len: u64,
    modified: Option<SystemTime>,
    sha256: String,
    /// The driver id it gives, once it loaded.
    driver_id: Option<DriverId>,
}

impl DriverCatalog {
    /// Take in what is new or changed in the directory. Returns the refusals, each logged.
    pub(super) async fn scan_directory(&self) -> Vec<String> {
        let mut seen = self.seen.lock().await;
        let dir = &self.dir;
        let paths = match wasm_files(dir).await {
            Ok(paths) => paths,
            Err(e) => {
                let message = format!("{}: cannot read the drivers directory: {e}", dir.display());
                tracing::error!("{message}");
                return vec![message];
            }
        };
        let before = seen.files.len();
        seen.files.retain(|p, _| paths.contains(p));
        if seen.files.len() < before {
            // A file went away: one refused for giving the same driver id as another may
            // be the only one now. Files that never loaded are looked at again.
            seen.files.retain(|_, s| s.driver_id.is_some());
        }
        let mut refusals = Vec::new();
        for path in paths {
            match self.scan_file(&mut seen, &path).await {
                Ok(()) => {}
                Err(reason) => {
                    let message = format!("{}: {reason}", path.display());
                    tracing::error!("driver refused: {message}");
                    crate::metrics::record_refusal("directory");
                    refusals.push(message);
                }
            }
        }
        refusals
    }

    async fn scan_file(&self, seen: &mut Seen, path: &Path) -> Result<(), String> {
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| format!("cannot read: {e}"))?;
        let modified = meta.modified().ok();
        if let Some(s) = seen.files.get(path)
            && s.len == meta.len()
            && s.modified == modified
        {
            return Ok(());
        }
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read: {e}"))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if seen.files.get(path).is_some_and(|s| s.sha256 == sha256) {
            if let Some(s) = seen.files.get_mut(path) {
                (s.len, s.modified) = (meta.len(), modified);
            }
            return Ok(());
        }
        // Remembered before loading, so a file that does not load is refused once per
        // content, not at every scan.
        seen.files.insert(
            path.to_path_buf(),
            SeenFile {
                len: meta.len(),
                modified,
                sha256: sha256.clone(),
                driver_id: None,
            },
        );
        let driver = match self.registry().version(&sha256) {
            Some(d) => d,
            None => Arc::new(
                self.runtime()
                    .load_driver(&bytes)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
        };
        let id = driver.info.id.clone();
        if let Some((other, _)) = seen
            .files
            .iter()
            .find(|(p, s)| p.as_path() != path && s.driver_id.as_ref() == Some(&id))
        {
            return Err(format!(
                "driver id {id:?} is already given by another file ({}); one file per driver",
                other.display()
            ));
        }
        if let Some(s) = seen.files.get_mut(path) {
            s.driver_id = Some(id.clone());
        }
        let taken_in = self.take_in(driver.clone(), &bytes, path).await;
        if taken_in.is_err() {
            // The component is fine; the database was not. Try again at the next scan.
            seen.files.remove(path);
        }
        taken_in
    }

    /// Keep and activate a loaded directory file as the module doc says.
    async fn take_in(
        &self,
        driver: Arc<crate::runtime::LoadedDriver>,
        bytes: &[u8],
        path: &Path,
    ) -> Result<(), String> {
        let (id, sha256) = (driver.info.id.clone(), driver.info.sha256.clone());
        let kept = self
            .store()
            .driver_version(&sha256)
            .await
            .map_err(|e| e.to_string())?;
        match kept {
            None => {
                self.keep(
                    driver.clone(),
                    bytes,
                    DriverSource::Directory,
                    AddOptions {
                        activation: Activation::Now,
                        canary: None,
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            }
            // Only when the store has no active version of the driver at all: a node that
            // cannot load the active one (an older host) must not roll every node back.
            Some(_) if !self.has_active_version(&id).await? => {
                self.activate(&id, &sha256, ActivationReason::Directory)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Some(_) => tracing::debug!(driver = %id, sha256 = %sha256, path = %path.display(),
                "directory file is a version kept before; not activated again"),
        }
        tracing::info!(
            driver = %id, version = %driver.info.version, sha256 = %sha256,
            path = %path.display(), "driver loaded"
        );
        Ok(())
    }
}

impl DriverCatalog {
    async fn has_active_version(&self, driver_id: &DriverId) -> Result<bool, String> {
        let active = self
            .store()
            .active_driver_versions()
            .await
            .map_err(|e| e.to_string())?;
        Ok(active.iter().any(|(d, _)| d == driver_id))
    }
}

/// The `*.wasm` files of `dir`, sorted by name; none when it does not exist.
async fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut paths = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}
