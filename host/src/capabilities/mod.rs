//! Host capabilities granted to drivers: one module per WIT import (`http`, `secrets`,
//! `state`, `log`, `clock`).
//!
//! A capability is one unit, the way Spin's factors are: its process-wide configuration (the
//! type implementing [`Capability`]), what one call holds ([`Capability::Call`]), how it
//! registers its interface with the linker, and the writes it hands back when the call ends
//! (committed only with the call's results). The list at the bottom of this file composes
//! them into [`Capabilities`] (process-wide) and [`CallCapabilities`] (inside each call's
//! [`CallState`]).
//!
//! Adding a capability: write its module (configuration from [`CapabilityConfig`], per-call
//! state from [`CallScope`], `add_to_linker`, `finish_call`) and add one line to that list.

pub mod clock;
pub mod credentials;
pub mod http;
mod jwks;
pub mod jwt;
pub mod log;
pub mod recorded;
pub mod secrets;
pub mod state;

use std::collections::HashMap;
use std::sync::Arc;

use sluice_store::{InstallationId, Store, Writes};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use clock::Clock;
pub use secrets::SecretValue;

use crate::config::SandboxConfig;
use crate::installations::CachedInstallation;
use crate::net::OriginPattern;
use crate::wit;

/// One host capability. See the module documentation.
pub trait Capability: Sized + Send + Sync + 'static {
    /// What one call holds.
    type Call: Send + 'static;

    /// The process-wide part, from the host's configuration.
    fn new(config: &CapabilityConfig) -> anyhow::Result<Self>;

    /// Register this capability's WIT interface with the linker.
    fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()>;

    /// The state a call starts with.
    fn start_call(&self, scope: &CallScope) -> Self::Call;

    /// An export is about to run for an installation with these settings (the JSON text
    /// the guest gets in its `call-context`).
    fn enter_export(_call: &mut Self::Call, _settings: &str) {}

    /// Move what the call wrote into `writes`, to be committed with its results.
    fn finish_call(_call: &mut Self::Call, _writes: &mut Writes) {}
}

/// What capabilities are configured from.
#[derive(Debug, Clone)]
pub struct CapabilityConfig {
    /// The operator's outbound grants (`allow_hosts`): the only way to reach non-global
    /// addresses.
    pub grants: Vec<OriginPattern>,
    /// Where "now" comes from.
    pub clock: Clock,
    /// Per-call limits.
    pub limits: SandboxConfig,
    /// Which origins each driver may reach and which installations may use it.
    pub policy: crate::policy::Policy,
}

impl CapabilityConfig {
    /// Default limits, the system clock and the given grants.
    pub fn new(grants: Vec<OriginPattern>) -> Self {
        Self {
            grants,
            clock: Clock::System,
            limits: SandboxConfig::default(),
            policy: crate::policy::Policy::bundled_defaults(),
        }
    }
}

/// What a driver itself may use, from its validated metadata. Shared by all its calls.
#[derive(Debug)]
pub struct DriverScope {
    /// The driver's id.
    pub id: String,
    /// The driver's version.
    pub version: String,
    /// Secret names the driver declared; nothing else can be named.
    pub secrets: Vec<String>,
    /// Origins its calls may reach: declared and granted by the policy (the development
    /// grant is added by the http capability).
    pub origins: Vec<OriginPattern>,
    /// Origins it declared that the policy does not grant.
    pub disabled_origins: Vec<OriginPattern>,
    /// Where each declared secret may be sent.
    pub bindings: HashMap<String, credentials::SecretBinding>,
    /// The limits its calls run under (the operator's policy, else the defaults).
    pub limits: crate::policy::DriverLimits,
    /// App credentials from the operator's configuration, used when the installation has
    /// no secret of that name.
    pub app_secrets: Arc<HashMap<String, SecretValue>>,
}

/// What one call runs for: the driver and, except while loading or routing, an
/// installation with the place its secrets and state are read from.
#[derive(Clone)]
pub struct CallScope {
    pub driver: Arc<DriverScope>,
    pub installation: Option<InstallationScope>,
}

/// The installation a call acts for.
#[derive(Clone)]
pub struct InstallationScope {
    pub id: InstallationId,
    pub data: DataSource,
}

/// Where an installation's secrets and state come from.
#[derive(Clone)]
pub enum DataSource {
    /// The installation as the pipeline holds it: secrets sealed in memory (decrypted on
    /// first use in the call), state from its store.
    Installation(Arc<CachedInstallation>),
    /// The store (secrets decrypted on first use in the call).
    Store(Store),
    /// Given values (`sluice driver test`).
    Fixed(Arc<FixedData>),
}

