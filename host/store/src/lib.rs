//! # sluice-store
//!
//! The persistence layer of Sluice: everything the host must not lose.
//!
//! - **Installations** (one customer's connection through one driver), soft-deleted so
//!   their ids are never reused and their events stay readable.
//! - **Secrets**, encrypted at rest with XChaCha20-Poly1305 under a 32-byte master key
//!   ([`MasterKey`], [`SecretCipher`]) and bound to their (installation, name) slot.
//!   Only names are ever listed; values come back as zeroed-on-drop [`SecretBytes`].
//! - **Driver state** (small per-installation key/value: cursors, token expiry).
//! - **The authorization lifecycle** (`auth`): secret rotation with a grace period,
//!   single-use OAuth states, each installation's grant and its refresh lease.
//! - **The polling schedule** (`schedule`): when each polled installation is due, and a
//!   lease per installation so each is polled by one node at a time.
//! - **The ingestion commit** ([`Store::commit_delivery`]): the raw events of one delivery
//!   (deduplicated on installation + provider event id), their normalized events or
//!   dead-letter state, and the driver's state writes, all or nothing, committed by one
//!   writer task per store together with whatever else is waiting (group commit; see
//!   `commit`). A webhook is acknowledged only after this returns `Ok`, and cancelling the
//!   caller cannot leave a transaction open. Events are stored as their record and
//!   attributes; the host renders the CloudEvent envelope when they are read.
//! - **Delivery** (`delivery`): outbound webhook endpoints (signing keys sealed like
//!   secrets), each consumer's committed position in the event log and its lease, and
//!   each endpoint's outbox with its attempts. The log itself is the outbox the ingestion
//!   commit fills; nothing more is written on that path for delivery.
//! - **Driver versions** (`drivers`): every component the host was given, by sha256 with
//!   its bytes, the activation history of each driver (the newest is active; rollback goes
//!   to the one active before), installations pinned to a version, and on PostgreSQL a `NOTIFY` per change so
//!   every node follows at once.
//! - **Typed ids** ([`id`]): one generated-id scheme for every kind.
//! - **The event log** read by the Processing Engine through a [`Cursor`]
//!   ([`Store::list_events`]): a reader that resumes after the last position it saw never
//!   misses an event, on either backend, without serialising writers (see `events`).
//! - **Bounded failure**: every operation gives up within [`StoreConfig`]' timeouts with
//!   [`StoreError::Unavailable`] when the database is down, stuck or locked, and works
//!   again by itself when it is back.
//!
//! Two backends, one code path: SQLite (`sqlite://path/to.db`, the embedded default) and
//! PostgreSQL (`postgres://…`, several nodes sharing one database), both through
//! `sqlx::AnyPool` with `$n` placeholders. Each backend has its own migration directory
//! (`migrations/sqlite`, `migrations/postgres`) with the same tables and semantics, applied
//! by [`Store::connect`]. Times are stored as RFC 3339 UTC text.

#![warn(missing_docs)]

mod auth;
mod commit;
mod crypto;
mod delivery;
mod drivers;
mod error;
mod events;
pub mod id;
mod installations;
mod retries;
mod schedule;
mod secrets;
mod state;
mod store;

pub use auth::{AuthRecord, AuthStatus, GrantUpdate, OAuthState, RefreshFailure};
pub use commit::{
    CommitOutcome, Delivery, IngestedEvent, MAX_BATCH, NewEvent, NormalizeOutcome, StateWrite,
    Writes, WritesApply,
};
pub use crypto::{MasterKey, SecretBytes, SecretCipher, create_private_dir};
pub use delivery::{
    Attempt, AttemptOutcome, Backlog, DeliveryStatus, DueDelivery, Endpoint, EndpointDelivery,
    EndpointFilter, EndpointUpdate, NewEndpoint, ReplayOne, SigningKeys, SinkState,
};
pub use drivers::{
    ActivationReason, Change, Changes, DRIVER_CHANNEL, DriverSource, DriverVersion,
    INSTALLATION_PREFIX, NewDriverVersion, RemoveRefused,
};
pub use error::StoreError;
pub use events::{
    Cursor, DeadLetter, EventFilter, MAX_EVENTS_PAGE, RawEvent, RawEventStatus, StoredEvent,
};
pub use id::{DriverId, EndpointId, EventId, InstallationId};
pub use installations::{Installation, NewInstallation};
pub use schedule::{DuePoll, PollEnd, PollStatus};
pub use secrets::{SealedSecret, SecretAction, SecretChange};
pub use store::{Backend, Store, StoreConfig};
