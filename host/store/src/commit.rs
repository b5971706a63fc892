//! The ingestion commit: group commit through one writer task per store.
//!
//! [`Store::commit_delivery`] hands its [`Delivery`] to the store's writer over a channel and
//! waits for the answer. The writer takes every delivery waiting (up to [`MAX_BATCH`]),
//! commits them in one transaction — one fsync for many — and only then answers each. So:
//!
//! - **Cancellation is harmless.** Transactions live in the writer task, never in a request
//!   handler: a handler dropped while it waits (client gone, timeout) only drops its
//!   receiver. The delivery still commits or not as a whole; a provider that saw no `2xx`
//!   retries and gets a duplicate. (A handler cancelled inside `BEGIN` is how sqlx 0.8 can
//!   return a SQLite connection to the pool with its write lock held: transact-rs/sqlx#3932.)
//! - **Dedup stays exact.** Inside a batch, the first delivery of an (installation, provider
//!   event id) wins and the others are duplicates; across batches and nodes the unique index
//!   decides (`ON CONFLICT DO NOTHING`).
//! - **`seq` order is commit order**, so the event cursor never skips (see `events`): on
//!   SQLite there is one writer; on PostgreSQL, where several nodes write, each batch takes
//!   a short advisory lock for its last step only — numbering its events and committing —
//!   so batches order among themselves once each, while their deduplication, raw events
//!   and state writes run concurrently.
//! - **A batch that fails answers per delivery.** A batch whose transaction fails for one
//!   delivery's sake (a constraint) is rolled back and each delivery is committed on its
//!   own; a database that is unavailable fails them all with [`StoreError::Unavailable`].
//!   Nothing is ever acknowledged that was not committed.

use std::collections::{HashMap, HashSet};

use std::fmt::Write as _;

use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::crypto::{SecretBytes, SecretCipher};
use crate::store::{Backend, now_rfc3339};
use crate::{EventId, InstallationId, Store, StoreError};

/// Most deliveries one transaction commits.
pub const MAX_BATCH: usize = 256;
/// Deliveries waiting for the writer before senders wait too (backpressure).
const QUEUE: usize = 4 * MAX_BATCH;
/// Raw-event rows per `INSERT` (10 parameters each, far under SQLite's 32766).
const RAW_ROWS_PER_INSERT: usize = 500;
/// Event rows per `INSERT` (7 parameters each).
const EVENT_ROWS_PER_INSERT: usize = 1000;
/// The PostgreSQL advisory lock that orders the numbering and commit of batches' events
/// (`"sluice\0\x01"` as a big-endian integer).
const SEQUENCE_LOCK_KEY: i64 = 0x736c_7569_6365_0001;

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
    /// When [`Delivery::writes`] apply.
    pub writes_apply: WritesApply,
}

/// When a delivery's [`Writes`] are applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WritesApply {
    /// Unless every one of its events was already stored: a redelivered webhook does not
    /// re-apply the state or secrets of its first delivery.
    #[default]
    UnlessDuplicate,
    /// Always (a poll's cursor advances past pages it had already seen).
    Always,
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

type Reply = oneshot::Sender<Result<CommitOutcome, StoreError>>;

/// A delivery waiting for the writer, with where its answer goes.
struct Job {
    delivery: Delivery,
    reply: Reply,
}

/// The sending side of a store's writer.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("installation", &self.delivery.installation_id)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Start the writer task of a pool. It ends when every `Writer` clone is dropped.
    pub(crate) fn spawn(pool: AnyPool, cipher: SecretCipher, backend: Backend) -> Writer {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(queue, pool, cipher, backend));
        Writer { jobs }
    }
}

impl Store {
    /// Commits one delivery: the raw events (deduplicated on installation + provider event
    /// id), their normalized events or their dead-letter state, and the call's writes,
    /// all or nothing — together with whatever other deliveries the writer is committing at
    /// the same moment (group commit; see the module documentation).
    ///
    /// A raw event already stored is counted in `duplicates` and its normalized events are
    /// skipped (the first delivery's are kept). Errors: [`StoreError::NotFound`] if the
    /// installation is not live, [`StoreError::Conflict`] if a normalized event id already
    /// exists, [`StoreError::Unavailable`] if the database cannot be used now.
    ///
    /// Cancel-safe: dropping the future does not affect the commit, only the answer.
    pub async fn commit_delivery(&self, delivery: Delivery) -> Result<CommitOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .jobs
            .send(Job { delivery, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the store's writer dropped the delivery".into())
        })?
    }
}

/// The writer loop: batch what is waiting, commit, answer.
async fn run(
    mut queue: mpsc::Receiver<Job>,
    pool: AnyPool,
    cipher: SecretCipher,
    backend: Backend,
) {
    let committer = Committer {
        pool,
        cipher,
        backend,
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        committer
            .commit_and_answer(std::mem::take(&mut batch))
            .await;
    }
}