/// Secrets and state given on the command line or by a fixture.
#[derive(Default)]
pub struct FixedData {
    pub secrets: HashMap<String, SecretValue>,
    pub state: HashMap<String, Vec<u8>>,
    /// Recorded answers for every outbound request (a fixture run): with them, nothing
    /// reaches the network. `None`: requests go out as usual.
    pub http: Option<Arc<recorded::RecordedHttp>>,
    /// The clock for these calls, instead of the runtime's (each fixture pins its own).
    pub clock: Option<Clock>,
}

impl CallScope {
    /// A call for no installation (metadata, routing): nothing can be named or reached
    /// beyond what the driver declared, and there are no secrets or state.
    pub fn driver_only(driver: Arc<DriverScope>) -> Self {
        Self {
            driver,
            installation: None,
        }
    }

    /// A call on behalf of an installation.
    pub fn installation(driver: Arc<DriverScope>, id: InstallationId, data: DataSource) -> Self {
        Self {
            driver,
            installation: Some(InstallationScope { id, data }),
        }
    }

    /// The given values the call runs with, when it runs on them.
    pub fn fixed(&self) -> Option<&FixedData> {
        match &self.installation.as_ref()?.data {
            DataSource::Fixed(data) => Some(data),
            _ => None,
        }
    }

    /// The installation's id, or `""` outside an installation.
    pub fn installation_id(&self) -> &str {
        self.installation.as_ref().map_or("", |i| i.id.as_str())
    }
}

/// Most host resources one call may hold at once. A driver has no use for more than a few
/// (its stdio streams, a clock pollable); a flood fails with a trap, not host memory.
pub const MAX_CALL_RESOURCES: usize = 256;

/// The data of one call's `Store`: WASI with nothing granted, the resource table, and each
/// capability's per-call state.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The driver's memory limit, below the pool's slot size when its policy says so, and
    /// the call's memory peak.
    store_limits: crate::runtime::MemoryLimiter,
    pub(crate) caps: CallCapabilities,
}

impl CallState {
    pub fn new(capabilities: &Capabilities, scope: &CallScope) -> Self {
        // WASI is linked because Rust's std imports it, but nothing is granted: no
        // preopened directories, no environment, no arguments, no sockets, closed stdio.
        // Its wall clock is the call's, so a pinned clock is pinned everywhere.
        let caps = capabilities.start_call(scope);
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(caps.clock.clone())
            .build();
        // Host-side resources (WASI streams, pollables) live outside the guest's memory
        // cap; the default table allows a million of them.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_CALL_RESOURCES);
        let store_limits = crate::runtime::MemoryLimiter::new(scope.driver.limits.max_memory_bytes);
        Self {
            wasi,
            table,
            store_limits,
            caps,
        }
    }

    /// The store's resource limiter (`Store::limiter`).
    pub fn store_limits(&mut self) -> &mut crate::runtime::MemoryLimiter {
        &mut self.store_limits
    }

    /// The limiter, read-only: the call's memory peak and refused growths.
    pub fn memory(&self) -> &crate::runtime::MemoryLimiter {
        &self.store_limits
    }

    /// Take what the call wrote, to be committed with its results.
    pub fn take_writes(&mut self) -> Writes {
        let mut writes = Writes::default();
        self.caps.finish_call(&mut writes);
        writes
    }
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
impl wit::types::Host for CallState {}
impl wit::canonical::Host for CallState {}

/// Composes the listed capabilities into [`Capabilities`] and [`CallCapabilities`].
macro_rules! capabilities {
    ($($field:ident: $ty:ty),* $(,)?) => {
        /// Every capability's process-wide part.
        pub struct Capabilities {
            $(pub $field: $ty,)*
        }

        /// Every capability's per-call state.
        pub struct CallCapabilities {
            $(pub $field: <$ty as Capability>::Call,)*
        }

        impl Capabilities {
            /// Configure every capability.
            pub fn new(config: &CapabilityConfig) -> anyhow::Result<Self> {
                Ok(Self { $($field: <$ty as Capability>::new(config)?,)* })
            }

            /// Register every capability's interface.
            pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
                $(<$ty as Capability>::add_to_linker(linker)?;)*
                Ok(())
            }

            fn start_call(&self, scope: &CallScope) -> CallCapabilities {
                CallCapabilities { $($field: self.$field.start_call(scope),)* }
            }
        }

        impl CallCapabilities {
            /// Tell every capability an export is about to run with `settings`.
            pub fn enter_export(&mut self, settings: &str) {
                $(<$ty as Capability>::enter_export(&mut self.$field, settings);)*
            }

            fn finish_call(&mut self, writes: &mut Writes) {
                $(<$ty as Capability>::finish_call(&mut self.$field, writes);)*
            }
        }
    };
}

capabilities! {
    http: http::Http,
    secrets: secrets::Secrets,
    state: state::State,
    log: log::Log,
    clock: clock::Clock,
}
