//! The ingestion commit: group commit through one writer per store.
//!
//! [`Store::commit_delivery`] hands its [`Delivery`] to the store's writer over a channel and
//! waits for the answer. The writer takes every delivery waiting (up to [`MAX_BATCH`]),
//! commits them in one transaction — one fsync for many — and only then answers each. So:
//!
//! - **Cancellation is harmless.** Transactions live in the writer, never in a request
//!   handler: a handler dropped while it waits (client gone, timeout) only drops its
//!   receiver. The delivery still commits or not as a whole; a provider that saw no `2xx`
//!   retries and gets a duplicate. (A handler cancelled inside `BEGIN` is how sqlx 0.8 can
//!   return a SQLite connection to the pool with its write lock held: transact-rs/sqlx#3932.)
//! - **Dedup stays exact.** Inside a batch, the first delivery of an (installation, provider
//!   event id) wins and the others are duplicates; across batches and nodes the unique index
//!   decides (`ON CONFLICT DO NOTHING`).
//! - **No writer waits for another.** SQLite has one writer (all SQLite allows). On
//!   PostgreSQL several writers per node, and any number of nodes, commit concurrently;
//!   the event cursor stays gapless because readers order by writing transaction and only
//!   read finished ones (see `events`). Raw events are inserted in key order, so two batches
//!   holding the same provider event ids wait for each other instead of deadlocking.
//! - **A batch that fails answers per delivery.** A batch whose transaction fails for one
//!   delivery's sake (a constraint) is rolled back and each delivery is committed on its
//!   own; a database that is unavailable fails them all with [`StoreError::Unavailable`].
//!   Nothing is ever acknowledged that was not committed.
//!
//! The batch plan (what is a duplicate, what each delivery's answer is) is shared
//! (`batch`), and so are the statements applying a delivery's state and secret writes
//! (`writes`); each backend has its own SQL for the events: `sqlite` through the `Any`
//! pool, `postgres` one statement over arrays, so a batch of any size is one prepared
//! statement and one round trip.

mod batch;
mod postgres;
mod sqlite;
mod writer;
mod writes;

pub(crate) use writes::AUDIT_SECRET;

use tokio::sync::oneshot;

use crate::crypto::SecretBytes;
use crate::{DriverId, EventId, InstallationId, Store, StoreError};

pub(crate) use writer::{Job, PG_WRITERS, Sink, Writer};

/// Most deliveries one transaction commits.
pub const MAX_BATCH: usize = 256;

/// Everything one webhook delivery or one poll produced, committed atomically by
/// [`Store::commit_delivery`].
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The installation the events belong to (must be live).
    pub installation_id: InstallationId,
    /// The driver that produced them.
    pub driver_id: DriverId,
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
    /// The provider API version that rendered the payload, when the delivery said so
    /// outside it (Shopify's `X-Shopify-API-Version`).
    pub api_version: Option<String>,
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
        // Secrets captured with the delivery (rarely: captures are stored as they arrive).
        let changed =
            (!delivery.writes.secrets.is_empty()).then(|| delivery.installation_id.clone());
        self.writer
            .send(Job { delivery, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".into()))?;
        let outcome = answer.await.map_err(|_| {
            StoreError::Unavailable("the store's writer dropped the delivery".into())
        })??;
        if let Some(id) = changed {
            self.secrets_changed(&id).await;
        }
        Ok(outcome)
    }
}

/// The error of an insert into `events`: a unique violation there is an event id that
/// already exists.
pub(crate) fn event_id_conflict(err: sqlx::Error) -> StoreError {
    if StoreError::is_unique_violation(&err) {
        StoreError::Conflict("a normalized event with this id already exists".into())
    } else {
        StoreError::from(err)
    }
}
