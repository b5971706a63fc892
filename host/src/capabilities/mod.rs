//! Host capabilities granted to drivers, one module each: `http`, `secrets`, `log`,
//! `clock`, `state`.
//!
//! [`Capabilities`] is the process-wide part (HTTP client, operator grants, clock);
//! [`CallState`] is what one call's `Store` holds: the WASI context with nothing granted,
//! and the per-installation scope of each capability. Adding a capability means adding a
//! module here and a field to each of those two structs.

pub mod clock;
pub mod http;
pub mod log;
pub mod secrets;
pub mod state;

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use clock::Clock;
pub use http::HostPattern;
pub use secrets::SecretSource;
pub use state::{StateSource, StateWrite};

use crate::runtime::types;

/// Process-wide capability configuration, shared by every call.
pub struct Capabilities {
    pub http: http::HttpCapability,
    pub clock: Clock,
}

impl Capabilities {
    pub fn new(operator_grants: Vec<HostPattern>, clock: Clock) -> anyhow::Result<Self> {
        Ok(Self {
            http: http::HttpCapability::new(operator_grants)?,
            clock,
        })
    }
}

/// What one call may touch: who it runs for and where its capabilities read from.
#[derive(Clone)]
pub struct CallScope {
    /// `None` only while reading metadata at load time.
    pub installation_id: Option<String>,
    pub driver_id: String,
    /// Secret names the driver declared; nothing else can be named.
    pub declared_secrets: Arc<[String]>,
    /// Origins the driver declared (operator grants are added by the http capability).
    pub declared_hosts: Arc<[HostPattern]>,
    pub secrets: SecretSource,
    pub state: StateSource,
}

impl CallScope {
    /// The scope used to read a driver's metadata: no installation, nothing granted.
    pub fn metadata_only() -> Self {
        Self {
            installation_id: None,
            driver_id: "(loading)".into(),
            declared_secrets: Arc::from(Vec::new()),
            declared_hosts: Arc::from(Vec::new()),
            secrets: SecretSource::None,
            state: StateSource::None,
        }
    }
}

/// The data of one call's `Store`.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) http: http::CallHttp,
    pub(crate) secrets: secrets::CallSecrets,
    pub(crate) state: state::CallStateStore,
    pub(crate) log: log::CallLog,
    pub(crate) clock: Clock,
}

impl CallState {
    pub fn new(
        shared: Arc<Capabilities>,
        scope: CallScope,
        max_outbound: u32,
        max_response: usize,
    ) -> Self {
        let clock = shared.clock.clone();
        // WASI is linked because Rust's std imports it, but nothing is granted: no
        // preopened directories, no environment, no arguments, no sockets, closed stdio.
        // Its wall clock is ours, so a pinned clock is pinned everywhere.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(clock.clone())
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            http: http::CallHttp::new(shared, &scope, max_outbound, max_response),
            secrets: secrets::CallSecrets::new(&scope),
            state: state::CallStateStore::new(&scope),
            log: log::CallLog::new(&scope),
            clock,
        }
    }

    /// Take what the call wrote, to be committed with its results.
    pub fn take_writes(&mut self) -> CallWrites {
        CallWrites {
            state: self.state.take_writes(),
            secrets: self.secrets.take_captured(),
        }
    }
}

/// Side effects of a call that are committed only if the call's results are.
#[derive(Debug, Default)]
pub struct CallWrites {
    pub state: Vec<StateWrite>,
    /// Secrets captured from provider responses (OAuth tokens), by name.
    pub secrets: Vec<(String, secrets::SecretValue)>,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

// Type-only interfaces have nothing to implement.
impl types::Host for CallState {}
impl crate::runtime::canonical::Host for CallState {}
