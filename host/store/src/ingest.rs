//! The ingestion commit and the read side of events (cursor API, raw events, dead letters).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::crypto::SecretBytes;
use crate::store::Backend;
use crate::{EventId, InstallationId, Store, StoreError};

/// Key of the PostgreSQL transaction-scoped advisory lock that serialises ingestion commits
/// (`"sluice\0\x01"` as a big-endian integer).
const COMMIT_LOCK_KEY: i64 = 0x736c_7569_6365_0001;

/// Upper bound on the page size of [`Store::list_events`].
pub const MAX_EVENTS_PAGE: i64 = 10_000;

/// Everything one webhook delivery or one poll produced, committed atomically by
/// [`Store::commit_delivery`].
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The installation the events belong to (must be live).
    pub installation_id: InstallationId,
    /// The driver that produced them.
    pub driver_id: String,
    /// The driver's version.
    pub driver_version: String,
    /// When the host received the delivery, RFC 3339 UTC.
    pub received_at: String,
    /// The raw events, in provider order.
    pub events: Vec<IngestedEvent>,
    /// What the driver's call wrote besides events: state and captured secrets.
    pub writes: Writes,
}

/// Side effects of a driver call, committed with its events or not at all.
#[derive(Clone, Debug, Default)]
pub struct Writes {
    /// Driver state changes (e.g. the polling cursor), applied in order.
    pub state: Vec<StateWrite>,
    /// Secrets the host captured from provider responses during the call (OAuth tokens),
    /// by name; stored encrypted.
    pub secrets: Vec<(String, SecretBytes)>,
}

impl Writes {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty() && self.secrets.is_empty()
    }
}

/// One raw provider event and what normalizing it gave.
#[derive(Clone, Debug)]
pub struct IngestedEvent {
    /// The provider's event id: the deduplication key within the installation.
    pub provider_event_id: String,
    /// The provider's event type (e.g. `charge.succeeded`).
    pub event_type: String,
    /// The provider account it came from, if the driver said.
    pub account_key: Option<String>,
    /// The raw payload, as the provider sent it.
    pub payload: Vec<u8>,
    /// The normalization result.
    pub outcome: NormalizeOutcome,
}

/// The result of normalizing one raw event.
#[derive(Clone, Debug)]
pub enum NormalizeOutcome {
    /// The normalized events (possibly none). The raw event is stored as `normalized`.
    Normalized(Vec<NewEvent>),
    /// Normalization failed: the raw event is stored as `failed` with the reason (a dead
    /// letter, replayable later) and the delivery is still acknowledged.
    Failed {
        /// Why, for operators.
        reason: String,
    },
}

/// One normalized event to store: its CloudEvent attributes of its own and its record.
/// The rest of the envelope (source, provenance) comes from its raw event and installation
/// when it is read.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// The CloudEvent `id`; unique across all events.
    pub event_id: EventId,
    /// The CloudEvent `type` (e.g. `payment.succeeded`).
    pub event_type: String,
    /// The CloudEvent `subject`.
    pub subject: Option<String>,
    /// The CloudEvent `time`, RFC 3339 UTC.
    pub time: String,
    /// The canonical record, JSON text (the CloudEvent `data`).
    pub data: String,
}

/// A driver state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateWrite {
    /// Set `key` to `value`.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
}

/// What [`Store::commit_delivery`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Raw events newly stored (normalized or failed).
    pub stored: usize,
    /// Raw events skipped because (installation, provider event id) was already stored.
    pub duplicates: usize,
    /// Normalized events stored.
    pub events: usize,
}

/// A stored normalized event with its provenance, as the cursor API reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Commit-ordered sequence number; the cursor.
    pub seq: i64,
    /// The CloudEvent `id`.
    pub id: EventId,
    /// Its installation.
    pub installation_id: InstallationId,
    /// The CloudEvent `type`.
    pub event_type: String,
    /// The CloudEvent `subject`.
    pub subject: Option<String>,
    /// The CloudEvent `time`.
    pub time: String,
    /// The canonical record, JSON text.
    pub data: String,
    /// The raw event it was normalized from.
    pub raw_event_id: i64,
    /// The driver that normalized it, and its version.
    pub driver_id: String,
    /// The driver's version.
    pub driver_version: String,
    /// The provider's id of the raw event.
    pub provider_event_id: String,
    /// The provider's type of the raw event.
    pub provider_event_type: String,
}

/// State of a stored raw event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawEventStatus {
    /// Normalized (its events, if any, are in the event log).
    Normalized,
    /// Normalization failed: a dead letter.
    Failed,
}

