//! The driver catalog: every version the host was given, which one of each driver is
//! active, and hot-loading.
//!
//! Versions arrive by upload (`POST /v1/drivers`, `sluice drivers add`) and from the
//! drivers directory, which is watched (`watch`). Each is validated exactly as at start
//! (compiled — or taken from the code cache —, linked against the world, its metadata
//! checked and its origins resolved against the operator's policy), kept in the store by
//! sha256 with its bytes, and, when asked, activated: one swap in the registry, so calls in
//! flight finish on the old version and new calls get the new one. A version that does
//! not load is refused with its reason and changes nothing.
//!
//! The store is the truth; the registry is this node's copy. `sync` makes the copy match
//! (active versions, and the versions installations are pinned to), after every change
//! here, on every PostgreSQL notification of another node's change, and now and then in
//! case a notification was missed: every node runs what the store says within
//! `sync_interval`.

mod canary;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sluice_store::{
    ActivationReason, Change, DriverId, DriverSource, InstallationId, NewDriverVersion,
    RemoveRefused, Store, StoreError,
};

pub use canary::{CanaryReport, EventComparison, FieldChange};

use crate::registry::DriverRegistry;
use crate::runtime::{DriverInfo, LoadError, LoadedDriver, Runtime};
use crate::services::Services;

/// Kept driver versions and hot-loading (`[catalog]`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// How often the drivers directory is scanned for new or changed files, ms; `0` reads
    /// it only at start. Default 2000.
    pub watch_interval_ms: u64,
    /// How often a node compares its drivers with the database, ms (PostgreSQL nodes also
    /// hear of changes at once through `LISTEN/NOTIFY`; this bounds a missed one).
    /// Default 5000.
    pub sync_interval_ms: u64,
    /// Largest component `POST /v1/drivers` takes, bytes. Default 64 MiB.
    pub max_driver_bytes: usize,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            watch_interval_ms: 2000,
            sync_interval_ms: 5000,
            max_driver_bytes: 64 << 20,
        }
    }
}

impl CatalogConfig {
    /// Check what the types cannot; `Err` names the keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.sync_interval_ms == 0 || self.max_driver_bytes == 0 {
            return Err("[catalog] sync_interval_ms and max_driver_bytes must be positive".into());
        }
        Ok(())
    }

    /// How often the directory is scanned; `None`: only at start.
    fn watch_interval(&self) -> Option<Duration> {
        (self.watch_interval_ms > 0).then(|| Duration::from_millis(self.watch_interval_ms))
    }

    fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms)
    }
}

/// What to do with an added version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// Make it the active version.
    #[default]
    Now,
    /// Keep it only (activate later, or pin installations to it).
    Keep,
    /// Activate it only when the canary found no difference (requires a canary).
    IfIdentical,
}

/// How to add a version.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddOptions {
    pub activation: Activation,
    /// Replay the last N stored raw events of the driver through it and the active version
    /// first, and report the differences.
    pub canary: Option<usize>,
}

/// What adding a version did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Added {
    pub driver: DriverInfo,
    /// `false` when this exact component (sha256) was kept already.
    pub new: bool,
    pub activated: bool,
    /// The version that was active before, if it changed.
    #[schema(required = true)]
    pub replaced: Option<String>,
    #[schema(required = true)]
    pub canary: Option<CanaryReport>,
}

