//! Driver state: a small key/value map per installation (cursors, token expiry). It is
//! written only through the ingestion commit, with the events it goes with.

use sqlx::Row;

use crate::{InstallationId, Store, StoreError};

impl Store {
    /// A driver state value (cursor, token expiry, …) of an installation. State is written
    /// only through [`Store::commit_delivery`], atomically with the events it goes with.
    pub async fn get_state(
        &self,
        id: &InstallationId,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row =
            sqlx::query("SELECT value FROM driver_state WHERE installation_id = $1 AND key = $2")
                .bind(id.as_str())
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }
}
