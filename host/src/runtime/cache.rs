//! On-disk cache of compiled components, so a restart does not recompile.
//!
//! Entries are keyed by the component's sha256 and the engine's compatibility hash
//! (wasmtime version, target, and every setting that affects code generation), so a
//! cached artifact is only ever loaded into an engine that could have produced it.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Where the compiled form of `sha256` lives for this engine.
fn entry_path(dir: &Path, engine: &Engine, sha256: &str) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()))
}

/// Compile `bytes`, or load the cached artifact. Cache failures are logged and fall back
/// to compiling: the cache is an optimisation, never a reason to refuse a driver.
pub fn compile(
    engine: &Engine,
    dir: Option<&Path>,
    sha256: &str,
    bytes: &[u8],
) -> wasmtime::Result<Component> {
    let Some(dir) = dir else {
        return Component::new(engine, bytes);
    };
    let path = entry_path(dir, engine, sha256);
    if path.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine with the same
        // compatibility hash (it is in the name), into a directory only Sluice writes.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                tracing::debug!(path = %path.display(), "loaded compiled driver from cache");
                return Ok(component);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cache entry")
            }
        }
    }
    let compiled = engine.precompile_component(bytes)?;
    if let Err(e) = write_atomically(dir, &path, &compiled) {
        tracing::warn!(path = %path.display(), error = %e, "could not write compile cache");
    }
    // SAFETY: `compiled` was produced just above by this very engine.
    unsafe { Component::deserialize(engine, &compiled) }
}

/// Write via a temporary file and rename, so a crash never leaves a torn entry.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    sluice_store::create_private_dir(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
