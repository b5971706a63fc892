//! Delivery to the Processing Engine beyond `GET /v1/events` (issue 12, in progress).
//!
//! So far: [`standard_webhooks`], the signature outbound webhook deliveries carry. The
//! endpoints, their retry schedule and the NATS JetStream sink build on it.

pub mod standard_webhooks;
