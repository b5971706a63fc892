//! Driver versions: every component the host was given, content-addressed by its sha256
//! and kept with its bytes, so every node of a PostgreSQL deployment can load any of
//! them; which version of each driver is active (the newest row of its activation
//! history; rollback goes to the one active before it, as `cd -` does); and installations
//! pinned to a version.
//!
//! On PostgreSQL an activation or a pin notifies the channel [`DRIVER_CHANNEL`] in the same
//! transaction, so other nodes hear of it when it commits ([`Store::listen_driver_changes`]).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{Backend, now_rfc3339};
use crate::{DriverId, InstallationId, Store, StoreError};

/// The PostgreSQL `LISTEN/NOTIFY` channel told of every activation and pin; the payload
/// is the driver id.
pub const DRIVER_CHANNEL: &str = "sluice_drivers";

/// How a notification on [`DRIVER_CHANNEL`] names an installation whose secrets changed
/// (`installation:<id>`); any other payload is a driver id.
pub const INSTALLATION_PREFIX: &str = "installation:";

/// What another node changed (see [`Store::listen_changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An activation or a pin of this driver.
    Driver(DriverId),
    /// The secrets of this installation.
    Secrets(InstallationId),
}

/// How a version reached the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverSource {
    /// `POST /v1/drivers` (or `sluice drivers add`).
    Upload,
    /// A file in the drivers directory.
    Directory,
}

impl DriverSource {
    /// Its name in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DriverSource::Upload => "upload",
            DriverSource::Directory => "directory",
        }
    }
}

/// Why a version became the active one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationReason {
    /// It was uploaded and activated.
    Upload,
    /// It appeared in the drivers directory.
    Directory,
    /// An operator activated it by hand.
    Activate,
    /// An operator rolled back to it.
    Rollback,
}

impl ActivationReason {
    /// Its name in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationReason::Upload => "upload",
            ActivationReason::Directory => "directory",
            ActivationReason::Activate => "activate",
            ActivationReason::Rollback => "rollback",
        }
    }
}

/// A version to keep, for [`Store::put_driver_version`].
#[derive(Clone, Copy, Debug)]
pub struct NewDriverVersion<'a> {
    /// sha256 of `component`, lower-case hex.
    pub sha256: &'a str,
    /// The id its metadata gives.
    pub driver_id: &'a DriverId,
    /// Its semantic version.
    pub version: &'a str,
    /// The `sluice:driver` version it was built against.
    pub wit_version: &'a str,
    /// The component's bytes.
    pub component: &'a [u8],
    /// How it arrived.
    pub source: DriverSource,
}

/// A kept version (without its bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverVersion {
    /// sha256 of the component, lower-case hex.
    pub sha256: String,
    /// The driver's id.
    pub driver_id: DriverId,
    /// Its semantic version.
    pub version: String,
    /// The `sluice:driver` version it was built against.
    pub wit_version: String,
    /// Size of the component.
    pub size_bytes: i64,
    /// `upload` or `directory`.
    pub source: String,
    /// When it was first kept, RFC 3339 UTC.
    pub added_at: String,
    /// Whether it is its driver's active version.
    pub active: bool,
    /// Live installations pinned to it.
    pub pinned_installations: i64,
}

const VERSION_COLUMNS: &str = "v.sha256, v.driver_id, v.version, v.wit_version, v.size_bytes, \
     v.source, v.added_at, \
     (SELECT COUNT(*) FROM installations i WHERE i.driver_sha256 = v.sha256 \
      AND i.deleted_at IS NULL) AS pinned";

fn version_from_row(
    row: &AnyRow,
    active: &[(DriverId, String)],
) -> Result<DriverVersion, StoreError> {
    let sha256: String = row.try_get("sha256")?;
    let driver_id: String = row.try_get("driver_id")?;
    Ok(DriverVersion {
        active: active
            .iter()
            .any(|(d, s)| d.as_str() == driver_id && *s == sha256),
        sha256,
        driver_id: DriverId::from_db(driver_id),
        version: row.try_get("version")?,
        wit_version: row.try_get("wit_version")?,
        size_bytes: row.try_get("size_bytes")?,
        source: row.try_get("source")?,
        added_at: row.try_get("added_at")?,
        pinned_installations: row.try_get("pinned")?,
    })
}

/// A version that cannot be removed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoveRefused {
    /// It is its driver's active version.
    Active,
    /// This many live installations are pinned to it.
    Pinned(i64),
}

