//! Logging into the host's log, where each line is tagged with the driver and the
//! installation. The host keeps at most 100 messages a call, each cut to 4096 bytes, within
//! the driver's `max_log_bytes`, and drops messages its filter (`SLUICE_LOG`, target
//! `sluice::driver`) does not let through.
//!
//! [`log!`](crate::log!) formats a message only when the host would keep it, so a debug
//! line costs nothing in production:
//!
//! ```ignore
//! use sluice_sdk::log::Level;
//! sluice_sdk::log!(Level::Debug, "webhook {id} rendered with API version {version}");
//! ```
//!
//! Off-wasm (native unit tests) nothing is logged and [`enabled`] is `false`, so driver
//! logic that logs runs in a plain `cargo test`.
//!
//! [`enabled`] (and so `log!`) needs a host at `sluice:driver@0.6.1` or later: a driver
//! that calls it is refused by a `0.6.0` host, which names the import. [`log()`] works on
//! every `0.6` host.

pub use crate::bindings::sluice::driver::log::Level;

/// Log `message` at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::sluice::driver::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

/// Whether a message at `level` would be kept now: the host's filter lets driver messages
/// of that level through and this call's log budget is not spent. Ask before formatting a
/// message that costs something to build. Since `sluice:driver@0.6.1`.
pub fn enabled(level: Level) -> bool {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::sluice::driver::log::enabled(level);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = level;
        false
    }
}

/// `log!(level, "format", args…)`: format and log the message only when the host would
/// keep it ([`enabled`]).
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {{
        let level: $crate::log::Level = $level;
        if $crate::log::enabled(level) {
            $crate::log::log(level, &::std::format!($($arg)+));
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_wasm_nothing_is_formatted() {
        struct Panics;
        impl std::fmt::Display for Panics {
            fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                panic!("formatted although the host would drop it")
            }
        }
        assert!(!enabled(Level::Error));
        crate::log!(Level::Error, "{}", Panics);
        log(Level::Info, "dropped off-wasm");
    }
}
