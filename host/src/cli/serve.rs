//! `sluice serve`: start a node from the configuration and serve HTTP until interrupted;
//! `sluice config print`: the configuration it would run with.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::{Config, Layers};
use crate::node::{Extensions, Node};

#[derive(Args)]
pub struct ServeArgs {
    /// Configuration file. Default: `sluice.toml` when present.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [env: SLUICE_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<String>,
    /// `sqlite://FILE` or `postgres://…` [env: SLUICE_DATABASE_URL] [default: sqlite in the data dir].
    #[arg(long)]
    database_url: Option<String>,
    /// Directory of driver components [env: SLUICE_DRIVERS_DIR] [default: target/drivers].
    #[arg(long)]
    drivers_dir: Option<PathBuf>,
    /// Data directory [env: SLUICE_DATA_DIR] [default: sluice-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl ServeArgs {
    /// The configuration's layers with these flags on top.
    fn layers(&self) -> anyhow::Result<Layers> {
        let mut flags: Vec<(&str, String)> = Vec::new();
        if let Some(v) = &self.listen {
            flags.push(("listen", v.clone()));
        }
        if let Some(v) = &self.database_url {
            flags.push(("database_url", v.clone()));
        }
        if let Some(v) = &self.drivers_dir {
            flags.push(("drivers_dir", v.display().to_string()));
        }
        if let Some(v) = &self.data_dir {
            flags.push(("data_dir", v.display().to_string()));
        }
        Layers::load(self.config.as_deref(), &flags)
    }
}

/// `sluice config …`.
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML (secrets redacted), each value with where
    /// it came from: `default`, the file, an environment variable or a flag.
    Print(ServeArgs),
}

impl ConfigCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            ConfigCommand::Print(args) => {
                let layers = args.layers()?;
                let text = layers.print()?;
                let config = layers.extract()?;
                config.validate()?;
                for notice in layers.notices() {
                    eprintln!("warning: {notice}");
                }
                use std::io::Write;
                let _ = std::io::stdout().lock().write_all(text.as_bytes());
                Ok(())
            }
        }
    }
}

pub async fn run(args: ServeArgs, extensions: Extensions) -> anyhow::Result<()> {
    // A configuration error is printed by `main` (stderr); everything after it is logged
    // in the configured format.
    let layers = args.layers()?;
    let config: Config = layers.extract()?;
    super::logging::init(config.log_format);
    for notice in layers.notices() {
        tracing::warn!("{notice}");
    }
    crate::metrics::set_installation_series(
        usize::try_from(config.server.metrics_installation_series).unwrap_or(usize::MAX),
    );
    if let Some(handle) = crate::metrics::install() {
        // Histograms keep their samples until upkeep folds them in; without a scraper
        // that would grow without bound.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
    }
    // Bound first, so a port in use fails the start before the drivers are loaded.
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let node = Node::start(config, extensions).await?;
    node.serve(listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let ctrl_c = tokio::signal::ctrl_c();
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutting down");
}
