//! Installations: one customer's connection through one driver. Soft-deleted, so an id is
//! never reused and its events stay readable; at most one live installation of a driver
//! holds a given account key.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::now_rfc3339;
use crate::{DriverId, InstallationId, Store, StoreError};

/// A live (not deleted) installation as stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Installation {
    /// Its id.
    pub id: InstallationId,
    /// The driver it goes through.
    pub driver_id: DriverId,
    /// Settings object (validated against the driver's schema by the caller).
    pub settings: serde_json::Value,
    /// Provider account it routes for (app-level webhooks), unique per driver among live
    /// installations.
    pub account_key: Option<String>,
    /// Creation time, RFC 3339 UTC (`…Z`).
    pub created_at: String,
    /// The driver version (sha256) it is pinned to; `None` follows the active version.
    pub driver_sha256: Option<String>,
    /// Names of the secrets stored for it, sorted. Never the values.
    pub secret_names: Vec<String>,
}

/// What [`Store::create_installation`] needs.
#[derive(Clone, Debug)]
pub struct NewInstallation {
    /// The id (caller-chosen or [`InstallationId::generate`]).
    pub id: InstallationId,
    /// The driver it goes through.
    pub driver_id: DriverId,
    /// Settings object.
    pub settings: serde_json::Value,
    /// Optional provider account key.
    pub account_key: Option<String>,
}

fn installation_from_row(row: &AnyRow) -> Result<Installation, StoreError> {
    let settings: String = row.try_get("settings")?;
    let settings = serde_json::from_str(&settings).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Installation {
        id: InstallationId::from_db(row.try_get("id")?),
        driver_id: DriverId::from_db(row.try_get("driver_id")?),
        settings,
        account_key: row.try_get("account_key")?,
        created_at: row.try_get("created_at")?,
        driver_sha256: row.try_get("driver_sha256")?,
        secret_names: Vec::new(),
    })
}

const INSTALLATION_COLUMNS: &str =
    "id, driver_id, settings, account_key, created_at, driver_sha256";

