//! The read side of events: the cursor the Processing Engine pages with, raw events and
//! dead letters.
//!
//! **The cursor never skips an event.** A reader that resumes after the last position it
//! saw sees every event committed later, however commits interleave:
//!
//! - On SQLite there is one writer at a time, so `seq` order is commit order.
//! - On PostgreSQL several writers (and nodes) commit concurrently, and a sequence number
//!   taken by a transaction that commits late would land behind a cursor that has moved
//!   on. So the log is ordered by `(tx, seq)` — `tx` the writing transaction's id — and a
//!   reader only reads transactions older than the oldest one still running (its
//!   snapshot's `xmin`). Every such transaction has finished, so that part of the log is
//!   final, and everything committed later sorts after it. No writer waits for another;
//!   the price is that an event becomes readable only once every transaction that began
//!   before it has ended. That is milliseconds for Sluice's own writers; but any
//!   transaction on the same PostgreSQL server that has written something holds the log
//!   back for as long as it runs. [`Store::list_events`] waits up to [`HELD_BACK_WAIT`]
//!   for events committed before it was called, so a reader sees its own writes.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::Backend;
use crate::{DriverId, EventId, InstallationId, Store, StoreError};

/// Upper bound on the page size of [`Store::list_events`].
pub const MAX_EVENTS_PAGE: i64 = 10_000;

/// How long [`Store::list_events`] waits, at most, for events already committed but held
/// back by an older transaction still running (PostgreSQL), before it answers without them.
/// Only a read that finds such events waits. 500 ms, then 2 s, proved too short on a loaded
/// 2-core machine: any transaction on the server holds the log back, and one creating a
/// database (the test suite makes one per test) can outlast that, so a test that read its
/// own acknowledged delivery found nothing. Five seconds covers it.
pub const HELD_BACK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// PostgreSQL: the oldest transaction still running, as of the statement's snapshot; every
/// transaction below it has finished, so the log below it is final.
const READABLE_BELOW: &str = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

/// A position in the event log: after the event it was read with. Its text form is opaque
/// to clients; they pass back what they were given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// The writing transaction of the last event seen (PostgreSQL; always 0 on SQLite).
    pub(crate) tx: i64,
    /// The sequence number of the last event seen.
    pub(crate) seq: i64,
}

impl Cursor {
    /// The start of the log.
    pub const START: Cursor = Cursor { tx: 0, seq: 0 };

    pub(crate) fn at(tx: i64, seq: i64) -> Cursor {
        Cursor { tx, seq }
    }

    /// Parse a cursor's text (as [`Cursor::to_string`] writes it): `SEQ` or `TX.SEQ`.
    pub fn parse(text: &str) -> Option<Cursor> {
        let number = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<i64>().ok())
                .flatten()
        };
        match text.split_once('.') {
            None => Some(Cursor {
                tx: 0,
                seq: number(text)?,
            }),
            Some((tx, seq)) => Some(Cursor {
                tx: number(tx)?,
                seq: number(seq)?,
            }),
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tx == 0 {
            write!(f, "{}", self.seq)
        } else {
            write!(f, "{}.{}", self.tx, self.seq)
        }
    }
}

/// A stored normalized event with its provenance, as the cursor API reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its position in the log: pass the last one back to read on.
    pub cursor: Cursor,
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
    pub driver_id: DriverId,
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
    /// Normalization failed; the host retries it.
    Failed,
    /// Normalization failed on every attempt: a dead letter, replayed by hand.
    Dead,
}