impl RawEventStatus {
    fn as_str(self) -> &'static str {
        match self {
            RawEventStatus::Normalized => "normalized",
            RawEventStatus::Failed => "failed",
        }
    }

    fn from_db(s: &str) -> Result<Self, StoreError> {
        match s {
            "normalized" => Ok(RawEventStatus::Normalized),
            "failed" => Ok(RawEventStatus::Failed),
            other => Err(
                sqlx::Error::Decode(format!("unknown raw event status {other:?}").into()).into(),
            ),
        }
    }
}

/// A stored raw event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    /// Row id (the `sluicerawevent` of its normalized events).
    pub id: i64,
    /// Its installation.
    pub installation_id: InstallationId,
    /// The provider's event id.
    pub provider_event_id: String,
    /// The provider's event type.
    pub event_type: String,
    /// The provider account, if known.
    pub account_key: Option<String>,
    /// The driver that ingested it.
    pub driver_id: String,
    /// That driver's version.
    pub driver_version: String,
    /// When it was received, RFC 3339 UTC.
    pub received_at: String,
    /// The raw payload.
    pub payload: Vec<u8>,
    /// Normalized or failed.
    pub status: RawEventStatus,
    /// The normalization failure, for failed events.
    pub failure_reason: Option<String>,
}

/// A raw event whose normalization failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Raw event row id.
    pub id: i64,
    /// The provider's event id.
    pub provider_event_id: String,
    /// The provider's event type.
    pub event_type: String,
    /// Why normalization failed.
    pub reason: String,
    /// When it was received, RFC 3339 UTC.
    pub received_at: String,
}

fn map_write_error(err: sqlx::Error) -> StoreError {
    if StoreError::is_unique_violation(&err) {
        StoreError::Conflict("a normalized event with this id already exists".into())
    } else if StoreError::is_foreign_key_violation(&err) {
        StoreError::NotFound
    } else {
        StoreError::Database(err)
    }
}

fn raw_event_from_row(row: &AnyRow) -> Result<RawEvent, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(RawEvent {
        id: row.try_get("id")?,
        installation_id: InstallationId::from_db(row.try_get("installation_id")?),
        provider_event_id: row.try_get("provider_event_id")?,
        event_type: row.try_get("event_type")?,
        account_key: row.try_get("account_key")?,
        driver_id: row.try_get("driver_id")?,
        driver_version: row.try_get("driver_version")?,
        received_at: row.try_get("received_at")?,
        payload: row.try_get("payload")?,
        status: RawEventStatus::from_db(&status)?,
        failure_reason: row.try_get("failure_reason")?,
    })
}

impl Store {
    /// Commits one delivery in a single transaction: the raw events (deduplicated on
    /// installation + provider event id), their normalized events or their dead-letter
    /// state, and the driver state writes. Either all of it is stored or none of it.
    ///
    /// A raw event already stored is counted in `duplicates` and its normalized events are
    /// skipped (the first delivery's are kept). Errors: [`StoreError::NotFound`] if the
    /// installation is not live, [`StoreError::Conflict`] if a normalized event id already
    /// exists, [`StoreError::InvalidInput`] if a CloudEvent template is not an object.
    pub async fn commit_delivery(&self, delivery: Delivery) -> Result<CommitOutcome, StoreError> {
        // SQLite: BEGIN IMMEDIATE (see `begin_write`) makes commits fully serial.
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Serialise ingestion commits. `events.seq` comes from an identity sequence,
            // which hands out numbers at insert time, not at commit time: without this lock
            // a transaction holding seq 41 could commit after another one holding seq 42,
            // and a cursor reader that already saw 42 (and asked for `after=42`) would skip
            // 41 forever. Holding one transaction-scoped lock from before the first insert to
            // commit makes sequence order equal commit order. The lock is released
            // automatically at commit or rollback.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(COMMIT_LOCK_KEY)
                .execute(&mut *tx)
                .await?;
        }

        let id = delivery.installation_id.as_str();
        let live = sqlx::query("SELECT 1 FROM installations WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !live {
            return Err(StoreError::NotFound);
        }

        let mut outcome = CommitOutcome::default();
        for event in delivery.events {
            let (status, reason, normalized) = match event.outcome {
                NormalizeOutcome::Normalized(list) => (RawEventStatus::Normalized, None, list),
                NormalizeOutcome::Failed { reason } => {
                    (RawEventStatus::Failed, Some(reason), Vec::new())
                }
            };
            let row = sqlx::query(
                "INSERT INTO raw_events (installation_id, provider_event_id, event_type, \
                   account_key, driver_id, driver_version, received_at, payload, status, \
                   failure_reason) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (installation_id, provider_event_id) DO NOTHING \
                 RETURNING id",
            )
            .bind(id)
            .bind(&event.provider_event_id)
            .bind(&event.event_type)
            .bind(event.account_key)
            .bind(&delivery.driver_id)
            .bind(&delivery.driver_version)
            .bind(&delivery.received_at)
            .bind(event.payload)
            .bind(status.as_str())
            .bind(reason)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_write_error)?;
            let Some(row) = row else {
                outcome.duplicates += 1;
                continue;
            };
            let raw_id: i64 = row.try_get(0)?;
            outcome.stored += 1;

