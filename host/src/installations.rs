//! Installations as the webhook path sees them: looked up by id or by (driver, account key)
//! in memory, loaded from the store on a miss, so a delivery costs no database read before
//! its commit.
//!
//! An entry keeps the installation's settings as the JSON text drivers receive and its
//! secrets still sealed (decrypted when a call uses one). Entries expire after the TTL, so
//! a change made through another node is seen within it; changes made through this node's
//! admin API invalidate at once. Staleness is safe for what is stored: the commit checks
//! that the installation is live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sluice_store::{DriverId, InstallationId, SealedSecret, SecretBytes, Store, StoreError};

use crate::policy::Policy;

/// Most entries kept (positive and negative); beyond it, expired ones are dropped first.
const MAX_ENTRIES: usize = 250_000;
/// How long an unknown id is remembered as unknown (so a flood of bad ids does not become a
/// flood of queries, and a new installation is found quickly).
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// One installation, as calls need it.
pub struct CachedInstallation {
    pub id: InstallationId,
    pub driver_id: DriverId,
    /// The driver version it is pinned to (sha256); `None` follows the active one.
    pub driver_sha256: Option<String>,
    /// The settings JSON text drivers get: the installation's (validated when they were
    /// set) over the operator's `app_settings` for its driver.
    pub settings: Arc<str>,
    /// Sealed secrets by name.
    secrets: HashMap<String, SealedSecret>,
    store: Store,
}

impl CachedInstallation {
    /// The named secret, decrypted; `None` when the installation has none of that name.
    pub fn secret(&self, name: &str) -> Result<Option<SecretBytes>, StoreError> {
        self.secrets
            .get(name)
            .map(|sealed| self.store.open_secret(&self.id, name, &sealed.ciphertext))
            .transpose()
    }

    /// A rotated secret's previous value, while its grace period lasts at `now` (Unix
    /// seconds).
    pub fn previous_secret(&self, name: &str, now: i64) -> Result<Option<SecretBytes>, StoreError> {
        match self.secrets.get(name).and_then(|s| s.previous.as_ref()) {
            Some((sealed, until)) if *until > now => self
                .store
                .open_previous_secret(&self.id, name, sealed)
                .map(Some),
            _ => Ok(None),
        }
    }

    /// The store its state is read from.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl std::fmt::Debug for CachedInstallation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedInstallation")
            .field("id", &self.id)
            .field("driver_id", &self.driver_id)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

struct Entry<T> {
    value: T,
    until: Instant,
}

/// The cache. Cheap to share (`Arc`).
pub struct Installations {
    store: Store,
    policy: Policy,
    ttl: Duration,
    by_id: RwLock<HashMap<InstallationId, Entry<Option<Arc<CachedInstallation>>>>>,
    by_account: RwLock<HashMap<AccountKey, Entry<Option<InstallationId>>>>,
    /// Bumped by every invalidation: a load that began before one is answered but not kept,
    /// so a secret replaced while a delivery was loading the installation is not cached
    /// in its old form for a TTL.
    epoch: AtomicU64,
}

/// (driver id, account key value): how app-level deliveries find their installation.
type AccountKey = (String, String);

impl Installations {
    pub fn new(store: Store, policy: Policy, ttl: Duration) -> Self {
        Self {
            store,
            policy,
            ttl,
            by_id: RwLock::default(),
            by_account: RwLock::default(),
            epoch: AtomicU64::new(0),
        }
    }

