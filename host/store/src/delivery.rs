//! Delivery state: outbound webhook endpoints, the position and lease of every consumer
//! the host drives (each endpoint, the NATS sink), and each endpoint's outbox.
//!
//! **The event log is the outbox.** Normalized events are committed with their delivery
//! and stay in commit order (see `events`), so the ingestion path writes nothing more for
//! delivery. Each consumer keeps a committed position in the log (`delivery_sinks`): the
//! NATS sink moves it past what JetStream acknowledged; an endpoint moves it past what it
//! has taken into its own outbox (`deliveries`), where each event waits, with its attempts,
//! until it is delivered or dead. Taking events in and moving the position are one
//! transaction, so a crash between them neither loses nor doubles one.
//!
//! **One node at a time.** A consumer is drained by whoever holds its lease (one
//! conditional `UPDATE`); a dead node's lease expires and another takes over from the
//! committed position. What was sent but not yet recorded is sent again, with the same
//! event id: at least once on the wire, exactly once by id.
//!
//! Times are Unix milliseconds chosen by the caller.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{EVENT_COLUMNS, stored_event_from_row};
use crate::id::EndpointId;
use crate::store::{Backend, now_rfc3339};
use crate::{Cursor, InstallationId, SecretBytes, Store, StoreError, StoredEvent};

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
    pub driver_id: Option<String>,
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
            driver_id: row.try_get("driver_id")?,
            event_types,
        },
        rate_limit_per_sec: row.try_get("rate_limit_per_sec")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        previous_secret_until: row.try_get("previous_secret_until")?,
        created_at: row.try_get("created_at")?,
    })
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

fn types_json(filter: &EndpointFilter) -> Option<String> {
    filter
        .event_types
        .as_ref()
        .map(|t| serde_json::Value::from(t.clone()).to_string())
}

impl Store {
    // ---- endpoints ----------------------------------------------------------------------

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
            .bind(&new.filter.driver_id)
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
        .bind(&e.filter.driver_id)
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

    // ---- consumers: position and lease ---------------------------------------------------

    /// The end of the log now: a consumer starting here receives what is committed later.
    /// (PostgreSQL: everything of transactions still running or yet to come, which may
    /// include a few events committed just before; never fewer.)
    async fn log_end(&self) -> Result<Cursor, StoreError> {
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
    async fn log_after(
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
            binds.push(d.clone());
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

    // ---- an endpoint's outbox -----------------------------------------------------------

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
