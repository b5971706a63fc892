//! The authorization lifecycle: secret rotation with a grace period, pending OAuth flows
//! (single-use states), each installation's grant (status, scopes, token expiry) and the
//! refresh bookkeeping that keeps one refresh per installation across nodes (a lease).
//!
//! Times here are Unix seconds chosen by the caller, so the host's clock (pinnable in
//! tests) decides what has expired. Token values never pass through this module except
//! as secrets, sealed like every other secret.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::crypto::SecretBytes;
use crate::secrets::SecretAction;
use crate::store::now_rfc3339;
use crate::{InstallationId, Store, StoreError};

/// Where an installation's authorization stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthStatus {
    /// Not authorized yet.
    Pending,
    /// Authorized; its tokens are usable (or refreshable).
    Active,
    /// Authorization must be granted again (scopes missing, refresh token refused,
    /// refresh failing for too long); the reason says which.
    NeedsReauth,
    /// The provider or the operator revoked it.
    Revoked,
}

impl AuthStatus {
    /// The stored and displayed word.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthStatus::Pending => "pending",
            AuthStatus::Active => "active",
            AuthStatus::NeedsReauth => "needs_reauth",
            AuthStatus::Revoked => "revoked",
        }
    }

    fn parse(text: &str) -> AuthStatus {
        match text {
            "active" => AuthStatus::Active,
            "needs_reauth" => AuthStatus::NeedsReauth,
            "revoked" => AuthStatus::Revoked,
            _ => AuthStatus::Pending,
        }
    }
}

/// An installation's authorization as stored. Never a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRecord {
    /// Where it stands.
    pub status: AuthStatus,
    /// Why, for `needs_reauth` and `revoked`.
    pub reason: Option<String>,
    /// Scopes the provider granted.
    pub scopes: Vec<String>,
    /// When the access token expires (Unix seconds); `None` when it does not.
    pub token_expires_at: Option<i64>,
    /// When it was last authorized, RFC 3339.
    pub authorized_at: Option<String>,
    /// When its token was last refreshed, RFC 3339.
    pub refreshed_at: Option<String>,
    /// Refreshes failed in a row.
    pub refresh_failures: i64,
    /// First failure of the current run (Unix seconds).
    pub failing_since: Option<i64>,
    /// Earliest next refresh attempt after a failure (Unix seconds).
    pub next_refresh_at: Option<i64>,
    /// The last refresh failure.
    pub last_error: Option<String>,
}

/// What a successful authorization or refresh gave.
#[derive(Clone, Debug, Default)]
pub struct GrantUpdate {
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When the new access token expires (Unix seconds).
    pub token_expires_at: Option<i64>,
    /// The provider account it is for, stored as the installation's account key (app-level
    /// routing) when given.
    pub account_key: Option<String>,
    /// `Active`, or `NeedsReauth` with the reason (scopes missing).
    pub status: Option<(AuthStatus, Option<String>)>,
    /// Whether this came from a refresh (else an authorization).
    pub refreshed: bool,
}

/// A refresh failure to record.
#[derive(Clone, Debug)]
pub struct RefreshFailure {
    /// What went wrong (no secret in it).
    pub error: String,
    /// When to try again (Unix seconds).
    pub retry_at: i64,
    /// Set when the installation must be authorized again, with the reason.
    pub needs_reauth: Option<String>,
}

/// A pending OAuth authorization, taken (and so used up) by [`Store::take_oauth_state`].
#[derive(Debug)]
pub struct OAuthState {
    /// The installation it was started for.
    pub installation_id: InstallationId,
    /// The `redirect_uri` the authorization was requested with.
    pub redirect_uri: String,
    /// The PKCE verifier.
    pub code_verifier: SecretBytes,
    /// When it expires (Unix seconds).
    pub expires_at: i64,
}

/// The sealing label of a secret's previous value: a slot of its own, so a stored
/// previous value cannot be passed off as the primary one.
fn previous_label(name: &str) -> String {
    format!("{name}#previous")
}

/// The sealing label of a PKCE verifier.
const VERIFIER_LABEL: &str = "#oauth-code-verifier";

