//! Outbound webhook endpoints: their URL and filter, their signing keys sealed like
//! secrets (with a rotated-out key kept through its grace), and removal with everything
//! queued for them.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::id::EndpointId;
use crate::store::now_rfc3339;
use crate::{DriverId, InstallationId, SecretBytes, Store, StoreError, StoredEvent};

/// The sealed-value slot of an endpoint's signing key.
fn secret_aad(id: &EndpointId) -> Vec<u8> {
    crate::crypto::aad(&format!("endpoint:{id}"), "signing-secret")
}

/// What an endpoint receives: every field given narrows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointFilter {
    /// Only this installation's events.
    pub installation_id: Option<InstallationId>,
    /// Only events of this driver's installations.
    pub driver_id: Option<DriverId>,
    /// Only these CloudEvent types; `None` for all.
    pub event_types: Option<Vec<String>>,
}

impl EndpointFilter {
    /// Whether the endpoint receives `event`.
    pub fn matches(&self, event: &StoredEvent) -> bool {
        self.installation_id
            .as_ref()
            .is_none_or(|i| *i == event.installation_id)
            && self
                .driver_id
                .as_ref()
                .is_none_or(|d| *d == event.driver_id)
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.contains(&event.event_type))
    }
}

/// A new endpoint, for [`Store::create_endpoint`].
#[derive(Clone, Debug, Default)]
pub struct NewEndpoint {
    /// Where deliveries are posted.
    pub url: String,
    /// The operator's note.
    pub description: Option<String>,
    /// What it receives.
    pub filter: EndpointFilter,
    /// Deliveries per second at most; `None` for no limit.
    pub rate_limit_per_sec: Option<i64>,
    /// Created disabled (nothing sent until enabled; events still wait for it).
    pub disabled: bool,
}

/// A stored endpoint (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its id.
    pub id: EndpointId,
    /// Where deliveries are posted.
    pub url: String,
    /// The operator's note.
    pub description: Option<String>,
    /// What it receives.
    pub filter: EndpointFilter,
    /// Deliveries per second at most.
    pub rate_limit_per_sec: Option<i64>,
    /// Disabled by the operator.
    pub disabled: bool,
    /// While a rotated-out key is still signed with: until when.
    pub previous_secret_until: Option<i64>,
    /// When it was created, RFC 3339 UTC.
    pub created_at: String,
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct EndpointUpdate {
    /// A new URL.
    pub url: Option<String>,
    /// A new note (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// A new filter, whole.
    pub filter: Option<EndpointFilter>,
    /// A new rate limit (`Some(None)` lifts it).
    pub rate_limit_per_sec: Option<Option<i64>>,
    /// Disable or enable.
    pub disabled: Option<bool>,
}

/// The keys an endpoint's deliveries are signed with now.
pub struct SigningKeys {
    /// The current key.
    pub current: SecretBytes,
    /// The rotated-out key, while its grace lasts.
    pub previous: Option<SecretBytes>,
}

const ENDPOINT_COLUMNS: &str = "id, url, description, installation_id, driver_id, event_types, \
    rate_limit_per_sec, disabled, previous_secret_until, created_at";

fn endpoint_from_row(row: &AnyRow) -> Result<Endpoint, StoreError> {
    let types: Option<String> = row.try_get("event_types")?;
    let event_types = types
        .map(|t| serde_json::from_str::<Vec<String>>(&t))
        .transpose()
        .map_err(|e| sqlx::Error::Decode(e.into()))?;
    Ok(Endpoint {
        id: EndpointId::from_db(row.try_get("id")?),
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        filter: EndpointFilter {
            installation_id: row
                .try_get::<Option<String>, _>("installation_id")?
                .map(InstallationId::from_db),
            driver_id: row
                .try_get::<Option<String>, _>("driver_id")?
                .map(DriverId::from_db),
            event_types,
        },
        rate_limit_per_sec: row.try_get("rate_limit_per_sec")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        previous_secret_until: row.try_get("previous_secret_until")?,
        created_at: row.try_get("created_at")?,
    })
}

fn types_json(filter: &EndpointFilter) -> Option<String> {
    filter
        .event_types
        .as_ref()
        .map(|t| serde_json::Value::from(t.clone()).to_string())
}

