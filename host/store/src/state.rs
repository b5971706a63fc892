//! Driver state: a small key/value map per installation (cursors, token expiry). It is
//! written only through the ingestion commit, with the events it goes with.

use std::collections::HashMap;

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

    /// The size of each of an installation's state values, by key (what a budget counts:
    /// see the host's state capability).
    pub async fn state_sizes(
        &self,
        id: &InstallationId,
    ) -> Result<HashMap<String, usize>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, CAST(LENGTH(value) AS BIGINT) FROM driver_state WHERE installation_id = $1",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let key: String = r.try_get(0)?;
                let len: i64 = r.try_get(1)?;
                Ok((key, usize::try_from(len).unwrap_or(usize::MAX)))
            })
            .collect()
    }
}
