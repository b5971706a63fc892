//! The installation's key/value state (the WIT `state` interface), with a typed error.
//!
//! Writes made during a call are committed with the events the call produced, or not at
//! all. The host holds each installation to a budget of keys and bytes (its policy's
//! `max_state_keys`, `max_state_bytes`); a write past it fails with
//! [`StateErrorKind::OverBudget`], and so on for each refusal the host documents.

use crate::bindings::sluice::driver::state as wit;

/// Why the host refused a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateErrorKind {
    /// Empty, over 128 bytes, or holding a control character.
    InvalidKey,
    /// `sluice:` (in any case) starts the host's own keys.
    ReservedKey,
    /// The value is over 64 KiB.
    TooLarge,
    /// The call already wrote 64 distinct keys.
    TooManyWrites,
    /// The installation's budget of keys or bytes would be exceeded.
    OverBudget,
    /// The call has no installation (e.g. `metadata`).
    NoInstallation,
    /// A refusal this SDK does not know (a newer host).
    Other,
}

/// A refused write: its kind and the host's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError {
    /// Which refusal.
    pub kind: StateErrorKind,
    /// The host's text, kind first.
    pub message: String,
}

impl StateError {
    /// Read the host's text, which starts with its kind (`over-budget: …`).
    pub fn parse(message: String) -> Self {
        let kind = match message.split_once(':').map(|(kind, _)| kind) {
            Some("invalid-key") => StateErrorKind::InvalidKey,
            Some("reserved-key") => StateErrorKind::ReservedKey,
            Some("too-large") => StateErrorKind::TooLarge,
            Some("too-many-writes") => StateErrorKind::TooManyWrites,
            Some("over-budget") => StateErrorKind::OverBudget,
            Some("no-installation") => StateErrorKind::NoInstallation,
            _ => StateErrorKind::Other,
        };
        Self { kind, message }
    }
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StateError {}

/// The value of `key`: this call's own write if it made one, else what is committed.
pub fn get(key: &str) -> Option<Vec<u8>> {
    wit::get(key)
}

/// Set `key` to `value`, committed with the call's events.
pub fn set(key: &str, value: &[u8]) -> Result<(), StateError> {
    wit::set(key, value).map_err(StateError::parse)
}

/// Delete `key`, committed with the call's events.
pub fn delete(key: &str) {
    wit::delete(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_documented_refusal_has_its_kind() {
        for (text, kind) in [
            (
                "invalid-key: state keys are 1 to 128 bytes",
                StateErrorKind::InvalidKey,
            ),
            (
                "reserved-key: state keys starting with \"sluice:\"",
                StateErrorKind::ReservedKey,
            ),
            (
                "too-large: state values are at most 65536 bytes",
                StateErrorKind::TooLarge,
            ),
            (
                "too-many-writes: a call writes at most 64 state keys",
                StateErrorKind::TooManyWrites,
            ),
            (
                "over-budget: the installation holds 4194000 bytes",
                StateErrorKind::OverBudget,
            ),
            (
                "no-installation: no installation state in this call",
                StateErrorKind::NoInstallation,
            ),
            ("something new", StateErrorKind::Other),
        ] {
            let e = StateError::parse(text.to_string());
            assert_eq!(e.kind, kind, "{text}");
            assert_eq!(e.to_string(), text);
        }
    }
}
