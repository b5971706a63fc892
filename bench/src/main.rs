//! `cargo xtask bench`: Sluice's benchmarks, each printing a markdown table with its
//! baselines from the same run (`BENCHMARKS.md` records them).
//!
//! - `calls`: one Stripe delivery per call, in the sandbox against the driver's code
//!   compiled natively.
//! - `http`: real servers on loopback under load — the wire limit, Sluice on SQLite and
//!   PostgreSQL, the native-driver build, and a Node + `stripe` + `pg` peer; then a fixed
//!   rate, and 100,000 installations.
//!
//! `sluice-bench [calls|http|all]` (default `all`). Environment (set by `cargo xtask bench`):
//! `SLUICE_BENCH_SLUICE` (the release `sluice`), `SLUICE_BENCH_SLUICE_NATIVE` (the release
//! `sluice-native`, this crate's server with the Stripe driver compiled in),
//! `SLUICE_BENCH_DRIVERS` (built drivers), `SLUICE_BENCH_POSTGRES_URL` (an admin URL of a
//! PostgreSQL server; the bench creates and drops its databases).

mod calls;
mod http;
mod load;

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let var =
        |name: &str, default: PathBuf| std::env::var_os(name).map(PathBuf::from).unwrap_or(default);
    let drivers = var("SLUICE_BENCH_DRIVERS", root.join("target/drivers"));
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    if matches!(which.as_str(), "calls" | "all") {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(calls::run(&root, &drivers))?;
        println!();
    }
    if which == "load" || which == "fixed" {
        // `sluice-bench load|fixed ADDR INSTALLATION SECRET`: the closed-loop Stripe load,
        // or the fixed rate, alone, against a server started by hand (for profiling it).
        let arg = |i: usize| {
            std::env::args()
                .nth(i)
                .context("usage: load|fixed ADDR INSTALLATION SECRET")
        };
        return http::load_only(arg(2)?.parse()?, &arg(3)?, &arg(4)?, which == "fixed");
    }
    if matches!(which.as_str(), "http" | "all") {
        let setup = http::Setup {
            sluice: var("SLUICE_BENCH_SLUICE", root.join("target/release/sluice")),
            sluice_native: var(
                "SLUICE_BENCH_SLUICE_NATIVE",
                root.join("target/release/sluice-native"),
            ),
            drivers,
            postgres: std::env::var("SLUICE_BENCH_POSTGRES_URL").ok(),
            root,
        };
        http::run(&setup).context("the HTTP bench")?;
    }
    Ok(())
}