impl RawEventStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            RawEventStatus::Normalized => "normalized",
            RawEventStatus::Failed => "failed",
            RawEventStatus::Dead => "dead",
        }
    }

    fn from_db(s: &str) -> Result<Self, StoreError> {
        match s {
            "normalized" => Ok(RawEventStatus::Normalized),
            "failed" => Ok(RawEventStatus::Failed),
            "dead" => Ok(RawEventStatus::Dead),
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
    pub driver_id: DriverId,
    /// That driver's version.
    pub driver_version: String,
    /// When it was received, RFC 3339 UTC.
    pub received_at: String,
    /// The raw payload.
    pub payload: Vec<u8>,
    /// The provider API version that rendered it, when the delivery said so outside it.
    pub api_version: Option<String>,
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
    /// Its installation.
    pub installation_id: InstallationId,
    /// `Failed` (still retried) or `Dead`.
    pub status: RawEventStatus,
    /// Normalizations tried.
    pub attempts: i64,
    /// When the next retry is due (Unix ms), while it is retried.
    pub next_attempt_at: Option<i64>,
}

/// The columns [`stored_event_from_row`] reads, from `events e JOIN raw_events r`, in its
/// order; the cursor's `tx` (or `0` on SQLite) follows them as column 12.
pub(crate) const EVENT_COLUMNS: &str = "e.seq, e.id, e.installation_id, e.type, e.subject, \
    e.time, e.data, e.raw_event_id, r.driver_id, r.driver_version, r.provider_event_id, \
    r.event_type";

pub(crate) fn stored_event_from_row(row: &AnyRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        cursor: Cursor {
            tx: row.try_get(12)?,
            seq: row.try_get(0)?,
        },
        id: EventId::from_db(row.try_get(1)?),
        installation_id: InstallationId::from_db(row.try_get(2)?),
        event_type: row.try_get(3)?,
        subject: row.try_get(4)?,
        time: row.try_get(5)?,
        data: row.try_get(6)?,
        raw_event_id: row.try_get(7)?,
        driver_id: DriverId::from_db(row.try_get(8)?),
        driver_version: row.try_get(9)?,
        provider_event_id: row.try_get(10)?,
        provider_event_type: row.try_get(11)?,
    })
}

pub(crate) fn raw_event_from_row(row: &AnyRow) -> Result<RawEvent, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(RawEvent {
        id: row.try_get("id")?,
        installation_id: InstallationId::from_db(row.try_get("installation_id")?),
        provider_event_id: row.try_get("provider_event_id")?,
        event_type: row.try_get("event_type")?,
        account_key: row.try_get("account_key")?,
        driver_id: DriverId::from_db(row.try_get("driver_id")?),
        driver_version: row.try_get("driver_version")?,
        received_at: row.try_get("received_at")?,
        payload: row.try_get("payload")?,
        api_version: row.try_get("api_version")?,
        status: RawEventStatus::from_db(&status)?,
        failure_reason: row.try_get("failure_reason")?,
    })
}

/// Which normalized events a reader wants; each field given narrows the list.
#[derive(Debug, Default, Clone, Copy)]
pub struct EventFilter<'a> {
    /// One installation's events.
    pub installation: Option<&'a InstallationId>,
    /// The driver whose installations produced them.
    pub driver: Option<&'a DriverId>,
    /// The CloudEvent type exactly (`payment.succeeded`).
    pub event_type: Option<&'a str>,
}

impl Store {
    /// Normalized events after `after`, in log order (see the module documentation), at
    /// most `limit` of them (clamped to `0..=MAX_EVENTS_PAGE`), optionally for one
    /// installation only. The last one's `cursor` is the next `after`. Deleted
    /// installations' events stay.
    pub async fn list_events(
        &self,
        installation: Option<&InstallationId>,
        after: Cursor,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let filter = EventFilter {
            installation,
            ..EventFilter::default()
        };
        self.list_events_matching(&filter, after, limit).await
    }

