//! The `sluice:driver` WIT world as Rust types: the one home of everything that crosses the
//! sandbox boundary. Generated from `wit/`; capabilities, the runtime, the canonical
//! renderer and the pipeline all import it, and it imports nothing of theirs.
//!
//! Every import is `async` (host capabilities may touch the network or the database) and
//! `trappable`: a host-side failure such as a database error traps the call instead of
//! handing the guest a half-truth, so the delivery fails whole and the provider retries.
//!
//! Versions: the package follows semver, and within `0.x` the minor is the breaking axis,
//! as wasmtime's linker treats it. A host at `0.6.N` loads drivers built against any
//! `0.6.M`: wasmtime resolves a driver's `sluice:driver/log@0.6.M` import to the host's
//! `@0.6.N` definition, and finds its `@0.6.M` exports when asked for `@0.6.N`. A patch
//! only adds import functions or interfaces, so a driver built against an older patch
//! imports a subset of what the host has; one built against a newer patch loads when it
//! uses nothing this host lacks (`capabilities::IMPORTS` names what it has).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sluice:driver/driver",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use exports::sluice::driver::{auth, ingest, metadata};
// Every imported interface (`types`, `canonical` and one per capability), by its name.
pub use sluice::driver::*;

/// The version of the `sluice:driver` package this host implements.
pub const WIT_VERSION: &str = "0.6.1";

/// The package's name, before `/interface@version`.
pub const PACKAGE: &str = "sluice:driver";

/// Whether a driver built against `version` of the package can run on this host: the same
/// `0.MINOR` (or `MAJOR` from 1.0 on), any patch, no pre-release. It is the rule wasmtime
/// uses to match an import's version to a definition (`alternate_lookup_key` in
/// `wasmtime-environ`'s `component/names.rs`); build metadata (`+…`) is ignored.
pub fn is_compatible(version: &str) -> bool {
    match (release(version), release(WIT_VERSION)) {
        (Some(theirs), Some(ours)) if ours.0 == 0 => theirs.0 == 0 && theirs.1 == ours.1,
        (Some(theirs), Some(ours)) => theirs.0 == ours.0,
        _ => false,
    }
}

/// `0.6.x` for `0.6.1`: the versions this host loads.
pub fn compatible_range() -> String {
    match WIT_VERSION.split_once('.') {
        Some(("0", rest)) => format!("0.{}.x", rest.split('.').next().unwrap_or(rest)),
        Some((major, _)) => format!("{major}.x.x"),
        None => WIT_VERSION.to_string(),
    }
}

/// `(major, minor, patch)` of a release version; none for a pre-release or anything else.
fn release(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.split_once('+').map_or(version, |(core, _)| core);
    let mut parts = core.split('.').map(|p| {
        let digits = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        // Semver forbids leading zeros (`06`); wasmtime would not match them either.
        let canonical = p == "0" || !p.starts_with('0');
        (digits && canonical)
            .then(|| p.parse::<u64>().ok())
            .flatten()
    });
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatible_versions_share_the_breaking_axis() {
        let minor = WIT_VERSION.rsplit_once('.').map(|(mm, _)| mm).unwrap();
        assert_eq!(minor, "0.6");
        for ok in ["0.6.0", "0.6.1", "0.6.9", "0.6.12", "0.6.0+build.5"] {
            assert!(is_compatible(ok), "{ok}");
        }
        for refused in [
            "0.5.3",
            "0.7.0",
            "1.6.0",
            "0.6",
            "0.6.0-rc.1",
            "0.06.0",
            "v0.6.0",
            "0.6.x",
            "",
            "0.6.0.1",
        ] {
            assert!(!is_compatible(refused), "{refused}");
        }
    }
}