impl Store {
    /// Creates an installation.
    ///
    /// [`StoreError::Conflict`] if the id was ever used (deleted installations keep theirs),
    /// or if another live installation of the same driver has the same account key.
    pub async fn create_installation(
        &self,
        new: NewInstallation,
    ) -> Result<Installation, StoreError> {
        let created_at = now_rfc3339();
        let settings = serde_json::to_string(&new.settings)
            .map_err(|e| StoreError::InvalidInput(format!("settings: {e}")))?;
        let result = sqlx::query(
            "INSERT INTO installations (id, driver_id, settings, account_key, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(new.id.as_str())
        .bind(new.driver_id.as_str())
        .bind(settings)
        .bind(new.account_key.clone())
        .bind(&created_at)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(Installation {
                id: new.id,
                driver_id: new.driver_id,
                settings: new.settings,
                account_key: new.account_key,
                created_at,
                driver_sha256: None,
                secret_names: Vec::new(),
            }),
            Err(e) if StoreError::is_unique_violation(&e) => {
                let taken = sqlx::query("SELECT 1 FROM installations WHERE id = $1")
                    .bind(new.id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .is_some();
                Err(StoreError::Conflict(if taken {
                    format!("installation id {} is already taken", new.id)
                } else {
                    format!(
                        "driver {} already has a live installation for this account key",
                        new.driver_id
                    )
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The live installation with this id, with its secret names.
    pub async fn get_installation(
        &self,
        id: &InstallationId,
    ) -> Result<Option<Installation>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INSTALLATION_COLUMNS} FROM installations \
             WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => {
                let mut inst = installation_from_row(&row)?;
                inst.secret_names = self.secret_names(id).await?;
                Ok(Some(inst))
            }
            None => Ok(None),
        }
    }

    /// At most `limit` live installations after the one with id `after` (the first page:
    /// `None`), in the order they were created, with the names of their secrets; and
    /// whether more follow.
    pub async fn list_installations_page(
        &self,
        after: Option<&InstallationId>,
        limit: i64,
    ) -> Result<(Vec<Installation>, bool), StoreError> {
        let limit = limit.clamp(1, 1_000);
        let position = match after {
            None => String::new(),
            // Row values: the order is (created_at, id), the cursor one of the ids.
            Some(_) => " AND (created_at, id) > \
                 (SELECT created_at, id FROM installations WHERE id = $2)"
                .to_string(),
        };
        let sql = format!(
            "SELECT {INSTALLATION_COLUMNS} FROM installations \
             WHERE deleted_at IS NULL{position} ORDER BY created_at, id LIMIT $1"
        );
        let mut query = sqlx::query(&sql).bind(limit + 1);
        if let Some(after) = after {
            query = query.bind(after.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let more = rows.len() as i64 > limit;
        let mut page = rows
            .iter()
            .take(limit as usize)
            .map(installation_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if !page.is_empty() {
            let marks: Vec<String> = (1..=page.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT installation_id, name FROM secrets WHERE installation_id IN ({}) \
                 ORDER BY installation_id, name",
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for installation in &page {
                query = query.bind(installation.id.as_str());
            }
            let mut names: std::collections::HashMap<String, Vec<String>> = Default::default();
            for row in query.fetch_all(&self.pool).await? {
                names
                    .entry(row.try_get(0)?)
                    .or_default()
                    .push(row.try_get(1)?);
            }
            for installation in &mut page {
                installation.secret_names =
                    names.remove(installation.id.as_str()).unwrap_or_default();
            }
        }
        Ok((page, more))
    }

    /// All live installations, oldest first (ties by id), with their secret names.
    pub async fn list_installations(&self) -> Result<Vec<Installation>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {INSTALLATION_COLUMNS} FROM installations \
             WHERE deleted_at IS NULL ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(installation_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let names = sqlx::query(
            "SELECT s.installation_id, s.name FROM secrets s \
             JOIN installations i ON i.id = s.installation_id \
             WHERE i.deleted_at IS NULL ORDER BY s.installation_id, s.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut by_id: std::collections::HashMap<String, Vec<String>> = Default::default();
        for row in names {
            by_id
                .entry(row.try_get(0)?)
                .or_default()
                .push(row.try_get(1)?);
        }
        for inst in &mut out {
            if let Some(names) = by_id.remove(inst.id.as_str()) {
                inst.secret_names = names;
            }
        }
        Ok(out)
    }

    /// Soft-deletes an installation (its id stays taken, its events stay readable) and
    /// deletes its secrets. `false` if there was no live installation with this id.
    pub async fn delete_installation(&self, id: &InstallationId) -> Result<bool, StoreError> {
        let (store, id) = (self.clone(), id.clone());
        self.detached(async move { store.delete_installation_now(&id).await })
            .await
    }

    async fn delete_installation_now(&self, id: &InstallationId) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE installations SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id.as_str())
        .bind(now_rfc3339())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if done {
            sqlx::query("DELETE FROM secrets WHERE installation_id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if done {
            self.secrets_changed(id).await;
        }
        Ok(done)
    }

    /// The live installation of `driver_id` bound to the provider account `account_key`
    /// (routing of app-level webhooks).
    pub async fn find_by_account_key(
        &self,
        driver_id: &DriverId,
        account_key: &str,
    ) -> Result<Option<Installation>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INSTALLATION_COLUMNS} FROM installations \
             WHERE driver_id = $1 AND account_key = $2 AND deleted_at IS NULL"
        ))
        .bind(driver_id.as_str())
        .bind(account_key)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => {
                let mut inst = installation_from_row(&row)?;
                inst.secret_names = self.secret_names(&inst.id).await?;
                Ok(Some(inst))
            }
            None => Ok(None),
        }
    }
}