    /// [`Store::list_events`] of the events `filter` matches. Pages of a filtered list keep
    /// the log's order and its guarantee: no event before the cursor appears later.
    pub async fn list_events_matching(
        &self,
        filter: &EventFilter<'_>,
        after: Cursor,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = limit.clamp(0, MAX_EVENTS_PAGE);
        if self.backend == Backend::Sqlite {
            return self.events_page(filter, after, limit, i64::MAX).await;
        }
        let installation = filter.installation;
        // The horizon is read once and both the page and the held-back check use it: read
        // separately, the horizon could pass a held-back event between the two, and the
        // event would be in neither.
        let below = self.readable_below().await?;
        let page = self.events_page(filter, after, limit, below).await?;
        if page.len() as i64 == limit {
            return Ok(page);
        }
        // Read your writes: events committed before this call but held back by an older
        // transaction still running are waited for, briefly (see the module documentation).
        let Some(held_back) = self.held_back(installation, after, below).await? else {
            return Ok(page);
        };
        let deadline = tokio::time::Instant::now() + HELD_BACK_WAIT;
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            let now_below = self.readable_below().await?;
            if now_below > held_back {
                return self.events_page(filter, after, limit, now_below).await;
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Ok(page);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(20));
        }
    }

    /// One page of the log below the horizon `below` (PostgreSQL: transactions older than
    /// it have all ended; ignored on SQLite).
    pub(crate) async fn events_page(
        &self,
        filter: &EventFilter<'_>,
        after: Cursor,
        limit: i64,
        below: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        // Parameters: $1 the cursor's seq, $2 the limit, $3 its tx and $4 the horizon
        // (PostgreSQL), then the filter's, in the order below.
        let mut next = match self.backend {
            Backend::Sqlite => 3,
            Backend::Postgres => 5,
        };
        let mut only = String::new();
        for (column, given) in [
            ("e.installation_id", filter.installation.is_some()),
            ("r.driver_id", filter.driver.is_some()),
            ("e.type", filter.event_type.is_some()),
        ] {
            if given {
                only.push_str(&format!(" AND {column} = ${next}"));
                next += 1;
            }
        }
        let sql = match self.backend {
            Backend::Sqlite => format!(
                "SELECT {EVENT_COLUMNS}, 0 FROM events e JOIN raw_events r ON r.id = e.raw_event_id \
                 WHERE e.seq > $1 {only} ORDER BY e.seq LIMIT $2"
            ),
            Backend::Postgres => format!(
                "SELECT {EVENT_COLUMNS}, e.tx FROM events e JOIN raw_events r ON r.id = e.raw_event_id \
                 WHERE (e.tx, e.seq) > ($3, $1) AND e.tx < $4 {only} \
                 ORDER BY e.tx, e.seq LIMIT $2"
            ),
        };
        let mut query = sqlx::query(&sql).bind(after.seq).bind(limit);
        if self.backend == Backend::Postgres {
            query = query.bind(after.tx).bind(below);
        }
        if let Some(id) = filter.installation {
            query = query.bind(id.as_str().to_owned());
        }
        if let Some(driver) = filter.driver {
            query = query.bind(driver.to_string());
        }
        if let Some(event_type) = filter.event_type {
            query = query.bind(event_type.to_owned());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(stored_event_from_row).collect()
    }

    /// PostgreSQL: the newest writing transaction of events after `after` that are
    /// committed but not readable yet (an older transaction is still running), if any.
    async fn held_back(
        &self,
        installation: Option<&InstallationId>,
        after: Cursor,
        below: i64,
    ) -> Result<Option<i64>, StoreError> {
        let sql = format!(
            "SELECT MAX(e.tx) FROM events e \
             WHERE (e.tx, e.seq) > ($1, $2) AND e.tx >= $3 {}",
            if installation.is_some() {
                "AND e.installation_id = $4"
            } else {
                ""
            }
        );
        let mut query = sqlx::query(&sql).bind(after.tx).bind(after.seq).bind(below);
        if let Some(id) = installation {
            query = query.bind(id.as_str().to_owned());
        }
        Ok(query.fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// PostgreSQL: the transaction id below which the log is final now.
    pub(crate) async fn readable_below(&self) -> Result<i64, StoreError> {
        let sql = format!("SELECT {READABLE_BELOW}");
        Ok(sqlx::query(&sql).fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// One raw event of an installation by row id.
    pub async fn raw_event(
        &self,
        installation: &InstallationId,
        id: i64,
    ) -> Result<Option<RawEvent>, StoreError> {
        let row = sqlx::query(
            "SELECT id, installation_id, provider_event_id, event_type, account_key, driver_id, \
               driver_version, received_at, payload, status, failure_reason, api_version \
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

    /// The failed raw events of an installation (still retried, or dead), oldest first.
    pub async fn list_failed(
        &self,
        installation: &InstallationId,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead_letters(Some(installation), i64::MAX).await
    }
}
