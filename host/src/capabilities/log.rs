//! The `log` capability: driver messages into the host's `tracing` log, tagged with the
//! driver and installation, rate-limited per call (messages and the driver's
//! `max_log_bytes`) so a chatty driver cannot flood it. `enabled` tells the driver whether
//! a message would be kept, so it can skip formatting one the host would drop.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmtime::component::{HasSelf, Linker};

use super::{CallScope, CallState, Capability, CapabilityConfig};
use crate::wit::log::{Host, Level};

/// The log capability's section, `[capabilities.log]`. (The bytes a call may log are a
/// driver limit: `[drivers.<id>] max_log_bytes`.)
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Most messages one call may log; the rest are counted and dropped. Default 100.
    pub max_messages_per_call: u32,
    /// Longest message kept, bytes; longer ones are cut at a character boundary.
    /// Default 4096.
    pub max_message_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            max_messages_per_call: 100,
            max_message_bytes: 4096,
        }
    }
}

/// The log capability.
pub struct Log {
    config: LogConfig,
}

/// One call's log budget and tags.
pub struct CallLog {
    driver: String,
    installation: String,
    written: u32,
    max_messages: u32,
    max_message_bytes: usize,
    /// Bytes the call may still log (the driver's `max_log_bytes`).
    bytes_left: usize,
}

impl Capability for Log {
    const INTERFACE: &'static str = "log";
    const FUNCTIONS: &'static [&'static str] = &["log", "enabled"];
    type Config = LogConfig;
    type Driver = ();
    type Call = CallLog;

    fn new(config: &LogConfig, _: &CapabilityConfig) -> anyhow::Result<Self> {
        Ok(Log {
            config: config.clone(),
        })
    }

    fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        crate::wit::log::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)
    }

    fn start_call(&self, _: &Arc<()>, scope: &CallScope) -> CallLog {
        CallLog {
            driver: scope.driver.id.clone(),
            installation: scope.installation_id().to_string(),
            written: 0,
            max_messages: self.config.max_messages_per_call,
            max_message_bytes: self.config.max_message_bytes,
            bytes_left: scope.driver.limits.max_log_bytes,
        }
    }
}

impl CallLog {
    /// Whether the call may still log: neither the message count nor the bytes are spent.
    fn has_budget(&self) -> bool {
        self.written < self.max_messages && self.bytes_left > 0
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
        if log.written > log.max_messages {
            return Ok(());
        }
        let mut message = message;
        crate::text::truncate(&mut message, log.max_message_bytes);
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
            max_messages: 100,
            max_message_bytes: 4096,
            bytes_left,
        };
        assert!(call(0, 1).has_budget());
        assert!(call(99, 4096).has_budget());
        assert!(!call(100, 4096).has_budget());
        assert!(!call(3, 0).has_budget());
    }
}
