//! An endpoint's outbox: the events it has taken in, each waiting with its attempts until
//! it is delivered or dead; what is due, the record of every attempt, replays and pruning.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backlog, Endpoint};
use crate::events::{EVENT_COLUMNS, stored_event_from_row};
use crate::id::EndpointId;
use crate::store::Backend;
use crate::{Cursor, InstallationId, Store, StoreError, StoredEvent};

/// State of one event in an endpoint's outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// The endpoint answered `2xx`.
    Delivered,
    /// Every attempt failed: replayed by hand.
    Dead,
}

impl DeliveryStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    /// From its text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// One event in an endpoint's outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointDelivery {
    /// The event (its `webhook-id`).
    pub event_id: String,
    /// Its installation.
    pub installation_id: InstallationId,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: i64,
    /// When it was taken into the outbox.
    pub enqueued_at: i64,
    /// When it was delivered or died.
    pub finished_at: Option<i64>,
    /// The endpoint's last answer: status, error, body (cut short).
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The last answer's body, cut short.
    pub last_response: Option<String>,
}

/// A pending delivery due now, with its event.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    /// The event to send.
    pub event: StoredEvent,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// One attempt to deliver an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Its event.
    pub event_id: String,
    /// 1 for the first.
    pub attempt: i64,
    /// When it started.
    pub at: i64,
    /// How long it took.
    pub duration_ms: i64,
    /// The endpoint's HTTP status, if it answered.
    pub status: Option<i64>,
    /// Why it failed (transport, timeout, status).
    pub error: Option<String>,
    /// The answer's body, cut short.
    pub response: Option<String>,
}

/// What an attempt leaves the delivery as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Delivered.
    Delivered,
    /// Failed; try again at this time.
    RetryAt(i64),
    /// Failed for the last time.
    Dead,
}

/// What [`Store::replay_delivery`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayOne {
    /// Pending again, due now.
    Replayed,
    /// No such event, or the endpoint does not receive it.
    NoSuchEvent,
    /// Committed after what the endpoint has taken in so far: it will be sent in order.
    NotYetTaken,
}

fn delivery_from_row(row: &AnyRow) -> Result<EndpointDelivery, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(EndpointDelivery {
        event_id: row.try_get("event_id")?,
        installation_id: InstallationId::from_db(row.try_get("installation_id")?),
        status: DeliveryStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown delivery status {status:?}").into())
        })?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        enqueued_at: row.try_get("enqueued_at")?,
        finished_at: row.try_get("finished_at")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        last_response: row.try_get("last_response")?,
    })
}

