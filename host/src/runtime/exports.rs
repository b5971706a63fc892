//! The driver's exports, found once when it is loaded and called per session without
//! looking anything up or type-checking again.
//!
//! The generated `DriverPre::instantiate` type-checks every export of the world on every
//! instantiation; per delivery that was a measurable part of the sandbox's cost. Loading a
//! driver instantiates it that way once (so every signature is checked against the world);
//! sessions then instantiate through the same `InstancePre` — the same component — and
//! call the one export they need by its index.

use wasmtime::component::{Component, ComponentExportIndex};

/// The index of each export function of the `sluice:driver` world in one component.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exports {
    pub authorize_url: ComponentExportIndex,
    pub exchange_code: ComponentExportIndex,
    pub refresh: ComponentExportIndex,
    pub validate_scopes: ComponentExportIndex,
    pub revoke: ComponentExportIndex,
    pub route_key: ComponentExportIndex,
    pub receive: ComponentExportIndex,
    pub poll: ComponentExportIndex,
    pub backfill_cursor: ComponentExportIndex,
    pub normalize: ComponentExportIndex,
}

impl Exports {
    /// Find every export; the error names the first one missing. Asking for
    /// `sluice:driver/ingest@{WIT_VERSION}` also finds a driver's `@0.6.M` export for any
    /// other patch `M`: wasmtime's export lookup is semver-aware, as its linker is
    /// (see [`crate::wit`]; `e2e::wit_versions` loads a `0.6.0` driver).
    pub fn find(component: &Component) -> Result<Self, String> {
        let version = crate::wit::WIT_VERSION;
        let func = |interface: &str, name: &str| {
            let qualified = format!("sluice:driver/{interface}@{version}");
            let instance = component
                .get_export_index(None, &qualified)
                .ok_or_else(|| format!("no exported instance `{qualified}`"))?;
            component
                .get_export_index(Some(&instance), name)
                .ok_or_else(|| format!("`{qualified}` does not export `{name}`"))
        };
        Ok(Self {
            authorize_url: func("auth", "authorize-url")?,
            exchange_code: func("auth", "exchange-code")?,
            refresh: func("auth", "refresh")?,
            validate_scopes: func("auth", "validate-scopes")?,
            revoke: func("auth", "revoke")?,
            route_key: func("ingest", "route-key")?,
            receive: func("ingest", "receive")?,
            poll: func("ingest", "poll")?,
            backfill_cursor: func("ingest", "backfill-cursor")?,
            normalize: func("normalize", "normalize")?,
        })
    }
}
