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
mod consumers;
mod endpoints;
mod outbox;

pub use consumers::{Backlog, SinkState};
pub use endpoints::{Endpoint, EndpointFilter, EndpointUpdate, NewEndpoint, SigningKeys};
pub use outbox::{
    Attempt, AttemptOutcome, DeliveryStatus, DueDelivery, EndpointDelivery, ReplayOne,
};
