//! Host capabilities granted to drivers: one module per `sluice:driver` import (`http`,
//! `secrets`, `state`, `log`, `clock`).
//!
//! A capability is one unit, the way Spin's factors are. Its module holds:
//!
//! - the WIT interface it implements ([`Capability::INTERFACE`], [`Capability::FUNCTIONS`]),
//!   from which the host knows which imports it has ([`IMPORTS`]);
//! - its own configuration section, `[capabilities.<name>]` ([`Capability::Config`]), with
//!   its defaults; the environment variables follow from the section by the one rule;
//! - its process-wide part (the type implementing [`Capability`]), built from that section
//!   and what every capability shares ([`CapabilityConfig`]: grants, clock, limits, policy);
//! - what all calls of one driver share ([`Capability::Driver`]), built from the driver's
//!   validated metadata when it is loaded — a driver whose metadata the capability refuses
//!   is refused with the reason;
//! - what one call holds ([`Capability::Call`]), how it links its interface, and the writes
//!   it hands back when the call ends (state and captured secrets, committed only with the
//!   call's results).
//!
//! The one list at the bottom of this file registers them: it declares each module and
//! composes [`Capabilities`], [`CapabilitiesConfig`], [`DriverCapabilities`] and
//! [`CallCapabilities`]. Adding a capability is its module, its WIT interface, its SDK
//! wrapper and one line there.

pub mod credentials;
pub mod jwt;
pub mod recorded;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_store::{InstallationId, Store, Writes};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::installations::CachedInstallation;
use crate::limits::{DriverLimits, MemoryLimiter, SandboxConfig};
use crate::metadata::DriverInfo;
use crate::net::OriginPattern;
use crate::policy::{Policy, ResolvedOrigins};
use crate::wit;

/// One host capability. See the module documentation.
pub trait Capability: Sized + Send + Sync + 'static {
    /// The interface of the `sluice:driver` package it implements (`http`).
    const INTERFACE: &'static str;
    /// The functions of that interface this host implements.
    const FUNCTIONS: &'static [&'static str];

    /// Its `[capabilities.<name>]` section ([`NoConfig`] when it has none).
    type Config: Default + Clone + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync;
    /// What all calls of one driver share; `Default` is the nothing a call outside any
    /// driver (loading the metadata) gets.
    type Driver: Default + Send + Sync + 'static;
    /// What one call holds.
    type Call: Send + 'static;

    /// The process-wide part, from its section and what all capabilities share.
    fn new(config: &Self::Config, host: &CapabilityConfig) -> anyhow::Result<Self>;

    /// Register its WIT interface with the linker.
    fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()>;

    /// What a loaded driver's calls share, from its metadata; `Err` refuses the driver.
    fn driver(&self, _driver: &DriverContext<'_>) -> Result<Self::Driver, String> {
        Ok(Self::Driver::default())
    }

    /// The state a call starts with.
    fn start_call(&self, driver: &Arc<Self::Driver>, scope: &CallScope) -> Self::Call;

    /// An export is about to run for an installation with these settings (the JSON text
    /// the guest gets in its `call-context`).
    fn enter_export(_call: &mut Self::Call, _settings: &str) {}

    /// Move what the call wrote into `writes`, to be committed with its results.
    fn finish_call(_call: &mut Self::Call, _writes: &mut Writes) {}
}

/// The section of a capability that has no configuration.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// What every capability is configured from, beside its own section.
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
    pub policy: Policy,
    /// Each capability's own section.
    pub sections: CapabilitiesConfig,
}

impl CapabilityConfig {
    /// Default limits and sections, the system clock, no policy beyond the drivers'
    /// defaults, and the given grants.
    pub fn new(grants: Vec<OriginPattern>) -> Self {
        Self {
            grants,
            clock: Clock::System,
            limits: SandboxConfig::default(),
            policy: Policy::default(),
            sections: CapabilitiesConfig::default(),
        }
    }
}

/// A loaded driver, as capabilities see it when building their part of its scope.
pub struct DriverContext<'a> {
    /// Its validated metadata.
    pub info: &'a DriverInfo,
    /// The origins it declared, split by the operator's policy.
    pub origins: &'a ResolvedOrigins,
}

/// What a driver itself may use: its identity and limits, and each capability's part.
/// Shared by all its calls.
pub struct DriverScope {
    /// The driver's id, as its calls are labelled (`(loading)` before its metadata is read).
    pub id: String,
    /// The driver's version.
    pub version: String,
    /// The limits its calls run under (the operator's policy, else the defaults).
    pub limits: DriverLimits,
    /// Each capability's part.
    pub caps: DriverCapabilities,
}

impl DriverScope {
    /// The scope of a component whose metadata is not known yet: it may name and reach
    /// nothing.
    pub fn loading(limits: DriverLimits) -> Self {
        Self {
            id: "(loading)".into(),
            version: String::new(),
            limits,
            caps: DriverCapabilities::default(),
        }
    }
}

