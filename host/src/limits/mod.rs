//! Limits: what every driver call runs under.
//!
//! [`SandboxConfig`] is the `[sandbox]` section, the host-wide maxima (the instance pool is
//! sized for them); [`DriverLimits`] is what one driver's calls get, resolved from the
//! operator's policy within those maxima; [`MemoryLimiter`] enforces a call's memory limit
//! and reports its peak.

mod memory;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use memory::MemoryLimiter;

/// Limits applied to every driver call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Wall-clock budget of one webhook delivery (verify + handle + normalize). Default 2000.
    pub webhook_timeout_ms: u64,
    /// Linear memory per instance. Default 64 MiB.
    pub max_memory_bytes: usize,
    /// Bytes a call may return (raw events and records together). Default 8 MiB.
    pub max_output_bytes: usize,
    /// Outbound HTTP requests per call. Default 16.
    pub max_outbound_requests: u32,
    /// Largest outbound response body handed to a guest. Default 4 MiB.
    pub max_response_bytes: usize,
    /// Instances that may run at once; more wait briefly, then get `503`. Default 64.
    pub max_concurrent_instances: u32,
    /// Bytes of driver state (keys and values) one installation may keep. Default 4 MiB.
    pub max_state_bytes: usize,
    /// Driver state keys one installation may keep. Default 1024.
    pub max_state_keys: u32,
    /// Threads that run driver code, apart from the ones serving HTTP, so a busy or
    /// hostile driver cannot take the cores the server answers on. Default: one less
    /// than the machine's cores, at least 1.
    pub guest_threads: Option<usize>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            webhook_timeout_ms: 2_000,
            max_memory_bytes: 64 * 1024 * 1024,
            max_output_bytes: 8 * 1024 * 1024,
            max_outbound_requests: 16,
            max_response_bytes: 4 * 1024 * 1024,
            max_concurrent_instances: 64,
            max_state_bytes: 4 * 1024 * 1024,
            max_state_keys: 1024,
            guest_threads: None,
        }
    }
}

impl SandboxConfig {
    /// Check what the types cannot; `Err` names the keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.webhook_timeout_ms == 0
            || self.max_concurrent_instances == 0
            || self.guest_threads == Some(0)
            || self.max_state_keys == 0
            || self.max_state_bytes == 0
        {
            return Err(
                "[sandbox] webhook_timeout_ms, max_concurrent_instances, guest_threads, max_state_bytes and max_state_keys must be positive"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn webhook_timeout(&self) -> Duration {
        Duration::from_millis(self.webhook_timeout_ms)
    }

    /// The guest threads in force.
    pub fn guest_threads(&self) -> usize {
        self.guest_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .max(1)
        })
    }
}

/// Default log budget of one call, bytes.
pub const DEFAULT_MAX_LOG_BYTES: usize = 64 * 1024;

/// The limits one driver's calls run under, resolved from the policy and the
/// `[sandbox]` defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DriverLimits {
    pub timeout_ms: u64,
    pub max_memory_bytes: usize,
    pub max_output_bytes: usize,
    pub max_outbound_requests: u32,
    pub max_log_bytes: usize,
    pub max_concurrent_instances: u32,
    pub max_state_bytes: usize,
    pub max_state_keys: u32,
}

impl DriverLimits {
    /// The defaults for a driver the policy says nothing about.
    pub fn defaults(sandbox: &SandboxConfig) -> Self {
        Self {
            timeout_ms: sandbox.webhook_timeout_ms,
            max_memory_bytes: sandbox.max_memory_bytes,
            max_output_bytes: sandbox.max_output_bytes,
            max_outbound_requests: sandbox.max_outbound_requests,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            max_concurrent_instances: (sandbox.max_concurrent_instances * 3 / 4).max(1),
            max_state_bytes: sandbox.max_state_bytes,
            max_state_keys: sandbox.max_state_keys,
        }
    }

    /// The wall-clock budget of one call.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }
}
