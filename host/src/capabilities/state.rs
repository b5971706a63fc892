//! The `state` capability: a small key/value map per installation (cursors, token
//! expiry). Writes are buffered for the call and committed by the caller in the same
//! transaction as the events the call produced, or dropped with them — a call that fails
//! commits none.
//!
//! Each installation keeps at most its driver's `max_state_keys` keys and
//! `max_state_bytes` bytes of keys and values (`[sandbox]`, or `[drivers.<id>]`): a write
//! past either is refused. The first write of a call reads what the installation holds;
//! calls of one installation running at the same time are each held to the budget against
//! that reading, so together they stay within it plus what one call may write.
//!
//! A refusal's text starts with its kind, for drivers to match (the SDK's `StateError`):
//! `invalid-key:`, `reserved-key:`, `too-large:`, `too-many-writes:`, `over-budget:`,
//! `no-installation:`.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_store::{StateWrite, Writes};
use wasmtime::component::{HasSelf, Linker};

use super::{
    CallScope, CallState, Capability, CapabilityConfig, DataSource, InstallationScope, NoConfig,
};
use crate::wit::state::Host;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// Keys the host keeps for itself (the poll cursor); drivers cannot write them.
pub const HOST_PREFIX: &str = "sluice:";
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most distinct keys one call may write (or delete): 64 × 64 KiB at most is held for the
/// commit, whatever a driver does.
pub const MAX_WRITES_PER_CALL: usize = 64;

/// The state capability (no configuration).
pub struct State;

/// One call's view of the installation's state: where reads go, and its pending writes
/// (`None` = deleted).
pub struct CallStateMap {
    installation: Option<InstallationScope>,
    pending: HashMap<String, Option<Vec<u8>>>,
    /// The installation's budget.
    max_bytes: usize,
    max_keys: u32,
    /// The size (key and value) of each key the installation held when this call first
    /// wrote, read then.
    stored: Option<HashMap<String, usize>>,
}

impl Capability for State {
    const INTERFACE: &'static str = "state";
    const FUNCTIONS: &'static [&'static str] = &["get", "set", "delete"];
    type Config = NoConfig;
    type Driver = ();
    type Call = CallStateMap;

    fn new(_: &NoConfig, _: &CapabilityConfig) -> anyhow::Result<Self> {
        Ok(State)
    }

    fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        crate::wit::state::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)
    }

    fn start_call(&self, _: &Arc<()>, scope: &CallScope) -> CallStateMap {
        CallStateMap {
            installation: scope.installation.clone(),
            pending: HashMap::new(),
            max_bytes: scope.driver.limits.max_state_bytes,
            max_keys: scope.driver.limits.max_state_keys,
            stored: None,
        }
    }

    fn finish_call(call: &mut CallStateMap, writes: &mut Writes) {
        writes
            .state
            .extend(call.pending.drain().map(|(key, value)| match value {
                Some(value) => StateWrite::Set { key, value },
                None => StateWrite::Delete { key },
            }));
    }
}

/// Whether `key` is one of the host's own (`sluice:`, in any case).
pub fn is_host_key(key: &str) -> bool {
    key.len() >= HOST_PREFIX.len()
        && key.as_bytes()[..HOST_PREFIX.len()].eq_ignore_ascii_case(HOST_PREFIX.as_bytes())
}

impl CallStateMap {
    /// Whether this call may write `key`.
    fn writable(&self, key: &str) -> Result<(), String> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(format!("invalid-key: state keys are 1 to {MAX_KEY_BYTES} bytes"));
        }
        if key.chars().any(char::is_control) {
            return Err("invalid-key: state keys hold no control characters".into());
        }
        if self.installation.is_none() {
            return Err("no-installation: no installation state in this call".into());
        }
        if is_host_key(key) {
            return Err(format!(
                "reserved-key: state keys starting with {HOST_PREFIX:?} (in any case) are the host's (the poll cursor)"
            ));
        }
        Ok(())
    }

    /// Whether this call may write one more key (rewriting a key it wrote is free).
    fn room_for(&self, key: &str) -> Result<(), String> {
        if self.pending.len() >= MAX_WRITES_PER_CALL && !self.pending.contains_key(key) {
            return Err(format!(
                "too-many-writes: a call writes at most {MAX_WRITES_PER_CALL} state keys"
            ));
        }
        Ok(())
    }

    /// Whether the installation stays within its budget with `key` set to `len` bytes of
    /// value; reads what it holds on the first write.
    async fn within_budget(&mut self, key: &str, len: usize) -> wasmtime::Result<Result<(), String>> {
        if self.stored.is_none() {
            let sizes = match &self.installation {
                None => HashMap::new(),
                Some(InstallationScope { id, data }) => {
                    let store = match data {
                        DataSource::Fixed(fixed) => {
                            let sizes = fixed
                                .state
                                .iter()
                                .map(|(k, v)| (k.clone(), k.len() + v.len()))
                                .collect();
                            self.stored = Some(sizes);
                            return Ok(self.check_budget(key, len));
                        }
                        DataSource::Store(store) => store,
                        DataSource::Installation(cached) => cached.store(),
                    };
                    store
                        .state_sizes(id)
                        .await
                        .map_err(|e| wasmtime::Error::msg(format!("reading the state's size: {e}")))?
                        .into_iter()
                        .map(|(k, v)| {
                            let size = k.len() + v;
                            (k, size)
                        })
                        .collect()
                }
            };
            self.stored = Some(sizes);
        }
        Ok(self.check_budget(key, len))
    }

    /// The budget check over what was read and what this call has written so far.
    fn check_budget(&self, key: &str, len: usize) -> Result<(), String> {
        let mut sizes: HashMap<&str, usize> = self
            .stored
            .iter()
            .flatten()
            .filter(|(k, _)| !is_host_key(k))
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        for (k, v) in &self.pending {
            match v {
                Some(v) => sizes.insert(k.as_str(), k.len() + v.len()),
                None => sizes.remove(k.as_str()),
            };
        }
        sizes.insert(key, key.len() + len);
        let (keys, bytes) = (sizes.len(), sizes.values().sum::<usize>());
        if keys > self.max_keys as usize {
            return Err(format!(
                "over-budget: an installation keeps at most {} state keys",
                self.max_keys
            ));
        }
        if bytes > self.max_bytes {
            return Err(format!(
                "over-budget: an installation keeps at most {} bytes of state",
                self.max_bytes
            ));
        }
        Ok(())
    }
}

