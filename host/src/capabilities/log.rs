//! The `log` capability: driver messages into the host's `tracing` log, tagged with the
//! driver and installation, rate-limited per call (messages and the driver's
//! `max_log_bytes`) so a chatty driver cannot flood it. `enabled` tells the driver whether
//! a message would be kept, so it can skip formatting one the host would drop.

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

impl CallLog {
    /// Whether the call may still log: neither the message count nor the bytes are spent.
    fn has_budget(&self) -> bool {
        self.written < MAX_MESSAGES_PER_CALL && self.bytes_left > 0
    }
}

/// Whether the host's filter keeps driver messages of `level` (inside the call's
/// `driver_call` span, so span-scoped directives apply too).
fn filter_keeps(level: Level) -> bool {
    match level {
        Level::Trace => tracing::enabled!(target: "sluice::driver", tracing::Level::TRACE),
        Level::Debug => tracing::enabled!(target: "sluice::driver", tracing::Level::DEBUG),
        Level::Info => tracing::enabled!(target: "sluice::driver", tracing::Level::INFO),
        Level::Warn => tracing::enabled!(target: "sluice::driver", tracing::Level::WARN),
        Level::Error => tracing::enabled!(target: "sluice::driver", tracing::Level::ERROR),
    }
}

impl Host for CallState {
    async fn enabled(&mut self, level: Level) -> wasmtime::Result<bool> {
        Ok(self.caps.log.has_budget() && filter_keeps(level))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_follows_the_filter_for_driver_messages() {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "trace,sluice::driver=warn",
            ))
            .with_writer(std::io::sink)
            .finish();
        let kept = tracing::subscriber::with_default(subscriber, || {
            [
                Level::Trace,
                Level::Debug,
                Level::Info,
                Level::Warn,
                Level::Error,
            ]
            .map(filter_keeps)
        });
        assert_eq!(kept, [false, false, false, true, true]);
    }

    #[test]
    fn a_spent_budget_keeps_nothing() {
        let call = |written, bytes_left| CallLog {
            driver: "d".into(),
            installation: "i".into(),
            written,
            bytes_left,
        };
        assert!(call(0, 1).has_budget());
        assert!(call(MAX_MESSAGES_PER_CALL - 1, 4096).has_budget());
        assert!(!call(MAX_MESSAGES_PER_CALL, 4096).has_budget());
        assert!(!call(3, 0).has_budget());
    }
}