/// Why a catalog operation did nothing.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the driver was refused: {0}")]
    Invalid(#[from] LoadError),
    #[error("{0}")]
    NotFound(String),
    /// A request names a version that is not kept (or is another driver's).
    #[error("{0}")]
    UnknownVersion(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Kept versions and the active one of each driver, for this node.
pub struct DriverCatalog {
    services: Services,
    config: CatalogConfig,
    /// The drivers directory.
    dir: PathBuf,
    /// One change at a time in this process, so a sync never interleaves with an
    /// activation and undoes it.
    changes: tokio::sync::Mutex<()>,
    /// The directory as the last scan saw it.
    seen: tokio::sync::Mutex<watch::Seen>,
    /// When each version was last active or pinned, as `sync` saw it.
    needed: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How long a version stays loaded after nothing needs it (well over the installation
/// cache's default 2 s).
const KEEP_UNNEEDED: Duration = Duration::from_secs(60);

impl DriverCatalog {
    /// The catalog of `services`' drivers, watching `dir`.
    pub fn new(services: Services, config: CatalogConfig, dir: PathBuf) -> Self {
        Self {
            services,
            config,
            dir,
            changes: tokio::sync::Mutex::new(()),
            seen: Default::default(),
            needed: Default::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &CatalogConfig {
        &self.config
    }

    fn store(&self) -> &Store {
        &self.services.store
    }

    fn runtime(&self) -> &Arc<Runtime> {
        &self.services.runtime
    }

    fn registry(&self) -> &Arc<DriverRegistry> {
        &self.services.drivers
    }

    /// At start: load what the store says is active or pinned, then add the directory's
    /// files. Returns the refusals (each already logged).
    pub async fn start(&self) -> Result<Vec<String>, StoreError> {
        self.sync().await?;
        Ok(self.scan_directory().await)
    }

    /// Validate and keep a component; activate it as `options` say.
    pub async fn add(
        &self,
        bytes: &[u8],
        source: DriverSource,
        options: AddOptions,
    ) -> Result<Added, CatalogError> {
        if options.activation == Activation::IfIdentical && options.canary.is_none() {
            return Err(CatalogError::BadRequest(
                "activate-if-identical needs a canary (how many stored events to compare)".into(),
            ));
        }
        if options.canary == Some(0) {
            return Err(CatalogError::BadRequest(
                "a canary compares at least one stored event".into(),
            ));
        }
        let driver = match self.runtime().load_driver(bytes).await {
            Ok(driver) => Arc::new(driver),
            Err(e) => {
                crate::metrics::record_refusal(source.as_str());
                tracing::warn!(source = source.as_str(), reason = %e, "driver refused");
                return Err(e.into());
            }
        };
        self.keep(driver, bytes, source, options).await
    }

    /// Keep a loaded, validated version; activate it as `options` say.
    async fn keep(
        &self,
        driver: Arc<LoadedDriver>,
        bytes: &[u8],
        source: DriverSource,
        options: AddOptions,
    ) -> Result<Added, CatalogError> {
        let info = &driver.info;
        let new = self
            .store()
            .put_driver_version(NewDriverVersion {
                sha256: &info.sha256,
                driver_id: &info.id,
                version: &info.version,
                wit_version: &info.wit_version,
                component: bytes,
                source,
            })
            .await?;
        self.registry().insert(driver.clone());
        let current = self.registry().get(info.id.as_str());
        let canary = match (options.canary, &current) {
            (Some(n), Some(current)) if current.info.sha256 != info.sha256 => {
                Some(canary::run(&self.services, current, &driver, n).await?)
            }
            (Some(_), _) => Some(CanaryReport::nothing_to_compare(&driver.info)),
            (None, _) => None,
        };
        let activate = match options.activation {
            Activation::Now => true,
            Activation::Keep => false,
            Activation::IfIdentical => canary.as_ref().is_some_and(CanaryReport::identical),
        };
        let reason = match source {
            DriverSource::Upload => ActivationReason::Upload,
            DriverSource::Directory => ActivationReason::Directory,
        };
        let replaced = if activate {
            self.activate_loaded(&driver, reason).await?
        } else {
            None
        };
        tracing::info!(
            driver = %info.id, version = %info.version, sha256 = %info.sha256,
            source = source.as_str(), new, activated = activate,
            "driver version added"
        );
        Ok(Added {
            driver: driver.info.clone(),
            new,
            activated: activate,
            replaced,
            canary,
        })
    }

    /// Make a kept version its driver's active one.
    pub async fn activate(
        &self,
        driver_id: &DriverId,
        sha256: &str,
        reason: ActivationReason,
    ) -> Result<Arc<LoadedDriver>, CatalogError> {
        let driver = self.loaded(driver_id, sha256).await?;
        self.activate_loaded(&driver, reason).await?;
        Ok(driver)
    }

    /// Activate the version that was active before the current one (or `to`).
    pub async fn rollback(
        &self,
        driver_id: &DriverId,
        to: Option<&str>,
    ) -> Result<Arc<LoadedDriver>, CatalogError> {
        let target = match to {
            Some(sha) => sha.to_string(),
            None => match self.store().previous_driver_version(driver_id).await? {
                Some(sha) => sha,
                None if self
                    .store()
                    .driver_versions(Some(driver_id))
                    .await?
                    .is_empty() =>
                {
                    return Err(CatalogError::NotFound(format!("no driver {driver_id:?}")));
                }
                None => {
                    return Err(CatalogError::Conflict(format!(
                        "the {driver_id} driver has no earlier version to roll back to"
                    )));
                }
            },
        };
        self.activate(driver_id, &target, ActivationReason::Rollback)
            .await
    }

    /// Delete a kept version that is neither active nor pinned.
    pub async fn remove(&self, driver_id: &DriverId, sha256: &str) -> Result<(), CatalogError> {
        let _change = self.changes.lock().await;
        match self.store().remove_driver_version(driver_id, sha256).await {
            Ok(Ok(())) => {}
            Ok(Err(RemoveRefused::Active)) => {
                return Err(CatalogError::Conflict(format!(
                    "{sha256} is the active version of {driver_id}: activate another first"
                )));
            }
            Ok(Err(RemoveRefused::Pinned(n))) => {
                return Err(CatalogError::Conflict(format!(
                    "{n} installation(s) are pinned to {sha256}: unpin them first"
                )));
            }
            Err(StoreError::NotFound) => {
                return Err(CatalogError::NotFound(
                    not_kept(driver_id, sha256).to_string(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        self.registry().retain(&|sha| sha != sha256);
        Ok(())
    }

    /// Pin an installation to a kept version of its driver, or unpin it (`None`).
    pub async fn pin(
        &self,
        installation: &InstallationId,
        sha256: Option<&str>,
    ) -> Result<(), CatalogError> {
        // A sync between loading the version and storing the pin would forget it again.
        let _change = self.changes.lock().await;
        if let Some(sha) = sha256 {
            // Loaded before the pin is stored, so no delivery finds it pinned to a version
            // this node cannot run.
            let Some(i) = self.store().get_installation(installation).await? else {
                return Err(CatalogError::NotFound("unknown installation".into()));
            };
            self.loaded(&i.driver_id, sha).await?;
        }
        match self.store().pin_installation(installation, sha256).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => {
                return Err(CatalogError::NotFound("unknown installation".into()));
            }
            Err(StoreError::InvalidInput(m)) => return Err(CatalogError::UnknownVersion(m)),
            Err(e) => return Err(e.into()),
        }
        self.services.installations.invalidate(installation);
        Ok(())
    }

    /// Make this node's registry match the store: load what is active or pinned and is
    /// not loaded yet, swap where the active version changed, forget the rest.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let _change = self.changes.lock().await;
        let active = self.store().active_driver_versions().await?;
        let pinned = self.store().pinned_driver_versions().await?;
        for sha in active.iter().map(|(_, s)| s).chain(&pinned) {
            if self.registry().version(sha).is_none()
                && let Err(e) = self.load_kept(sha).await
            {
                tracing::error!(sha256 = %sha, error = %e, "a kept driver version does not load on this node");
            }
        }
        for (driver_id, sha) in &active {
            let running = self.registry().get(driver_id.as_str());
            if running.as_ref().is_none_or(|d| d.info.sha256 != *sha)
                && let Some(replaced) = self.registry().activate(sha)
            {
                let replaced = replaced.map(|d| d.info.sha256.clone());
                // `load`: the first version of this driver on this node (its start);
                // `sync`: another node's change.
                let reason = if replaced.is_some() { "sync" } else { "load" };
                if let Some(now) = self.registry().get(driver_id.as_str()) {
                    crate::metrics::record_activation(
                        driver_id.as_str(),
                        &now.info.version,
                        reason,
                    );
                }
                tracing::info!(driver = %driver_id, sha256 = %sha, ?replaced, reason, "driver version activated");
            }
        }
        // A version nobody needs any more is forgotten only after `KEEP_UNNEEDED`: other
        // nodes' installation caches may still name a pin for a while
        // (`installation_cache_ttl_ms`), and their deliveries must find it.
        let now = std::time::Instant::now();
        let mut needed = self.needed.lock().unwrap_or_else(|p| p.into_inner());
        for sha in active.iter().map(|(_, s)| s).chain(&pinned) {
            needed.insert(sha.clone(), now);
        }
        needed.retain(|_, at| now.duration_since(*at) < KEEP_UNNEEDED);
        self.registry().retain(&|sha| needed.contains_key(sha));
        Ok(())
    }

    /// Watch the directory, follow other nodes' changes and resync now and then, until
    /// `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let listen = || async {
            match self.store().listen_changes().await {
                Ok(changes) => changes,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for driver changes yet; syncing periodically meanwhile");
                    None
                }
            }
        };
        let mut changes = listen().await;
        let mut resync = tokio::time::interval(self.config.sync_interval());
        let watch_every = self
            .config
            .watch_interval()
            .unwrap_or(Duration::from_secs(3600));
        let mut rescan = tokio::time::interval(watch_every);
        for tick in [&mut resync, &mut rescan] {
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.reset();
        }
        loop {
            let notified = async {
                match changes.as_mut() {
                    Some(c) => c.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                change = notified => match change {
                    // Another node changed an installation's secrets: its cached copy here
                    // goes now, not after `installation_cache_ttl`.
                    Ok(Some(Change::Secrets(id))) => self.services.installations.invalidate(&id),
                    Ok(Some(Change::Driver(driver_id))) => {
                        self.sync_logged().await;
                        // A pin on another node reaches this one's deliveries now rather
                        // than after `installation_cache_ttl`; after the sync, so the pinned
                        // version is loaded before anything asks for it.
                        self.services.installations.invalidate_driver(&driver_id);
                    }
                    Ok(None) => self.sync_logged().await,
                    Err(e) => {
                        tracing::warn!(error = %e, "change notifications interrupted");
                        // The listener reconnects on its next call; not in a hot loop
                        // while the database is down.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        self.sync_logged().await;
                    }
                },
                _ = resync.tick() => {
                    if changes.is_none() && self.store().backend() == sluice_store::Backend::Postgres {
                        changes = listen().await;
                    }
                    self.sync_logged().await;
                }
                _ = rescan.tick(), if self.config.watch_interval().is_some() => {
                    self.scan_directory().await;
                }
            }
        }
    }

    async fn sync_logged(&self) {
        if let Err(e) = self.sync().await {
            tracing::warn!(error = %e, "syncing drivers with the store failed");
        }
    }

    /// A kept version of `driver_id`, loaded (from the registry, or the store's bytes).
    async fn loaded(
        &self,
        driver_id: &DriverId,
        sha256: &str,
    ) -> Result<Arc<LoadedDriver>, CatalogError> {
        let driver = match self.registry().version(sha256) {
            Some(d) => d,
            None => self.load_kept(sha256).await?,
        };
        if &driver.info.id != driver_id {
            return Err(not_kept(driver_id, sha256));
        }
        Ok(driver)
    }

    async fn load_kept(&self, sha256: &str) -> Result<Arc<LoadedDriver>, CatalogError> {
        let bytes = self
            .store()
            .driver_component(sha256)
            .await?
            .ok_or_else(|| {
                CatalogError::UnknownVersion(format!("no driver version {sha256} is kept"))
            })?;
        let driver = Arc::new(self.runtime().load_driver(&bytes).await?);
        self.registry().insert(driver.clone());
        Ok(driver)
    }

    /// Record the activation, then swap. Returns the sha256 it replaced.
    async fn activate_loaded(
        &self,
        driver: &Arc<LoadedDriver>,
        reason: ActivationReason,
    ) -> Result<Option<String>, CatalogError> {
        let _change = self.changes.lock().await;
        let info = &driver.info;
        self.store()
            .activate_driver_version(&info.id, &info.sha256, reason)
            .await?;
        self.registry().insert(driver.clone());
        let replaced = self
            .registry()
            .activate(&info.sha256)
            .flatten()
            .map(|d| d.info.sha256.clone())
            .filter(|s| *s != info.sha256);
        crate::metrics::record_activation(info.id.as_str(), &info.version, reason.as_str());
        tracing::info!(
            driver = %info.id, version = %info.version, sha256 = %info.sha256,
            replaced = ?replaced, reason = reason.as_str(), "driver version activated"
        );
        Ok(replaced)
    }
}

fn not_kept(driver_id: &DriverId, sha256: &str) -> CatalogError {
    CatalogError::UnknownVersion(format!(
        "the {driver_id} driver has no kept version {sha256}"
    ))
}
