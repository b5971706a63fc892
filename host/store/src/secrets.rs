//! Installation secrets at rest: sealed under the master key, bound to their
//! (installation, name) slot, with an audit log of every change; only names are ever
//! listed. Rotation and retirement are the authorization lifecycle's (`auth`).

use sqlx::Row;

use crate::store::now_rfc3339;
use crate::{InstallationId, SecretBytes, Store, StoreError};

/// How a secret changed, as the audit log says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretAction {
    /// Set through the admin API.
    Set,
    /// Captured by the host from a provider's response during a driver call (an OAuth
    /// token), committed as the response arrived.
    Captured,
    /// Replaced through the rotation API; the previous value stays valid for webhook checks
    /// during the grace period.
    Rotated,
    /// A rotated secret's previous value, dropped at the end of its grace period.
    Retired,
    /// Removed: a captured token of an installation whose authorization was revoked.
    Deleted,
}

impl SecretAction {
    /// The audit log's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretAction::Set => "set",
            SecretAction::Captured => "captured",
            SecretAction::Rotated => "rotated",
            SecretAction::Retired => "retired",
            SecretAction::Deleted => "deleted",
        }
    }
}

/// One entry of an installation's secret audit log. Never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretChange {
    /// The secret's name.
    pub name: String,
    /// `set`, `captured`, `rotated` or `retired` ([`SecretAction`]).
    pub action: String,
    /// When, RFC 3339 UTC.
    pub at: String,
}

/// One secret as stored, still sealed.
#[derive(Clone, Debug)]
pub struct SealedSecret {
    /// Its name.
    pub name: String,
    /// The primary value, sealed.
    pub ciphertext: Vec<u8>,
    /// A rotated secret's previous value, sealed, and when its grace period ends (Unix
    /// seconds).
    pub previous: Option<(Vec<u8>, i64)>,
}

impl Store {
    /// Stores (or replaces) the secret `name` of a live installation, encrypted. A value
    /// set this way replaces the old one at once: a rotated secret's previous value is
    /// dropped too (rotate with [`Store::rotate_secret`] to keep it for a grace period).
    /// [`StoreError::NotFound`] if the installation is unknown or deleted.
    pub async fn put_secret(
        &self,
        id: &InstallationId,
        name: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let ciphertext = self.cipher.encrypt(id, name, value)?;
        let now = now_rfc3339();
        // The secret and its audit entry commit together, or neither does.
        let mut tx = self.begin_write().await?;
        let stored = sqlx::query(
            "INSERT INTO secrets (installation_id, name, ciphertext, updated_at) \
             SELECT $1, $2, $3, $4 WHERE EXISTS \
               (SELECT 1 FROM installations WHERE id = $1 AND deleted_at IS NULL) \
             ON CONFLICT (installation_id, name) \
             DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at, \
               previous_ciphertext = NULL, previous_until = NULL",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(ciphertext)
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if stored == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(crate::commit::AUDIT_SECRET)
            .bind(id.as_str())
            .bind(name)
            .bind(SecretAction::Set.as_str())
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.secrets_changed(id).await;
        Ok(())
    }

    /// Every change to an installation's secrets, oldest first: which secret, how, when.
    pub async fn secret_audit(&self, id: &InstallationId) -> Result<Vec<SecretChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, action, at FROM secret_audit WHERE installation_id = $1 ORDER BY seq",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SecretChange {
                    name: row.try_get(0)?,
                    action: row.try_get(1)?,
                    at: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Decrypts the secret `name` of an installation; `None` if it is not set.
    /// [`StoreError::Crypto`] if it cannot be decrypted (wrong master key, altered row).
    pub async fn get_secret(
        &self,
        id: &InstallationId,
        name: &str,
    ) -> Result<Option<SecretBytes>, StoreError> {
        let row =
            sqlx::query("SELECT ciphertext FROM secrets WHERE installation_id = $1 AND name = $2")
                .bind(id.as_str())
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some(row) => {
                let ciphertext: Vec<u8> = row.try_get(0)?;
                Ok(Some(self.cipher.decrypt(id, name, &ciphertext)?))
            }
            None => Ok(None),
        }
    }

    /// The secrets of an installation still sealed: for callers that keep them and open
    /// one when it is used ([`Store::open_secret`], [`Store::open_previous_secret`]), so no
    /// plaintext lingers in a cache.
    pub async fn sealed_secrets(
        &self,
        id: &InstallationId,
    ) -> Result<Vec<SealedSecret>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, ciphertext, previous_ciphertext, previous_until FROM secrets \
             WHERE installation_id = $1",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let previous: Option<Vec<u8>> = r.try_get(2)?;
                let until: Option<i64> = r.try_get(3)?;
                Ok(SealedSecret {
                    name: r.try_get(0)?,
                    ciphertext: r.try_get(1)?,
                    previous: previous.zip(until),
                })
            })
            .collect()
    }

    /// Decrypt a ciphertext from [`Store::sealed_secrets`] of the same installation and name.
    pub fn open_secret(
        &self,
        id: &InstallationId,
        name: &str,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, StoreError> {
        self.cipher.decrypt(id, name, ciphertext)
    }

    /// Names of the secrets stored for an installation, sorted.
    pub async fn secret_names(&self, id: &InstallationId) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT name FROM secrets WHERE installation_id = $1 ORDER BY name")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }
}
