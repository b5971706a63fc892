//! Developer entry point: `cargo xtask <command>`.
//!
//! - `cargo xtask run [-- args]`  build the bundled drivers and start `sluice serve` on them.
//! - `cargo xtask test`           build the drivers and test peers, run the whole suite, then
//!   each fuzz target briefly.
//! - `cargo xtask build-drivers`  build every driver component for `wasm32-wasip2`.
//! - `cargo xtask ensure-target`  install the `wasm32-wasip2` target when it is missing.
//! - `cargo xtask bench`          run the benchmarks (`sluice-bench`).
//! - `cargo xtask check-layers`   the host's module graph against `docs/architecture.md`.
//! - `cargo xtask fuzz [TARGET] [SECONDS]`  the fuzz targets, instrumented, for a while.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod fuzz;
mod layers;

const WASM_TARGET: &str = "wasm32-wasip2";
/// Cargo profile for driver components: release, stripped (see the workspace Cargo.toml).
const DRIVER_PROFILE: &str = "driver";

/// Drivers shipped with Sluice: (cargo package, driver name). Built into `target/drivers/`.
const BUNDLED: &[(&str, &str)] = &[
    ("sluice-driver-stripe", "stripe"),
    ("sluice-driver-shopify", "shopify"),
    ("sluice-driver-hotmart", "hotmart"),
];

/// Drivers that exist only for tests: built into `target/test-drivers/`, never shipped.
const TEST_ONLY: &[(&str, &str)] = &[
    ("sluice-test-driver-faulty", "faulty"),
    ("sluice-test-driver-hostile", "hostile"),
    ("sluice-example-driver", "acme"),
    // Built against a verbatim copy of the previous world (its own `wit/`).
    ("sluice-test-driver-previous-world", "previous-world"),
];

/// Test-only builds of a package with a cargo feature: (cargo package, feature, driver
/// name). Built one by one after the others and copied into `target/test-drivers/`.
const TEST_VARIANTS: &[(&str, &str, &str)] = &[
    (
        "sluice-test-driver-faulty",
        "bad-metadata",
        "faulty-bad-metadata",
    ),
    (
        "sluice-test-driver-faulty",
        "loop-metadata",
        "faulty-loop-metadata",
    ),
    (
        "sluice-test-driver-faulty",
        "fixed-normalize",
        "faulty-fixed",
    ),
    (
        "sluice-test-driver-faulty",
        "changed-normalize",
        "faulty-next",
    ),
    (
        "sluice-test-driver-previous-world",
        "claims-0-5",
        "previous-world-claims-0.5",
    ),
    (
        "sluice-test-driver-previous-world",
        "claims-0-7",
        "previous-world-claims-0.7",
    ),
];

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  run [-- args]    build the bundled drivers, then `sluice serve --drivers-dir target/drivers [args]`
  test             build the drivers, install the test peers, run the whole suite
  build-drivers    build every driver for wasm32-wasip2 into target/drivers and target/test-drivers
  ensure-target    add the wasm32-wasip2 rustup target when it is missing
  bench            run the benchmarks (package `sluice-bench`)
  check-layers     check the host's module graph against the layers in docs/architecture.md
  fuzz [TARGET] [SECONDS]
                   build the fuzz targets with coverage instrumentation and run each (or
                   TARGET) for SECONDS (default 60)
";

fn main() {
    // Invoked by cargo as the rustc wrapper of the fuzz build (see `fuzz`).
    if fuzz::is_wrapping_rustc() {
        fuzz::wrap_rustc();
    }
    if let Err(err) = real_main() {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let Some(command) = args.next() else {
        eprint!("{USAGE}");
        bail!("no command given");
    };
    let rest: Vec<OsString> = args.collect();
    let ws = Workspace::locate()?;
    match command.to_str() {
        Some("ensure-target") => no_args(&rest).and_then(|()| ensure_target()),
        Some("build-drivers") => no_args(&rest).and_then(|()| build_drivers(&ws)),
        Some("run") => run(&ws, &rest),
        Some("test") => test(&ws, &rest),
        Some("bench") => bench(&ws, &rest),
        Some("check-layers") => no_args(&rest).and_then(|()| check_layers(&ws)),
        Some("fuzz") => fuzz_command(&ws, &rest),
        Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => {
            eprint!("{USAGE}");
            bail!("unknown command {command:?}")
        }
    }
}

fn no_args(rest: &[OsString]) -> Result<()> {
    if rest.is_empty() {
        Ok(())
    } else {
        bail!("unexpected arguments: {rest:?}")
    }
}

/// Strips one leading `--` so both `cargo xtask run -- --flag` and `cargo xtask run --flag` work.
fn passthrough(rest: &[OsString]) -> &[OsString] {
    match rest.first() {
        Some(first) if first == "--" => &rest[1..],
        _ => rest,
    }
}

pub(crate) struct Workspace {
    pub(crate) root: PathBuf,
    pub(crate) target: PathBuf,
}

impl Workspace {
    fn locate() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask has no parent directory")?
            .to_path_buf();
        // Respect CARGO_TARGET_DIR so the paths we copy from are where cargo wrote.
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => {
                let dir = PathBuf::from(dir);
                if dir.is_absolute() {
                    dir
                } else {
                    root.join(dir)
                }
            }
            _ => root.join("target"),
        };
        Ok(Self { root, target })
    }

    pub(crate) fn cargo(&self) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&self.root);
        cmd
    }

    pub(crate) fn drivers_dir(&self) -> PathBuf {
        self.target.join("drivers")
    }

    fn test_drivers_dir(&self) -> PathBuf {
        self.target.join("test-drivers")
    }
}