impl Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let state = &self.caps.state;
        if let Some(pending) = state.pending.get(&key) {
            return Ok(pending.clone());
        }
        let Some(installation) = &state.installation else {
            return Ok(None);
        };
        let store = match &installation.data {
            DataSource::Fixed(data) => return Ok(data.state.get(&key).cloned()),
            DataSource::Store(store) => store,
            DataSource::Installation(cached) => cached.store(),
        };
        store
            .get_state(&installation.id, &key)
            .await
            .map_err(|e| wasmtime::Error::msg(format!("reading state {key:?}: {e}")))
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(format!(
                "too-large: state values are at most {MAX_VALUE_BYTES} bytes"
            )));
        }
        let state = &mut self.caps.state;
        if let Err(e) = state.writable(&key).and_then(|()| state.room_for(&key)) {
            return Ok(Err(e));
        }
        if let Err(e) = state.within_budget(&key, value.len()).await? {
            return Ok(Err(e));
        }
        state.pending.insert(key, Some(value));
        Ok(Ok(()))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        // The WIT function cannot fail: an unwritable key has nothing to delete.
        let state = &mut self.caps.state;
        if state.writable(&key).is_ok() && state.room_for(&key).is_ok() {
            state.pending.insert(key, None);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(stored: &[(&str, usize)], max_keys: u32, max_bytes: usize) -> CallStateMap {
        CallStateMap {
            installation: Some(InstallationScope {
                id: sluice_store::InstallationId::parse("inst_x").unwrap(),
                data: DataSource::Fixed(Default::default()),
            }),
            pending: HashMap::new(),
            max_bytes,
            max_keys,
            stored: Some(
                stored
                    .iter()
                    .map(|(k, v)| (k.to_string(), k.len() + v))
                    .collect(),
            ),
        }
    }

    #[test]
    fn the_hosts_keys_are_reserved_in_any_case_and_keys_hold_no_controls() {
        let c = call(&[], 10, 1000);
        for key in ["sluice:cursor", "SLUICE:cursor", "Sluice:poll-cursor"] {
            assert!(c.writable(key).unwrap_err().starts_with("reserved-key:"), "{key}");
        }
        for key in ["a\0b", "line\nbreak", "cr\r", ""] {
            assert!(c.writable(key).unwrap_err().starts_with("invalid-key:"), "{key:?}");
        }
        assert!(c.writable("sluice").is_ok() && c.writable("my:sluice:x").is_ok());
    }

    #[test]
    fn the_budget_counts_what_is_stored_and_what_the_call_wrote() {
        // 3 keys of 10 bytes each stored (key + value), the host's cursor not counted.
        let mut c = call(&[("a", 9), ("b", 9), ("c", 9), ("sluice:poll-cursor", 500)], 4, 45);
        assert!(c.check_budget("d", 9).is_ok());
        c.pending.insert("d".into(), Some(vec![0; 9]));
        // A fifth key is one too many; rewriting one that exists is not.
        assert!(c.check_budget("e", 0).unwrap_err().starts_with("over-budget:"));
        assert!(c.check_budget("a", 9).is_ok());
        // Bytes: a rewrite may not grow past the total; a delete makes room.
        assert!(c.check_budget("a", 15).unwrap_err().starts_with("over-budget:"));
        c.pending.insert("b".into(), None);
        assert!(c.check_budget("a", 15).is_ok());
    }
}
