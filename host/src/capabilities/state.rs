//! The `state` capability: a small key/value map per installation (cursors, token
//! expiry). Writes are buffered for the call and committed by the caller in the same
//! transaction as the events the call produced, or dropped with them.

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

impl CallStateMap {
    /// Whether this call may write `key`.
    fn writable(&self, key: &str) -> Result<(), String> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(format!("state keys are 1 to {MAX_KEY_BYTES} bytes"));
        }
        if self.installation.is_none() {
            return Err("no installation state in this call".into());
        }
        if key.starts_with(HOST_PREFIX) {
            return Err(format!(
                "state keys starting with {HOST_PREFIX:?} are the host's (the poll cursor)"
            ));
        }
        Ok(())
    }

    /// Whether this call may write one more key (rewriting a key it wrote is free).
    fn room_for(&self, key: &str) -> Result<(), String> {
        if self.pending.len() >= MAX_WRITES_PER_CALL && !self.pending.contains_key(key) {
            return Err(format!(
                "a call writes at most {MAX_WRITES_PER_CALL} state keys"
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
                "state values are at most {MAX_VALUE_BYTES} bytes"
            )));
        }
        let state = &mut self.caps.state;
        if let Err(e) = state.writable(&key).and_then(|()| state.room_for(&key)) {
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
