//! Drivers compiled into the host process, for embedders that measure the sandbox.
//!
//! `sluice serve` never uses one: no configuration turns it on. A program that embeds the
//! host (the benchmark's `sluice-native` server) registers one with
//! [`Pipeline::with_in_process`](super::Pipeline::with_in_process) to run a driver's own
//! code natively in place of its component, on the same server, routing and commit, so the
//! two can be compared end to end.

use crate::installations::CachedInstallation;
use crate::runtime::CallError;
use crate::wit::ingest::WebhookOutcome;
use crate::wit::types::IncomingRequest;

/// A driver's `receive`, run as host code.
pub trait InProcessDriver: Send + Sync + 'static {
    /// Verify and turn one webhook request of `installation` into raw events and records,
    /// as the component's `receive` would; `now` is Unix seconds.
    fn receive(
        &self,
        installation: &CachedInstallation,
        request: &IncomingRequest,
        now: i64,
    ) -> Result<WebhookOutcome, CallError>;
}
