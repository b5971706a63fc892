//! Failed normalizations, retried by the host and replayed by hand: raw events move
//! `failed` → `normalized` when a later attempt succeeds, or `failed` → `dead` when the
//! attempts are spent; a replay takes `failed` or `dead` to `normalized`. Resolving an
//! event and storing its normalized events is one transaction that only a `failed` or
//! `dead` row can pass, so an event replayed twice (or by two nodes at once) gets its
//! events once.

use sqlx::Row;

use crate::commit::NewEvent;
use crate::events::{DeadLetter, RawEvent, RawEventStatus};
use crate::{InstallationId, Store, StoreError};

pub(crate) const RAW_COLUMNS: &str = "id, installation_id, provider_event_id, event_type, account_key, \
     driver_id, driver_version, received_at, payload, status, failure_reason, api_version";

impl Store {
    /// Failed raw events whose next attempt is due at `now` (Unix ms; never scheduled
    /// counts as due), oldest first.
    pub async fn due_retries(&self, now: i64, limit: i64) -> Result<Vec<RawEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RAW_COLUMNS} FROM raw_events \
             WHERE status = 'failed' AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
             ORDER BY id LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::events::raw_event_from_row).collect()
    }

    /// A raw event by row id, whatever its installation.
    pub async fn raw_event_by_id(&self, id: i64) -> Result<Option<RawEvent>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RAW_COLUMNS} FROM raw_events WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(crate::events::raw_event_from_row)
            .transpose()
    }

    /// Failed and dead raw events, oldest first, of one installation or all.
    pub async fn dead_letters(
        &self,
        installation: Option<&InstallationId>,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        const SELECT: &str = "SELECT id, provider_event_id, event_type, failure_reason, \
             received_at, installation_id, status, attempts, next_attempt_at \
             FROM raw_events WHERE status IN ('failed', 'dead')";
        let rows = match installation {
            Some(id) => {
                sqlx::query(&format!(
                    "{SELECT} AND installation_id = $1 ORDER BY id LIMIT $2"
                ))
                .bind(id.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("{SELECT} ORDER BY id LIMIT $1"))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                let status: String = row.try_get(6)?;
                Ok(DeadLetter {
                    id: row.try_get(0)?,
                    provider_event_id: row.try_get(1)?,
                    event_type: row.try_get(2)?,
                    reason: row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
                    received_at: row.try_get(4)?,
                    installation_id: InstallationId::from_db(row.try_get(5)?),
                    status: if status == "dead" {
                        RawEventStatus::Dead
                    } else {
                        RawEventStatus::Failed
                    },
                    attempts: row.try_get(7)?,
                    next_attempt_at: row.try_get(8)?,
                })
            })
            .collect()
    }

    /// Marks a failed or dead raw event `normalized` with `events` (made by normalizing
    /// its stored payload again), in one transaction. `false`, and nothing stored, when it
    /// is not failed or dead any more (already resolved by another attempt or replay).
    pub async fn resolve_raw_event(
        &self,
        raw: &RawEvent,
        events: Vec<NewEvent>,
    ) -> Result<bool, StoreError> {
        let (store, raw_id, installation) = (self.clone(), raw.id, raw.installation_id.clone());
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            let resolved = sqlx::query(
                "UPDATE raw_events SET status = 'normalized', failure_reason = NULL, \
                 next_attempt_at = NULL, attempts = attempts + 1 \
                 WHERE id = $1 AND status IN ('failed', 'dead')",
            )
            .bind(raw_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if resolved {
                for e in &events {
                    sqlx::query(
                        "INSERT INTO events (id, installation_id, raw_event_id, type, subject, time, data) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(e.event_id.as_str())
                    .bind(installation.as_str())
                    .bind(raw_id)
                    .bind(e.event_type.as_str())
                    .bind(e.subject.clone())
                    .bind(e.time.as_str())
                    .bind(e.data.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::commit::event_id_conflict)?;
                }
            }
            tx.commit().await?;
            if resolved && !events.is_empty() {
                store.committed.send_modify(|n| *n = n.wrapping_add(1));
            }
            Ok(resolved)
        })
        .await
    }

    /// Records another failed attempt: the reason, and either when to try again or (with
    /// `next_attempt_at` `None`) that the event is dead.
    pub async fn record_retry_failure(
        &self,
        raw_id: i64,
        reason: &str,
        next_attempt_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let status = if next_attempt_at.is_some() {
            "failed"
        } else {
            "dead"
        };
        sqlx::query(
            "UPDATE raw_events SET failure_reason = $2, next_attempt_at = $3, status = $4, \
             attempts = attempts + 1 WHERE id = $1 AND status IN ('failed', 'dead')",
        )
        .bind(raw_id)
        .bind(reason)
        .bind(next_attempt_at)
        .bind(status)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Attempts made so far on a raw event.
    pub async fn raw_event_attempts(&self, raw_id: i64) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT attempts FROM raw_events WHERE id = $1")
            .bind(raw_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }
}
