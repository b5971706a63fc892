//! The polling schedule: which installations are polled, when each is due, and a lease
//! per installation so that, with several nodes on one database, each due installation
//! is polled by exactly one node at a time and a dead node's are taken over once its
//! leases expire. Times are Unix milliseconds chosen by the caller.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{InstallationId, Store, StoreError};

/// How an installation's polling stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollStatus {
    /// Time between polls.
    pub interval_ms: i64,
    /// When the next poll is due.
    pub next_poll_at: i64,
    /// Paused by the operator.
    pub paused: bool,
    /// When the last poll ended.
    pub last_poll_at: Option<i64>,
    /// Why the last poll failed (cleared by a success).
    pub last_error: Option<String>,
    /// Polls failed in a row.
    pub consecutive_failures: i64,
}

/// An installation [`Store::claim_due_polls`] took, and when its poll was due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuePoll {
    /// The installation.
    pub installation_id: InstallationId,
    /// When its poll was due (how late it runs is the scheduler's lag).
    pub due_at: i64,
}

/// How a poll ended, for [`Store::finish_poll`].
#[derive(Clone, Debug)]
pub struct PollEnd {
    /// When it ended.
    pub at: i64,
    /// When the next poll is due.
    pub next_poll_at: i64,
    /// The failure, if it failed.
    pub error: Option<String>,
}

const COLUMNS: &str =
    "interval_ms, next_poll_at, paused, last_poll_at, last_error, consecutive_failures";

fn status_from_row(row: &AnyRow) -> Result<PollStatus, StoreError> {
    Ok(PollStatus {
        interval_ms: row.try_get("interval_ms")?,
        next_poll_at: row.try_get("next_poll_at")?,
        paused: row.try_get::<i64, _>("paused")? != 0,
        last_poll_at: row.try_get("last_poll_at")?,
        last_error: row.try_get("last_error")?,
        consecutive_failures: row.try_get("consecutive_failures")?,
    })
}

impl Store {
    /// Polls the installation every `interval_ms`, first at `first_at` (an installation
    /// already scheduled keeps its due time and pause, and takes the new interval).
    pub async fn schedule_poll(
        &self,
        id: &InstallationId,
        interval_ms: i64,
        first_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO poll_schedule (installation_id, interval_ms, next_poll_at) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (installation_id) DO UPDATE SET interval_ms = excluded.interval_ms",
        )
        .bind(id.as_str())
        .bind(interval_ms)
        .bind(first_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stops polling the installation.
    pub async fn unschedule_poll(&self, id: &InstallationId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM poll_schedule WHERE installation_id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes up to `limit` installations due at `now` whose lease is free or expired, for
    /// `owner` until `lease_until`; oldest due first. Each is taken by one caller only,
    /// across nodes: the update re-checks the lease on each row it takes.
    pub async fn claim_due_polls(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<DuePoll>, StoreError> {
        let rows = sqlx::query(
            "UPDATE poll_schedule SET lease_owner = $1, lease_until = $3 \
             WHERE installation_id IN ( \
               SELECT s.installation_id FROM poll_schedule s \
               JOIN installations i ON i.id = s.installation_id \
               WHERE i.deleted_at IS NULL AND s.paused = 0 AND s.next_poll_at <= $2 \
                 AND (s.lease_until IS NULL OR s.lease_until <= $2) \
               ORDER BY s.next_poll_at LIMIT $4) \
             AND paused = 0 AND next_poll_at <= $2 AND (lease_until IS NULL OR lease_until <= $2) \
             RETURNING installation_id, next_poll_at",
        )
        .bind(owner)
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DuePoll {
                    installation_id: InstallationId::from_db(r.try_get(0)?),
                    due_at: r.try_get(1)?,
                })
            })
            .collect()
    }

    /// Takes the installation's poll lease now, due or not (a poll the operator asked
    /// for); `false` when another owner holds it.
    pub async fn claim_poll(
        &self,
        id: &InstallationId,
        owner: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "UPDATE poll_schedule SET lease_owner = $2, lease_until = $3 \
             WHERE installation_id = $1 \
               AND (lease_until IS NULL OR lease_until <= $4 OR lease_owner = $2)",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(taken > 0)
    }

    /// Records how a poll `owner` ran ended and releases its lease. A success clears the
    /// failure run; a failure adds to it.
    pub async fn finish_poll(
        &self,
        id: &InstallationId,
        owner: &str,
        end: PollEnd,
    ) -> Result<(), StoreError> {
        let failed = i64::from(end.error.is_some());
        sqlx::query(
            "UPDATE poll_schedule SET next_poll_at = $3, last_poll_at = $4, last_error = $5, \
             consecutive_failures = CASE WHEN $6 = 1 THEN consecutive_failures + 1 ELSE 0 END, \
             lease_owner = NULL, lease_until = NULL \
             WHERE installation_id = $1 AND lease_owner = $2",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(end.next_poll_at)
        .bind(end.at)
        .bind(end.error)
        .bind(failed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Pauses or resumes an installation's polling (resuming makes it due now). `false`
    /// when it is not scheduled.
    pub async fn set_poll_paused(
        &self,
        id: &InstallationId,
        paused: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE poll_schedule SET paused = $2, \
             next_poll_at = CASE WHEN $2 = 0 THEN $3 ELSE next_poll_at END \
             WHERE installation_id = $1",
        )
        .bind(id.as_str())
        .bind(i64::from(paused))
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done > 0)
    }

    /// The installation's polling status, if it is scheduled.
    pub async fn poll_status(&self, id: &InstallationId) -> Result<Option<PollStatus>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM poll_schedule WHERE installation_id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(status_from_row).transpose()
    }

    /// Every scheduled installation's polling status.
    pub async fn poll_statuses(
        &self,
    ) -> Result<std::collections::HashMap<InstallationId, PollStatus>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT installation_id, {COLUMNS} FROM poll_schedule"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    InstallationId::from_db(row.try_get("installation_id")?),
                    status_from_row(row)?,
                ))
            })
            .collect()
    }
}