            for new in normalized {
                sqlx::query(
                    "INSERT INTO events (id, installation_id, raw_event_id, type, subject, \
                       time, data) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(new.event_id.as_str().to_owned())
                .bind(id)
                .bind(raw_id)
                .bind(new.event_type)
                .bind(new.subject)
                .bind(new.time)
                .bind(new.data)
                .execute(&mut *tx)
                .await
                .map_err(map_write_error)?;
                outcome.events += 1;
            }
        }

        for write in delivery.writes.state {
            match write {
                StateWrite::Set { key, value } => {
                    sqlx::query(
                        "INSERT INTO driver_state (installation_id, key, value, updated_at) \
                         VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (installation_id, key) \
                         DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    )
                    .bind(id)
                    .bind(key)
                    .bind(value)
                    .bind(crate::store::now_rfc3339())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_write_error)?;
                }
                StateWrite::Delete { key } => {
                    sqlx::query("DELETE FROM driver_state WHERE installation_id = $1 AND key = $2")
                        .bind(id)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }

        for (name, value) in &delivery.writes.secrets {
            let ciphertext =
                self.cipher
                    .encrypt(&delivery.installation_id, name, value.expose())?;
            sqlx::query(
                "INSERT INTO secrets (installation_id, name, ciphertext, updated_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (installation_id, name) \
                 DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
            )
            .bind(delivery.installation_id.as_str())
            .bind(name.as_str())
            .bind(ciphertext)
            .bind(crate::store::now_rfc3339())
            .execute(&mut *tx)
            .await?;
        }

        tx.commit().await?;
        Ok(outcome)
    }

    /// Normalized events with `seq > after`, in commit order, at most `limit` of them
    /// (clamped to `0..=MAX_EVENTS_PAGE`), optionally for one installation only.
    /// The last `seq` returned is the next cursor. Deleted installations' events stay.
    pub async fn list_events(
        &self,
        installation: Option<&InstallationId>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        const COLUMNS: &str = "e.seq, e.id, e.installation_id, e.type, e.subject, e.time, \
            e.data, e.raw_event_id, r.driver_id, r.driver_version, r.provider_event_id, \
            r.event_type";
        let limit = limit.clamp(0, MAX_EVENTS_PAGE);
        let rows = match installation {
            Some(id) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM events e JOIN raw_events r ON r.id = e.raw_event_id \
                     WHERE e.installation_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3"
                ))
                .bind(id.as_str())
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM events e JOIN raw_events r ON r.id = e.raw_event_id \
                     WHERE e.seq > $1 ORDER BY e.seq LIMIT $2"
                ))
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(StoredEvent {
                    seq: row.try_get(0)?,
                    id: EventId::from_db(row.try_get(1)?),
                    installation_id: InstallationId::from_db(row.try_get(2)?),
                    event_type: row.try_get(3)?,
                    subject: row.try_get(4)?,
                    time: row.try_get(5)?,
                    data: row.try_get(6)?,
                    raw_event_id: row.try_get(7)?,
                    driver_id: row.try_get(8)?,
                    driver_version: row.try_get(9)?,
                    provider_event_id: row.try_get(10)?,
                    provider_event_type: row.try_get(11)?,
                })
            })
            .collect()
    }

    /// One raw event of an installation by row id.
    pub async fn raw_event(
        &self,
        installation: &InstallationId,
        id: i64,
    ) -> Result<Option<RawEvent>, StoreError> {
        let row = sqlx::query(
            "SELECT id, installation_id, provider_event_id, event_type, account_key, driver_id, \
               driver_version, received_at, payload, status, failure_reason \
             FROM raw_events WHERE installation_id = $1 AND id = $2",
        )
        .bind(installation.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(raw_event_from_row).transpose()
    }

    /// Number of raw events stored for an installation (normalized and failed).
    pub async fn count_raw_events(&self, installation: &InstallationId) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM raw_events WHERE installation_id = $1")
            .bind(installation.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The dead letters of an installation (raw events whose normalization failed), oldest
    /// first.
    pub async fn list_failed(
        &self,
        installation: &InstallationId,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, provider_event_id, event_type, failure_reason, received_at \
             FROM raw_events WHERE installation_id = $1 AND status = 'failed' ORDER BY id",
        )
        .bind(installation.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetter {
                    id: row.try_get(0)?,
                    provider_event_id: row.try_get(1)?,
                    event_type: row.try_get(2)?,
                    reason: row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
                    received_at: row.try_get(4)?,
                })
            })
            .collect()
    }
}
