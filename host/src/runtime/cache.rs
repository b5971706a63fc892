//! On-disk cache of compiled components, so a restart does not recompile.
//!
//! Loading a cache entry runs its machine code in the host, so an entry is trusted only if
//! this installation of Sluice wrote it: each entry starts with an HMAC-SHA256 tag, keyed
//! by a key derived from the master key, over the component's sha256, the engine's
//! compatibility hash and the compiled bytes. An entry whose tag does not verify (written
//! by someone else, truncated, or for another key) is ignored and replaced.
//!
//! Entries are keyed by the component's sha256, the engine's compatibility hash (wasmtime
//! version, target, and every setting that affects code generation) and the key's id, so
//! a cached artifact is only ever loaded into an engine that could have produced it, and
//! processes with different keys sharing a directory do not overwrite each other.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Bytes of the tag at the start of every entry.
const TAG_BYTES: usize = 32;

/// Where compiled code is kept, and the key that authenticates it.
#[derive(Clone)]
pub struct CodeCache {
    dir: PathBuf,
    key: [u8; 32],
}

impl std::fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeCache")
            .field("dir", &self.dir)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl CodeCache {
    /// A cache in `dir` whose entries are authenticated with a key derived from
    /// `master_key` (never the master key itself).
    pub fn new(dir: PathBuf, master_key: &[u8; 32]) -> Self {
        let key = crate::crypto::tag(master_key, &[b"sluice compiled-code cache v1"]);
        Self { dir, key }
    }

    /// Where the compiled form of `sha256` lives for this engine and key.
    fn entry_path(&self, engine: &Engine, sha256: &str) -> PathBuf {
        let id = hex::encode(&crate::crypto::tag(&self.key, &[b"key id"])[..4]);
        self.dir
            .join(format!("{sha256}-{:016x}-{id}.cwasm", engine_hash(engine)))
    }

    /// The tag of an entry.
    fn tag(&self, engine: &Engine, sha256: &str, compiled: &[u8]) -> [u8; 32] {
        crate::crypto::tag(
            &self.key,
            &[
                sha256.as_bytes(),
                &engine_hash(engine).to_le_bytes(),
                compiled,
            ],
        )
    }
}

fn engine_hash(engine: &Engine) -> u64 {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

/// Compile `bytes`, or load the cached artifact. Cache failures are logged and fall back
/// to compiling: the cache is an optimisation, never a reason to refuse a driver.
pub fn compile(
    engine: &Engine,
    cache: Option<&CodeCache>,
    sha256: &str,
    bytes: &[u8],
) -> wasmtime::Result<Component> {
    let Some(cache) = cache else {
        return Component::new(engine, bytes);
    };
    let path = cache.entry_path(engine, sha256);
    match std::fs::read(&path) {
        Ok(entry) => match load(cache, engine, sha256, &entry) {
            Ok(component) => {
                tracing::debug!(path = %path.display(), "loaded compiled driver from cache");
                return Ok(component);
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "ignoring cache entry; compiling again")
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot read cache entry"),
    }
    let compiled = engine.precompile_component(bytes)?;
    let mut entry = cache.tag(engine, sha256, &compiled).to_vec();
    entry.extend_from_slice(&compiled);
    if let Err(e) = write_atomically(&cache.dir, &path, &entry) {
        tracing::warn!(path = %path.display(), error = %e, "could not write compile cache");
    }
    // SAFETY: `compiled` was produced just above by this very engine.
    unsafe { Component::deserialize(engine, &compiled) }
}

/// An entry, verified before its code is loaded.
fn load(
    cache: &CodeCache,
    engine: &Engine,
    sha256: &str,
    entry: &[u8],
) -> Result<Component, String> {
    if entry.len() < TAG_BYTES {
        return Err("too short to hold a tag".into());
    }
    let (tag, compiled) = entry.split_at(TAG_BYTES);
    let expected = cache.tag(engine, sha256, compiled);
    if !crate::crypto::constant_time_eq(tag, &expected) {
        return Err("its tag does not verify (not written by this host's key)".into());
    }
    // SAFETY: the tag proves this host wrote these bytes with `precompile_component` of an
    // engine with the same compatibility hash (both are in the tag).
    unsafe { Component::deserialize(engine, compiled) }.map_err(|e| format!("{e:#}"))
}

/// Write via a temporary file and rename, so a crash never leaves a torn entry.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    sluice_store::create_private_dir(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
