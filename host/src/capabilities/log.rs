//! The `log` capability: driver messages into the host's `tracing` log, tagged with the
//! driver and installation, rate-limited per call (messages and the driver's
//! `max_log_bytes`) so a chatty driver cannot flood it.

use wasmtime::component::{HasSelf, Linker};

use super::{CallScope, CallState, Capability, CapabilityConfig};
use crate::wit::log::{Host, Level};

/// Most messages one call may log; the rest are counted and dropped.
const MAX_MESSAGES_PER_CALL: u32 = 100;
/// Longest message kept; longer ones are cut.
const MAX_MESSAGE_BYTES: usize = 4096;

/// The log capability (no configuration).
pub struct Log;

/// One call's log budget and tags.
pub struct CallLog {
    driver: String,
    installation: String,
    written: u32,
    /// Bytes the call may still log (the driver's `max_log_bytes`).
    bytes_left: usize,
}

impl Capability for Log {
    type Call = CallLog;

    fn new(_: &CapabilityConfig) -> anyhow::Result<Self> {
        Ok(Log)
    }

    fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        crate::wit::log::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)
    }

    fn start_call(&self, scope: &CallScope) -> CallLog {
        CallLog {
            driver: scope.driver.id.clone(),
            installation: scope.installation_id().to_string(),
            written: 0,
            bytes_left: scope.driver.limits.max_log_bytes,
        }
    }
}

impl Host for CallState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let log = &mut self.caps.log;
        log.written += 1;
        if log.written > MAX_MESSAGES_PER_CALL {
            return Ok(());
        }
        let mut message = message;
        if message.len() > MAX_MESSAGE_BYTES {
            let mut cut = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        if message.len() > log.bytes_left {
            log.bytes_left = 0;
            return Ok(());
        }
        log.bytes_left -= message.len();
        let (driver, installation) = (&log.driver, &log.installation);
        match level {
            Level::Trace => {
                tracing::trace!(target: "sluice::driver", driver, installation, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "sluice::driver", driver, installation, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "sluice::driver", driver, installation, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "sluice::driver", driver, installation, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "sluice::driver", driver, installation, "{message}")
            }
        }
        Ok(())
    }
}
