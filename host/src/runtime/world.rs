//! What a component imports of the `sluice:driver` package that this host lacks, checked
//! before linking, so a driver built against a newer or another world is refused with
//! the import it needs named, not with the linker's type error.
//!
//! wasmtime matches import versions itself (see [`crate::wit`]); this only explains a
//! refusal the linker would make, with the same rule.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::capabilities::IMPORTS;
use crate::wit::{PACKAGE, WIT_VERSION, compatible_range, is_compatible};

/// Why the component cannot link against this host, if a `sluice:driver` import is the
/// reason; other imports (WASI) are left to the linker.
pub(crate) fn missing_import(engine: &Engine, component: &Component) -> Option<String> {
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(name, import)| {
        let functions = match import.ty {
            ComponentItem::ComponentInstance(instance) => instance
                .exports(engine)
                .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
                .map(|(name, _)| name.to_string())
                .collect(),
            _ => Vec::new(),
        };
        (name.to_string(), functions)
    });
    first_missing(imports)
}

/// The first of `imports` (name, functions imported from it) this host does not have.
fn first_missing(imports: impl IntoIterator<Item = (String, Vec<String>)>) -> Option<String> {
    let newer = format!(
        "the driver was built against a newer {PACKAGE} world: run it on a host that has it, \
         or rebuild it against {WIT_VERSION}"
    );
    for (name, functions) in imports {
        let Some(rest) = name.strip_prefix(PACKAGE).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
        if !is_compatible(version) {
            return Some(format!(
                "it imports `{name}`, but this host implements {PACKAGE}@{WIT_VERSION}: only \
                 drivers built against a compatible version ({}) load",
                compatible_range()
            ));
        }
        let Some((_, have)) = IMPORTS.iter().find(|(i, _)| *i == interface) else {
            return Some(format!(
                "it imports the interface `{name}`, which this host ({PACKAGE}@{WIT_VERSION}) \
                 does not have; {newer}"
            ));
        };
        if let Some(function) = functions.iter().find(|f| !have.contains(&f.as_str())) {
            return Some(format!(
                "it imports `{function}` from `{name}`, which this host \
                 ({PACKAGE}@{WIT_VERSION}) does not have; {newer}"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(name: &str, functions: &[&str]) -> (String, Vec<String>) {
        (
            name.to_string(),
            functions.iter().map(|f| f.to_string()).collect(),
        )
    }

    #[test]
    fn older_and_newer_patches_link_when_they_need_nothing_the_host_lacks() {
        let imports = [
            import("wasi:io/streams@0.2.6", &["anything"]),
            import("sluice:driver/types@0.6.0", &[]),
            import("sluice:driver/log@0.6.0", &["log"]),
            import("sluice:driver/secrets@0.6.9", &["equals", "verify-hmac"]),
            import("sluice:driver/state@0.6.0+build.1", &["get"]),
        ];
        assert_eq!(first_missing(imports), None);
    }

    #[test]
    fn a_function_the_host_lacks_is_named() {
        let refusal = first_missing([
            import("sluice:driver/clock@0.6.0", &["now"]),
            import("sluice:driver/log@0.6.9", &["log", "flush"]),
        ]);
        assert_eq!(
            refusal.as_deref(),
            Some(
                format!(
                    "it imports `flush` from `sluice:driver/log@0.6.9`, which this host \
                     (sluice:driver@{WIT_VERSION}) does not have; the driver was built against \
                     a newer sluice:driver world: run it on a host that has it, or rebuild it \
                     against {WIT_VERSION}"
                )
                .as_str()
            )
        );
    }

    #[test]
    fn an_interface_the_host_lacks_is_named() {
        let refusal = first_missing([import("sluice:driver/queue@0.6.9", &["push"])]).unwrap();
        assert!(
            refusal.starts_with("it imports the interface `sluice:driver/queue@0.6.9`, which"),
            "{refusal}"
        );
    }

    #[test]
    fn another_minor_or_a_pre_release_is_refused_with_the_range() {
        for name in [
            "sluice:driver/log@0.7.0",
            "sluice:driver/log@0.5.3",
            "sluice:driver/log@0.6.1-rc.1",
            "sluice:driver/log",
        ] {
            let refusal = first_missing([import(name, &["log"])]).unwrap();
            assert_eq!(
                refusal,
                format!(
                    "it imports `{name}`, but this host implements sluice:driver@{WIT_VERSION}: \
                     only drivers built against a compatible version (0.6.x) load"
                )
            );
        }
    }
}
