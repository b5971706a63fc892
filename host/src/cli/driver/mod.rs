//! `sluice driver inspect|test|new`: a driver author's tools, no server needed.
//!
//! `test` runs the same verify → handle → normalize path as a webhook delivery, with
//! secrets and settings from the command line and, optionally, the clock pinned, so
//! recorded fixtures with old timestamps can be replayed exactly; with `--fixtures DIR` it
//! runs every recorded request of a directory and compares the output with its snapshot
//! (`fixtures`). `new` scaffolds a driver crate on the SDK (`scaffold`).

mod diff;
mod fixtures;
mod run;
mod scaffold;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::Value;

use crate::capabilities::{CapabilityConfig, Clock};
use crate::config::Config;
use crate::policy::{DriverDefaults, Policy};
use crate::runtime::{CodeCache, Runtime};
use crate::wit::types::IncomingRequest;

pub use run::Harness;

#[derive(Subcommand)]
pub enum DriverCommand {
    /// Load a component and print its validated metadata.
    Inspect { file: PathBuf },
    /// Run a webhook delivery through a component and print what it produced as JSON
    /// (exit 0 when accepted, 1 when refused or failed); or, with `--fixtures DIR`, run
    /// every fixture in DIR and compare the output with its snapshot (exit 1 on any
    /// difference or unreadable fixture).
    Test {
        /// The component (or `--driver`).
        #[arg(conflicts_with = "driver")]
        file: Option<PathBuf>,
        /// The component (or FILE).
        #[arg(long)]
        driver: Option<PathBuf>,
        /// A directory of fixtures: `NAME.request.json` (a webhook delivery) and
        /// `NAME.poll.json` (a poll with recorded responses), each compared with
        /// `NAME.snapshot.json` beside it.
        #[arg(long, conflicts_with_all = ["body", "headers", "secrets", "settings", "now"])]
        fixtures: Option<PathBuf>,
        /// Write the snapshots from this run's output instead of comparing.
        #[arg(long, requires = "fixtures")]
        update: bool,
        /// Print every fixture's output, not only the differences.
        #[arg(long, requires = "fixtures")]
        print: bool,
        /// The request body, sent byte for byte.
        #[arg(long)]
        body: Option<PathBuf>,
        /// A request header, `Name: value` (repeatable); the value is everything after the
        /// colon and one space, exactly.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// An installation secret, `name=value` (repeatable).
        #[arg(long = "secret")]
        secrets: Vec<String>,
        /// Installation settings, JSON text (default `{}`).
        #[arg(long)]
        settings: Option<String>,
        /// Pin the clock to this Unix time (seconds).
        #[arg(long)]
        now: Option<u64>,
    },
    /// Create a driver crate on the Sluice SDK, with one fixture and its snapshot.
    New {
        /// The driver id: `[a-z][a-z0-9_-]{0,31}`.
        name: String,
        /// The crate's directory (default `./NAME`); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK the crate depends on by path: a Sluice checkout's `sdk/` directory
        /// (default: the checkout this `sluice` was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

/// The compile cache, when this machine's master key is at hand (its entries are
/// authenticated with a key derived from it); a driver command never creates a key.
fn code_cache(config: &Config) -> Option<CodeCache> {
    let file = config.data_dir.join("master.key");
    let in_env = config
        .master_key
        .as_deref()
        .is_some_and(|k| !k.trim().is_empty());
    if !in_env && !file.exists() {
        return None;
    }
    let key = sluice_store::MasterKey::load(config.master_key.as_deref(), &file).ok()?;
    Some(CodeCache::new(config.cache_dir(), &key))
}

/// Driver `log` calls go to stderr, so stdout stays the command's own output.
fn log_to_stderr(default: &str) {
    crate::cli::logging::init_stderr(default);
}

/// Load `file` under the policy `sluice serve` would apply here (`sluice.toml`).
async fn harness(file: &Path, clock: Clock) -> anyhow::Result<Harness> {
    let config = Config::load(None)?;
    // The operator's policy over the defaults of the drivers directory and the one beside
    // `file`, as `sluice serve` would apply them.
    let mut defaults = DriverDefaults::read_dir(&config.drivers_dir).map_err(anyhow::Error::msg)?;
    defaults.extend(DriverDefaults::read_beside(file).map_err(anyhow::Error::msg)?);
    let policy = Policy::new(&config.drivers, defaults).map_err(anyhow::Error::msg)?;
    let runtime = Runtime::new(
        CapabilityConfig {
            clock,
            policy,
            sections: config.capabilities.clone(),
            ..CapabilityConfig::new(Vec::new())
        },
        code_cache(&config),
    )?;
    let driver = Arc::new(runtime.load_driver(&read(file)?).await?);
    Ok(Harness { runtime, driver })
}

impl DriverCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            DriverCommand::Inspect { file } => {
                // The output shows which of its origins the driver would get.
                let harness = harness(&file, Clock::System).await?;
                super::print_json(&harness.driver.info);
                Ok(ExitCode::SUCCESS)
            }
            DriverCommand::Test {
                file,
                driver,
                fixtures,
                update,
                print,
                body,
                headers,
                secrets,
                settings,
                now,
            } => {
                let Some(driver) = file.or(driver) else {
                    bail!("name the component: `sluice driver test FILE` or `--driver FILE`");
                };
                if let Some(dir) = fixtures {
                    log_to_stderr("warn");
                    let harness = harness(&driver, Clock::System).await?;
                    return fixtures::run(&harness, &dir, fixtures::Mode { update, print }).await;
                }
                let Some(body) = body else {
                    bail!(
                        "--body is required (or run a directory of fixtures with --fixtures DIR)"
                    );
                };
                log_to_stderr("info");
                let clock = now.map_or(Clock::System, |s| Clock::Pinned(Duration::from_secs(s)));
                let harness = harness(&driver, clock).await?;
                let settings: Value = serde_json::from_str(settings.as_deref().unwrap_or("{}"))
                    .context("--settings is not JSON")?;
                let request = IncomingRequest {
                    method: "POST".into(),
                    path: format!("/webhooks/{}", run::INSTALLATION),
                    query: String::new(),
                    headers: parse_pairs(&headers, ':')?,
                    body: read(&body)?,
                };
                let inputs = run::Inputs {
                    settings,
                    secrets: parse_pairs(&secrets, '=')?
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect(),
                    state: HashMap::new(),
                    http: None,
                    clock: None,
                };
                Ok(report(harness.webhook(inputs, request).await))
            }
            DriverCommand::New { name, dir, sdk } => {
                scaffold::run(&name, dir, sdk)?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

fn report(value: Value) -> ExitCode {
    super::print_json(&value);
    if value["ok"] == Value::Bool(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Split `name<sep>value` pairs; the value keeps any further separators.
fn parse_pairs(items: &[String], sep: char) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| match item.split_once(sep) {
            Some((k, v)) if !k.trim().is_empty() => {
                // `Name: value`: the one space after the colon separates; the value is kept
                // exactly (a recorded header with odd whitespace stays odd). Secrets are
                // kept exactly too.
                let v = if sep == ':' {
                    v.strip_prefix(' ').unwrap_or(v)
                } else {
                    v
                };
                Ok((k.trim().to_string(), v.to_string()))
            }
            _ => bail!("{item:?} is not `name{sep}value`"),
        })
        .collect()
}