impl Store {
    /// Keeps a version. `false` when it was already kept (same sha256): the first
    /// arrival's record stands.
    pub async fn put_driver_version(&self, new: NewDriverVersion<'_>) -> Result<bool, StoreError> {
        let size = i64::try_from(new.component.len())
            .map_err(|_| StoreError::InvalidInput("component too large".into()))?;
        let inserted = sqlx::query(
            "INSERT INTO driver_versions \
             (sha256, driver_id, version, wit_version, size_bytes, component, source, added_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(new.sha256)
        .bind(new.driver_id.as_str())
        .bind(new.version)
        .bind(new.wit_version)
        .bind(size)
        .bind(new.component.to_vec())
        .bind(new.source.as_str())
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0;
        Ok(inserted)
    }

    /// The bytes of a kept version.
    pub async fn driver_component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT component FROM driver_versions WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("component")?),
            None => None,
        })
    }

    /// One kept version.
    pub async fn driver_version(&self, sha256: &str) -> Result<Option<DriverVersion>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM driver_versions v WHERE v.sha256 = $1"
        ))
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        let active = self.active_driver_versions().await?;
        row.map(|r| version_from_row(&r, &active)).transpose()
    }

    /// The kept versions of a driver (of every driver with `None`), newest first.
    pub async fn driver_versions(
        &self,
        driver_id: Option<&DriverId>,
    ) -> Result<Vec<DriverVersion>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM driver_versions v \
             WHERE ($1 IS NULL OR v.driver_id = $1) ORDER BY v.driver_id, v.added_at DESC, v.sha256"
        ))
        .bind(driver_id.map(DriverId::as_str))
        .fetch_all(&self.pool)
        .await?;
        let active = self.active_driver_versions().await?;
        rows.iter().map(|r| version_from_row(r, &active)).collect()
    }

    /// Each driver's active version: (driver id, sha256), by driver id.
    pub async fn active_driver_versions(&self) -> Result<Vec<(DriverId, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.driver_id, a.sha256 FROM driver_activations a \
             WHERE a.id = (SELECT MAX(b.id) FROM driver_activations b \
                           WHERE b.driver_id = a.driver_id) \
             ORDER BY a.driver_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((DriverId::from_db(r.try_get(0)?), r.try_get(1)?)))
            .collect()
    }

    /// Makes a kept version its driver's active one (a new row of the history, even when
    /// it already was). [`StoreError::NotFound`] when no version of `driver_id` has this
    /// sha256.
    pub async fn activate_driver_version(
        &self,
        driver_id: &DriverId,
        sha256: &str,
        reason: ActivationReason,
    ) -> Result<(), StoreError> {
        let (store, driver_id, sha256) = (self.clone(), driver_id.clone(), sha256.to_string());
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            // Held until commit, so a concurrent removal waits (PostgreSQL; SQLite's write
            // transactions are serialised already).
            let known = sqlx::query(&store.lock_version("FOR SHARE"))
                .bind(&sha256)
                .bind(driver_id.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !known {
                return Err(StoreError::NotFound);
            }
            sqlx::query(
                "INSERT INTO driver_activations (driver_id, sha256, reason, activated_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(driver_id.as_str())
            .bind(&sha256)
            .bind(reason.as_str())
            .bind(now_rfc3339())
            .execute(&mut *tx)
            .await?;
            store.notify_drivers(&mut tx, &driver_id).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The version that was active before the current one (the newest activation of
    /// another sha256 that is still kept), for rollback.
    pub async fn previous_driver_version(
        &self,
        driver_id: &DriverId,
    ) -> Result<Option<String>, StoreError> {
        let current = self
            .active_driver_versions()
            .await?
            .into_iter()
            .find(|(d, _)| d == driver_id)
            .map(|(_, s)| s);
        let Some(current) = current else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT sha256 FROM driver_activations WHERE driver_id = $1 AND sha256 <> $2 \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(driver_id.as_str())
        .bind(&current)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    /// Deletes a kept version and its activations. Refused while it is active or pinned;
    /// [`StoreError::NotFound`] when `driver_id` has no such version.
    pub async fn remove_driver_version(
        &self,
        driver_id: &DriverId,
        sha256: &str,
    ) -> Result<Result<(), RemoveRefused>, StoreError> {
        let (store, driver_id, sha256) = (self.clone(), driver_id.clone(), sha256.to_string());
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            let known = sqlx::query(&store.lock_version("FOR UPDATE"))
                .bind(&sha256)
                .bind(driver_id.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !known {
                return Err(StoreError::NotFound);
            }
            let active: Option<String> = sqlx::query(
                "SELECT sha256 FROM driver_activations WHERE driver_id = $1 \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(driver_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
            if active.as_deref() == Some(sha256.as_str()) {
                return Ok(Err(RemoveRefused::Active));
            }
            let pinned: i64 = sqlx::query(
                "SELECT COUNT(*) FROM installations WHERE driver_sha256 = $1 \
                 AND deleted_at IS NULL",
            )
            .bind(&sha256)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            if pinned > 0 {
                return Ok(Err(RemoveRefused::Pinned(pinned)));
            }
            for sql in [
                "DELETE FROM driver_activations WHERE sha256 = $1",
                "UPDATE installations SET driver_sha256 = NULL WHERE driver_sha256 = $1",
                "DELETE FROM driver_versions WHERE sha256 = $1",
            ] {
                sqlx::query(sql).bind(&sha256).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(Ok(()))
        })
        .await
    }

    /// Pins a live installation to a kept version of its driver (`None` unpins: it follows
    /// the active version). [`StoreError::NotFound`] for an unknown installation;
    /// [`StoreError::InvalidInput`] when the version is not one of its driver's.
    pub async fn pin_installation(
        &self,
        id: &InstallationId,
        sha256: Option<&str>,
    ) -> Result<(), StoreError> {
        let (store, id, sha256) = (self.clone(), id.clone(), sha256.map(str::to_string));
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            let driver_id: Option<DriverId> = sqlx::query(
                "SELECT driver_id FROM installations WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get(0).map(DriverId::from_db))
            .transpose()?;
            let Some(driver_id) = driver_id else {
                return Err(StoreError::NotFound);
            };
            if let Some(sha) = &sha256 {
                let of_driver = sqlx::query(&store.lock_version("FOR SHARE"))
                    .bind(sha)
                    .bind(driver_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !of_driver {
                    return Err(StoreError::InvalidInput(format!(
                        "no version {sha} of the {driver_id} driver is kept"
                    )));
                }
            }
            sqlx::query("UPDATE installations SET driver_sha256 = $2 WHERE id = $1")
                .bind(id.as_str())
                .bind(sha256.as_deref())
                .execute(&mut *tx)
                .await?;
            store.notify_drivers(&mut tx, &driver_id).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Every version a live installation is pinned to.
    pub async fn pinned_driver_versions(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT driver_sha256 FROM installations \
             WHERE driver_sha256 IS NOT NULL AND deleted_at IS NULL ORDER BY driver_sha256",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// The last `limit` raw events of a driver's installations, newest first, whatever
    /// their status: what a canary replays.
    pub async fn recent_raw_events(
        &self,
        driver_id: &DriverId,
        limit: i64,
    ) -> Result<Vec<crate::RawEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM raw_events WHERE driver_id = $1 ORDER BY id DESC LIMIT $2",
            crate::retries::RAW_COLUMNS
        ))
        .bind(driver_id.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::events::raw_event_from_row).collect()
    }

    /// The query finding version `$1` of driver `$2`, locking its row on PostgreSQL
    /// (`FOR SHARE` to use it, `FOR UPDATE` to remove it) until the transaction ends.
    fn lock_version(&self, lock: &str) -> String {
        let lock = if self.backend == Backend::Postgres {
            lock
        } else {
            ""
        };
        format!("SELECT 1 FROM driver_versions WHERE sha256 = $1 AND driver_id = $2 {lock}")
    }

    async fn notify_drivers(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        driver_id: &DriverId,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(DRIVER_CHANNEL)
                .bind(driver_id.as_str())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// On PostgreSQL, a listener told of every activation and pin any node commits, and of
    /// every change to an installation's secrets; `None` on SQLite, where this process is
    /// the only one. Notifications sent while the listener is reconnecting are lost: callers
    /// also resync now and then (drivers) or trust cached secrets only briefly.
    pub async fn listen_changes(&self) -> Result<Option<Changes>, StoreError> {
        let Some(options) = &self.pg_connect else {
            return Ok(None);
        };
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with((**options).clone());
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
        listener.listen(DRIVER_CHANNEL).await?;
        Ok(Some(Changes(listener)))
    }
}

/// Changes committed by any node (see [`Store::listen_changes`]).
pub struct Changes(sqlx::postgres::PgListener);

impl Changes {
    /// The next change; `None` for a payload that names nothing this host writes (someone
    /// else's NOTIFY on the channel). An error means the connection was lost (and the
    /// listener reconnects on the next call): changes may have been missed.
    pub async fn next(&mut self) -> Result<Option<Change>, StoreError> {
        let notification = self.0.recv().await?;
        let payload = notification.payload();
        Ok(match payload.strip_prefix(INSTALLATION_PREFIX) {
            Some(id) => InstallationId::parse(id).ok().map(Change::Secrets),
            None => DriverId::parse(payload).ok().map(Change::Driver),
        })
    }
}