pub(crate) fn status(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn ensure_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("could not run `rustup target list --installed` (is rustup installed?)")?;
    if !out.status.success() {
        bail!(
            "`rustup target list --installed` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let installed = String::from_utf8_lossy(&out.stdout);
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        return Ok(());
    }
    status(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

fn build_drivers(ws: &Workspace) -> Result<()> {
    ensure_target()?;
    let mut cmd = ws.cargo();
    cmd.args([
        "build",
        "--profile",
        DRIVER_PROFILE,
        "--target",
        WASM_TARGET,
    ]);
    for (package, _) in BUNDLED.iter().chain(TEST_ONLY) {
        cmd.args(["-p", package]);
    }
    status(&mut cmd)?;

    let built = ws.target.join(WASM_TARGET).join(DRIVER_PROFILE);
    for (list, dest) in [
        (BUNDLED, ws.drivers_dir()),
        (TEST_ONLY, ws.test_drivers_dir()),
    ] {
        std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
        for (package, name) in list {
            copy_driver(&built, package, &dest, name)?;
        }
    }
    // A bundled driver's default policy goes beside its component (`sluice` reads
    // `<id>.policy.toml` from the drivers directory).
    for (_, name) in BUNDLED {
        let from = ws.root.join("drivers").join(name).join("policy.toml");
        let to = ws.drivers_dir().join(format!("{name}.policy.toml"));
        std::fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }

    // A variant writes the same output file as the package's normal build, so each one
    // is built on its own and copied away before the next build.
    for (package, feature, name) in TEST_VARIANTS {
        let mut cmd = ws.cargo();
        cmd.args([
            "build",
            "--profile",
            DRIVER_PROFILE,
            "--target",
            WASM_TARGET,
        ])
        .args(["-p", package, "--features", feature]);
        status(&mut cmd)?;
        copy_driver(&built, package, &ws.test_drivers_dir(), name)?;
    }
    Ok(())
}

/// Copies the component cargo built for `package` to `<dest>/<name>.wasm`.
fn copy_driver(built: &Path, package: &str, dest: &Path, name: &str) -> Result<()> {
    let from = built.join(format!("{}.wasm", package.replace('-', "_")));
    let to = dest.join(format!("{name}.wasm"));
    std::fs::copy(&from, &to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    eprintln!("xtask: {name} -> {}", to.display());
    Ok(())
}

fn run(ws: &Workspace, rest: &[OsString]) -> Result<()> {
    build_drivers(ws)?;
    let mut cmd = ws.cargo();
    cmd.args(["run", "-p", "sluice", "--", "serve", "--drivers-dir"])
        .arg(ws.drivers_dir())
        .args(passthrough(rest));
    status(&mut cmd)
}

fn test(ws: &Workspace, rest: &[OsString]) -> Result<()> {
    build_drivers(ws)?;
    install_peers(ws)?;

    let nextest = ws
        .cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    let mut cmd = ws.cargo();
    if nextest {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        eprintln!("xtask: cargo-nextest not found, using `cargo test`");
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    cmd.args(passthrough(rest));

    // Tests that skip for a missing service append a line here (see sluice-testkit's
    // `require`); with CI set they fail instead.
    let skips = ws.target.join("test-skips.txt");
    let _ = std::fs::remove_file(&skips);
    cmd.env("SLUICE_DRIVERS", ws.drivers_dir())
        .env("SLUICE_TEST_DRIVERS", ws.test_drivers_dir())
        .env("SLUICE_TEST_CACHE", ws.target.join("test-cache"))
        .env("SLUICE_TEST_SKIPS", &skips);
    match std::env::var("SLUICE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => eprintln!("xtask: PostgreSQL tests use {url}"),
        _ => {
            eprintln!("xtask: SLUICE_TEST_POSTGRES_URL is unset: PostgreSQL tests will be skipped")
        }
    }
    match std::env::var("SLUICE_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => eprintln!("xtask: NATS tests use {url}"),
        _ => eprintln!("xtask: SLUICE_TEST_NATS_URL is unset: NATS tests will be skipped"),
    }
    let result = status(&mut cmd);
    report_skips(&skips);
    result?;
    let seconds: u64 = match std::env::var("SLUICE_FUZZ_SECONDS") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("SLUICE_FUZZ_SECONDS={v:?} is not a number"))?,
        Err(_) => 10,
    };
    if seconds == 0 {
        eprintln!("xtask: SLUICE_FUZZ_SECONDS=0: fuzzing skipped");
        return Ok(());
    }
    fuzz::run(ws, None, seconds)
}

/// `cargo xtask fuzz [TARGET] [SECONDS]`.
fn fuzz_command(ws: &Workspace, rest: &[OsString]) -> Result<()> {
    let rest: Vec<String> = passthrough(rest)
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (target, seconds) = match rest.as_slice() {
        [] => (None, 60),
        [one] => match one.parse() {
            Ok(seconds) => (None, seconds),
            Err(_) => (Some(one.as_str()), 60),
        },
        [target, seconds] => (
            Some(target.as_str()),
            seconds
                .parse()
                .with_context(|| format!("{seconds:?} is not a number of seconds"))?,
        ),
        _ => bail!("usage: cargo xtask fuzz [TARGET] [SECONDS]"),
    };
    if target.is_some_and(|t| !fuzz::TARGETS.contains(&t)) {
        bail!(
            "no fuzz target {target:?}; the targets are {:?}",
            fuzz::TARGETS
        );
    }
    build_drivers(ws)?;
    fuzz::run(ws, target, seconds)
}

/// Print the host's module graph and fail on a cycle or an edge against the layers.
fn check_layers(ws: &Workspace) -> Result<()> {
    let report = layers::check(&ws.root)?;
    for ((from, to), count) in &report.edges {
        println!("{from} -> {to} ({count})");
    }
    if report.problems.is_empty() {
        eprintln!(
            "xtask: {} edges between the host's modules, all downward",
            report.edges.len()
        );
        return Ok(());
    }
    for problem in &report.problems {
        eprintln!("xtask: {problem}");
    }
    bail!("the host's modules break their layers")
}

/// Print how many tests skipped for a missing service, by service.
fn report_skips(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("xtask: no test was skipped");
        return;
    };
    let mut by_reason = std::collections::BTreeMap::<&str, usize>::new();
    for line in text.lines() {
        let reason = line.split('\t').next().unwrap_or(line);
        *by_reason.entry(reason).or_default() += 1;
    }
    let total: usize = by_reason.values().sum();
    eprintln!("xtask: {total} test(s) skipped for a missing service:");
    for (reason, n) in by_reason {
        eprintln!("xtask:   {n} need {reason}");
    }
}

/// The Node test peers (the official `stripe` library signs webhooks, …).
fn install_peers(ws: &Workspace) -> Result<()> {
    npm_ci(&ws.root.join("tests").join("peers"))
        .context("installing the Node test peers in tests/peers (is Node.js installed?)")
}

/// `npm ci` (or `npm install` without a lock file) in `dir`, unless what is installed is
/// what the lock file says (npm's own copy of it in `node_modules` is as new).
fn npm_ci(dir: &Path) -> Result<()> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let installed = modified(&dir.join("node_modules").join(".package-lock.json"));
    let wanted = modified(&dir.join("package-lock.json"));
    if dir.join("node_modules").is_dir() && installed.is_some() && installed >= wanted {
        return Ok(());
    }
    let mut cmd = Command::new("npm");
    cmd.current_dir(dir);
    if dir.join("package-lock.json").is_file() {
        cmd.args(["ci", "--no-audit", "--no-fund"]);
    } else {
        cmd.args(["install", "--no-audit", "--no-fund"]);
    }
    status(&mut cmd)
}

/// Build the drivers, the release `sluice` and `sluice-native` (the bench's server with the
/// Stripe driver compiled in), the Node peer, then run `sluice-bench` (its tables go to
/// stdout).
fn bench(ws: &Workspace, rest: &[OsString]) -> Result<()> {
    build_drivers(ws)?;
    status(
        ws.cargo()
            .args(["build", "--release", "-p", "sluice", "-p", "sluice-bench"]),
    )?;
    npm_ci(&ws.root.join("bench").join("peer"))
        .context("installing the bench's Node peer in bench/peer (is Node.js installed?)")?;
    let postgres = std::env::var("SLUICE_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("SLUICE_TEST_POSTGRES_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    status(
        ws.cargo()
            .args([
                "run",
                "--release",
                "-p",
                "sluice-bench",
                "--bin",
                "sluice-bench",
                "--",
            ])
            .args(passthrough(rest))
            .env(
                "SLUICE_BENCH_SLUICE",
                ws.target.join("release").join("sluice"),
            )
            .env(
                "SLUICE_BENCH_SLUICE_NATIVE",
                ws.target.join("release").join("sluice-native"),
            )
            .env("SLUICE_BENCH_DRIVERS", ws.drivers_dir())
            .env("SLUICE_BENCH_POSTGRES_URL", postgres),
    )
}
