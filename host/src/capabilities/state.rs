//! The `state` capability: a small key/value map per installation (cursors, token
//! expiry). Writes are buffered for the call and committed by the caller in the same
//! transaction as the events the call produced, or dropped with them.

use std::collections::HashMap;
use std::sync::Arc;

use super::{CallScope, CallState};
use crate::runtime::state::Host;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

pub use sluice_store::StateWrite;

/// Where reads go when the call has not written the key itself.
#[derive(Clone)]
pub enum StateSource {
    None,
    Store {
        store: sluice_store::Store,
        installation: sluice_store::InstallationId,
    },
    /// Fixed initial values (`sluice driver test`).
    Fixed(Arc<HashMap<String, Vec<u8>>>),
}

/// Per-call state: the source and this call's pending writes (`None` = deleted).
pub struct CallStateStore {
    source: StateSource,
    pending: HashMap<String, Option<Vec<u8>>>,
}

impl CallStateStore {
    pub fn new(scope: &CallScope) -> Self {
        Self {
            source: scope.state.clone(),
            pending: HashMap::new(),
        }
    }

    /// Whether this call may write `key`.
    fn writable(&self, key: &str) -> Result<(), String> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(format!("state keys are 1 to {MAX_KEY_BYTES} bytes"));
        }
        if matches!(self.source, StateSource::None) {
            return Err("no installation state in this call".into());
        }
        Ok(())
    }

    pub fn take_writes(&mut self) -> Vec<StateWrite> {
        self.pending
            .drain()
            .map(|(key, value)| match value {
                Some(value) => StateWrite::Set { key, value },
                None => StateWrite::Delete { key },
            })
            .collect()
    }
}

impl Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let state = &mut self.state;
        if let Some(pending) = state.pending.get(&key) {
            return Ok(pending.clone());
        }
        Ok(match &state.source {
            StateSource::None => None,
            StateSource::Fixed(map) => map.get(&key).cloned(),
            StateSource::Store {
                store,
                installation,
            } => store
                .get_state(installation, &key)
                .await
                .map_err(|e| wasmtime::Error::msg(format!("reading state {key:?}: {e}")))?,
        })
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(format!(
                "state values are at most {MAX_VALUE_BYTES} bytes"
            )));
        }
        Ok(self.state.writable(&key).map(|()| {
            self.state.pending.insert(key, Some(value));
        }))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        // The WIT function cannot fail: an unwritable key has nothing to delete.
        if self.state.writable(&key).is_ok() {
            self.state.pending.insert(key, None);
        }
        Ok(())
    }
}