struct Committer {
    pool: AnyPool,
    cipher: SecretCipher,
    backend: Backend,
}

impl Committer {
    async fn commit_and_answer(&self, jobs: Vec<Job>) {
        let deliveries: Vec<&Delivery> = jobs.iter().map(|j| &j.delivery).collect();
        match self.commit(&deliveries).await {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            // The database is not usable: every delivery of the batch gets that answer.
            Err(e) if e.is_transient() || jobs.len() == 1 => {
                let message = e.to_string();
                let mut jobs = jobs.into_iter();
                if let Some(first) = jobs.next() {
                    let _ = first.reply.send(Err(e));
                }
                for job in jobs {
                    let _ = job
                        .reply
                        .send(Err(StoreError::Unavailable(message.clone())));
                }
            }
            // One delivery spoiled the batch: commit each on its own, so it alone fails.
            Err(e) => {
                tracing::debug!(error = %e, deliveries = jobs.len(), "batch failed; committing its deliveries one by one");
                for job in jobs {
                    let outcome = self
                        .commit(&[&job.delivery])
                        .await
                        .and_then(|mut o| o.remove(0));
                    let _ = job.reply.send(outcome);
                }
            }
        }
    }

    /// Commit `deliveries` in one transaction. The outer error fails the transaction; an
    /// inner one is a delivery's own answer (its installation is gone) that wrote nothing.
    async fn commit(
        &self,
        deliveries: &[&Delivery],
    ) -> Result<Vec<Result<CommitOutcome, StoreError>>, StoreError> {
        let mut tx = match self.backend {
            // Take the write lock up front instead of upgrading a read lock later.
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        let live = live_installations(&mut tx, deliveries).await?;

        // The first delivery of each (installation, provider event id) in the batch inserts
        // it; later ones in the batch are duplicates without asking the database.
        let mut claimed = HashSet::new();
        let mut rows: Vec<RawRow<'_>> = Vec::new();
        let mut outcomes: Vec<Result<CommitOutcome, StoreError>> =
            Vec::with_capacity(deliveries.len());
        for (index, d) in deliveries.iter().enumerate() {
            if !live.contains(d.installation_id.as_str()) {
                outcomes.push(Err(StoreError::NotFound));
                continue;
            }
            let mut outcome = CommitOutcome::default();
            for event in &d.events {
                if claimed.insert((d.installation_id.as_str(), event.provider_event_id.as_str())) {
                    rows.push(RawRow {
                        delivery: index,
                        d,
                        event,
                    });
                } else {
                    outcome.duplicates += 1;
                }
            }
            outcomes.push(Ok(outcome));
        }

        let inserted = insert_raw_events(&mut tx, &rows).await?;
        let mut events: Vec<(i64, &InstallationId, &NewEvent)> = Vec::new();
        for row in &rows {
            let Ok(outcome) = &mut outcomes[row.delivery] else {
                continue;
            };
            let key = (
                row.d.installation_id.as_str(),
                row.event.provider_event_id.as_str(),
            );
            match inserted.get(&key) {
                Some(&raw_id) => {
                    outcome.stored += 1;
                    if let NormalizeOutcome::Normalized(list) = &row.event.outcome {
                        outcome.events += list.len();
                        events.extend(list.iter().map(|e| (raw_id, &row.d.installation_id, e)));
                    }
                }
                None => outcome.duplicates += 1,
            }
        }
        for (d, outcome) in deliveries.iter().zip(&outcomes) {
            let Ok(outcome) = outcome else { continue };
            let all_duplicates = !d.events.is_empty() && outcome.stored == 0;
            if d.writes_apply == WritesApply::UnlessDuplicate && all_duplicates {
                continue;
            }
            self.apply_writes(&mut tx, d).await?;
        }

        if !events.is_empty() {
            if self.backend == Backend::Postgres {
                // `events.seq` comes from a sequence, handed out at insert time: without
                // order here, a batch holding seq 41 could commit after one holding 42 (on
                // another node), and a reader that had seen 42 would skip 41 forever. The
                // lock orders only this last step (numbering the batch's events, then
                // committing), once per batch; everything above runs concurrently across
                // nodes. It is released by the commit.
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(SEQUENCE_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
            }
            insert_events(&mut tx, &events).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn apply_writes(
        &self,
        tx: &mut Transaction<'static, Any>,
        d: &Delivery,
    ) -> Result<(), StoreError> {
        let id = d.installation_id.as_str();
        for write in &d.writes.state {
            match write {
                StateWrite::Set { key, value } => {
                    sqlx::query(
                        "INSERT INTO driver_state (installation_id, key, value, updated_at) \
                         VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (installation_id, key) \
                         DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    )
                    .bind(id)
                    .bind(key.as_str())
                    .bind(value.clone())
                    .bind(now_rfc3339())
                    .execute(&mut **tx)
                    .await?;
                }
                StateWrite::Delete { key } => {
                    sqlx::query("DELETE FROM driver_state WHERE installation_id = $1 AND key = $2")
                        .bind(id)
                        .bind(key.as_str())
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        for (name, value) in &d.writes.secrets {
            let ciphertext = self
                .cipher
                .encrypt(&d.installation_id, name, value.expose())?;
            sqlx::query(
                "INSERT INTO secrets (installation_id, name, ciphertext, updated_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (installation_id, name) \
                 DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
            )
            .bind(id)
            .bind(name.as_str())
            .bind(ciphertext)
            .bind(now_rfc3339())
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// A raw event to insert, and the delivery it belongs to.
struct RawRow<'a> {
    delivery: usize,
    d: &'a Delivery,
    event: &'a IngestedEvent,
}

/// Which of the deliveries' installations are live.
async fn live_installations(
    tx: &mut Transaction<'static, Any>,
    deliveries: &[&Delivery],
) -> Result<HashSet<String>, StoreError> {
    let ids: Vec<&str> = deliveries
        .iter()
        .map(|d| d.installation_id.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let sql = format!(
        "SELECT id FROM installations WHERE deleted_at IS NULL AND id IN {}",
        placeholders(1, ids.len())
    );
    let mut query = sqlx::query(&sql);
    for id in ids {
        query = query.bind(id.to_owned());
    }
    let rows = query.fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
        .collect()
}

/// Insert raw events, skipping those already stored; returns the row id of each inserted
/// one by (installation, provider event id).
async fn insert_raw_events<'a>(
    tx: &mut Transaction<'static, Any>,
    rows: &[RawRow<'a>],
) -> Result<HashMap<(&'a str, &'a str), i64>, StoreError> {
    let mut inserted = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(RAW_ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO raw_events (installation_id, provider_event_id, event_type, \
             account_key, driver_id, driver_version, received_at, payload, status, \
             failure_reason) VALUES {} \
             ON CONFLICT (installation_id, provider_event_id) DO NOTHING \
             RETURNING id, installation_id, provider_event_id",
            placeholders(chunk.len(), 10)
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let (status, reason) = match &row.event.outcome {
                NormalizeOutcome::Normalized(_) => ("normalized", None),
                NormalizeOutcome::Failed { reason } => ("failed", Some(reason.clone())),
            };
            query = query
                .bind(row.d.installation_id.as_str().to_owned())
                .bind(row.event.provider_event_id.clone())
                .bind(row.event.event_type.clone())
                .bind(row.event.account_key.clone())
                .bind(row.d.driver_id.clone())
                .bind(row.d.driver_version.clone())
                .bind(row.d.received_at.clone())
                .bind(row.event.payload.clone())
                .bind(status)
                .bind(reason);
        }
        let returned = query.fetch_all(&mut **tx).await?;
        // RETURNING order is not guaranteed: match rows by their key.
        let by_key: HashMap<(&str, &str), &RawRow<'a>> = chunk
            .iter()
            .map(|r| {
                (
                    (
                        r.d.installation_id.as_str(),
                        r.event.provider_event_id.as_str(),
                    ),
                    r,
                )
            })
            .collect();
        for row in returned {
            let id: i64 = row.try_get(0)?;
            let installation: String = row.try_get(1)?;
            let provider_event_id: String = row.try_get(2)?;
            if let Some(r) = by_key.get(&(installation.as_str(), provider_event_id.as_str())) {
                inserted.insert(
                    (
                        r.d.installation_id.as_str(),
                        r.event.provider_event_id.as_str(),
                    ),
                    id,
                );
            }
        }
    }
    Ok(inserted)
}

/// Insert normalized events.
async fn insert_events(
    tx: &mut Transaction<'static, Any>,
    events: &[(i64, &InstallationId, &NewEvent)],
) -> Result<(), StoreError> {
    for chunk in events.chunks(EVENT_ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO events (id, installation_id, raw_event_id, type, subject, time, data) \
             VALUES {}",
            placeholders(chunk.len(), 7)
        );
        let mut query = sqlx::query(&sql);
        for (raw_id, installation, e) in chunk {
            query = query
                .bind(e.event_id.as_str().to_owned())
                .bind(installation.as_str().to_owned())
                .bind(*raw_id)
                .bind(e.event_type.clone())
                .bind(e.subject.clone())
                .bind(e.time.clone())
                .bind(e.data.clone());
        }
        query.execute(&mut **tx).await.map_err(|err| {
            if StoreError::is_unique_violation(&err) {
                StoreError::Conflict("a normalized event with this id already exists".into())
            } else {
                StoreError::from(err)
            }
        })?;
    }
    Ok(())
}

/// `($1, $2), ($3, $4)` for 2 rows of 2 columns. (sqlx's `QueryBuilder` writes `?`
/// placeholders for `Any`, which PostgreSQL does not take.)
fn placeholders(rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        out.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "${}", row * columns + column + 1);
        }
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn numbered_placeholders() {
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 1), "($1)");
    }
}