    /// The live installation with this id, if any.
    pub async fn get(
        &self,
        id: &InstallationId,
    ) -> Result<Option<Arc<CachedInstallation>>, StoreError> {
        let now = Instant::now();
        if let Some(entry) = read(&self.by_id).get(id)
            && entry.until > now
        {
            return Ok(entry.value.clone());
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let loaded = self.load(id).await?;
        let until = now
            + if loaded.is_some() {
                self.ttl
            } else {
                NEGATIVE_TTL
            };
        self.insert_unless_invalidated(&self.by_id, epoch, id.clone(), loaded.clone(), until);
        Ok(loaded)
    }

    /// The live installation of `driver_id` holding the account `key` (app-level routing).
    pub async fn by_account_key(
        &self,
        driver_id: &DriverId,
        key: &str,
    ) -> Result<Option<Arc<CachedInstallation>>, StoreError> {
        let now = Instant::now();
        let lookup = (driver_id.to_string(), key.to_string());
        let cached = read(&self.by_account)
            .get(&lookup)
            .filter(|e| e.until > now)
            .map(|e| e.value.clone());
        let id = match cached {
            Some(id) => id,
            None => {
                let epoch = self.epoch.load(Ordering::Acquire);
                let found = self
                    .store
                    .find_by_account_key(driver_id, key)
                    .await?
                    .map(|i| i.id);
                let until = now
                    + if found.is_some() {
                        self.ttl
                    } else {
                        NEGATIVE_TTL
                    };
                self.insert_unless_invalidated(
                    &self.by_account,
                    epoch,
                    lookup,
                    found.clone(),
                    until,
                );
                found
            }
        };
        match id {
            Some(id) => self.get(&id).await,
            None => Ok(None),
        }
    }

    /// Forget what is known of `id` (after a change through the admin API).
    pub fn invalidate(&self, id: &InstallationId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        write(&self.by_id).remove(id);
        // Account keys are few per change; drop every mapping to this id.
        write(&self.by_account).retain(|_, e| e.value.as_ref() != Some(id));
    }

    /// Forget every installation of `driver_id` (another node changed one of its pins: the
    /// notification names only the driver).
    pub fn invalidate_driver(&self, driver_id: &DriverId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        write(&self.by_id)
            .retain(|_, e| e.value.as_ref().is_none_or(|i| &i.driver_id != driver_id));
        write(&self.by_account).retain(|(driver, _), _| driver != driver_id.as_str());
    }

    /// Forget every unknown-account answer (after an installation was created).
    pub fn invalidate_unknown(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        write(&self.by_account).retain(|_, e| e.value.is_some());
        write(&self.by_id).retain(|_, e| e.value.is_some());
    }

    /// Number of entries (for tests and metrics).
    pub fn len(&self) -> usize {
        read(&self.by_id).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`insert`], unless an invalidation happened since `epoch` was read (the value may
    /// predate it). Checked under the map's lock, which invalidations also take after
    /// bumping the epoch, so none slips between the check and the insert.
    fn insert_unless_invalidated<K: std::hash::Hash + Eq, T>(
        &self,
        lock: &RwLock<HashMap<K, Entry<T>>>,
        epoch: u64,
        key: K,
        value: T,
        until: Instant,
    ) {
        let mut map = write(lock);
        if self.epoch.load(Ordering::Acquire) == epoch {
            insert(&mut map, key, value, until);
        }
    }

    async fn load(
        &self,
        id: &InstallationId,
    ) -> Result<Option<Arc<CachedInstallation>>, StoreError> {
        let Some(installation) = self.store.get_installation(id).await? else {
            return Ok(None);
        };
        let secrets = self
            .store
            .sealed_secrets(id)
            .await?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let settings = self
            .policy
            .effective_settings(installation.driver_id.as_str(), &installation.settings);
        Ok(Some(Arc::new(CachedInstallation {
            settings: settings.to_string().into(),
            id: installation.id,
            driver_id: installation.driver_id,
            driver_sha256: installation.driver_sha256,
            secrets,
            store: self.store.clone(),
        })))
    }
}

fn read<K, V>(lock: &RwLock<HashMap<K, V>>) -> std::sync::RwLockReadGuard<'_, HashMap<K, V>> {
    // Every write is a single map operation: a panic elsewhere cannot leave it half-done.
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<K, V>(lock: &RwLock<HashMap<K, V>>) -> std::sync::RwLockWriteGuard<'_, HashMap<K, V>> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// Insert, keeping the map under [`MAX_ENTRIES`]: expired entries go first, then (if it is
/// still full, under a flood of distinct keys) everything, which only costs reloads.
fn insert<K: std::hash::Hash + Eq, T>(
    map: &mut HashMap<K, Entry<T>>,
    key: K,
    value: T,
    until: Instant,
) {
    if map.len() >= MAX_ENTRIES {
        let now = Instant::now();
        map.retain(|_, e| e.until > now);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
    }
    map.insert(key, Entry { value, until });
}