fn state_hash(state: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(state.as_bytes()))
}

const AUTH_COLUMNS: &str = "status, reason, scopes, token_expires_at, authorized_at, \
     refreshed_at, refresh_failures, failing_since, next_refresh_at, last_error";

fn auth_from_row(row: &AnyRow) -> Result<AuthRecord, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(AuthRecord {
        status: AuthStatus::parse(&row.try_get::<String, _>("status")?),
        reason: row.try_get("reason")?,
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        token_expires_at: row.try_get("token_expires_at")?,
        authorized_at: row.try_get("authorized_at")?,
        refreshed_at: row.try_get("refreshed_at")?,
        refresh_failures: row.try_get("refresh_failures")?,
        failing_since: row.try_get("failing_since")?,
        next_refresh_at: row.try_get("next_refresh_at")?,
        last_error: row.try_get("last_error")?,
    })
}

/// Creates the installation's auth row as `pending` when it has none (inside `tx`).
const ENSURE_AUTH: &str = "INSERT INTO installation_auth (installation_id, status, scopes, updated_at) \
     VALUES ($1, 'pending', '[]', $2) ON CONFLICT (installation_id) DO NOTHING";

impl Store {
    // ---- rotation -----------------------------------------------------------------------

    /// Makes `value` the primary value of the secret `name` and keeps the value it replaces
    /// for `grace_secs` (until `now + grace_secs`), when webhook checks still accept it.
    /// Returns when the previous value stops being accepted (`None` with no grace).
    ///
    /// [`StoreError::NotFound`] if the installation is not live, `InvalidInput` if the
    /// secret has no value to rotate from.
    pub async fn rotate_secret(
        &self,
        id: &InstallationId,
        name: &str,
        value: &[u8],
        grace_secs: u64,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let ciphertext = self.cipher.encrypt(id, name, value)?;
        let (store, id, name) = (self.clone(), id.clone(), name.to_string());
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            let live =
                sqlx::query("SELECT 1 FROM installations WHERE id = $1 AND deleted_at IS NULL")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
            if !live {
                return Err(StoreError::NotFound);
            }
            let current: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT ciphertext FROM secrets WHERE installation_id = $1 AND name = $2",
            )
            .bind(id.as_str())
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(current) = current else {
                return Err(StoreError::InvalidInput(format!(
                    "secret {name:?} has no value to rotate from; set it first"
                )));
            };
            let until = (grace_secs > 0).then(|| now.saturating_add_unsigned(grace_secs));
            let previous = match until {
                Some(_) => {
                    let plain = store.cipher.decrypt(&id, &name, &current)?;
                    Some(
                        store
                            .cipher
                            .encrypt(&id, &previous_label(&name), plain.expose())?,
                    )
                }
                None => None,
            };
            let at = now_rfc3339();
            sqlx::query(
                "UPDATE secrets SET ciphertext = $3, updated_at = $4, previous_ciphertext = $5, \
                 previous_until = $6 WHERE installation_id = $1 AND name = $2",
            )
            .bind(id.as_str())
            .bind(name.as_str())
            .bind(ciphertext)
            .bind(&at)
            .bind(previous)
            .bind(until)
            .execute(&mut *tx)
            .await?;
            audit(&mut tx, &id, &name, SecretAction::Rotated, &at).await?;
            tx.commit().await?;
            store.secrets_changed(&id).await;
            Ok(until)
        })
        .await
    }

    /// The previous value of a rotated secret, while its grace period lasts at `now`.
    pub async fn previous_secret(
        &self,
        id: &InstallationId,
        name: &str,
        now: i64,
    ) -> Result<Option<SecretBytes>, StoreError> {
        let row = sqlx::query(
            "SELECT previous_ciphertext, previous_until FROM secrets \
             WHERE installation_id = $1 AND name = $2 AND previous_until > $3",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => {
                let sealed: Option<Vec<u8>> = row.try_get(0)?;
                sealed
                    .map(|s| self.open_previous_secret(id, name, &s))
                    .transpose()
            }
            None => Ok(None),
        }
    }

    /// Decrypt a previous value from [`Store::sealed_secrets`].
    pub fn open_previous_secret(
        &self,
        id: &InstallationId,
        name: &str,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, StoreError> {
        self.cipher.decrypt(id, &previous_label(name), ciphertext)
    }

    /// Drops every previous value whose grace period is over at `now`, recording each as
    /// `retired` in the audit log. Returns the (installation, secret) pairs retired.
    /// Readers already ignore an expired previous value; this makes it gone.
    pub async fn retire_expired_secrets(
        &self,
        now: i64,
    ) -> Result<Vec<(InstallationId, String)>, StoreError> {
        let store = self.clone();
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            let rows = sqlx::query(
                "SELECT installation_id, name FROM secrets \
                 WHERE previous_until IS NOT NULL AND previous_until <= $1",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let mut retired = Vec::with_capacity(rows.len());
            let at = now_rfc3339();
            for row in rows {
                let id = InstallationId::from_db(row.try_get(0)?);
                let name: String = row.try_get(1)?;
                sqlx::query(
                    "UPDATE secrets SET previous_ciphertext = NULL, previous_until = NULL \
                     WHERE installation_id = $1 AND name = $2",
                )
                .bind(id.as_str())
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
                audit(&mut tx, &id, &name, SecretAction::Retired, &at).await?;
                retired.push((id, name));
            }
            tx.commit().await?;
            // The cache checks the grace period itself; announced all the same, so every
            // change to a secret reaches the caches one way.
            let mut changed: Vec<&InstallationId> = retired.iter().map(|(id, _)| id).collect();
            changed.dedup();
            for id in changed {
                store.secrets_changed(id).await;
            }
            Ok(retired)
        })
        .await
    }

    /// Stores secrets captured from a provider's response (OAuth tokens) at once, each
    /// audited as `captured`. Called as the response arrives, before the guest sees it: a
    /// rotated refresh token is the only valid one, so it must be durable before anything
    /// else happens.
    pub async fn put_captured_secrets(
        &self,
        id: &InstallationId,
        secrets: &[(String, SecretBytes)],
    ) -> Result<(), StoreError> {
        let mut sealed = Vec::with_capacity(secrets.len());
        for (name, value) in secrets {
            sealed.push((name.clone(), self.cipher.encrypt(id, name, value.expose())?));
        }
        let (store, id) = (self.clone(), id.clone());
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            let at = now_rfc3339();
            for (name, ciphertext) in sealed {
                let stored = sqlx::query(
                    "INSERT INTO secrets (installation_id, name, ciphertext, updated_at) \
                     SELECT $1, $2, $3, $4 WHERE EXISTS \
                       (SELECT 1 FROM installations WHERE id = $1 AND deleted_at IS NULL) \
                     ON CONFLICT (installation_id, name) DO UPDATE SET \
                       ciphertext = excluded.ciphertext, updated_at = excluded.updated_at, \
                       previous_ciphertext = NULL, previous_until = NULL",
                )
                .bind(id.as_str())
                .bind(name.as_str())
                .bind(ciphertext)
                .bind(&at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if stored == 0 {
                    return Err(StoreError::NotFound);
                }
                audit(&mut tx, &id, &name, SecretAction::Captured, &at).await?;
            }
            tx.commit().await?;
            store.secrets_changed(&id).await;
            Ok(())
        })
        .await
    }

    /// Forgets the tokens of a revoked installation: every secret the host captured from a
    /// provider's response (never one the operator set), each audited as `deleted`.
    pub async fn forget_tokens(&self, id: &InstallationId) -> Result<Vec<String>, StoreError> {
        let (store, id) = (self.clone(), id.clone());
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT name FROM secret_audit WHERE installation_id = $1 AND action = $2",
            )
            .bind(id.as_str())
            .bind(SecretAction::Captured.as_str())
            .fetch_all(&mut *tx)
            .await?;
            let at = now_rfc3339();
            let mut forgotten = Vec::new();
            for name in names {
                let deleted =
                    sqlx::query("DELETE FROM secrets WHERE installation_id = $1 AND name = $2")
                        .bind(id.as_str())
                        .bind(name.as_str())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                if deleted > 0 {
                    audit(&mut tx, &id, &name, SecretAction::Deleted, &at).await?;
                    forgotten.push(name);
                }
            }
            tx.commit().await?;
            if !forgotten.is_empty() {
                store.secrets_changed(&id).await;
            }
            Ok(forgotten)
        })
        .await
    }

    // ---- OAuth states -------------------------------------------------------------------

    /// Records a pending authorization for `state` (the value sent to the provider).
    pub async fn put_oauth_state(
        &self,
        state: &str,
        id: &InstallationId,
        redirect_uri: &str,
        code_verifier: &[u8],
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let sealed = self.cipher.encrypt(id, VERIFIER_LABEL, code_verifier)?;
        // Expired states are useless; dropping them here keeps the table small.
        sqlx::query("DELETE FROM oauth_states WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO oauth_states (state_hash, installation_id, redirect_uri, code_verifier, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(state_hash(state))
        .bind(id.as_str())
        .bind(redirect_uri)
        .bind(sealed)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes the pending authorization for `state`, which can then never be taken again
    /// (also when it has expired: the caller checks `expires_at`). `None` for a state that
    /// was never issued or was already used.
    pub async fn take_oauth_state(&self, state: &str) -> Result<Option<OAuthState>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM oauth_states WHERE state_hash = $1 \
             RETURNING installation_id, redirect_uri, code_verifier, expires_at",
        )
        .bind(state_hash(state))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id = InstallationId::from_db(row.try_get(0)?);
        let sealed: Vec<u8> = row.try_get(2)?;
        Ok(Some(OAuthState {
            code_verifier: self.cipher.decrypt(&id, VERIFIER_LABEL, &sealed)?,
            redirect_uri: row.try_get(1)?,
            expires_at: row.try_get(3)?,
            installation_id: id,
        }))
    }

    // ---- grants and refresh -------------------------------------------------------------

    /// The installation's authorization record, if it has one.
    pub async fn auth_record(&self, id: &InstallationId) -> Result<Option<AuthRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {AUTH_COLUMNS} FROM installation_auth WHERE installation_id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(auth_from_row).transpose()
    }

    /// Every installation's authorization record, by installation id.
    pub async fn auth_records(
        &self,
    ) -> Result<std::collections::HashMap<InstallationId, AuthRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT installation_id, {AUTH_COLUMNS} FROM installation_auth"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    InstallationId::from_db(row.try_get("installation_id")?),
                    auth_from_row(row)?,
                ))
            })
            .collect()
    }

    /// Records a successful authorization or refresh: status, scopes, expiry, and the
    /// account key when the grant names one. Clears the failure run and releases the
    /// refresh lease. [`StoreError::Conflict`] when another live installation of the same
    /// driver holds that account key.
    pub async fn record_grant(
        &self,
        id: &InstallationId,
        grant: GrantUpdate,
    ) -> Result<(), StoreError> {
        let (store, id) = (self.clone(), id.clone());
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            let at = now_rfc3339();
            if let Some(key) = &grant.account_key {
                let updated = sqlx::query(
                    "UPDATE installations SET account_key = $2 WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id.as_str())
                .bind(key.as_str())
                .execute(&mut *tx)
                .await;
                match updated {
                    Ok(done) if done.rows_affected() == 0 => return Err(StoreError::NotFound),
                    Ok(_) => {}
                    Err(e) if StoreError::is_unique_violation(&e) => {
                        return Err(StoreError::Conflict(format!(
                            "another live installation of this driver is connected to account {key}"
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            sqlx::query(ENSURE_AUTH)
                .bind(id.as_str())
                .bind(&at)
                .execute(&mut *tx)
                .await?;
            let (status, reason) = grant.status.unwrap_or((AuthStatus::Active, None));
            let scopes = serde_json::to_string(&grant.scopes)
                .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
            sqlx::query(&format!(
                "UPDATE installation_auth SET status = $2, reason = $3, scopes = $4, \
                 token_expires_at = $5, {} = $6, refresh_failures = 0, failing_since = NULL, \
                 next_refresh_at = NULL, last_error = NULL, lease_owner = NULL, \
                 lease_until = NULL, updated_at = $6 WHERE installation_id = $1",
                if grant.refreshed { "refreshed_at" } else { "authorized_at" }
            ))
            .bind(id.as_str())
            .bind(status.as_str())
            .bind(reason)
            .bind(scopes)
            .bind(grant.token_expires_at)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Sets the installation's status (and reason), e.g. `revoked` when the provider says
    /// so, or `needs_reauth` when granted scopes fall short.
    pub async fn set_auth_status(
        &self,
        id: &InstallationId,
        status: AuthStatus,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let (store, id, reason) = (self.clone(), id.clone(), reason.map(str::to_owned));
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            let at = now_rfc3339();
            sqlx::query(ENSURE_AUTH)
                .bind(id.as_str())
                .bind(&at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE installation_auth SET status = $2, reason = $3, updated_at = $4 \
                 WHERE installation_id = $1",
            )
            .bind(id.as_str())
            .bind(status.as_str())
            .bind(reason)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Takes the refresh lease of an installation for `owner` until `until`, unless another
    /// owner holds an unexpired one. Exactly one caller wins, across nodes: the update is
    /// one statement on one row.
    pub async fn take_refresh_lease(
        &self,
        id: &InstallationId,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        sqlx::query(ENSURE_AUTH)
            .bind(id.as_str())
            .bind(now_rfc3339())
            .execute(&self.pool)
            .await?;
        let taken = sqlx::query(
            "UPDATE installation_auth SET lease_owner = $2, lease_until = $3 \
             WHERE installation_id = $1 \
               AND (lease_until IS NULL OR lease_until <= $4 OR lease_owner = $2)",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(taken > 0)
    }

    /// Releases a refresh lease `owner` holds (after a refresh that recorded nothing).
    pub async fn release_refresh_lease(
        &self,
        id: &InstallationId,
        owner: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE installation_auth SET lease_owner = NULL, lease_until = NULL \
             WHERE installation_id = $1 AND lease_owner = $2",
        )
        .bind(id.as_str())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed refresh: one more in the run, when to retry, and `needs_reauth`
    /// when the failure says so. Releases the lease.
    pub async fn record_refresh_failure(
        &self,
        id: &InstallationId,
        failure: RefreshFailure,
        now: i64,
    ) -> Result<(), StoreError> {
        let (status, reason) = match &failure.needs_reauth {
            Some(reason) => (Some(AuthStatus::NeedsReauth.as_str()), Some(reason.clone())),
            None => (None, None),
        };
        sqlx::query(
            "UPDATE installation_auth SET refresh_failures = refresh_failures + 1, \
             failing_since = COALESCE(failing_since, $2), next_refresh_at = $3, \
             last_error = $4, status = COALESCE($5, status), reason = COALESCE($6, reason), \
             lease_owner = NULL, lease_until = NULL, updated_at = $7 \
             WHERE installation_id = $1",
        )
        .bind(id.as_str())
        .bind(now)
        .bind(failure.retry_at)
        .bind(failure.error)
        .bind(status)
        .bind(reason)
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Live, active installations whose token expires before `horizon` and whose next
    /// attempt is due at `now`: what the host refreshes ahead of expiry.
    pub async fn due_refreshes(
        &self,
        horizon: i64,
        now: i64,
    ) -> Result<Vec<InstallationId>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.installation_id FROM installation_auth a \
             JOIN installations i ON i.id = a.installation_id \
             WHERE i.deleted_at IS NULL AND a.status = 'active' \
               AND a.token_expires_at IS NOT NULL AND a.token_expires_at <= $1 \
               AND (a.next_refresh_at IS NULL OR a.next_refresh_at <= $2) \
             ORDER BY a.token_expires_at",
        )
        .bind(horizon)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(InstallationId::from_db(r.try_get(0)?)))
            .collect()
    }
}

async fn audit(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &InstallationId,
    name: &str,
    action: SecretAction,
    at: &str,
) -> Result<(), StoreError> {
    sqlx::query(crate::commit::AUDIT_SECRET)
        .bind(id.as_str())
        .bind(name)
        .bind(action.as_str())
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