impl std::fmt::Debug for DriverScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverScope")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
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
    store_limits: MemoryLimiter,
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
        let store_limits = MemoryLimiter::new(scope.driver.limits.max_memory_bytes);
        Self {
            wasi,
            table,
            store_limits,
            caps,
        }
    }

    /// The store's resource limiter (`Store::limiter`).
    pub fn store_limits(&mut self) -> &mut MemoryLimiter {
        &mut self.store_limits
    }

    /// The limiter, read-only: the call's memory peak and refused growths.
    pub fn memory(&self) -> &MemoryLimiter {
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

/// Declares each capability's module and composes them into [`Capabilities`],
/// [`CapabilitiesConfig`], [`DriverCapabilities`], [`CallCapabilities`] and [`IMPORTS`].
macro_rules! capabilities {
    ($($field:ident: $module:ident::$ty:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every capability's process-wide part.
        pub struct Capabilities {
            $(pub $field: $module::$ty,)*
        }

        /// Every capability's section: `[capabilities.<name>]`.
        #[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct CapabilitiesConfig {
            $(pub $field: <$module::$ty as Capability>::Config,)*
        }

        /// Every capability's part of a driver's scope.
        #[derive(Default)]
        pub struct DriverCapabilities {
            $(pub $field: Arc<<$module::$ty as Capability>::Driver>,)*
        }

        /// Every capability's per-call state.
        pub struct CallCapabilities {
            $(pub $field: <$module::$ty as Capability>::Call,)*
        }

        /// Every interface of the package a driver may import, with the functions this
        /// host implements of it (`types` and `canonical` hold only types). A test checks
        /// it against the WIT files.
        pub const IMPORTS: &[(&str, &[&str])] = &[
            ("types", &[]),
            ("canonical", &[]),
            $((<$module::$ty as Capability>::INTERFACE, <$module::$ty as Capability>::FUNCTIONS),)*
        ];

        impl Capabilities {
            /// Configure every capability.
            pub fn new(config: &CapabilityConfig) -> anyhow::Result<Self> {
                Ok(Self {
                    $($field: <$module::$ty as Capability>::new(&config.sections.$field, config)?,)*
                })
            }

            /// Register every capability's interface.
            pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
                $(<$module::$ty as Capability>::add_to_linker(linker)?;)*
                Ok(())
            }

            /// Every capability's part of a loaded driver's scope; `Err` names the
            /// capability that refused it and why.
            pub fn driver(&self, driver: &DriverContext<'_>) -> Result<DriverCapabilities, String> {
                Ok(DriverCapabilities {
                    $($field: Arc::new(self.$field.driver(driver)?),)*
                })
            }

            fn start_call(&self, scope: &CallScope) -> CallCapabilities {
                CallCapabilities {
                    $($field: self.$field.start_call(&scope.driver.caps.$field, scope),)*
                }
            }
        }

        impl CallCapabilities {
            /// Tell every capability an export is about to run with `settings`.
            pub fn enter_export(&mut self, settings: &str) {
                $(<$module::$ty as Capability>::enter_export(&mut self.$field, settings);)*
            }

            fn finish_call(&mut self, writes: &mut Writes) {
                $(<$module::$ty as Capability>::finish_call(&mut self.$field, writes);)*
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

pub use clock::Clock;
pub use secrets::SecretValue;

#[cfg(test)]
mod tests {
    use super::*;

    /// [`IMPORTS`] is what `wit/imports.wit` (and `types.wit`, `canonical.wit`) declare:
    /// every interface and every function, nothing more.
    #[test]
    fn imports_are_the_wit_files_interfaces() {
        use crate::wit::{PACKAGE, WIT_VERSION};
        let mut declared: Vec<(String, Vec<String>)> = Vec::new();
        for wit in [
            include_str!("../../../wit/types.wit"),
            include_str!("../../../wit/canonical.wit"),
            include_str!("../../../wit/imports.wit"),
        ] {
            assert!(
                wit.starts_with(&format!("package {PACKAGE}@{WIT_VERSION};")),
                "a wit file is not at {WIT_VERSION}"
            );
            for line in wit.lines() {
                if let Some(name) = line
                    .strip_prefix("interface ")
                    .and_then(|l| l.strip_suffix(" {"))
                {
                    declared.push((name.to_string(), Vec::new()));
                } else if let Some((name, _)) = line.trim_start().split_once(": func(") {
                    let (_, functions) = declared
                        .last_mut()
                        .expect("a function outside an interface");
                    functions.push(name.to_string());
                }
            }
        }
        let mut table: Vec<(String, Vec<String>)> = IMPORTS
            .iter()
            .map(|(i, fs)| (i.to_string(), fs.iter().map(|f| f.to_string()).collect()))
            .collect();
        // The order of the WIT files is not the order of registration.
        declared.sort();
        table.sort();
        assert_eq!(table, declared);
    }
}