impl Store {
    /// Creates an endpoint signing with `secret`. It receives events committed from now on
    /// (older ones by [`Store::replay_endpoint_since`]).
    pub async fn create_endpoint(
        &self,
        new: &NewEndpoint,
        secret: &[u8],
    ) -> Result<Endpoint, StoreError> {
        let id = EndpointId::generate();
        let sealed = self.cipher.seal(&secret_aad(&id), secret)?;
        let start = self.log_end().await?;
        let (store, new, created_at) = (self.clone(), new.clone(), now_rfc3339());
        let id2 = id.clone();
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            sqlx::query(
                "INSERT INTO endpoints (id, url, description, installation_id, driver_id, \
                   event_types, rate_limit_per_sec, disabled, secret, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(id2.as_str())
            .bind(&new.url)
            .bind(&new.description)
            .bind(
                new.filter
                    .installation_id
                    .as_ref()
                    .map(|i| i.as_str().to_owned()),
            )
            .bind(new.filter.driver_id.as_ref().map(DriverId::as_str))
            .bind(types_json(&new.filter))
            .bind(new.rate_limit_per_sec)
            .bind(i64::from(new.disabled))
            .bind(sealed)
            .bind(&created_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO delivery_sinks (id, cursor_tx, cursor_seq) VALUES ($1, $2, $3)",
            )
            .bind(id2.as_str())
            .bind(start.tx)
            .bind(start.seq)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        self.endpoint(&id).await?.ok_or(StoreError::NotFound)
    }

    /// A live endpoint.
    pub async fn endpoint(&self, id: &EndpointId) -> Result<Option<Endpoint>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = $1 AND deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    /// The live endpoints, oldest first.
    pub async fn list_endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE deleted_at IS NULL ORDER BY id"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    /// Applies `update`; [`StoreError::NotFound`] for an unknown or deleted endpoint.
    pub async fn update_endpoint(
        &self,
        id: &EndpointId,
        update: &EndpointUpdate,
    ) -> Result<Endpoint, StoreError> {
        let Some(mut e) = self.endpoint(id).await? else {
            return Err(StoreError::NotFound);
        };
        if let Some(url) = &update.url {
            e.url = url.clone();
        }
        if let Some(description) = &update.description {
            e.description = description.clone();
        }
        if let Some(filter) = &update.filter {
            e.filter = filter.clone();
        }
        if let Some(limit) = update.rate_limit_per_sec {
            e.rate_limit_per_sec = limit;
        }
        if let Some(disabled) = update.disabled {
            e.disabled = disabled;
        }
        let updated = sqlx::query(
            "UPDATE endpoints SET url = $2, description = $3, installation_id = $4, \
               driver_id = $5, event_types = $6, rate_limit_per_sec = $7, disabled = $8 \
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id.as_str())
        .bind(&e.url)
        .bind(&e.description)
        .bind(
            e.filter
                .installation_id
                .as_ref()
                .map(|i| i.as_str().to_owned()),
        )
        .bind(e.filter.driver_id.as_ref().map(DriverId::as_str))
        .bind(types_json(&e.filter))
        .bind(e.rate_limit_per_sec)
        .bind(i64::from(e.disabled))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(e)
    }

    /// Signs with `secret` from now on; the current key is signed with beside it until
    /// `previous_until` (a grace of zero drops it at once).
    pub async fn rotate_endpoint_secret(
        &self,
        id: &EndpointId,
        secret: &[u8],
        previous_until: i64,
        now: i64,
    ) -> Result<Endpoint, StoreError> {
        let sealed = self.cipher.seal(&secret_aad(id), secret)?;
        let sql = if previous_until > now {
            "UPDATE endpoints SET previous_secret = secret, previous_secret_until = $3, \
               secret = $2 WHERE id = $1 AND deleted_at IS NULL"
        } else {
            "UPDATE endpoints SET previous_secret = NULL, previous_secret_until = NULL, \
               secret = $2 WHERE id = $1 AND deleted_at IS NULL AND $3 = $3"
        };
        let updated = sqlx::query(sql)
            .bind(id.as_str())
            .bind(sealed)
            .bind(previous_until)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        self.endpoint(id).await?.ok_or(StoreError::NotFound)
    }

    /// The keys to sign with at `now`.
    pub async fn endpoint_signing_keys(
        &self,
        id: &EndpointId,
        now: i64,
    ) -> Result<SigningKeys, StoreError> {
        let row = sqlx::query(
            "SELECT secret, previous_secret, previous_secret_until FROM endpoints \
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let aad = secret_aad(id);
        let current: Vec<u8> = row.try_get(0)?;
        let previous: Option<Vec<u8>> = row.try_get(1)?;
        let until: Option<i64> = row.try_get(2)?;
        let previous = match (previous, until) {
            (Some(sealed), Some(until)) if until > now => Some(self.cipher.open(&aad, &sealed)?),
            _ => None,
        };
        Ok(SigningKeys {
            current: self.cipher.open(&aad, &current)?,
            previous,
        })
    }

    /// Deletes an endpoint (its id stays taken) with its outbox and attempts; `false` if
    /// there was no live endpoint with this id.
    pub async fn delete_endpoint(&self, id: &EndpointId) -> Result<bool, StoreError> {
        let (store, id) = (self.clone(), id.clone());
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            let deleted = sqlx::query(
                "UPDATE endpoints SET deleted_at = $2, secret = $3, previous_secret = NULL \
                 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(id.as_str())
            .bind(now_rfc3339())
            .bind(Vec::<u8>::new())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            for table in ["deliveries", "delivery_attempts"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE endpoint_id = $1"))
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM delivery_sinks WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(deleted > 0)
        })
        .await
    }
}
