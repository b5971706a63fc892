//! Services a test needs. Outside CI, a test whose service is missing is skipped: it says
//! so on stderr and appends a line to `$SLUICE_TEST_SKIPS` (set by `cargo xtask test`,
//! which prints how many were skipped and why). With `CI` set, a missing service fails the
//! test: CI must never pass by not running something.

use std::io::Write;
use std::process::Command;

/// Something a test needs from its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// A PostgreSQL server at `SLUICE_TEST_POSTGRES_URL`.
    Postgres,
    /// Node.js with the test peers installed in `tests/peers` (the official `stripe`
    /// library, …).
    Node,
    /// A NATS server with JetStream at `SLUICE_TEST_NATS_URL`.
    Nats,
    /// Cargo, with the `wasm32-wasip2` target installed for its `rustc` (to build a driver
    /// crate the way its author would).
    WasmToolchain,
}

impl Requirement {
    fn what(self) -> &'static str {
        match self {
            Requirement::Postgres => "PostgreSQL (SLUICE_TEST_POSTGRES_URL)",
            Requirement::Node => "Node.js with tests/peers installed",
            Requirement::Nats => "NATS JetStream (SLUICE_TEST_NATS_URL)",
            Requirement::WasmToolchain => "cargo with the wasm32-wasip2 target",
        }
    }
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Handle a missing requirement: panic in CI, otherwise record the skip. Returns `None` so
/// callers can `?`/`return` on it.
pub fn missing<T>(requirement: Requirement, detail: &str) -> Option<T> {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    if in_ci() {
        panic!(
            "{test} needs {}, which is unavailable ({detail}); with CI set, a missing service fails the test",
            requirement.what()
        );
    }
    eprintln!("SKIPPED {test}: needs {} ({detail})", requirement.what());
    // One short line per skip; O_APPEND keeps concurrent writers' lines whole.
    if let Some(path) = std::env::var_os("SLUICE_TEST_SKIPS")
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(file, "{}\t{test}", requirement.what());
    }
    None
}

/// The PostgreSQL server URL for tests, or `None` (skipped / failed as above).
pub fn postgres_url() -> Option<String> {
    match std::env::var("SLUICE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => missing(Requirement::Postgres, "SLUICE_TEST_POSTGRES_URL is not set"),
    }
}

/// The NATS server URL for tests, or `None`.
pub fn nats_url() -> Option<String> {
    match std::env::var("SLUICE_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => missing(Requirement::Nats, "SLUICE_TEST_NATS_URL is not set"),
    }
}

/// `Some(())` when Node.js and the test peers are installed.
pub fn node() -> Option<()> {
    let peers = crate::paths::workspace_root().join("tests/peers/node_modules");
    if !peers.is_dir() {
        return missing(
            Requirement::Node,
            "tests/peers/node_modules is missing (run `npm ci` there; `cargo xtask test` does)",
        );
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => Some(()),
        _ => missing(Requirement::Node, "`node --version` failed"),
    }
}

/// The cargo to build driver crates with (`$CARGO`, else `cargo` on the `PATH`), when it
/// runs and its `rustc` has the `wasm32-wasip2` standard library; else `None`.
pub fn wasm_toolchain() -> Option<std::path::PathBuf> {
    let cargo = std::env::var_os("CARGO").map_or_else(|| "cargo".into(), std::path::PathBuf::from);
    match Command::new(&cargo).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => {
            return missing(
                Requirement::WasmToolchain,
                &format!("`{} --version` failed", cargo.display()),
            );
        }
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = match Command::new(&rustc).args(["--print", "sysroot"]).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => return missing(Requirement::WasmToolchain, "`rustc --print sysroot` failed"),
    };
    let std_lib = std::path::Path::new(&sysroot).join("lib/rustlib/wasm32-wasip2");
    if !std_lib.is_dir() {
        return missing(
            Requirement::WasmToolchain,
            &format!(
                "{} is missing (`rustup target add wasm32-wasip2`)",
                std_lib.display()
            ),
        );
    }
    Some(cargo)
}