impl Store {
    /// Takes the events of `page` that the endpoint receives into its outbox, due `now`,
    /// and moves its position to `scanned` (the last event read, matching or not), in one
    /// transaction, if `owner` still holds the lease. `false` if it does not.
    pub async fn enqueue_deliveries(
        &self,
        endpoint: &EndpointId,
        owner: &str,
        events: &[&StoredEvent],
        scanned: Cursor,
        now: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let rows: Vec<(String, Cursor, String)> = events
            .iter()
            .map(|e| (e.id.to_string(), e.cursor, e.installation_id.to_string()))
            .collect();
        let (store, endpoint, owner) = (self.clone(), endpoint.clone(), owner.to_owned());
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            // The lease is extended with it: the sends that follow fit in it.
            let moved = sqlx::query(
                "UPDATE delivery_sinks SET cursor_tx = $3, cursor_seq = $4, lease_until = $5 \
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(endpoint.as_str())
            .bind(&owner)
            .bind(scanned.tx)
            .bind(scanned.seq)
            .bind(lease_until)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                return Ok(false);
            }
            for (event_id, cursor, installation) in rows {
                sqlx::query(
                    "INSERT INTO deliveries (endpoint_id, event_id, event_tx, event_seq, \
                       installation_id, status, next_attempt_at, enqueued_at) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) \
                     ON CONFLICT (endpoint_id, event_id) DO NOTHING",
                )
                .bind(endpoint.as_str())
                .bind(event_id)
                .bind(cursor.tx)
                .bind(cursor.seq)
                .bind(installation)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// The pending deliveries due at `now` that head their installation's queue (the
    /// oldest pending one of each installation: per-installation order), oldest first.
    pub async fn due_deliveries(
        &self,
        endpoint: &EndpointId,
        now: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, d.event_tx, d.attempts \
             FROM deliveries d JOIN events e ON e.id = d.event_id \
             JOIN raw_events r ON r.id = e.raw_event_id \
             WHERE d.endpoint_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2 \
               AND {head} \
             ORDER BY d.event_tx, d.event_seq LIMIT $3",
            head = self.head_of_queue()
        );
        let rows = sqlx::query(&sql)
            .bind(endpoint.as_str())
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(DueDelivery {
                    event: stored_event_from_row(row)?,
                    attempts: row.try_get(13)?,
                })
            })
            .collect()
    }

    /// When the next pending delivery heading its installation's queue is due, if any
    /// (one behind a head waits for the head, however early it could go).
    pub async fn next_delivery_due(
        &self,
        endpoint: &EndpointId,
    ) -> Result<Option<i64>, StoreError> {
        let sql = format!(
            "SELECT MIN(d.next_attempt_at) FROM deliveries d \
             WHERE d.endpoint_id = $1 AND d.status = 'pending' AND {HEAD}",
            HEAD = self.head_of_queue()
        );
        let row = sqlx::query(&sql)
            .bind(endpoint.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// SQL: delivery `d` is the oldest pending one of its installation at its endpoint.
    fn head_of_queue(&self) -> String {
        let earlier = match self.backend {
            Backend::Sqlite => {
                "(o.event_tx < d.event_tx OR (o.event_tx = d.event_tx AND o.event_seq < d.event_seq))"
            }
            Backend::Postgres => "(o.event_tx, o.event_seq) < (d.event_tx, d.event_seq)",
        };
        format!(
            "NOT EXISTS (SELECT 1 FROM deliveries o WHERE o.endpoint_id = d.endpoint_id \
               AND o.installation_id = d.installation_id AND o.status = 'pending' AND {earlier})"
        )
    }

    /// Records an attempt and what it leaves the delivery as, in one transaction.
    pub async fn record_attempt(
        &self,
        endpoint: &EndpointId,
        attempt: &Attempt,
        outcome: AttemptOutcome,
    ) -> Result<(), StoreError> {
        let (store, endpoint, attempt) = (self.clone(), endpoint.clone(), attempt.clone());
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            sqlx::query(
                "INSERT INTO delivery_attempts (endpoint_id, event_id, attempt, at, duration_ms, \
                   status, error, response) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(endpoint.as_str())
            .bind(&attempt.event_id)
            .bind(attempt.attempt)
            .bind(attempt.at)
            .bind(attempt.duration_ms)
            .bind(attempt.status)
            .bind(&attempt.error)
            .bind(&attempt.response)
            .execute(&mut *tx)
            .await?;
            let finished = attempt.at + attempt.duration_ms;
            let (status, next, finished_at) = match outcome {
                AttemptOutcome::Delivered => ("delivered", finished, Some(finished)),
                AttemptOutcome::RetryAt(at) => ("pending", at, None),
                AttemptOutcome::Dead => ("dead", finished, Some(finished)),
            };
            // Only a pending delivery moves: one replayed meanwhile keeps its fresh start.
            sqlx::query(
                "UPDATE deliveries SET status = $3, attempts = $4, next_attempt_at = $5, \
                   finished_at = $6, last_status = $7, last_error = $8, last_response = $9 \
                 WHERE endpoint_id = $1 AND event_id = $2 AND status = 'pending'",
            )
            .bind(endpoint.as_str())
            .bind(&attempt.event_id)
            .bind(status)
            .bind(attempt.attempt)
            .bind(next)
            .bind(finished_at)
            .bind(attempt.status)
            .bind(&attempt.error)
            .bind(&attempt.response)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// An endpoint's attempts, newest first, optionally for one event.
    pub async fn list_attempts(
        &self,
        endpoint: &EndpointId,
        event_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Attempt>, StoreError> {
        let sql = format!(
            "SELECT event_id, attempt, at, duration_ms, status, error, response \
             FROM delivery_attempts WHERE endpoint_id = $1 {} ORDER BY id DESC LIMIT $2",
            if event_id.is_some() {
                "AND event_id = $3"
            } else {
                ""
            }
        );
        let mut query = sqlx::query(&sql).bind(endpoint.as_str()).bind(limit);
        if let Some(e) = event_id {
            query = query.bind(e.to_owned());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(Attempt {
                    event_id: r.try_get(0)?,
                    attempt: r.try_get(1)?,
                    at: r.try_get(2)?,
                    duration_ms: r.try_get(3)?,
                    status: r.try_get(4)?,
                    error: r.try_get(5)?,
                    response: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// An endpoint's deliveries in log order, optionally of one status, at most `limit`.
    pub async fn list_deliveries(
        &self,
        endpoint: &EndpointId,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> Result<Vec<EndpointDelivery>, StoreError> {
        let sql = format!(
            "SELECT event_id, installation_id, status, attempts, next_attempt_at, enqueued_at, \
               finished_at, last_status, last_error, last_response FROM deliveries \
             WHERE endpoint_id = $1 {} ORDER BY event_tx, event_seq LIMIT $2",
            if status.is_some() {
                "AND status = $3"
            } else {
                ""
            }
        );
        let mut query = sqlx::query(&sql).bind(endpoint.as_str()).bind(limit);
        if let Some(s) = status {
            query = query.bind(s.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Sends one event again from a fresh start of its retry schedule, whatever it stands
    /// at (and takes it into the outbox if the endpoint receives it and it is not there).
    pub async fn replay_delivery(
        &self,
        endpoint: &Endpoint,
        event_id: &str,
        now: i64,
    ) -> Result<ReplayOne, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => "0",
            Backend::Postgres => "e.tx",
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, {tx} FROM events e \
             JOIN raw_events r ON r.id = e.raw_event_id WHERE e.id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(event) = row.as_ref().map(stored_event_from_row).transpose()? else {
            return Ok(ReplayOne::NoSuchEvent);
        };
        if !endpoint.filter.matches(&event) {
            return Ok(ReplayOne::NoSuchEvent);
        }
        let Some(state) = self.sink_state(endpoint.id.as_str()).await? else {
            return Err(StoreError::NotFound);
        };
        // Ahead of the position it would jump its installation's queue; it is on its way,
        // in order, anyway.
        if event.cursor > state.cursor {
            return Ok(ReplayOne::NotYetTaken);
        }
        self.reset_deliveries(&endpoint.id, vec![event], now)
            .await?;
        Ok(ReplayOne::Replayed)
    }

    /// Sends again every event the endpoint receives that was received at or after
    /// `since` (RFC 3339 UTC) and is behind its position, from a fresh start of the retry
    /// schedule, in log order; returns how many.
    pub async fn replay_endpoint_since(
        &self,
        endpoint: &Endpoint,
        since: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let Some(state) = self.sink_state(endpoint.id.as_str()).await? else {
            return Err(StoreError::NotFound);
        };
        let (columns_tx, position, order) = match self.backend {
            Backend::Sqlite => ("0", "e.seq <= $2 AND $3 = $3", "e.seq"),
            Backend::Postgres => ("e.tx", "(e.tx, e.seq) <= ($3, $2)", "e.tx, e.seq"),
        };
        let mut total = 0;
        let mut after = Cursor::START;
        loop {
            let after_clause = match self.backend {
                Backend::Sqlite => "e.seq > $5 AND $6 = $6",
                Backend::Postgres => "(e.tx, e.seq) > ($6, $5)",
            };
            let sql = format!(
                "SELECT {EVENT_COLUMNS}, {columns_tx} FROM events e \
                 JOIN raw_events r ON r.id = e.raw_event_id \
                 WHERE r.received_at >= $1 AND {position} AND {after_clause} \
                 ORDER BY {order} LIMIT $4"
            );
            let rows = sqlx::query(&sql)
                .bind(since)
                .bind(state.cursor.seq)
                .bind(state.cursor.tx)
                .bind(1000_i64)
                .bind(after.seq)
                .bind(after.tx)
                .fetch_all(&self.pool)
                .await?;
            if rows.is_empty() {
                return Ok(total);
            }
            let page: Vec<StoredEvent> = rows
                .iter()
                .map(stored_event_from_row)
                .collect::<Result<_, _>>()?;
            after = page.last().map_or(after, |e| e.cursor);
            let matching: Vec<StoredEvent> = page
                .into_iter()
                .filter(|e| endpoint.filter.matches(e))
                .collect();
            total += matching.len() as i64;
            self.reset_deliveries(&endpoint.id, matching, now).await?;
        }
    }

    /// Puts `events` in the endpoint's outbox as pending from their first attempt, due now.
    async fn reset_deliveries(
        &self,
        endpoint: &EndpointId,
        events: Vec<StoredEvent>,
        now: i64,
    ) -> Result<(), StoreError> {
        let (store, endpoint) = (self.clone(), endpoint.clone());
        self.detached(async move {
            let mut tx = store.begin_write().await?;
            for e in events {
                sqlx::query(
                    "INSERT INTO deliveries (endpoint_id, event_id, event_tx, event_seq, \
                       installation_id, status, next_attempt_at, enqueued_at) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) \
                     ON CONFLICT (endpoint_id, event_id) DO UPDATE SET status = 'pending', \
                       attempts = 0, next_attempt_at = $6, finished_at = NULL",
                )
                .bind(endpoint.as_str())
                .bind(e.id.as_str())
                .bind(e.cursor.tx)
                .bind(e.cursor.seq)
                .bind(e.installation_id.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// What waits for an endpoint: pending in its outbox and past its position in the log.
    pub async fn endpoint_backlog(&self, endpoint: &Endpoint) -> Result<Backlog, StoreError> {
        let row = sqlx::query(
            "SELECT \
               COALESCE(SUM(CASE WHEN d.status = 'pending' THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN d.status = 'dead' THEN 1 ELSE 0 END), 0), \
               MIN(CASE WHEN d.status = 'pending' THEN r.received_at END) \
             FROM deliveries d JOIN events e ON e.id = d.event_id \
             JOIN raw_events r ON r.id = e.raw_event_id \
             WHERE d.endpoint_id = $1 AND d.status <> 'delivered'",
        )
        .bind(endpoint.id.as_str())
        .fetch_one(&self.pool)
        .await?;
        let (pending, dead, oldest): (i64, i64, Option<String>) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let Some(state) = self.sink_state(endpoint.id.as_str()).await? else {
            return Ok(Backlog::default());
        };
        let (unscanned, unscanned_oldest) = self.log_after(state.cursor, &endpoint.filter).await?;
        Ok(Backlog {
            pending: pending + unscanned,
            dead,
            oldest_received_at: oldest.or(unscanned_oldest),
        })
    }

    /// Deletes delivered deliveries and attempts older than `before` (retention).
    pub async fn prune_deliveries(&self, before: i64) -> Result<u64, StoreError> {
        let delivered =
            sqlx::query("DELETE FROM deliveries WHERE status = 'delivered' AND finished_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected();
        let attempts = sqlx::query("DELETE FROM delivery_attempts WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(delivered + attempts)
    }
}
