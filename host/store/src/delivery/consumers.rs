//! Consumers of the event log (each endpoint, the NATS sink): the committed position each
//! has taken events up to, the lease of the node draining it, its health, and what is
//! waiting for it.

use sqlx::Row;

use super::EndpointFilter;
use crate::store::Backend;
use crate::{Cursor, Store, StoreError, StoredEvent};

/// A consumer's committed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkState {
    /// How far into the log it has taken events.
    pub cursor: Cursor,
    /// Who drains it, until when.
    pub lease: Option<(String, i64)>,
    /// Attempts failed in a row.
    pub consecutive_failures: i64,
    /// The last failure, cleared by a success.
    pub last_error: Option<String>,
    /// While its circuit is open: until when.
    pub circuit_open_until: Option<i64>,
}

/// What is waiting for a consumer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events not yet delivered (in the outbox, pending, and in the log past the position).
    pub pending: i64,
    /// Dead deliveries (endpoints).
    pub dead: i64,
    /// When the oldest undelivered event was received, RFC 3339 UTC.
    pub oldest_received_at: Option<String>,
}

impl Store {
    /// The end of the log now: a consumer starting here receives what is committed later.
    /// (PostgreSQL: everything of transactions still running or yet to come, which may
    /// include a few events committed just before; never fewer.)
    pub(super) async fn log_end(&self) -> Result<Cursor, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM events")
                    .fetch_one(&self.pool)
                    .await?;
                Cursor::at(0, row.try_get(0)?)
            }
            Backend::Postgres => {
                let below = self.readable_below().await?;
                Cursor::at(below - 1, i64::MAX)
            }
        })
    }

    /// Registers a consumer that starts at the end of the log, unless it exists.
    pub async fn ensure_sink(&self, sink: &str) -> Result<(), StoreError> {
        let start = self.log_end().await?;
        sqlx::query(
            "INSERT INTO delivery_sinks (id, cursor_tx, cursor_seq) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(sink)
        .bind(start.tx)
        .bind(start.seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes or renews the consumer's lease for `owner` until `until`; `false` while another
    /// owner's lease runs (or the consumer is gone).
    pub async fn claim_sink(
        &self,
        sink: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "UPDATE delivery_sinks SET lease_owner = $2, lease_until = $4 \
             WHERE id = $1 AND (lease_owner = $2 OR lease_until IS NULL OR lease_until <= $3)",
        )
        .bind(sink)
        .bind(owner)
        .bind(now)
        .bind(until)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(taken > 0)
    }

    /// Gives the lease up (at shutdown), so another node takes over at once.
    pub async fn release_sink(&self, sink: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE delivery_sinks SET lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(sink)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A consumer's committed state.
    pub async fn sink_state(&self, sink: &str) -> Result<Option<SinkState>, StoreError> {
        let row = sqlx::query(
            "SELECT cursor_tx, cursor_seq, lease_owner, lease_until, consecutive_failures, \
               last_error, circuit_open_until FROM delivery_sinks WHERE id = $1",
        )
        .bind(sink)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let owner: Option<String> = row.try_get(2)?;
        let until: Option<i64> = row.try_get(3)?;
        Ok(Some(SinkState {
            cursor: Cursor::at(row.try_get(0)?, row.try_get(1)?),
            lease: owner.zip(until),
            consecutive_failures: row.try_get(4)?,
            last_error: row.try_get(5)?,
            circuit_open_until: row.try_get(6)?,
        }))
    }

    /// Moves a consumer's position to `cursor` (never back) if `owner` still holds its
    /// lease; `false` if it does not (another node took over: it must stop).
    pub async fn advance_sink(
        &self,
        sink: &str,
        owner: &str,
        cursor: Cursor,
    ) -> Result<bool, StoreError> {
        let moved = sqlx::query(
            "UPDATE delivery_sinks SET cursor_tx = $3, cursor_seq = $4 \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(sink)
        .bind(owner)
        .bind(cursor.tx)
        .bind(cursor.seq)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(moved > 0)
    }

    /// Sets how the consumer's attempts stand (its circuit breaker's state): failures in a
    /// row, the last one, and until when its circuit is open.
    pub async fn set_sink_health(
        &self,
        sink: &str,
        consecutive_failures: i64,
        last_error: Option<&str>,
        circuit_open_until: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE delivery_sinks SET consecutive_failures = $2, last_error = $3, \
               circuit_open_until = $4 WHERE id = $1",
        )
        .bind(sink)
        .bind(consecutive_failures)
        .bind(last_error)
        .bind(circuit_open_until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Events after `after` in log order, at most `limit`: the consumers' read of the log.
    /// Unlike [`Store::list_events`] it never waits for held-back events (PostgreSQL): a
    /// consumer looks again soon anyway, and a step must stay well inside its lease.
    pub async fn log_page(
        &self,
        after: Cursor,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let below = match self.backend {
            Backend::Sqlite => i64::MAX,
            Backend::Postgres => self.readable_below().await?,
        };
        let limit = limit.clamp(0, crate::MAX_EVENTS_PAGE);
        self.events_page(&crate::EventFilter::default(), after, limit, below)
            .await
    }

    /// What waits for the consumer past its position in the log (the NATS sink).
    pub async fn log_backlog(&self, sink: &str) -> Result<Backlog, StoreError> {
        let Some(state) = self.sink_state(sink).await? else {
            return Ok(Backlog::default());
        };
        let (count, oldest) = self
            .log_after(state.cursor, &EndpointFilter::default())
            .await?;
        Ok(Backlog {
            pending: count,
            dead: 0,
            oldest_received_at: oldest,
        })
    }

    /// How many events after `cursor` match `filter`, and when the first was received.
    pub(super) async fn log_after(
        &self,
        cursor: Cursor,
        filter: &EndpointFilter,
    ) -> Result<(i64, Option<String>), StoreError> {
        let position = match self.backend {
            Backend::Sqlite => "e.seq > $1 AND $2 = $2",
            Backend::Postgres => "(e.tx, e.seq) > ($2, $1)",
        };
        let mut sql = format!(
            "SELECT COUNT(*), MIN(r.received_at) FROM events e \
             JOIN raw_events r ON r.id = e.raw_event_id WHERE {position}"
        );
        let mut binds = Vec::new();
        if let Some(i) = &filter.installation_id {
            binds.push(i.as_str().to_owned());
            sql.push_str(&format!(" AND e.installation_id = ${}", binds.len() + 2));
        }
        if let Some(d) = &filter.driver_id {
            binds.push(d.to_string());
            sql.push_str(&format!(" AND r.driver_id = ${}", binds.len() + 2));
        }
        if let Some(types) = &filter.event_types {
            if types.is_empty() {
                return Ok((0, None));
            }
            let mut list = Vec::new();
            for t in types {
                binds.push(t.clone());
                list.push(format!("${}", binds.len() + 2));
            }
            sql.push_str(&format!(" AND e.type IN ({})", list.join(", ")));
        }
        let mut query = sqlx::query(&sql).bind(cursor.seq).bind(cursor.tx);
        for b in binds {
            query = query.bind(b);
        }
        let row = query.fetch_one(&self.pool).await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}
