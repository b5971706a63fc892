//! The fuzz targets (`fuzz/`), built with libFuzzer's coverage instrumentation and run for a
//! bounded time each.
//!
//! The targets are a member of the workspace and are built in its `target/`, with the same
//! profile as the test suite, so the dependencies the suite compiled are reused; only the
//! workspace's own crates are compiled again, instrumented. Cargo runs this program as
//! their `RUSTC_WORKSPACE_WRAPPER`, which adds the flags `cargo fuzz` would (sancov with
//! 8-bit counters, the PC table and compare tracing, `--cfg fuzzing`, debug assertions);
//! the wrapper is part of those crates' build identity, so the instrumented copies live
//! beside the suite's and neither replaces the other. No `cargo-fuzz` to install, no
//! second build of the dependency tree.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::{Workspace, status};

/// Every fuzz target, each a `[[bin]]` of `fuzz/Cargo.toml`.
pub const TARGETS: &[&str] = &[
    "signature_headers",
    "shopify_oauth_query",
    "webhook_intake",
    "settings",
    "host_intake",
    "http_request",
];

/// Set for the cargo build this program wraps.
const WRAPPING: &str = "SLUICE_XTASK_WRAP_RUSTC";

/// The instrumentation `cargo fuzz` gives its builds (sanitizer `none`, Linux).
const INSTRUMENTATION: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "-Cllvm-args=-sanitizer-coverage-stack-depth",
    "-Cllvm-args=-simplifycfg-branch-fold-threshold=0",
    "--cfg",
    "fuzzing",
    "-Cdebug-assertions",
    "-Coverflow-checks",
];

/// Whether cargo started this process as the fuzz build's rustc wrapper.
pub fn is_wrapping_rustc() -> bool {
    std::env::var_os(WRAPPING).is_some_and(|v| v == "1")
}

/// Run rustc (the first argument) with the rest, instrumented when it compiles a crate.
pub fn wrap_rustc() -> ! {
    let mut args = std::env::args_os().skip(1);
    let Some(rustc) = args.next() else {
        eprintln!("xtask: the rustc wrapper was called without rustc");
        std::process::exit(2);
    };
    let args: Vec<_> = args.collect();
    let mut cmd = Command::new(rustc);
    cmd.args(&args);
    if args.iter().any(|a| a == "--crate-name") {
        cmd.args(INSTRUMENTATION);
    }
    let code = match cmd.status() {
        Ok(status) => status.code().unwrap_or(1),
        Err(e) => {
            eprintln!("xtask: running rustc: {e}");
            1
        }
    };
    std::process::exit(code)
}

/// Build the targets and run `only` (or each) for `seconds`; a finding fails, its input in
/// `fuzz/artifacts/<target>/`.
pub fn run(ws: &Workspace, only: Option<&str>, seconds: u64) -> Result<()> {
    let me = std::env::current_exe().context("locating xtask itself")?;
    status(
        ws.cargo()
            .env("RUSTC_WORKSPACE_WRAPPER", &me)
            .env(WRAPPING, "1")
            .args(["build", "-p", "sluice-fuzz", "--bins"]),
    )
    .context("building the fuzz targets")?;
    let fuzz = ws.root.join("fuzz");
    for target in TARGETS.iter().filter(|t| only.is_none_or(|o| o == **t)) {
        let corpus = ws.target.join("fuzz/corpus").join(target);
        let artifacts = fuzz.join("artifacts").join(target);
        for dir in [&corpus, &artifacts] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let binary = ws.target.join("debug").join(target);
        status(
            Command::new(&binary)
                // `host_intake` loads the bundled components built for the suite.
                .env("SLUICE_DRIVERS", ws.drivers_dir())
                .arg(format!("-artifact_prefix={}/", artifacts.display()))
                .arg(format!("-max_total_time={seconds}"))
                .arg("-max_len=8192")
                // The growing corpus stays under target/; the seeds are read only.
                .arg(&corpus)
                .arg(seeds(&fuzz, target)),
        )
        .with_context(|| format!("fuzz target {target} found a failure (see fuzz/artifacts)"))?;
    }
    Ok(())
}

fn seeds(fuzz: &Path, target: &str) -> std::path::PathBuf {
    fuzz.join("seeds").join(target)
}
